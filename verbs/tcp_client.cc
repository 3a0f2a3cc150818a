// The TCP backend's client: one socket, one thread. Connects with a kHello
// frame and checks the kWelcome (handshake.h); reads and writes go out as
// pipelined kRead/kWrite frames of at most kMaxTcpChunk bytes each, requests
// as kRequest frames within the credits. Frames are wire::MsgHeader +
// payload (wire.h). The server is in tcp_server_impl.h.
#include <glog/logging.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "verbs/handshake.h"
#include "verbs/socket_util.h"
#include "verbs/transport.h"
#include "verbs/transport_internal.h"
#include "verbs/wire.h"

namespace sharry {
namespace {

using net::Clock;
using wire::Kind;
using wire::MsgHeader;

using wire::kMaxTcpChunk;  // one kRead/kWrite frame moves at most this

class TcpClient final : public internal::CopyingClient {
 public:
  static StatusOr<std::unique_ptr<TransportClient>> Connect(const ClientOptions& o);

  TransportKind kind() const override { return TransportKind::kTcp; }
  Status CallMany(std::span<const std::span<const uint8_t>> requests,
                  std::vector<std::vector<uint8_t>>* responses) override;
  bool alive() const override { return dead_.ok(); }
  Status dead_reason() const override { return dead_; }

 private:
  TcpClient(net::Fd fd, const ClientOptions& o) : fd_(std::move(fd)), opts_(o) {}
  Clock::time_point Deadline() const {
    return Clock::now() + std::chrono::milliseconds(opts_.op_timeout_ms);
  }
  // Records a connection-level failure: the connection is dead from now on.
  Status Kill(Status s) {
    if (dead_.ok()) dead_ = s;
    fd_.Close();
    return s;
  }
  Status CheckAlive() const {
    return dead_.ok() ? Status::Ok() : Status::Disconnected("connection is dead: " + dead_.ToString());
  }
  // Sends one frame of the handshake (header + payload).
  Status SendFrame(Kind kind, std::span<const uint8_t> payload, Clock::time_point deadline) {
    MsgHeader h{};
    h.kind = kind;
    h.length = static_cast<uint32_t>(payload.size());
    iovec iov[2] = {{&h, sizeof h}, {const_cast<uint8_t*>(payload.data()), payload.size()}};
    return net::SendAll(fd_.get(), iov, 2, deadline);
  }
  // Reads one reply header; a kError frame becomes its Status (connection stays up).
  Status RecvReply(uint64_t tag, Kind expected, MsgHeader* h);
  Status Batch(std::span<const RemoteOp> ops, bool write) override;
  // Receives exactly n bytes through a read buffer (one recv serves many
  // small replies); large payloads go straight into dst.
  Status Recv(void* dst, size_t n);
  std::vector<uint8_t> rbuf_ = std::vector<uint8_t>(64 << 10);
  size_t rpos_ = 0, rlen_ = 0;

  net::Fd fd_;
  ClientOptions opts_;
  Status dead_;
  uint64_t next_tag_ = 1;
};

StatusOr<std::unique_ptr<TransportClient>> TcpClient::Connect(const ClientOptions& o) {
  std::string where = o.server_addr + ":" + std::to_string(o.port);
  Status last;
  for (int attempt = 0; attempt < std::max(1, o.connect_attempts); ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100 << std::min(attempt, 5)));
    auto fd = net::ConnectTcp(o.server_addr, o.port, o.connect_timeout_ms);
    if (!fd.ok()) {
      last = fd.status();
      continue;
    }
    std::unique_ptr<TcpClient> c(new TcpClient(std::move(*fd), o));
    auto deadline = Clock::now() + std::chrono::milliseconds(o.connect_timeout_ms);
    // The hello: credentials (then the challenge and our answer) or the
    // token of the session it joins (handshake.h).
    std::optional<internal::ClientAuth> auth;
    if (!o.tenant.empty()) auth.emplace(o.tenant, o.secret);
    wire::HelloPayload base{};
    base.max_message = o.max_message;
    base.session = o.session;
    const std::vector<uint8_t> hello = internal::EncodeHello(base, o.tenant, auth ? auth->nonce() : auth::Nonce{},
                                                             o.session != 0 ? &o.session_token : nullptr);
    last = c->SendFrame(Kind::kHello, hello, deadline);
    if (!last.ok()) {
      // A server that refused at accept may have closed before our hello
      // went out: its refusal may still be readable.
      last = last.WithContext("send hello");
    }
    MsgHeader rh{};
    Status r = net::RecvAll(c->fd_.get(), &rh, sizeof rh, deadline);
    if (!r.ok()) {
      if (last.ok()) last = r.WithContext("wait for the welcome");
      continue;
    }
    if (rh.magic == wire::kMagic && rh.version == wire::kVersion && rh.kind == Kind::kChallenge) {
      if (!auth) return Status::Protocol(where + " sent a challenge to a client without credentials");
      if (rh.length != wire::kChallengeBytes)
        return Status::Protocol(where + " sent a challenge of " + std::to_string(rh.length) + " B (want " +
                                std::to_string(wire::kChallengeBytes) + ")");
      std::vector<uint8_t> challenge(wire::kChallengeBytes);
      last = net::RecvAll(c->fd_.get(), challenge.data(), challenge.size(), deadline);
      if (!last.ok()) continue;
      auth::Proof proof;
      SHARRY_RETURN_IF_ERROR(auth->Answer(challenge, where, &proof));
      last = c->SendFrame(Kind::kAuth, proof, deadline);
      if (!last.ok()) last = last.WithContext("send the answer to the challenge");
      r = net::RecvAll(c->fd_.get(), &rh, sizeof rh, deadline);
      if (!r.ok()) {
        if (last.ok()) last = r.WithContext("wait for the welcome");
        continue;
      }
    }
    if (rh.magic != wire::kMagic || rh.kind != Kind::kWelcome || rh.length < sizeof(wire::WelcomePayload) ||
        rh.length > sizeof(wire::WelcomePayload) + wire::kMaxReason) {
      return Status::Protocol(where + " is not a Sharry server of this version (bad welcome frame)");
    }
    std::vector<uint8_t> payload(rh.length);
    last = net::RecvAll(c->fd_.get(), payload.data(), payload.size(), deadline);
    if (!last.ok()) continue;
    wire::WelcomePayload w{};
    SHARRY_RETURN_IF_ERROR(internal::CheckWelcome(payload, where, &w));
    if (payload.size() >= sizeof w + c->info_.session_token.size())
      std::memcpy(c->info_.session_token.data(), payload.data() + sizeof w, c->info_.session_token.size());
    c->info_.client_id = w.client_id;
    c->info_.region_size = w.region_size;
    c->info_.max_message = std::min(w.max_message, o.max_message);
    c->info_.credits = std::min(w.credits, o.max_inflight);
    c->info_.lease_ms = w.lease_ms;
    c->info_.session = w.session;
    return std::unique_ptr<TransportClient>(std::move(c));
  }
  return last.WithContext("connect tcp " + where + " (" + std::to_string(o.connect_attempts) + " attempts)");
}

Status TcpClient::Recv(void* dst, size_t n) {
  auto* out = static_cast<uint8_t*>(dst);
  while (n > 0) {
    if (rpos_ < rlen_) {
      size_t take = std::min(n, rlen_ - rpos_);
      std::memcpy(out, rbuf_.data() + rpos_, take);
      rpos_ += take;
      out += take;
      n -= take;
      continue;
    }
    if (n >= rbuf_.size() / 2) return net::RecvAll(fd_.get(), out, n, Deadline());
    auto got = net::RecvSome(fd_.get(), rbuf_.data(), rbuf_.size(), Deadline());
    if (!got.ok()) return got.status();
    rpos_ = 0;
    rlen_ = *got;
  }
  return Status::Ok();
}

Status TcpClient::RecvReply(uint64_t tag, Kind expected, MsgHeader* h) {
  if (Status s = Recv(h, sizeof *h); !s.ok()) return Kill(s);
  if (h->magic != wire::kMagic || h->version != wire::kVersion)
    return Kill(Status::Protocol("reply with bad magic/version"));
  if (h->tag == 0 && h->kind == Kind::kError && h->length <= 4096) {
    // The server's last word about the connection (e.g. our lease ran out).
    std::vector<uint8_t> msg(h->length);
    if (Status s = Recv(msg.data(), msg.size()); !s.ok()) return Kill(s);
    return Kill(internal::DecodeError(msg).WithContext("the server closed the connection"));
  }
  if (h->tag != tag)
    return Kill(Status::Protocol("reply for tag " + std::to_string(h->tag) + ", expected " + std::to_string(tag)));
  // A reply never exceeds what we agreed at connect time (a kReadData frame
  // carries what we asked for, checked by the caller): a larger length is a
  // broken or hostile server, not a buffer to allocate.
  if (h->kind != Kind::kReadData && h->length > info_.max_message - sizeof(MsgHeader))
    return Kill(Status::Protocol("reply of " + std::to_string(h->length) + " B exceeds the negotiated " +
                                 std::to_string(info_.max_message) + " B message"));
  if (h->kind == Kind::kError) {
    std::vector<char> msg(h->length);
    if (Status s = Recv(msg.data(), msg.size()); !s.ok()) return Kill(s);
    return internal::DecodeError(std::span<const uint8_t>(reinterpret_cast<uint8_t*>(msg.data()), msg.size()));
  }
  if (h->kind != expected) return Kill(Status::Protocol("unexpected reply kind"));
  return Status::Ok();
}

Status TcpClient::Batch(std::span<const RemoteOp> ops, bool write) {
  SHARRY_RETURN_IF_ERROR(CheckAlive());
  for (const RemoteOp& op : ops)
    SHARRY_RETURN_IF_ERROR(CheckRange(op.offset, op.length, info_.region_size, write ? "write" : "read"));
  // Pipelined: send every frame, then collect every reply. The server never
  // blocks on us (it queues its output), so this cannot deadlock.
  struct Pending { uint64_t tag; uint8_t* local; uint64_t len; };
  std::vector<Pending> pending;
  // Frames go out gathered, many per writev.
  size_t frames = 0;
  for (const RemoteOp& op : ops) frames += std::max<uint64_t>(1, (op.length + kMaxTcpChunk - 1) / kMaxTcpChunk);
  std::vector<MsgHeader> headers(frames);
  std::vector<wire::RangePayload> ranges(frames);
  std::vector<iovec> iov;
  iov.reserve(3 * frames);
  auto send = [&]() -> Status {
    if (iov.empty()) return Status::Ok();
    Status s = net::SendAll(fd_.get(), iov.data(), static_cast<int>(iov.size()), Deadline());
    iov.clear();
    return s;
  };
  size_t f = 0;
  for (const RemoteOp& op : ops) {
    for (uint64_t done = 0; done < op.length || (op.length == 0 && done == 0);) {
      uint64_t n = std::min<uint64_t>(op.length - done, kMaxTcpChunk);
      MsgHeader& h = headers[f];
      h.kind = write ? Kind::kWrite : Kind::kRead;
      h.tag = next_tag_++;
      h.length = static_cast<uint32_t>(sizeof(wire::RangePayload) + (write ? n : 0));
      ranges[f] = {op.offset + done, n};
      auto* local = static_cast<uint8_t*>(op.local) + done;
      iov.push_back({&h, sizeof h});
      iov.push_back({&ranges[f], sizeof(wire::RangePayload)});
      if (write && n) iov.push_back({local, n});
      pending.push_back({h.tag, local, n});
      ++f;
      done += n;
      if (iov.size() >= 512)
        if (Status s = send(); !s.ok()) return Kill(s);
      if (n == 0) break;
    }
  }
  if (Status s = send(); !s.ok()) return Kill(s);
  Status first;
  for (const Pending& p : pending) {
    MsgHeader h{};
    Status s = RecvReply(p.tag, write ? Kind::kWriteAck : Kind::kReadData, &h);
    if (!alive()) return s;
    if (!s.ok()) {
      if (first.ok()) first = s;
      continue;
    }
    if (!write) {
      if (h.length != p.len) return Kill(Status::Protocol("read reply of wrong length"));
      if (Status r = Recv(p.local, p.len); !r.ok()) return Kill(r);
    } else if (h.length != 0) {
      return Kill(Status::Protocol("write ack with a payload"));
    }
  }
  return first;
}

Status TcpClient::CallMany(std::span<const std::span<const uint8_t>> requests,
                           std::vector<std::vector<uint8_t>>* responses) {
  SHARRY_RETURN_IF_ERROR(CheckAlive());
  for (const auto& r : requests) SHARRY_RETURN_IF_ERROR(internal::CheckRequestSize(r.size(), info_.max_message));
  responses->assign(requests.size(), {});
  const size_t window = std::max<uint32_t>(1, info_.credits);
  const uint64_t base = next_tag_;
  next_tag_ += requests.size();
  size_t sent = 0, got = 0;
  Status first;
  while (got < requests.size()) {
    while (sent < requests.size() && sent - got < window) {
      MsgHeader h{};
      h.kind = Kind::kRequest;
      h.tag = base + sent;
      h.length = static_cast<uint32_t>(requests[sent].size());
      iovec iov[2] = {{&h, sizeof h}, {const_cast<uint8_t*>(requests[sent].data()), requests[sent].size()}};
      if (Status s = net::SendAll(fd_.get(), iov, 2, Deadline()); !s.ok()) return Kill(s);
      ++sent;
    }
    MsgHeader h{};
    Status s = RecvReply(base + got, Kind::kResponse, &h);
    if (!alive()) return s;
    if (!s.ok()) {
      if (first.ok()) first = s;
    } else {
      auto& out = (*responses)[got];
      out.resize(h.length);
      if (Status r = Recv(out.data(), out.size()); !r.ok()) return Kill(r);
    }
    ++got;
  }
  return first;
}

}  // namespace

namespace internal {
StatusOr<std::unique_ptr<TransportClient>> ConnectTcpClient(const ClientOptions& o) {
  return TcpClient::Connect(o);
}
}  // namespace internal

}  // namespace sharry
