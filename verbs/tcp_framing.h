// The TCP server's input parser for one connection, without a socket: it is
// fed the bytes the peer sent, in any splits, and calls its Sink for what
// each frame asks for (greet, handle a request, read a range, ack a write,
// reply an error or a refusal, close). Writes land straight in the region.
// The server (tcp_server.cc) owns the socket and the replies; unit tests
// (tests/tcp_framing_test.cc) and fuzz/tcp_framing_fuzz.cc drive it byte by
// byte.
//
// A frame is wire::MsgHeader + payload (wire.h). The parser's states:
//
//   kHeader --kHello (not greeted)------------> kPayload --> OnHello / OnRefuse+OnClose
//           --kAuth (challenged)-------------> kPayload --> OnAuth / OnRefuse+OnClose
//           --kRequest-----------------------> kPayload --> OnRequest
//           --kRead/kWrite-------------------> kRange --> OnRead | kPayload (write data
//                                                          into the region) --> OnWrite
//           --too long / bad range / unknown--> OnError, kDiscard (skip the payload)
//           --bad magic or version, or no hello first--> OnError/OnRefuse, OnClose
//
// Every error keeps the stream in sync (the payload is skipped) except a bad
// header or a missing hello, which close the connection: nothing is parsed
// after OnClose.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "verbs/handshake.h"
#include "verbs/wire.h"

namespace sharry::internal {

class TcpFraming {
 public:
  // What the parser asks of its owner; called from Feed, in stream order.
  class Sink {
   public:
    virtual ~Sink() = default;
    // A frame header is complete, not yet acted on. false (backpressure):
    // Feed stops before it; a later Feed (even of no bytes) resumes with it.
    // Asked between frames only, never inside one.
    virtual bool TakeFrame() { return true; }
    // A greeted connection sent a good frame header (renews its lease).
    virtual void Touch() {}
    // A hello that passed ParseHello (magic, version, max_message range,
    // flags and their parts); `max_message` is the negotiated one. Ok: the
    // connection is greeted (the owner replied its welcome) — unless the
    // owner set *challenged (it replied a kChallenge): then the next frame
    // must be a kAuth, handed to OnAuth, and the connection is greeted when
    // that returns Ok. An error refuses it: OnRefuse with its code and
    // message, then OnClose.
    virtual Status OnHello(uint64_t tag, const Hello& hello, uint32_t max_message, bool* challenged) = 0;
    // The answer to the challenge (wire::kProofBytes). Ok: greeted (the
    // owner replied its welcome); an error refuses it, as above.
    virtual Status OnAuth(uint64_t /*tag*/, std::span<const uint8_t> /*proof*/) {
      return Status::Protocol("no challenge was sent");
    }
    // A kRequest's payload (valid during the call).
    virtual void OnRequest(uint64_t tag, std::span<const uint8_t> payload) = 0;
    // A valid kRead of [offset, offset + length) of the region: reply kReadData.
    virtual void OnRead(uint64_t tag, uint64_t offset, uint64_t length) = 0;
    // A valid kWrite's data is in the region now: reply kWriteAck.
    virtual void OnWrite(uint64_t tag, uint64_t offset, uint64_t length) = 0;
    // Reply kError with `tag`.
    virtual void OnError(uint64_t tag, const Status& s) = 0;
    // Reply a kWelcome refusing the connection (code + reason) with `tag`.
    virtual void OnRefuse(uint64_t tag, StatusCode code, const std::string& reason) = 0;
    // Read no more of this connection; `why` is for the log.
    virtual void OnClose(const std::string& why) = 0;
    // Confinement: the parser copies a write's bytes into [offset, offset +
    // length) of the region only between a true PinRegion and UnpinRegion.
    // A false one: the rest of the write is skipped and the write answered
    // with OnError(kPermissionDenied) instead of OnWrite.
    virtual bool PinRegion(uint64_t /*offset*/, uint64_t /*length*/) { return true; }
    virtual void UnpinRegion(uint64_t /*offset*/, uint64_t /*length*/) {}
  };

  struct Options {
    uint32_t max_message = 0;   // before the hello; then min(this, the hello's)
    uint8_t* region = nullptr;  // kWrite data lands at region + offset
    uint64_t region_size = 0;
  };

  explicit TcpFraming(const Options& o);

  // Parses `in` and returns how many bytes it consumed: all of them, unless
  // the parser closed or the sink held a frame (TakeFrame() false); the
  // bytes not consumed are to be fed again later.
  size_t Feed(std::span<const uint8_t> in, Sink& sink);

  bool greeted() const { return greeted_; }
  bool closed() const { return closed_; }
  bool challenged() const { return challenged_; }
  uint32_t max_message() const { return max_message_; }

 private:
  enum class In { kHeader, kRange, kPayload, kDiscard };
  void Frame(Sink& sink);  // a complete part arrived
  void Greet(Sink& sink);  // the hello's payload arrived
  void Authenticate(Sink& sink);  // the kAuth's payload arrived
  void Close(Sink& sink, const std::string& why);
  void StartPart(In st, uint8_t* target, size_t n) {
    in_ = st;
    target_ = target;
    need_ = n;
    got_ = 0;
  }
  void NextHeader() { StartPart(In::kHeader, reinterpret_cast<uint8_t*>(&hdr_), sizeof(wire::MsgHeader)); }

  Options opts_;
  uint32_t max_message_;
  bool greeted_ = false;
  bool challenged_ = false;      // a kChallenge went out: a kAuth must follow
  uint32_t pending_max_message_ = 0;  // negotiated by the hello, in force once greeted
  bool closed_ = false;
  In in_ = In::kHeader;
  wire::MsgHeader hdr_{};
  wire::RangePayload range_{};
  size_t got_ = 0;             // bytes of the current part received
  uint8_t* target_ = nullptr;  // where the current part's bytes go (none: kDiscard)
  size_t need_ = 0;            // bytes of the current part
  std::vector<uint8_t> payload_;
  bool write_denied_ = false;  // a PinRegion of the current write failed
};

}  // namespace sharry::internal
