// The loopback backend (TransportKind::kLoopback): client and server in one
// process, no sockets, no threads. For tests, never for production: it runs
// the SAME RequestHandler (the real MemnodeService) as tcp and verbs, and its
// FaultPlan (verbs/fault_injection.h) makes failures of the seam
// deterministic.
//
//   registry    servers are found by port: Start registers the server under
//               a port of its own (ServerOptions::port, or the next free
//               one), Connect(kLoopback, {port}) looks it up; the address is
//               ignored. The destructor unregisters it.
//   data path   READ/WRITE copy to and from the server's region on the
//               caller's thread, under the same CheckRange; Call/CallMany
//               call handler->Handle directly, with the same message limits.
//   lifecycle   OnConnect at Connect, OnDisconnect when the client is
//               destroyed, killed by a fault, or the server stops; sessions
//               through internal::SessionTable (closing a root closes its
//               members first). No lease: ConnectionInfo::lease_ms is 0.
//
// Thread-safety: as the seam says. A client's operations run on its owner's
// thread and may run concurrently with other clients' (the handler must be
// thread-safe anyway). Each connection's operations hold its op_mu shared;
// closing it takes op_mu exclusively, so a connection is closed only
// between its operations, and a session's root OnDisconnect (which reclaims
// its far memory) runs after every member's operations are over.
//
// Locks, in the order they may nest (written once, here; the analysis
// checks what each guards, the order is kept by hand):
//   g_registry_mu   -> LoopCore::mu_ -> SessionTable::mu_ (verbs/session.h)
//   LoopConn::op_mu -> LoopCore::mu_, LoopConn::why_mu
//   LoopConn::why_mu: a leaf
// A FaultPlan's lock is taken with none of them held. The RequestHandler
// runs under its connection's op_mu only (Handle shared, OnDisconnect
// exclusive); OnConnect under none.
#include <glog/logging.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <thread>
#include <unordered_map>

#include "base/mutex.h"
#include "verbs/fault_injection.h"
#include "verbs/handshake.h"
#include "verbs/session.h"
#include "verbs/transport_internal.h"
#include "verbs/wire.h"

namespace sharry {

// ---------------------------------------------------------------- loopback

namespace internal {
namespace {

struct LoopConn {
  ClientId id = 0;
  std::shared_ptr<SessionTable::Session> session;
  SharedMutex op_mu;            // shared by each operation, exclusive to close
  Mutex why_mu;
  std::atomic<bool> closed{false};  // set once, under why_mu, after why
  Status why GUARDED_BY(why_mu);    // why the server closed it
};

class LoopServer;

// Port -> server. Servers unregister in their destructor.
Mutex g_registry_mu;
std::map<uint16_t, LoopServer*> g_registry GUARDED_BY(g_registry_mu);
uint16_t g_next_port GUARDED_BY(g_registry_mu) = 1;

// The server's state; shared with its clients so that a client outliving
// the server finds it stopped rather than gone.
class LoopCore {
 public:
  LoopCore(const ServerOptions& o, RequestHandler* h)
      : opts_(o), handler_(h), sessions_(0), guard_(AuthGuard::OptionsOf(o)) {}

  AuthCounters auth_counters() const { return guard_.counters(); }

  const ServerOptions& opts() const { return opts_; }
  RequestHandler* handler() const { return handler_; }

  std::shared_ptr<FaultPlan> plan() const EXCLUDES(mu_) {
    MutexLock l(&mu_);
    return plan_;
  }
  void set_plan(std::shared_ptr<FaultPlan> p) EXCLUDES(mu_) {
    MutexLock l(&mu_);
    plan_ = std::move(p);
  }

  size_t num_clients() const EXCLUDES(mu_) {
    MutexLock l(&mu_);
    return conns_.size();
  }

  // The handshake as over tcp (handshake.h), in process: the hello with
  // credentials or a join token, the challenge and its answer, then the
  // connection is counted in.
  StatusOr<std::shared_ptr<LoopConn>> Open(const ClientOptions& o) EXCLUDES(mu_) {
    const std::string where = "loopback:" + std::to_string(o.port);
    auto refused = [&](const Status& s) {
      return Status(s.code(), "server " + where + " refused the connection: " + s.message());
    };
    std::optional<ClientAuth> cauth;
    if (!o.tenant.empty()) cauth.emplace(o.tenant, o.secret);
    wire::HelloPayload base{};
    base.max_message = o.max_message;
    base.session = o.session;
    auto hello = ParseHello(EncodeHello(base, o.tenant, cauth ? cauth->nonce() : auth::Nonce{},
                                        o.session != 0 ? &o.session_token : nullptr));
    if (!hello.ok()) return refused(hello.status());
    Peer peer;
    if (o.session == 0) {
      ServerAuth sauth(opts_.credentials.get());
      std::vector<uint8_t> challenge;
      if (Status s = sauth.Start(*hello, &challenge); !s.ok()) {
        guard_.Failed("loopback", hello->tenant, false, AuthGuard::Clock::now());
        return refused(s);
      }
      if (!challenge.empty()) {
        auth::Proof proof;
        if (Status s = cauth->Answer(challenge, where, &proof); !s.ok()) {
          guard_.Failed("loopback", sauth.tenant(), sauth.known(), AuthGuard::Clock::now());
          return s;
        }
        if (Status s = sauth.Verify(proof); !s.ok()) {
          guard_.Failed("loopback", sauth.tenant(), sauth.known(), AuthGuard::Clock::now());
          return refused(s);
        }
        peer.tenant = sauth.tenant();
        peer.admin = sauth.admin();
      }
    }
    auto c = std::make_shared<LoopConn>();
    {
      MutexLock l(&mu_);
      if (stopped_) return Status::Unavailable("loopback server on port " + std::to_string(o.port) + " is stopping");
      const size_t greeted = conns_.size();
      if (greeted >= static_cast<size_t>(opts_.max_clients))
        return refused(Status::Unavailable("memnode full: " + std::to_string(greeted) + " of " +
                                           std::to_string(opts_.max_clients) + " clients"));
      const ClientId id = next_id_++;
      if (o.session == 0) {
        const uint32_t max = opts_.credentials ? opts_.credentials->MaxSessions(peer.tenant) : 0;
        auto opened = sessions_.OpenRoot(id, std::move(peer), max);
        if (!opened.ok()) return refused(opened.status());
        c->session = std::move(*opened);
      } else {
        auto s = sessions_.Join(o.session, hello->token);
        if (!s.ok()) {
          if (s.status().code() == StatusCode::kPermissionDenied)
            guard_.Failed("loopback", "", true, AuthGuard::Clock::now());
          return refused(s.status());
        }
        c->session = std::move(*s);
      }
      c->id = id;
      conns_[id] = c;
    }
    handler_->OnConnect(c->id, c->session->peer);
    VLOG(1) << "loopback client " << c->id << " connected (session " << c->session->root << ")";
    return c;
  }

  // Closes `c` (a root: its whole session, members first). Idempotent.
  void Close(const std::shared_ptr<LoopConn>& c, const Status& why) EXCLUDES(mu_) {
    if (c->id == c->session->root) {
      sessions_.End(*c->session, "its root connection closed");
      for (const auto& m : SessionMembers(c->session->root)) CloseOne(m, why);
    }
    CloseOne(c, why);
  }

  // Closes the session of `c`, as when its root drops: members first.
  void CloseSession(const std::shared_ptr<LoopConn>& c, const Status& why) EXCLUDES(mu_) {
    std::shared_ptr<LoopConn> root;
    {
      MutexLock l(&mu_);
      auto it = conns_.find(c->session->root);
      if (it != conns_.end()) root = it->second;
    }
    Close(root != nullptr ? root : c, why);
  }

  // Closes every connection: members first, then the roots.
  void CloseAll(const Status& why) EXCLUDES(mu_) {
    std::vector<std::shared_ptr<LoopConn>> all;
    {
      MutexLock l(&mu_);
      for (auto& [id, c] : conns_) all.push_back(c);
    }
    std::stable_partition(all.begin(), all.end(),
                          [](const std::shared_ptr<LoopConn>& c) { return c->id != c->session->root; });
    for (const auto& c : all) Close(c, why);
  }

  void Stop() EXCLUDES(mu_) {
    {
      MutexLock l(&mu_);
      stopped_ = true;
    }
    CloseAll(Status::Disconnected("the loopback server stopped"));
  }

 private:
  std::vector<std::shared_ptr<LoopConn>> SessionMembers(ClientId root) EXCLUDES(mu_) {
    std::vector<std::shared_ptr<LoopConn>> out;
    MutexLock l(&mu_);
    for (auto& [id, c] : conns_)
      if (c->session->root == root && c->id != root) out.push_back(c);
    return out;
  }

  void CloseOne(const std::shared_ptr<LoopConn>& c, const Status& why) EXCLUDES(mu_) {
    {
      // The reason first, then `closed`: whoever sees it closed reads why.
      MutexLock l(&c->why_mu);
      if (c->closed.load(std::memory_order_relaxed)) return;
      c->why = why;
      c->closed.store(true, std::memory_order_release);
    }
    // Wait for an operation in flight on it (never our own: a fault closes
    // its connection before the operation takes op_mu).
    WriterMutexLock ex(&c->op_mu);
    std::vector<ClientId> due;
    {
      MutexLock l(&mu_);
      conns_.erase(c->id);
      due = sessions_.Leave(c->session, c->id);
    }
    for (ClientId id : due) handler_->OnDisconnect(id);
    VLOG(1) << "loopback client " << c->id << " closed: " << why;
  }

  const ServerOptions opts_;
  RequestHandler* const handler_;
  SessionTable sessions_;
  AuthGuard guard_;  // failed authentications (counted; one "address": loopback)
  mutable Mutex mu_ ACQUIRED_AFTER(g_registry_mu);
  std::unordered_map<ClientId, std::shared_ptr<LoopConn>> conns_ GUARDED_BY(mu_);
  ClientId next_id_ GUARDED_BY(mu_) = 1;
  bool stopped_ GUARDED_BY(mu_) = false;
  std::shared_ptr<FaultPlan> plan_ GUARDED_BY(mu_);
};

class LoopServer final : public TransportServer {
 public:
  LoopServer(const ServerOptions& o, RequestHandler* h, uint16_t port)
      : core_(std::make_shared<LoopCore>(o, h)), port_(port) {}
  ~LoopServer() override {
    {
      MutexLock l(&g_registry_mu);
      g_registry.erase(port_);
    }
    core_->Stop();
  }
  uint16_t port() const override { return port_; }
  size_t num_clients() const override { return core_->num_clients(); }
  TransportKind kind() const override { return TransportKind::kLoopback; }
  AuthCounters auth_counters() const override { return core_->auth_counters(); }
  const std::shared_ptr<LoopCore>& core() const { return core_; }

 private:
  std::shared_ptr<LoopCore> core_;
  const uint16_t port_;
};

class LoopClient final : public CopyingClient {
 public:
  LoopClient(std::shared_ptr<LoopCore> core, std::shared_ptr<LoopConn> conn, const ConnectionInfo& info)
      : CopyingClient(info), core_(std::move(core)), conn_(std::move(conn)) {}
  ~LoopClient() override { core_->Close(conn_, Status::Disconnected("the client closed the connection")); }

  TransportKind kind() const override { return TransportKind::kLoopback; }
  Status CallMany(std::span<const std::span<const uint8_t>> requests,
                  std::vector<std::vector<uint8_t>>* responses) override;

  bool alive() const override { return dead_.ok() && !conn_->closed.load(std::memory_order_acquire); }
  Status dead_reason() const override {
    if (!dead_.ok()) return dead_;
    if (!conn_->closed.load(std::memory_order_acquire)) return Status::Ok();
    MutexLock l(&conn_->why_mu);
    return conn_->why;
  }

 private:
  Status CheckAlive() const {
    Status d = dead_reason();
    return d.ok() ? Status::Ok() : Status::Disconnected("connection is dead: " + d.ToString());
  }
  Status Kill(Status s) {
    if (dead_.ok()) dead_ = s;
    core_->Close(conn_, s);
    return s;
  }
  // Applies the plan's fault for one operation, if any. Returns non-OK when
  // the operation must not be done (its status); sets *drop_reply for
  // kDropReply (done, then the client times out).
  Status Inject(FaultOp op, bool* drop_reply);
  Status Batch(std::span<const RemoteOp> ops, bool write) override;

  std::shared_ptr<LoopCore> core_;
  std::shared_ptr<LoopConn> conn_;
  Status dead_;  // set by this client (a dropped reply)
};

Status LoopClient::Inject(FaultOp op, bool* drop_reply) {
  *drop_reply = false;
  std::shared_ptr<FaultPlan> plan = core_->plan();
  if (plan == nullptr) return Status::Ok();
  const uint64_t nth = plan->count(op) + 1;  // for the message; Next counts
  std::optional<Fault> f = plan->Next(op);
  if (!f) return Status::Ok();
  const std::string what = std::string(FaultOpName(op)) + " #" + std::to_string(nth);
  switch (f->action) {
    case FaultAction::kFail:
      return Status(f->code, "loopback fault: injected failure of " + what);
    case FaultAction::kDisconnect: {
      Status s = Status::Disconnected("loopback fault: injected disconnect at " + what);
      if (f->scope == FaultScope::kServer) core_->CloseAll(s);
      else if (f->scope == FaultScope::kSession) core_->CloseSession(conn_, s);
      else core_->Close(conn_, s);
      return s;
    }
    case FaultAction::kDelay:
      std::this_thread::sleep_for(std::chrono::milliseconds(f->delay_ms));
      return Status::Ok();
    case FaultAction::kDropReply:
      *drop_reply = true;
      return Status::Ok();
    case FaultAction::kHold:
      return Status::Ok();
  }
  return Status::Ok();
}

Status LoopClient::Batch(std::span<const RemoteOp> ops, bool write) {
  SHARRY_RETURN_IF_ERROR(CheckAlive());
  for (const RemoteOp& op : ops)
    SHARRY_RETURN_IF_ERROR(CheckRange(op.offset, op.length, info_.region_size, write ? "write" : "read"));
  auto* region = static_cast<uint8_t*>(core_->opts().region);
  for (const RemoteOp& op : ops) {
    bool drop = false;
    if (Status s = Inject(write ? FaultOp::kWrite : FaultOp::kRead, &drop); !s.ok()) return s;
    {
      ReaderMutexLock l(&conn_->op_mu);
      SHARRY_RETURN_IF_ERROR(CheckAlive());
      if (op.length > 0) {
        // Confinement, as the tcp server does it: the copy runs under a pin
        // of the session's pages, or not at all.
        RegionAccess* access = core_->opts().region_access;
        if (access != nullptr && !access->Pin(conn_->session->root, op.offset, op.length)) {
          return Status::PermissionDenied(std::string(write ? "write" : "read") + " of [" +
                                          std::to_string(op.offset) + ", +" + std::to_string(op.length) +
                                          ") outside this client's far memory");
        }
        if (write) std::memcpy(region + op.offset, op.local, op.length);
        else std::memcpy(op.local, region + op.offset, op.length);
        if (access != nullptr) access->Unpin(op.offset, op.length);
      }
    }
    if (drop) return Kill(Status::Timeout("loopback fault: the reply was dropped; peer did not answer in time"));
  }
  return Status::Ok();
}

Status LoopClient::CallMany(std::span<const std::span<const uint8_t>> requests,
                            std::vector<std::vector<uint8_t>>* responses) {
  SHARRY_RETURN_IF_ERROR(CheckAlive());
  for (const auto& r : requests) SHARRY_RETURN_IF_ERROR(CheckRequestSize(r.size(), info_.max_message));
  responses->assign(requests.size(), {});
  const size_t max_payload = info_.max_message - sizeof(wire::MsgHeader);
  Status first;
  for (size_t i = 0; i < requests.size(); ++i) {
    bool drop = false;
    if (Status s = Inject(FaultOp::kRequest, &drop); !s.ok()) {
      if (!alive()) return s;
      if (first.ok()) first = s;
      continue;
    }
    auto& out = (*responses)[i];
    {
      ReaderMutexLock l(&conn_->op_mu);
      SHARRY_RETURN_IF_ERROR(CheckAlive());
      out.resize(max_payload);
      const size_t n = core_->handler()->Handle(conn_->id, requests[i], std::span<uint8_t>(out.data(), max_payload));
      CHECK_LE(n, max_payload) << "handler returned a response longer than its buffer";
      out.resize(n);
    }
    if (drop) return Kill(Status::Timeout("loopback fault: the reply was dropped; peer did not answer in time"));
  }
  return first;
}

}  // namespace

StatusOr<std::unique_ptr<TransportServer>> StartLoopbackServer(const ServerOptions& o, RequestHandler* h) {
  MutexLock l(&g_registry_mu);
  uint16_t port = o.port;
  if (port != 0) {
    if (g_registry.count(port))
      return Status::Unavailable("loopback port " + std::to_string(port) + " is in use");
  } else {
    for (int tries = 0; tries < 65535 && (g_next_port == 0 || g_registry.count(g_next_port)); ++tries) ++g_next_port;
    if (g_next_port == 0 || g_registry.count(g_next_port))
      return Status::ResourceExhausted("every loopback port is in use");
    port = g_next_port++;
  }
  auto s = std::make_unique<LoopServer>(o, h, port);
  g_registry[port] = s.get();
  LOG(INFO) << "loopback server on port " << port << " (in-process; tests only)";
  return std::unique_ptr<TransportServer>(std::move(s));
}

StatusOr<std::unique_ptr<TransportClient>> ConnectLoopbackClient(const ClientOptions& o) {
  std::shared_ptr<LoopCore> core;
  {
    MutexLock l(&g_registry_mu);
    auto it = g_registry.find(o.port);
    if (it == g_registry.end())
      return Status::Unavailable("connect loopback:" + std::to_string(o.port) +
                                 ": no loopback server on that port (connection refused)");
    core = it->second->core();
  }
  auto conn = core->Open(o);
  if (!conn.ok()) return conn.status();
  ConnectionInfo info;
  info.client_id = (*conn)->id;
  info.region_size = core->opts().region_size;
  info.max_message = std::min(core->opts().max_message, o.max_message);
  info.credits = std::min(core->opts().credits, o.max_inflight);
  info.lease_ms = 0;
  info.session = (*conn)->session->root;
  if (o.session == 0) info.session_token = (*conn)->session->token;
  return std::unique_ptr<TransportClient>(new LoopClient(std::move(core), std::move(*conn), info));
}

}  // namespace internal

Status SetLoopbackFaults(uint16_t port, std::shared_ptr<FaultPlan> plan) {
  MutexLock l(&internal::g_registry_mu);
  auto it = internal::g_registry.find(port);
  if (it == internal::g_registry.end())
    return Status::NotFound("no loopback server on port " + std::to_string(port));
  it->second->core()->set_plan(std::move(plan));
  return Status::Ok();
}

}  // namespace sharry
