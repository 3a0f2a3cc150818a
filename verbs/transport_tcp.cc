// The TCP backend of the transport seam. Frames are wire::MsgHeader +
// payload (see wire.h). The server serves kRead/kWrite itself against the
// region and hands kRequest payloads to the same RequestHandler the verbs
// backend uses.
#include <glog/logging.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fcntl.h>

#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "verbs/handshake.h"
#include "verbs/session.h"
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

// ---------------------------------------------------------------- client

class TcpClient final : public TransportClient {
 public:
  static StatusOr<std::unique_ptr<TransportClient>> Connect(const ClientOptions& o);

  TransportKind kind() const override { return TransportKind::kTcp; }
  const ConnectionInfo& info() const override { return info_; }
  Status RegisterLocal(void*, size_t) override { return Status::Ok(); }
  Status Read(uint64_t offset, void* dst, size_t len) override {
    RemoteOp op{offset, dst, len};
    return ReadBatch({&op, 1});
  }
  Status Write(uint64_t offset, const void* src, size_t len) override {
    RemoteOp op{offset, const_cast<void*>(src), len};
    return WriteBatch({&op, 1});
  }
  Status ReadBatch(std::span<const RemoteOp> ops) override { return Batch(ops, false); }
  Status WriteBatch(std::span<const RemoteOp> ops) override { return Batch(ops, true); }
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
  // Reads one reply header; a kError frame becomes its Status (connection stays up).
  Status RecvReply(uint64_t tag, Kind expected, MsgHeader* h);
  Status Batch(std::span<const RemoteOp> ops, bool write);
  // Receives exactly n bytes through a read buffer (one recv serves many
  // small replies); large payloads go straight into dst.
  Status Recv(void* dst, size_t n);
  std::vector<uint8_t> rbuf_ = std::vector<uint8_t>(64 << 10);
  size_t rpos_ = 0, rlen_ = 0;

  net::Fd fd_;
  ClientOptions opts_;
  ConnectionInfo info_;
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
    MsgHeader h{};
    h.kind = Kind::kHello;
    h.length = sizeof(wire::HelloPayload);
    wire::HelloPayload hello{};
    hello.max_message = o.max_message;
    hello.session = o.session;
    iovec iov[2] = {{&h, sizeof h}, {&hello, sizeof hello}};
    last = net::SendAll(c->fd_.get(), iov, 2, deadline);
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
    if (rh.magic != wire::kMagic || rh.kind != Kind::kWelcome || rh.length < sizeof(wire::WelcomePayload) ||
        rh.length > sizeof(wire::WelcomePayload) + wire::kMaxReason) {
      return Status::Protocol(where + " is not a Sharry server (bad welcome frame)");
    }
    std::vector<uint8_t> payload(rh.length);
    last = net::RecvAll(c->fd_.get(), payload.data(), payload.size(), deadline);
    if (!last.ok()) continue;
    wire::WelcomePayload w{};
    SHARRY_RETURN_IF_ERROR(internal::CheckWelcome(payload, where, &w));
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
  for (const auto& r : requests)
    if (r.size() + sizeof(MsgHeader) > info_.max_message)
      return Status::InvalidArgument("request of " + std::to_string(r.size()) +
                                     " B exceeds the largest message (" +
                                     std::to_string(info_.max_message) + " B with header)");
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

// ---------------------------------------------------------------- server
//
// Each connection belongs to one poller thread. Its life:
//
//   accepted --hello--> greeted --EOF/bad frame/refusal--> closing --flushed--> closed
//       |                  |  \--lease expired, session over, stalled-----------^
//       \--handshake_timeout_ms without a hello--------------------------------^
//
// Bounds (docs/security.md): connections open <= max_clients greeted +
// max_handshakes not yet greeted; per connection: the input buffer (64 B
// before the hello, 64 KiB after), one request payload (<= max_message), and
// unsent replies — reading stops while they exceed max_unsent_bytes
// (backpressure), and a connection that then takes nothing for
// stall_timeout_ms is dropped. A closing connection gets linger_ms to take
// its last replies. Nothing a peer does makes a poller spin: the epoll
// interest of a connection always matches what it can do.

constexpr size_t kPreHelloInbuf = 64;
constexpr size_t kInbuf = 64 << 10;

// One connection, owned by exactly one poller thread.
struct TcpConn {
  net::Fd fd;
  ClientId id = 0;
  bool greeted = false;
  bool closing = false;  // no more input; close once the output is flushed
  bool dead = false;     // to be closed by the poll loop (never freed mid-handling)
  bool paused = false;   // backpressure: input not read while unsent > max_unsent_bytes
  bool peer_done = false;  // the peer closed its side (EOF read)
  bool shut_wr = false;    // closing: our side is shut down, input drained until EOF
  std::string why;       // why it is closing or dead (for the log)
  uint32_t max_message = 0;  // negotiated at the hello
  std::shared_ptr<internal::SessionTable::Session> session;
  Clock::time_point accepted, closing_since, last_progress;
  // Input state machine.
  enum class In { kHeader, kRange, kPayload, kDiscard } in = In::kHeader;
  MsgHeader hdr{};
  wire::RangePayload range{};
  size_t got = 0;             // bytes of the current part received
  uint8_t* target = nullptr;  // where kPayload bytes go
  size_t need = 0;            // bytes of the current part
  std::vector<uint8_t> payload;
  std::vector<uint8_t> inbuf = std::vector<uint8_t>(kPreHelloInbuf);  // bytes read, not yet parsed
  size_t in_pos = 0, in_len = 0;
  // Output: owned bytes, or borrowed region bytes (stable memory).
  struct Out {
    std::vector<uint8_t> owned;
    const uint8_t* borrowed = nullptr;
    size_t len = 0;
    size_t off = 0;
    const uint8_t* data() const { return borrowed ? borrowed : owned.data(); }
  };
  std::deque<Out> out;
  size_t unsent = 0;          // bytes in `out` not yet sent
  uint32_t events = 0;        // the epoll interest registered now
  void Close(const std::string& reason) {
    if (!dead && why.empty()) why = reason;
    dead = true;
  }
};

class TcpServer final : public TransportServer {
 public:
  TcpServer(const ServerOptions& o, RequestHandler* h)
      : opts_(o), handler_(h), sessions_(o.lease_ms) {}
  ~TcpServer() override;
  Status Start();
  uint16_t port() const override { return port_; }
  size_t num_clients() const override { return clients_.load(); }
  TransportKind kind() const override { return TransportKind::kTcp; }

 private:
  struct Poller {
    int index = 0;
    net::Fd epfd;
    net::Fd wake;  // eventfd: new connections handed over
    std::mutex mu;
    std::vector<int> incoming;  // GUARDED_BY(mu)
    std::unordered_map<int, std::unique_ptr<TcpConn>> conns;  // poller thread only
    std::thread thread;
    std::vector<uint8_t> response;  // handler output buffer
    Clock::time_point next_sweep;
  };
  void AcceptLoop();
  // Writes a refusal (Welcome with status + reason) without blocking and closes fd.
  void RefuseAtAccept(int fd, StatusCode code, const std::string& reason);
  void PollLoop(Poller* p);
  void Adopt(Poller* p, int fd);
  // Reads and parses what the connection has, flushes, and repeats while a
  // flush lifted backpressure with input still buffered.
  void Serve(Poller* p, TcpConn* c);
  void Parse(Poller* p, TcpConn* c);
  void Drain(TcpConn* c);  // closing, our side shut: drop the peer's input until its EOF
  void Flush(TcpConn* c);
  void UpdateInterest(Poller* p, TcpConn* c);
  void Sweep(Poller* p, Clock::time_point now);  // deadlines, leases
  void Frame(Poller* p, TcpConn* c);  // a complete part arrived
  void Greet(TcpConn* c);             // the hello's payload arrived
  void QueueHeader(TcpConn* c, Kind k, uint64_t tag, std::span<const uint8_t> payload);
  void QueueError(TcpConn* c, uint64_t tag, const Status& s);
  void StartClosing(TcpConn* c, const std::string& why);
  void Close(Poller* p, TcpConn* c);
  void StartPart(TcpConn* c, TcpConn::In st, uint8_t* target, size_t n) {
    c->in = st; c->target = target; c->need = n; c->got = 0;
  }

  ServerOptions opts_;
  RequestHandler* handler_;
  internal::SessionTable sessions_;
  net::Fd listen_fd_;
  net::Fd reserve_fd_;  // spent to accept-and-refuse when out of descriptors
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> clients_{0};     // greeted connections
  std::atomic<size_t> handshakes_{0};  // accepted, not greeted yet
  std::atomic<uint32_t> next_client_id_{1};
  std::thread acceptor_;
  std::vector<std::unique_ptr<Poller>> pollers_;
};

Status TcpServer::Start() {
  // A deep backlog (capped by net.core.somaxconn): under a connection flood
  // the kernel queues the connections for the acceptor, which refuses or
  // times them out with a reason, instead of dropping handshakes that the
  // client then thinks established and the kernel retries for a minute.
  auto fd = net::ListenTcp(opts_.listen_addr, opts_.port, SOMAXCONN > 4096 ? SOMAXCONN : 4096, &port_);
  if (!fd.ok()) return fd.status();
  listen_fd_ = std::move(*fd);
  reserve_fd_ = net::Fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  for (int i = 0; i < opts_.num_pollers; ++i) {
    auto p = std::make_unique<Poller>();
    p->index = i;
    p->epfd = net::Fd(epoll_create1(EPOLL_CLOEXEC));
    if (!p->epfd) return Status::FromErrno("epoll_create1", errno);
    p->wake = net::Fd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!p->wake) return Status::FromErrno("eventfd", errno);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = p->wake.get();
    if (epoll_ctl(p->epfd.get(), EPOLL_CTL_ADD, p->wake.get(), &ev) < 0)
      return Status::FromErrno("epoll_ctl", errno);
    p->response.resize(opts_.max_message);
    pollers_.push_back(std::move(p));
  }
  for (auto& p : pollers_) {
    Poller* raw = p.get();
    p->thread = std::thread([this, raw] { PollLoop(raw); });
    int core = raw->index < static_cast<int>(opts_.poller_cores.size()) ? opts_.poller_cores[raw->index] : -1;
    internal::PinThread(p->thread, core, "tcp poller " + std::to_string(raw->index));
  }
  acceptor_ = std::thread([this] { AcceptLoop(); });
  LOG(INFO) << "tcp transport listening on " << opts_.listen_addr << ":" << port_ << " with "
            << opts_.num_pollers << " poller(s), region " << opts_.region_size << " B, max_clients "
            << opts_.max_clients << ", lease " << opts_.lease_ms << " ms";
  return Status::Ok();
}

TcpServer::~TcpServer() {
  stop_ = true;
  if (acceptor_.joinable()) acceptor_.join();
  for (auto& p : pollers_) {
    uint64_t one = 1;
    if (p->wake) (void)!::write(p->wake.get(), &one, sizeof one);
    if (p->thread.joinable()) p->thread.join();
  }
}

void TcpServer::RefuseAtAccept(int fd, StatusCode code, const std::string& reason) {
  // The client's hello may already be here: read it so that closing sends a
  // FIN, not a reset that could overtake the refusal.
  uint8_t sink[64];
  (void)!::recv(fd, sink, sizeof sink, MSG_DONTWAIT);
  std::vector<uint8_t> frame = internal::EncodeWelcome(code, reason);
  (void)!::send(fd, frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  ::shutdown(fd, SHUT_WR);
  ::close(fd);
}

void TcpServer::AcceptLoop() {
  size_t rr = 0;
  internal::RateLimitedLog fd_log(10), refuse_log(10);
  while (!stop_) {
    pollfd pfd{listen_fd_.get(), POLLIN, 0};
    int pr = ::poll(&pfd, 1, 50);
    if (pr <= 0) continue;
    int fd = ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      const int err = errno;
      if (err == EAGAIN || err == EINTR || err == ECONNABORTED) continue;
      if (err == EMFILE || err == ENFILE) {
        // Out of descriptors: spend the reserve one to take the connection
        // off the backlog and tell it why, instead of spinning on a
        // listening socket that stays readable.
        if (auto n = fd_log.Due())
          LOG(WARNING) << "tcp: out of file descriptors (" << std::strerror(err) << "): refusing new connections ("
                       << *n << " in the last 10 s); raise the limit (ulimit -n) or --max_clients";
        if (reserve_fd_) {
          reserve_fd_.Close();
          int victim = ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (victim >= 0)
            RefuseAtAccept(victim, StatusCode::kUnavailable, "memnode out of file descriptors");
          reserve_fd_ = net::Fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        }
        if (!reserve_fd_) std::this_thread::sleep_for(std::chrono::milliseconds(20));
        continue;
      }
      if (auto n = fd_log.Due()) LOG(WARNING) << Status::FromErrno("accept4", err) << " (" << *n << " in 10 s)";
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // ENOBUFS, ENOMEM: let memory come back
      continue;
    }
    // Greeted clients are counted at their hello (which is refused with the
    // reason past max_clients); here only the handshakes in progress.
    const size_t waiting = handshakes_.load();
    std::string full;
    if (waiting >= static_cast<size_t>(opts_.max_handshakes))
      full = "memnode busy: " + std::to_string(waiting) + " connections waiting for their hello (max_handshakes " +
             std::to_string(opts_.max_handshakes) + ")";
    if (!full.empty()) {
      if (auto n = refuse_log.Due()) LOG(WARNING) << "tcp: refusing connections: " << full << " (" << *n << " in 10 s)";
      RefuseAtAccept(fd, StatusCode::kUnavailable, full);
      continue;
    }
    handshakes_++;
    (void)net::SetNoDelay(fd);
    if (opts_.keepalive_s > 0) (void)net::SetKeepAlive(fd, opts_.keepalive_s);
    Poller* p = pollers_[rr++ % pollers_.size()].get();
    {
      std::lock_guard<std::mutex> l(p->mu);
      p->incoming.push_back(fd);
    }
    uint64_t one = 1;
    (void)!::write(p->wake.get(), &one, sizeof one);
  }
}

void TcpServer::Adopt(Poller* p, int fd) {
  auto c = std::make_unique<TcpConn>();
  c->fd = net::Fd(fd);
  c->accepted = c->last_progress = Clock::now();
  c->max_message = opts_.max_message;
  epoll_event ev{};
  ev.events = c->events = EPOLLIN | EPOLLRDHUP;
  ev.data.fd = fd;
  if (epoll_ctl(p->epfd.get(), EPOLL_CTL_ADD, fd, &ev) < 0) {
    LOG(ERROR) << Status::FromErrno("epoll_ctl(add)", errno);
    handshakes_--;
    return;  // c closes fd
  }
  StartPart(c.get(), TcpConn::In::kHeader, reinterpret_cast<uint8_t*>(&c->hdr), sizeof(MsgHeader));
  p->conns.emplace(fd, std::move(c));
}

void TcpServer::PollLoop(Poller* p) {
  Backoff backoff(opts_.backoff);
  epoll_event events[64];
  int timeout = 0;
  p->next_sweep = Clock::now() + std::chrono::milliseconds(100);
  while (!stop_) {
    int n = epoll_wait(p->epfd.get(), events, 64, timeout);
    if (n < 0 && errno != EINTR) {
      LOG(ERROR) << Status::FromErrno("epoll_wait", errno);
      break;
    }
    if (n <= 0) {
      timeout = backoff.Idle() ? std::min(backoff.sleep_ms(), 100) : 0;
    } else {
      backoff.Reset();
      timeout = 0;
    }
    for (int i = 0; i < n; ++i) {
      if (events[i].data.fd == p->wake.get()) {
        uint64_t v;
        (void)!::read(p->wake.get(), &v, sizeof v);
        std::vector<int> fds;
        {
          std::lock_guard<std::mutex> l(p->mu);
          fds.swap(p->incoming);
        }
        for (int fd : fds) Adopt(p, fd);
        continue;
      }
      auto it = p->conns.find(events[i].data.fd);
      if (it == p->conns.end()) continue;
      TcpConn* c = it->second.get();
      const uint32_t e = events[i].events;
      if (e & EPOLLERR) c->Close("socket error");
      if (!c->dead && (e & EPOLLOUT)) Flush(c);
      if (!c->dead && ((e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) || c->paused)) Serve(p, c);
      else if (!c->dead) UpdateInterest(p, c);
      if (c->dead) Close(p, c);
    }
    const auto now = Clock::now();
    if (now >= p->next_sweep) {
      Sweep(p, now);
      p->next_sweep = now + std::chrono::milliseconds(100);
    }
  }
  std::vector<TcpConn*> all;
  for (auto& [fd, c] : p->conns) all.push_back(c.get());
  for (TcpConn* c : all) {
    c->Close("server stopping");
    Close(p, c);
  }
}

void TcpServer::Sweep(Poller* p, Clock::time_point now) {
  using std::chrono::milliseconds;
  std::vector<TcpConn*> doomed;
  for (auto& [fd, cp] : p->conns) {
    TcpConn* c = cp.get();
    if (!c->greeted && !c->closing && now - c->accepted > milliseconds(opts_.handshake_timeout_ms)) {
      c->Close("no hello within " + std::to_string(opts_.handshake_timeout_ms) + " ms");
    } else if (c->closing && now - c->closing_since > milliseconds(opts_.linger_ms)) {
      c->Close(c->why.empty() ? "closing" : c->why);
    } else if (c->paused && now - c->last_progress > milliseconds(opts_.stall_timeout_ms)) {
      c->Close("stalled: " + std::to_string(c->unsent) + " B of replies unread for " +
               std::to_string(opts_.stall_timeout_ms) + " ms");
    } else if (c->session && !c->closing && sessions_.Expired(*c->session, now)) {
      // Say why before closing (tag 0: about the connection, not a request),
      // so a client that wakes up learns its lease ran out.
      const std::string why = "session " + std::to_string(c->session->root) + " over: " + c->session->why.load() +
                              (opts_.lease_ms ? " (lease " + std::to_string(opts_.lease_ms) + " ms)" : "") +
                              "; its far memory is reclaimed";
      QueueError(c, 0, Status::Unavailable(why));
      StartClosing(c, why);
      Flush(c);
      if (!c->dead) UpdateInterest(p, c);
    }
    if (c->dead) doomed.push_back(c);
  }
  for (TcpConn* c : doomed) Close(p, c);
}

void TcpServer::Close(Poller* p, TcpConn* c) {
  int fd = c->fd.get();
  epoll_ctl(p->epfd.get(), EPOLL_CTL_DEL, fd, nullptr);
  if (c->greeted) {
    clients_--;
    if (c->why.empty() || c->why == "peer closed") VLOG(1) << "tcp client " << c->id << " disconnected";
    else LOG(WARNING) << "tcp: dropping client " << c->id << ": " << c->why;
    for (ClientId id : sessions_.Leave(c->session, c->id)) handler_->OnDisconnect(id);
  } else {
    handshakes_--;
    VLOG(1) << "tcp: closing a connection before its hello: " << c->why;
  }
  p->conns.erase(fd);  // destroys c
}

void TcpServer::StartClosing(TcpConn* c, const std::string& why) {
  if (c->closing) return;
  c->closing = true;
  c->closing_since = Clock::now();
  c->why = why;
}

void TcpServer::UpdateInterest(Poller* p, TcpConn* c) {
  uint32_t want = 0;
  if (!c->closing && !c->paused) want |= EPOLLIN | EPOLLRDHUP;
  if (!c->out.empty()) want |= EPOLLOUT;
  if (c->closing && c->out.empty()) {
    if (c->peer_done) {
      c->Close(c->why);
      return;
    }
    // Our last replies are out: send a FIN, then read (and drop) what the
    // peer still sends until it closes or linger_ms pass. Closing with
    // unread input would send a reset that can overtake those replies.
    if (!c->shut_wr) {
      ::shutdown(c->fd.get(), SHUT_WR);
      c->shut_wr = true;
    }
    want |= EPOLLIN | EPOLLRDHUP;
  }
  if (want == c->events) return;
  epoll_event ev{};
  ev.events = want;
  ev.data.fd = c->fd.get();
  if (epoll_ctl(p->epfd.get(), EPOLL_CTL_MOD, c->fd.get(), &ev) < 0) {
    c->Close("epoll_ctl: " + std::string(std::strerror(errno)));
    return;
  }
  c->events = want;
}

void TcpServer::Serve(Poller* p, TcpConn* c) {
  for (;;) {
    Parse(p, c);
    if (c->dead) return;
    Flush(c);
    if (c->dead) return;
    // Backpressure: stop reading past the bound, resume below half of it.
    if (!c->paused && c->unsent > opts_.max_unsent_bytes) {
      c->paused = true;
    } else if (c->paused && c->unsent <= opts_.max_unsent_bytes / 2) {
      c->paused = false;
      if (!c->closing) continue;  // parse what is buffered, read more
    }
    break;
  }
  UpdateInterest(p, c);
}

void TcpServer::Parse(Poller* p, TcpConn* c) {
  // Reads as much as the socket has into the connection's input buffer and
  // parses every frame in it; replies are queued and flushed by the caller.
  // (A syscall per frame part would dominate small frames.)
  if (c->shut_wr) return Drain(c);
  for (;;) {
    if (c->closing || c->dead || c->paused) return;
    if (c->got == c->need) {  // a part is complete (or empty)
      if (c->in == TcpConn::In::kHeader && c->unsent > opts_.max_unsent_bytes) {
        c->paused = true;  // do not take another request until the replies drain
        return;
      }
      Frame(p, c);
      continue;
    }
    if (c->in_pos == c->in_len) {
      ssize_t n = ::recv(c->fd.get(), c->inbuf.data(), c->inbuf.size(), 0);
      if (n == 0) {
        // The peer is done sending; it may still read the replies it asked for.
        c->peer_done = true;
        StartClosing(c, "peer closed");
        return;
      }
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) c->Close(std::string("recv: ") + std::strerror(errno));
        return;
      }
      c->in_pos = 0;
      c->in_len = static_cast<size_t>(n);
    }
    const size_t take = std::min(c->in_len - c->in_pos, c->need - c->got);
    if (c->in != TcpConn::In::kDiscard) std::memcpy(c->target + c->got, c->inbuf.data() + c->in_pos, take);
    c->in_pos += take;
    c->got += take;
  }
}

void TcpServer::Drain(TcpConn* c) {
  for (int rounds = 0; rounds < 16; ++rounds) {  // a bounded amount per wake-up
    ssize_t n = ::recv(c->fd.get(), c->inbuf.data(), c->inbuf.size(), 0);
    if (n > 0) continue;
    if (n == 0) c->Close(c->why);
    else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) c->Close(c->why);
    return;
  }
}

void TcpServer::QueueHeader(TcpConn* c, Kind k, uint64_t tag, std::span<const uint8_t> payload) {
  TcpConn::Out o;
  o.owned.resize(sizeof(MsgHeader) + payload.size());
  MsgHeader h{};
  h.kind = k;
  h.tag = tag;
  h.length = static_cast<uint32_t>(payload.size());
  std::memcpy(o.owned.data(), &h, sizeof h);
  if (!payload.empty()) std::memcpy(o.owned.data() + sizeof h, payload.data(), payload.size());
  o.len = o.owned.size();
  c->unsent += o.len;
  c->out.push_back(std::move(o));
}

void TcpServer::QueueError(TcpConn* c, uint64_t tag, const Status& s) {
  std::vector<uint8_t> e = internal::EncodeError(s);
  QueueHeader(c, Kind::kError, tag, e);
}

void TcpServer::Frame(Poller* p, TcpConn* c) {
  using In = TcpConn::In;
  const uint32_t max_payload = c->max_message - sizeof(MsgHeader);
  auto next_header = [&] { StartPart(c, In::kHeader, reinterpret_cast<uint8_t*>(&c->hdr), sizeof(MsgHeader)); };
  switch (c->in) {
    case In::kHeader: {
      MsgHeader& h = c->hdr;
      if (h.magic != wire::kMagic || h.version != wire::kVersion) {
        // The stream cannot be resynchronised: say why, then close.
        QueueError(c, h.tag, Status::Protocol("bad frame header (magic/version); closing"));
        return StartClosing(c, "bad frame header");
      }
      if (!c->greeted) {
        if (h.kind != Kind::kHello || h.length != sizeof(wire::HelloPayload)) {
          std::vector<uint8_t> w = internal::EncodeWelcome(
              StatusCode::kProtocol, "the first frame must be a hello of " +
                                         std::to_string(sizeof(wire::HelloPayload)) + " B");
          QueueHeader(c, Kind::kWelcome, h.tag, {w.data() + sizeof(MsgHeader), w.size() - sizeof(MsgHeader)});
          return StartClosing(c, "no hello");
        }
        c->payload.resize(h.length);
        return StartPart(c, In::kPayload, c->payload.data(), h.length);
      }
      if (c->session) c->session->Touch();
      switch (h.kind) {
        case Kind::kRequest:
          if (h.length > max_payload) {
            QueueError(c, h.tag, Status::InvalidArgument(
                "request of " + std::to_string(h.length) + " B exceeds the largest message payload (" +
                std::to_string(max_payload) + " B)"));
            return StartPart(c, In::kDiscard, nullptr, h.length);
          }
          c->payload.resize(h.length);
          if (h.length == 0) {
            c->in = In::kPayload;
            c->need = c->got = 0;
            return Frame(p, c);
          }
          return StartPart(c, In::kPayload, c->payload.data(), h.length);
        case Kind::kRead:
        case Kind::kWrite:
          if (h.length < sizeof(wire::RangePayload) ||
              (h.kind == Kind::kRead && h.length != sizeof(wire::RangePayload)))
            break;
          return StartPart(c, In::kRange, reinterpret_cast<uint8_t*>(&c->range), sizeof(wire::RangePayload));
        default:
          break;
      }
      QueueError(c, h.tag, Status::Protocol("unexpected frame kind " + std::to_string(int(h.kind)) +
                                            " with " + std::to_string(h.length) + " B payload"));
      return StartPart(c, In::kDiscard, nullptr, h.length);
    }
    case In::kRange: {
      MsgHeader& h = c->hdr;
      const uint64_t data_len = h.length - sizeof(wire::RangePayload);
      const char* what = h.kind == Kind::kRead ? "read" : "write";
      Status s;
      if (c->range.length > wire::kMaxTcpChunk)
        s = Status::InvalidArgument(std::string(what) + " of " + std::to_string(c->range.length) +
                                    " B exceeds the largest tcp frame (" + std::to_string(wire::kMaxTcpChunk) +
                                    " B); split it (the client library does)");
      if (s.ok()) s = CheckRange(c->range.offset, c->range.length, opts_.region_size, what);
      if (s.ok() && h.kind == Kind::kWrite && data_len != c->range.length)
        s = Status::Protocol("write frame carries " + std::to_string(data_len) + " B for a range of " +
                             std::to_string(c->range.length) + " B");
      if (!s.ok()) {
        QueueError(c, h.tag, s);
        if (data_len > 0) return StartPart(c, In::kDiscard, nullptr, data_len);
        return next_header();
      }
      auto* base = static_cast<uint8_t*>(opts_.region) + c->range.offset;
      if (h.kind == Kind::kRead) {
        QueueHeader(c, Kind::kReadData, h.tag, {});
        // Patch the length (<= kMaxTcpChunk, fits): data follows, borrowed from the region.
        MsgHeader* qh = reinterpret_cast<MsgHeader*>(c->out.back().owned.data());
        qh->length = static_cast<uint32_t>(c->range.length);
        TcpConn::Out o;
        o.borrowed = base;
        o.len = c->range.length;
        c->unsent += o.len;
        if (o.len) c->out.push_back(std::move(o));
        return next_header();
      }
      if (data_len == 0) {
        QueueHeader(c, Kind::kWriteAck, h.tag, {});
        return next_header();
      }
      // Write: receive straight into the region.
      return StartPart(c, In::kPayload, base, data_len);
    }
    case In::kDiscard:
      return next_header();
    case In::kPayload: {
      MsgHeader& h = c->hdr;
      if (h.kind == Kind::kWrite) {
        QueueHeader(c, Kind::kWriteAck, h.tag, {});
      } else if (h.kind == Kind::kHello) {
        Greet(c);
      } else {  // kRequest
        size_t n = handler_->Handle(c->id, c->payload, std::span<uint8_t>(p->response.data(), max_payload));
        CHECK_LE(n, max_payload) << "handler returned a response longer than its buffer";
        QueueHeader(c, Kind::kResponse, h.tag, {p->response.data(), n});
      }
      if (c->payload.capacity() > (64u << 10)) std::vector<uint8_t>().swap(c->payload);  // no big buffer kept idle
      return next_header();
    }
  }
}

void TcpServer::Greet(TcpConn* c) {
  wire::HelloPayload hello;
  std::memcpy(&hello, c->payload.data(), sizeof hello);
  auto refuse = [&](StatusCode code, const std::string& why) {
    std::vector<uint8_t> w = internal::EncodeWelcome(code, why);
    std::memcpy(w.data() + offsetof(MsgHeader, tag), &c->hdr.tag, sizeof c->hdr.tag);
    TcpConn::Out o;
    o.owned = std::move(w);
    o.len = o.owned.size();
    c->unsent += o.len;
    c->out.push_back(std::move(o));
    StartClosing(c, "refused: " + why);
  };
  if (hello.magic != wire::WelcomePayload{}.magic || hello.version != wire::kVersion)
    return refuse(StatusCode::kProtocol, "not a Sharry client of protocol version " + std::to_string(wire::kVersion));
  if (hello.max_message < wire::kMinMessage || hello.max_message > wire::kMaxMessage)
    return refuse(StatusCode::kInvalidArgument, "hello max_message " + std::to_string(hello.max_message) +
                                                    " out of range " + std::to_string(wire::kMinMessage) + ".." +
                                                    std::to_string(wire::kMaxMessage));
  const size_t greeted = clients_.load();
  if (greeted >= static_cast<size_t>(opts_.max_clients))
    return refuse(StatusCode::kUnavailable, "memnode full: " + std::to_string(greeted) + " of " +
                                                std::to_string(opts_.max_clients) + " clients");
  const ClientId id = next_client_id_.fetch_add(1);
  if (hello.session == 0) {
    c->session = sessions_.OpenRoot(id);
  } else {
    auto s = sessions_.Join(hello.session);
    if (!s.ok()) return refuse(StatusCode::kUnavailable, s.status().message());
    c->session = std::move(*s);
  }
  c->id = id;
  c->greeted = true;
  c->max_message = std::min(opts_.max_message, hello.max_message);
  c->inbuf.assign(kInbuf, 0);
  handshakes_--;
  clients_++;
  handler_->OnConnect(c->id);
  VLOG(1) << "tcp client " << c->id << " connected (session " << c->session->root << ")";
  wire::WelcomePayload w{};
  w.client_id = id;
  w.max_message = c->max_message;
  w.region_size = opts_.region_size;
  w.credits = opts_.credits;
  w.lease_ms = opts_.lease_ms;
  w.session = c->session->root;
  QueueHeader(c, Kind::kWelcome, c->hdr.tag, {reinterpret_cast<const uint8_t*>(&w), sizeof w});
}

void TcpServer::Flush(TcpConn* c) {
  while (!c->out.empty()) {
    iovec iov[16];
    int cnt = 0;
    for (auto it = c->out.begin(); it != c->out.end() && cnt < 16; ++it, ++cnt)
      iov[cnt] = {const_cast<uint8_t*>(it->data()) + it->off, it->len - it->off};
    msghdr m{};
    m.msg_iov = iov;
    m.msg_iovlen = static_cast<size_t>(cnt);
    ssize_t n = ::sendmsg(c->fd.get(), &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      c->Close(std::string("send: ") + std::strerror(errno));  // EPIPE, ECONNRESET: the peer is gone
      return;
    }
    c->last_progress = Clock::now();
    auto left = static_cast<size_t>(n);
    c->unsent -= left;
    while (left > 0) {
      auto& o = c->out.front();
      size_t take = std::min(left, o.len - o.off);
      o.off += take;
      left -= take;
      if (o.off == o.len) c->out.pop_front();
    }
  }
}

}  // namespace

namespace internal {
StatusOr<std::unique_ptr<TransportServer>> StartTcpServer(const ServerOptions& o, RequestHandler* h) {
  auto s = std::make_unique<TcpServer>(o, h);
  SHARRY_RETURN_IF_ERROR(s->Start());
  return std::unique_ptr<TransportServer>(std::move(s));
}
StatusOr<std::unique_ptr<TransportClient>> ConnectTcpClient(const ClientOptions& o) {
  return TcpClient::Connect(o);
}
}  // namespace internal

}  // namespace sharry
