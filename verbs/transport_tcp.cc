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
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "verbs/socket_util.h"
#include "verbs/transport.h"
#include "verbs/transport_internal.h"
#include "verbs/wire.h"

namespace sharry {
namespace {

using net::Clock;
using wire::Kind;
using wire::MsgHeader;

constexpr uint64_t kMaxTcpChunk = 64u << 20;  // one kRead/kWrite frame moves at most this

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
    iovec iov[2] = {{&h, sizeof h}, {&hello, sizeof hello}};
    last = net::SendAll(c->fd_.get(), iov, 2, deadline);
    if (!last.ok()) continue;
    MsgHeader rh{};
    last = net::RecvAll(c->fd_.get(), &rh, sizeof rh, deadline);
    if (!last.ok()) continue;
    if (rh.magic != wire::kMagic || rh.kind != Kind::kWelcome || rh.length != sizeof(wire::WelcomePayload)) {
      return Status::Protocol(where + " is not a Sharry server (bad welcome frame)");
    }
    wire::WelcomePayload w{};
    last = net::RecvAll(c->fd_.get(), &w, sizeof w, deadline);
    if (!last.ok()) continue;
    if (w.status != 0)
      return Status(static_cast<StatusCode>(w.status), "server " + where + " refused the connection");
    c->info_.client_id = w.client_id;
    c->info_.region_size = w.region_size;
    c->info_.max_message = std::min(w.max_message, o.max_message);
    c->info_.credits = std::min(w.credits, o.max_inflight);
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
  if (h->tag != tag)
    return Kill(Status::Protocol("reply for tag " + std::to_string(h->tag) + ", expected " + std::to_string(tag)));
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

// One connection, owned by exactly one poller thread.
struct TcpConn {
  net::Fd fd;
  ClientId id = 0;
  bool greeted = false;
  bool closing = false;  // close once the output is flushed
  bool dead = false;     // to be closed by the poll loop (never freed mid-handling)
  // Input state machine.
  enum class In { kHeader, kRange, kPayload, kDiscard } in = In::kHeader;
  MsgHeader hdr{};
  wire::RangePayload range{};
  size_t got = 0;             // bytes of the current part received
  uint8_t* target = nullptr;  // where kPayload bytes go
  size_t need = 0;            // bytes of the current part
  std::vector<uint8_t> payload;
  std::vector<uint8_t> inbuf = std::vector<uint8_t>(64 << 10);  // bytes read, not yet parsed
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
  bool want_write = false;
};

class TcpServer final : public TransportServer {
 public:
  TcpServer(const ServerOptions& o, RequestHandler* h) : opts_(o), handler_(h) {}
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
  };
  void AcceptLoop();
  void PollLoop(Poller* p);
  void OnReadable(Poller* p, TcpConn* c);
  void Flush(Poller* p, TcpConn* c);
  void Frame(Poller* p, TcpConn* c);  // a complete part arrived
  void QueueHeader(TcpConn* c, Kind k, uint64_t tag, std::span<const uint8_t> payload);
  void QueueError(TcpConn* c, uint64_t tag, const Status& s);
  void Close(Poller* p, TcpConn* c);
  void StartPart(TcpConn* c, TcpConn::In st, uint8_t* target, size_t n) {
    c->in = st; c->target = target; c->need = n; c->got = 0;
  }

  ServerOptions opts_;
  RequestHandler* handler_;
  net::Fd listen_fd_;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> clients_{0};
  std::atomic<uint32_t> next_client_id_{1};
  std::thread acceptor_;
  std::vector<std::unique_ptr<Poller>> pollers_;
};

Status TcpServer::Start() {
  if (opts_.max_message < sizeof(MsgHeader) + 64)
    return Status::InvalidArgument("max_message must be at least 80 bytes");
  auto fd = net::ListenTcp(opts_.listen_addr, opts_.port, 128, &port_);
  if (!fd.ok()) return fd.status();
  listen_fd_ = std::move(*fd);
  int n = std::max(1, opts_.num_pollers);
  for (int i = 0; i < n; ++i) {
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
  LOG(INFO) << "tcp transport listening on " << opts_.listen_addr << ":" << port_ << " with " << n
            << " poller(s), region " << opts_.region_size << " B";
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

void TcpServer::AcceptLoop() {
  size_t rr = 0;
  while (!stop_) {
    pollfd pfd{listen_fd_.get(), POLLIN, 0};
    int pr = ::poll(&pfd, 1, 50);
    if (pr <= 0) continue;
    int fd = ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EINTR) LOG(WARNING) << Status::FromErrno("accept4", errno);
      continue;
    }
    (void)net::SetNoDelay(fd);
    Poller* p = pollers_[rr++ % pollers_.size()].get();
    {
      std::lock_guard<std::mutex> l(p->mu);
      p->incoming.push_back(fd);
    }
    uint64_t one = 1;
    (void)!::write(p->wake.get(), &one, sizeof one);
  }
}

void TcpServer::PollLoop(Poller* p) {
  Backoff backoff(opts_.backoff);
  epoll_event events[64];
  int timeout = 0;
  while (!stop_) {
    int n = epoll_wait(p->epfd.get(), events, 64, timeout);
    if (n < 0 && errno != EINTR) {
      LOG(ERROR) << Status::FromErrno("epoll_wait", errno);
      break;
    }
    if (n <= 0) {
      timeout = backoff.Idle() ? backoff.sleep_ms() : 0;
      continue;
    }
    backoff.Reset();
    timeout = 0;
    for (int i = 0; i < n; ++i) {
      if (events[i].data.fd == p->wake.get()) {
        uint64_t v;
        (void)!::read(p->wake.get(), &v, sizeof v);
        std::vector<int> fds;
        {
          std::lock_guard<std::mutex> l(p->mu);
          fds.swap(p->incoming);
        }
        for (int fd : fds) {
          auto c = std::make_unique<TcpConn>();
          c->fd = net::Fd(fd);
          epoll_event ev{};
          ev.events = EPOLLIN | EPOLLRDHUP;
          ev.data.fd = fd;
          if (epoll_ctl(p->epfd.get(), EPOLL_CTL_ADD, fd, &ev) < 0) {
            LOG(ERROR) << Status::FromErrno("epoll_ctl(add)", errno);
            continue;
          }
          StartPart(c.get(), TcpConn::In::kHeader, reinterpret_cast<uint8_t*>(&c->hdr), sizeof(MsgHeader));
          p->conns.emplace(fd, std::move(c));
        }
        continue;
      }
      auto it = p->conns.find(events[i].data.fd);
      if (it == p->conns.end()) continue;
      TcpConn* c = it->second.get();
      if (events[i].events & EPOLLOUT) Flush(p, c);
      if (!c->dead && (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        OnReadable(p, c);
      if (c->dead) Close(p, c);
    }
  }
  for (auto& [fd, c] : p->conns) {
    if (c->greeted) {
      handler_->OnDisconnect(c->id);
      clients_--;
    }
  }
  p->conns.clear();
}

void TcpServer::Close(Poller* p, TcpConn* c) {
  int fd = c->fd.get();
  epoll_ctl(p->epfd.get(), EPOLL_CTL_DEL, fd, nullptr);
  if (c->greeted) {
    VLOG(1) << "tcp client " << c->id << " disconnected";
    handler_->OnDisconnect(c->id);
    clients_--;
  }
  p->conns.erase(fd);  // destroys c
}

void TcpServer::OnReadable(Poller* p, TcpConn* c) {
  // Reads as much as the socket has into the connection's input buffer and
  // parses every frame in it; replies are queued and flushed once at the
  // end. (A syscall per frame part would dominate small frames.)
  for (;;) {
    if (c->closing || c->dead) break;
    if (c->got == c->need) {  // a part is complete (or empty)
      Frame(p, c);
      continue;
    }
    if (c->in_pos == c->in_len) {
      ssize_t n = ::recv(c->fd.get(), c->inbuf.data(), c->inbuf.size(), 0);
      if (n == 0) {
        c->dead = true;
        break;
      }
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) c->dead = true;
        break;
      }
      c->in_pos = 0;
      c->in_len = static_cast<size_t>(n);
    }
    const size_t take = std::min(c->in_len - c->in_pos, c->need - c->got);
    if (c->in != TcpConn::In::kDiscard) std::memcpy(c->target + c->got, c->inbuf.data() + c->in_pos, take);
    c->in_pos += take;
    c->got += take;
  }
  if (!c->dead) Flush(p, c);
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
  c->out.push_back(std::move(o));
}

void TcpServer::QueueError(TcpConn* c, uint64_t tag, const Status& s) {
  std::vector<uint8_t> e = internal::EncodeError(s);
  QueueHeader(c, Kind::kError, tag, e);
}

void TcpServer::Frame(Poller* p, TcpConn* c) {
  using In = TcpConn::In;
  const uint32_t max_payload = opts_.max_message - sizeof(MsgHeader);
  auto next_header = [&] { StartPart(c, In::kHeader, reinterpret_cast<uint8_t*>(&c->hdr), sizeof(MsgHeader)); };
  switch (c->in) {
    case In::kHeader: {
      MsgHeader& h = c->hdr;
      if (h.magic != wire::kMagic || h.version != wire::kVersion) {
        // The stream cannot be resynchronised: say why, then close.
        QueueError(c, h.tag, Status::Protocol("bad frame header (magic/version); closing"));
        c->closing = true;
        Flush(p, c);
        return;
      }
      if (!c->greeted && h.kind != Kind::kHello) {
        QueueError(c, h.tag, Status::Protocol("first frame must be a hello; closing"));
        c->closing = true;
        Flush(p, c);
        return;
      }
      switch (h.kind) {
        case Kind::kHello:
          if (c->greeted || h.length != sizeof(wire::HelloPayload)) break;
          c->payload.resize(h.length);
          StartPart(c, In::kPayload, c->payload.data(), h.length);
          return;
        case Kind::kRequest:
          if (h.length > max_payload) {
            QueueError(c, h.tag, Status::InvalidArgument(
                "request of " + std::to_string(h.length) + " B exceeds the largest message payload (" +
                std::to_string(max_payload) + " B)"));
            StartPart(c, In::kDiscard, nullptr, h.length);
            return;
          }
          c->payload.resize(h.length);
          if (h.length == 0) {
            c->in = In::kPayload;
            c->need = c->got = 0;
            return Frame(p, c);
          }
          StartPart(c, In::kPayload, c->payload.data(), h.length);
          return;
        case Kind::kRead:
        case Kind::kWrite:
          if (h.length < sizeof(wire::RangePayload) ||
              (h.kind == Kind::kRead && h.length != sizeof(wire::RangePayload)))
            break;
          StartPart(c, In::kRange, reinterpret_cast<uint8_t*>(&c->range), sizeof(wire::RangePayload));
          return;
        default:
          break;
      }
      QueueError(c, h.tag, Status::Protocol("unexpected frame kind " + std::to_string(int(h.kind)) +
                                            " with " + std::to_string(h.length) + " B payload"));
      StartPart(c, In::kDiscard, nullptr, h.length);
      return;
    }
    case In::kRange: {
      MsgHeader& h = c->hdr;
      uint64_t data_len = h.length - sizeof(wire::RangePayload);
      Status s = CheckRange(c->range.offset, c->range.length, opts_.region_size,
                            h.kind == Kind::kRead ? "read" : "write");
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
        // Patch the length: data follows, borrowed from the region.
        MsgHeader* qh = reinterpret_cast<MsgHeader*>(c->out.back().owned.data());
        qh->length = static_cast<uint32_t>(c->range.length);
        TcpConn::Out o;
        o.borrowed = base;
        o.len = c->range.length;
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
        wire::HelloPayload hello;
        std::memcpy(&hello, c->payload.data(), sizeof hello);
        wire::WelcomePayload w{};
        w.max_message = opts_.max_message;
        w.region_size = opts_.region_size;
        w.credits = opts_.credits;
        if (hello.magic != w.magic || hello.version != wire::kVersion) {
          w.status = static_cast<uint16_t>(StatusCode::kProtocol);
        } else if (clients_.load() >= static_cast<size_t>(opts_.max_clients)) {
          w.status = static_cast<uint16_t>(StatusCode::kUnavailable);
          LOG(WARNING) << "tcp: refusing a client: " << opts_.max_clients << " clients connected";
        } else {
          w.client_id = next_client_id_.fetch_add(1);
          c->id = w.client_id;
          c->greeted = true;
          clients_++;
          handler_->OnConnect(c->id);
          VLOG(1) << "tcp client " << c->id << " connected";
        }
        QueueHeader(c, Kind::kWelcome, h.tag,
                    {reinterpret_cast<const uint8_t*>(&w), sizeof w});
        if (w.status != 0) c->closing = true;
      } else {  // kRequest
        size_t n = handler_->Handle(c->id, c->payload, std::span<uint8_t>(p->response.data(), max_payload));
        CHECK_LE(n, max_payload) << "handler returned a response longer than its buffer";
        QueueHeader(c, Kind::kResponse, h.tag, {p->response.data(), n});
      }
      return next_header();
    }
  }
}

void TcpServer::Flush(Poller* p, TcpConn* c) {
  while (!c->out.empty()) {
    iovec iov[16];
    int cnt = 0;
    for (auto it = c->out.begin(); it != c->out.end() && cnt < 16; ++it, ++cnt)
      iov[cnt] = {const_cast<uint8_t*>(it->data()) + it->off, it->len - it->off};
    ssize_t n = ::writev(c->fd.get(), iov, cnt);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      c->dead = true;
      return;
    }
    auto left = static_cast<size_t>(n);
    while (left > 0) {
      auto& o = c->out.front();
      size_t take = std::min(left, o.len - o.off);
      o.off += take;
      left -= take;
      if (o.off == o.len) c->out.pop_front();
    }
  }
  bool want = !c->out.empty();
  if (want != c->want_write) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP | (want ? uint32_t{EPOLLOUT} : 0u);
    ev.data.fd = c->fd.get();
    epoll_ctl(p->epfd.get(), EPOLL_CTL_MOD, c->fd.get(), &ev);
    c->want_write = want;
  }
  if (!want && c->closing) c->dead = true;
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
