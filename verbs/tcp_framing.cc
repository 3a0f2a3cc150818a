// The TCP server's socket-free input parser (see tcp_framing.h).
#include "verbs/tcp_framing.h"

#include <algorithm>
#include <cstring>

#include "verbs/handshake.h"
#include "verbs/transport.h"

namespace sharry::internal {

using wire::Kind;
using wire::MsgHeader;

TcpFraming::TcpFraming(const Options& o) : opts_(o), max_message_(o.max_message) { NextHeader(); }

size_t TcpFraming::Feed(std::span<const uint8_t> in, Sink& sink) {
  size_t pos = 0;
  while (!closed_) {
    if (got_ == need_) {  // a part is complete (or empty)
      if (in_ == In::kHeader && !sink.TakeFrame()) break;  // do not take another frame yet
      Frame(sink);
      continue;
    }
    if (pos == in.size()) break;
    const size_t take = std::min(in.size() - pos, need_ - got_);
    if (in_ == In::kPayload && hdr_.kind == Kind::kWrite) {
      // Write data lands in the region only under a pin of those bytes.
      const uint64_t at = range_.offset + got_;
      if (!write_denied_ && sink.PinRegion(at, take)) {
        std::memcpy(target_ + got_, in.data() + pos, take);
        sink.UnpinRegion(at, take);
      } else {
        write_denied_ = true;
      }
    } else if (in_ != In::kDiscard) {
      std::memcpy(target_ + got_, in.data() + pos, take);
    }
    pos += take;
    got_ += take;
  }
  return pos;
}

void TcpFraming::Close(Sink& sink, const std::string& why) {
  closed_ = true;
  sink.OnClose(why);
}

void TcpFraming::Frame(Sink& sink) {
  const uint32_t max_payload = max_message_ - sizeof(MsgHeader);
  switch (in_) {
    case In::kHeader: {
      const MsgHeader& h = hdr_;
      if (h.magic != wire::kMagic || h.version != wire::kVersion) {
        // The stream cannot be resynchronised: say why, then close.
        sink.OnError(h.tag, Status::Protocol("bad frame header (magic/version); closing"));
        return Close(sink, "bad frame header");
      }
      if (!greeted_) {
        if (challenged_) {
          if (h.kind != Kind::kAuth || h.length != wire::kProofBytes) {
            sink.OnRefuse(h.tag, StatusCode::kProtocol,
                          "after a challenge the next frame must be an answer of " +
                              std::to_string(wire::kProofBytes) + " B");
            return Close(sink, "no answer to the challenge");
          }
        } else if (h.kind != Kind::kHello || h.length < sizeof(wire::HelloPayload) || h.length > wire::kMaxHello) {
          sink.OnRefuse(h.tag, StatusCode::kProtocol,
                        "the first frame must be a hello of " + std::to_string(sizeof(wire::HelloPayload)) + ".." +
                            std::to_string(wire::kMaxHello) + " B");
          return Close(sink, "no hello");
        }
        payload_.resize(h.length);
        return StartPart(In::kPayload, payload_.data(), h.length);
      }
      sink.Touch();
      switch (h.kind) {
        case Kind::kRequest:
          if (h.length > max_payload) {
            sink.OnError(h.tag, Status::InvalidArgument(
                                    "request of " + std::to_string(h.length) +
                                    " B exceeds the largest message payload (" + std::to_string(max_payload) + " B)"));
            return StartPart(In::kDiscard, nullptr, h.length);
          }
          payload_.resize(h.length);
          if (h.length == 0) {
            StartPart(In::kPayload, nullptr, 0);
            return Frame(sink);
          }
          return StartPart(In::kPayload, payload_.data(), h.length);
        case Kind::kRead:
        case Kind::kWrite:
          if (h.length < sizeof(wire::RangePayload) ||
              (h.kind == Kind::kRead && h.length != sizeof(wire::RangePayload)))
            break;
          return StartPart(In::kRange, reinterpret_cast<uint8_t*>(&range_), sizeof(wire::RangePayload));
        default:
          break;
      }
      sink.OnError(h.tag, Status::Protocol("unexpected frame kind " + std::to_string(int(h.kind)) + " with " +
                                           std::to_string(h.length) + " B payload"));
      return StartPart(In::kDiscard, nullptr, h.length);
    }
    case In::kRange: {
      const MsgHeader& h = hdr_;
      const uint64_t data_len = h.length - sizeof(wire::RangePayload);
      const char* what = h.kind == Kind::kRead ? "read" : "write";
      Status s;
      if (range_.length > wire::kMaxTcpChunk)
        s = Status::InvalidArgument(std::string(what) + " of " + std::to_string(range_.length) +
                                    " B exceeds the largest tcp frame (" + std::to_string(wire::kMaxTcpChunk) +
                                    " B); split it (the client library does)");
      if (s.ok()) s = CheckRange(range_.offset, range_.length, opts_.region_size, what);
      if (s.ok() && h.kind == Kind::kWrite && data_len != range_.length)
        s = Status::Protocol("write frame carries " + std::to_string(data_len) + " B for a range of " +
                             std::to_string(range_.length) + " B");
      if (!s.ok()) {
        sink.OnError(h.tag, s);
        if (data_len > 0) return StartPart(In::kDiscard, nullptr, data_len);
        return NextHeader();
      }
      if (h.kind == Kind::kRead) {
        sink.OnRead(h.tag, range_.offset, range_.length);
        return NextHeader();
      }
      if (data_len == 0) {
        sink.OnWrite(h.tag, range_.offset, 0);
        return NextHeader();
      }
      // Write: receive straight into the region.
      return StartPart(In::kPayload, opts_.region + range_.offset, data_len);
    }
    case In::kDiscard:
      return NextHeader();
    case In::kPayload: {
      const MsgHeader& h = hdr_;
      if (h.kind == Kind::kWrite && write_denied_) {
        write_denied_ = false;
        sink.OnError(h.tag, Status::PermissionDenied("write of [" + std::to_string(range_.offset) + ", +" +
                                                     std::to_string(range_.length) +
                                                     ") outside this client's far memory"));
      } else if (h.kind == Kind::kWrite) {
        sink.OnWrite(h.tag, range_.offset, range_.length);
      } else if (h.kind == Kind::kHello && !greeted_) {
        Greet(sink);
      } else if (h.kind == Kind::kAuth && !greeted_) {
        Authenticate(sink);
      } else {  // kRequest
        sink.OnRequest(h.tag, payload_);
      }
      if (payload_.capacity() > (64u << 10)) std::vector<uint8_t>().swap(payload_);  // no big buffer kept idle
      return NextHeader();
    }
  }
}

void TcpFraming::Greet(Sink& sink) {
  auto refuse = [&](StatusCode code, const std::string& why) {
    sink.OnRefuse(hdr_.tag, code, why);
    Close(sink, "refused: " + why);
  };
  auto hello = ParseHello(payload_);
  if (!hello.ok()) return refuse(hello.status().code(), hello.status().message());
  if (hello->auth_on_qp)
    return refuse(StatusCode::kInvalidArgument,
                  "a tcp hello carries its credentials itself (kHelloAuthOnQp is verbs')");
  const uint32_t max_message = std::min(max_message_, hello->base.max_message);
  bool challenged = false;
  if (Status s = sink.OnHello(hdr_.tag, *hello, max_message, &challenged); !s.ok())
    return refuse(s.code(), s.message());
  if (challenged) {
    challenged_ = true;
    pending_max_message_ = max_message;
    return;
  }
  greeted_ = true;
  max_message_ = max_message;
}

void TcpFraming::Authenticate(Sink& sink) {
  challenged_ = false;
  if (Status s = sink.OnAuth(hdr_.tag, payload_); !s.ok()) {
    sink.OnRefuse(hdr_.tag, s.code(), s.message());
    return Close(sink, "refused: " + s.message());
  }
  greeted_ = true;
  max_message_ = pending_max_message_;
}

}  // namespace sharry::internal
