// The TCP backend's server: accept loop, pollers, sweep, sessions, the
// framing's sink, reply queues and flushing (see tcp_server_impl.h for the
// map of the TCP backend's files).
#include <glog/logging.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <utility>
#include <fcntl.h>

#include "verbs/handshake.h"
#include "verbs/tcp_server_impl.h"
#include "verbs/transport_internal.h"

namespace sharry::internal {

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
    PinThread(p->thread, core, "tcp poller " + std::to_string(raw->index));
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
  uint8_t sink[sizeof(wire::MsgHeader) + wire::kMaxHello];
  (void)!::recv(fd, sink, sizeof sink, MSG_DONTWAIT);
  std::vector<uint8_t> frame = EncodeWelcome(code, reason);
  (void)!::send(fd, frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  ::shutdown(fd, SHUT_WR);
  ::close(fd);
}

void TcpServer::AcceptLoop() {
  size_t rr = 0;
  RateLimitedLog fd_log(10), refuse_log(10);
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
    if (Status limited = auth_guard_.Admit(net::PeerAddress(fd), Clock::now()); !limited.ok()) {
      if (auto n = refuse_log.Due()) LOG(WARNING) << "tcp: " << limited.message() << " (" << *n << " in 10 s)";
      RefuseAtAccept(fd, limited.code(), limited.message());
      continue;
    }
    handshakes_++;
    (void)net::SetNoDelay(fd);
    if (opts_.keepalive_s > 0) (void)net::SetKeepAlive(fd, opts_.keepalive_s);
    Poller* p = pollers_[rr++ % pollers_.size()].get();
    {
      MutexLock l(&p->mu);
      p->incoming.push_back(fd);
    }
    uint64_t one = 1;
    (void)!::write(p->wake.get(), &one, sizeof one);
  }
}

void TcpServer::Adopt(Poller* p, int fd) {
  TcpFraming::Options fo;
  fo.max_message = opts_.max_message;
  fo.region = static_cast<uint8_t*>(opts_.region);
  fo.region_size = opts_.region_size;
  auto c = std::make_unique<TcpConn>(fo);
  c->fd = net::Fd(fd);
  c->peer_address = net::PeerAddress(fd);
  c->accepted = c->last_progress = Clock::now();
  epoll_event ev{};
  ev.events = c->events = EPOLLIN | EPOLLRDHUP;
  ev.data.fd = fd;
  if (epoll_ctl(p->epfd.get(), EPOLL_CTL_ADD, fd, &ev) < 0) {
    LOG(ERROR) << Status::FromErrno("epoll_ctl(add)", errno);
    handshakes_--;
    return;  // c closes fd
  }
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
          MutexLock l(&p->mu);
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
    if (!c->framing.greeted() && !c->closing && now - c->accepted > milliseconds(opts_.handshake_timeout_ms)) {
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
  if (c->framing.greeted()) {
    if (c->why.empty() || c->why == "peer closed") VLOG(1) << "tcp client " << c->id << " disconnected";
    else LOG(WARNING) << "tcp: dropping client " << c->id << ": " << c->why;
    for (ClientId id : sessions_.Leave(c->session, c->id)) handler_->OnDisconnect(id);
    // Counted out only after its OnDisconnect (reclamation) ran: who sees
    // num_clients() reach 0 sees every departed client's blocks reclaimed.
    clients_--;
  } else {
    handshakes_--;
    if (c->auth && c->auth->pending())
      AuthFailed(c, c->auth->tenant(), c->auth->known(), "gave up after the challenge: " + c->why);
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

// The framing's requests for one connection, answered with queued replies.
class TcpServer::Sink final : public TcpFraming::Sink {
 public:
  Sink(TcpServer* s, Poller* p, TcpConn* c) : s_(s), p_(p), c_(c) {}

  bool TakeFrame() override {
    if (c_->unsent <= s_->opts_.max_unsent_bytes) return true;
    c_->paused = true;  // do not take another request until the replies drain
    return false;
  }
  void Touch() override {
    if (c_->session) c_->session->Touch();
  }
  Status OnHello(uint64_t tag, const Hello& hello, uint32_t max_message, bool* challenged) override {
    return s_->Greet(c_, tag, hello, max_message, challenged);
  }
  Status OnAuth(uint64_t tag, std::span<const uint8_t> proof) override { return s_->Authenticate(c_, tag, proof); }
  void OnRequest(uint64_t tag, std::span<const uint8_t> payload) override {
    const uint32_t max_payload = c_->framing.max_message() - sizeof(MsgHeader);
    size_t n = s_->handler_->Handle(c_->id, payload, std::span<uint8_t>(p_->response.data(), max_payload));
    CHECK_LE(n, max_payload) << "handler returned a response longer than its buffer";
    s_->QueueHeader(c_, Kind::kResponse, tag, {p_->response.data(), n});
  }
  void OnRead(uint64_t tag, uint64_t offset, uint64_t length) override {
    if (RegionAccess* access = s_->opts_.region_access; access != nullptr && length > 0) {
      if (!access->Pin(c_->session_id(), offset, length)) {
        s_->QueueError(c_, tag, Status::PermissionDenied("read of [" + std::to_string(offset) + ", +" +
                                                         std::to_string(length) +
                                                         ") outside this client's far memory"));
        return;
      }
      access->Unpin(offset, length);  // pinned again around each send (Flush)
    }
    s_->QueueHeader(c_, Kind::kReadData, tag, {});
    // Patch the length (<= kMaxTcpChunk, fits): data follows, borrowed from the region.
    MsgHeader* qh = reinterpret_cast<MsgHeader*>(c_->out.back().owned.data());
    qh->length = static_cast<uint32_t>(length);
    TcpConn::Out o;
    o.borrowed = static_cast<const uint8_t*>(s_->opts_.region) + offset;
    o.region_offset = offset;
    o.len = length;
    c_->unsent += o.len;
    if (o.len) c_->out.push_back(std::move(o));
  }
  void OnWrite(uint64_t tag, uint64_t, uint64_t) override { s_->QueueHeader(c_, Kind::kWriteAck, tag, {}); }
  void OnError(uint64_t tag, const Status& st) override { s_->QueueError(c_, tag, st); }
  void OnRefuse(uint64_t tag, StatusCode code, const std::string& reason) override {
    s_->QueueHeader(c_, Kind::kWelcome, tag, EncodeWelcomePayload(code, reason));
  }
  void OnClose(const std::string& why) override { s_->StartClosing(c_, why); }
  bool PinRegion(uint64_t offset, uint64_t length) override {
    RegionAccess* access = s_->opts_.region_access;
    return access == nullptr || access->Pin(c_->session_id(), offset, length);
  }
  void UnpinRegion(uint64_t offset, uint64_t length) override {
    if (RegionAccess* access = s_->opts_.region_access) access->Unpin(offset, length);
  }

 private:
  TcpServer* s_;
  Poller* p_;
  TcpConn* c_;
};

Status TcpServer::Greet(TcpConn* c, uint64_t tag, const Hello& hello, uint32_t max_message, bool* challenged) {
  const size_t greeted = clients_.load();
  if (greeted >= static_cast<size_t>(opts_.max_clients))
    return Status::Unavailable("memnode full: " + std::to_string(greeted) + " of " +
                               std::to_string(opts_.max_clients) + " clients");
  c->hello_max_message = max_message;
  if (hello.base.session != 0) {
    auto s = sessions_.Join(hello.base.session, hello.token);
    if (!s.ok()) {
      if (s.status().code() == StatusCode::kPermissionDenied) AuthFailed(c, "", true, s.status().message());
      return s.status();
    }
    return Admit(c, tag, std::move(*s), Peer{});
  }
  c->auth = std::make_unique<ServerAuth>(opts_.credentials.get());
  std::vector<uint8_t> challenge;
  if (Status s = c->auth->Start(hello, &challenge); !s.ok()) {
    AuthFailed(c, hello.tenant, false, c->auth->log_reason());
    return s;
  }
  if (challenge.empty()) return Admit(c, tag, nullptr, Peer{});
  QueueHeader(c, Kind::kChallenge, tag, challenge);
  *challenged = true;
  return Status::Ok();
}

Status TcpServer::Authenticate(TcpConn* c, uint64_t tag, std::span<const uint8_t> proof) {
  Status s = c->auth->Verify(proof);
  if (!s.ok()) {
    AuthFailed(c, c->auth->tenant(), c->auth->known(), c->auth->log_reason());
    return s;
  }
  Peer peer;
  peer.tenant = c->auth->tenant();
  peer.admin = c->auth->admin();
  return Admit(c, tag, nullptr, std::move(peer));
}

void TcpServer::AuthFailed(TcpConn* c, std::string_view tenant, bool known, std::string_view why) {
  auth_guard_.Failed(c->peer_address, tenant, known, Clock::now());
  LOG(WARNING) << "tcp: authentication from " << c->peer_address << " failed"
               << (tenant.empty() ? std::string() : " (tenant '" + std::string(tenant) + "')") << ": " << why;
}

Status TcpServer::Admit(TcpConn* c, uint64_t tag, std::shared_ptr<SessionTable::Session> joined, Peer peer) {
  const bool root = joined == nullptr;
  // (A join was counted against max_clients just before it joined.)
  if (const size_t greeted = clients_.load(); root && greeted >= static_cast<size_t>(opts_.max_clients))
    return Status::Unavailable("memnode full: " + std::to_string(greeted) + " of " +
                               std::to_string(opts_.max_clients) + " clients");
  const ClientId id = next_client_id_.fetch_add(1);
  if (root) {
    const uint32_t max = opts_.credentials ? opts_.credentials->MaxSessions(peer.tenant) : 0;
    auto opened = sessions_.OpenRoot(id, std::move(peer), max);
    if (!opened.ok()) return opened.status();
    c->session = std::move(*opened);
  } else {
    c->session = std::move(joined);
  }
  c->id = id;
  c->auth.reset();
  handshakes_--;
  clients_++;
  handler_->OnConnect(c->id, c->session->peer);
  VLOG(1) << "tcp client " << c->id << " connected (session " << c->session->root << ")";
  wire::WelcomePayload w{};
  w.client_id = id;
  w.max_message = c->hello_max_message;
  w.region_size = opts_.region_size;
  w.credits = opts_.credits;
  w.lease_ms = opts_.lease_ms;
  w.session = c->session->root;
  const auto& token = c->session->token;
  std::vector<uint8_t> payload(sizeof w + (root ? token.size() : 0));
  std::memcpy(payload.data(), &w, sizeof w);
  if (root) std::memcpy(payload.data() + sizeof w, token.data(), token.size());
  QueueHeader(c, Kind::kWelcome, tag, payload);
  return Status::Ok();
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
  Sink sink(this, p, c);
  for (;;) {
    if (c->closing || c->dead || c->paused) return;
    // Parse what is buffered; the framing stops early only when it closed
    // (closing) or backpressure held a frame (paused).
    c->in_pos += c->framing.Feed({c->inbuf.data() + c->in_pos, c->in_len - c->in_pos}, sink);
    if (c->closing || c->dead || c->paused) return;
    // Everything buffered is parsed: read more. A greeted connection reads
    // up to kInbuf at a time (grown here, not while the buffer is parsed).
    if (c->framing.greeted() && c->inbuf.size() < kInbuf) c->inbuf.assign(kInbuf, 0);
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
  std::vector<uint8_t> e = EncodeError(s);
  QueueHeader(c, Kind::kError, tag, e);
}

void TcpServer::Flush(TcpConn* c) {
  RegionAccess* const access = opts_.region_access;
  while (!c->out.empty()) {
    iovec iov[16];
    int cnt = 0;
    // Confinement: the region bytes of this sendmsg stay the client's while
    // the kernel copies them (pinned only for the call, never while waiting).
    std::array<std::pair<uint64_t, uint64_t>, 16> pinned;
    int npinned = 0;
    auto unpin_all = [&] {
      for (int i = 0; i < npinned; ++i) access->Unpin(pinned[i].first, pinned[i].second);
      npinned = 0;
    };
    for (auto it = c->out.begin(); it != c->out.end() && cnt < 16; ++it, ++cnt) {
      iov[cnt] = {const_cast<uint8_t*>(it->data()) + it->off, it->len - it->off};
      if (access != nullptr && it->borrowed != nullptr) {
        const uint64_t at = it->region_offset + it->off, len = it->len - it->off;
        if (!access->Pin(c->session_id(), at, len)) {
          // Taken from the client (freed, reclaimed) after its READ was
          // queued: the reply's header is out, its bytes must not be.
          unpin_all();
          c->Close("a queued READ reply's memory left the client");
          return;
        }
        pinned[npinned++] = {at, len};
      }
    }
    msghdr m{};
    m.msg_iov = iov;
    m.msg_iovlen = static_cast<size_t>(cnt);
    ssize_t n = ::sendmsg(c->fd.get(), &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (npinned > 0) unpin_all();
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

StatusOr<std::unique_ptr<TransportServer>> StartTcpServer(const ServerOptions& o, RequestHandler* h) {
  auto s = std::make_unique<TcpServer>(o, h);
  SHARRY_RETURN_IF_ERROR(s->Start());
  return std::unique_ptr<TransportServer>(std::move(s));
}

}  // namespace sharry::internal
