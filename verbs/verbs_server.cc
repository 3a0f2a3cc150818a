// The verbs server: device setup, the rdma_cm thread (accept/reject,
// disconnects), the sessions sweep (see verbs_server_impl.h for the map of
// the server's files).
#include <glog/logging.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "verbs/error.h"
#include "verbs/handshake.h"
#include "verbs/socket_util.h"
#include "verbs/transport_internal.h"
#include "verbs/verbs_server_impl.h"
#include "verbs/wr_id.h"

namespace sharry::internal {
Status VerbsServer::Start() {
  if (opts_.max_message < sizeof(MsgHeader) + 64)
    return Status::InvalidArgument("max_message must be at least 80 bytes");
  auto l = verbs::Listen(opts_.listen_addr, opts_.port, 128);
  if (!l.ok()) return l.status();
  listener_.emplace(std::move(*l));
  port_ = listener_->port;
  // Bound to an RDMA device's address: set up now. Bound to any address:
  // at the first connection, when the device is known.
  if (listener_->id->verbs != nullptr) SHARRY_RETURN_IF_ERROR(InitDevice(listener_->id->verbs));
  cm_thread_ = std::thread([this] { CmLoop(); });
  internal::PinThread(cm_thread_, -1, "verbs cm");
  LOG(INFO) << "verbs transport listening on " << opts_.listen_addr << ":" << port_ << ", region "
            << opts_.region_size << " B";
  return Status::Ok();
}

Status VerbsServer::InitDevice(ibv_context* ctx) {
  ctx_ = ctx;
  auto caps = verbs::QueryDeviceCaps(ctx);
  if (!caps.ok()) return caps.status();
  auto pd = ProtectionDomain::Create(ctx);
  if (!pd.ok()) return pd.status();
  pd_.emplace(std::move(*pd));
  if (opts_.region_size > 0 && !opts_.confine) {
    // A bare transport: the region is registered ONCE, as one memory
    // region, and every client gets its key.
    auto mr = MemoryRegion::Register(pd_->get(), opts_.region, opts_.region_size, MemoryRegion::kRemoteReadWrite);
    if (!mr.ok()) return mr.status().WithContext("register the region");
    region_mr_.emplace(std::move(*mr));
  }
  if (opts_.confine) page_keys_.Init(opts_.region_size);
  const int n = std::max(1, opts_.num_pollers);
  slots_per_poller_ = opts_.recv_depth + 64;
  // Every receive of every connection of a poller may complete before it
  // polls: room for them all (the connections are bounded), and the sends.
  const uint64_t recvs = uint64_t{static_cast<uint32_t>(opts_.max_clients + opts_.max_handshakes)} * opts_.credits;
  for (int i = 0; i < n; ++i) {
    auto p = std::make_unique<Poller>();
    p->index = i;
    auto comp = CompletionChannel::Create(ctx);
    if (!comp.ok()) return comp.status();
    p->comp.emplace(std::move(*comp));
    int cq_depth = static_cast<int>(std::min<uint64_t>(caps->max_cqe, 2 * uint64_t{slots_per_poller_} + recvs));
    auto cq = CompletionQueue::Create(ctx, cq_depth, p->comp->get());
    if (!cq.ok()) return cq.status();
    p->cq.emplace(std::move(*cq));
    p->slots_buf = AllocBuffer(size_t{slots_per_poller_} * opts_.max_message);
    if (!p->slots_buf) return Status::OutOfMemory("send slots");
    auto smr = MemoryRegion::Register(pd_->get(), p->slots_buf.get(),
                                      size_t{slots_per_poller_} * opts_.max_message, MemoryRegion::kLocalOnly);
    if (!smr.ok()) return smr.status();
    p->slots_mr.emplace(std::move(*smr));
    for (uint32_t s = slots_per_poller_; s-- > 0;) p->free_slots.push_back(s);
    pollers_.push_back(std::move(p));
  }
  for (auto& p : pollers_) {
    Poller* raw = p.get();
    p->thread = std::thread([this, raw] { PollLoop(raw); });
    int core = raw->index < static_cast<int>(opts_.poller_cores.size()) ? opts_.poller_cores[raw->index] : -1;
    internal::PinThread(p->thread, core, "verbs poller " + std::to_string(raw->index));
  }
  LOG(INFO) << "verbs device " << ibv_get_device_name(ctx->device) << ": "
            << (opts_.confine ? std::string("confined (a protection domain per session, an MR per span)")
                              : "region rkey " + std::to_string(region_mr_ ? region_mr_->rkey() : 0))
            << ", " << opts_.credits << " receives of " << opts_.max_message << " B per connection, " << n
            << " poller(s)";
  return Status::Ok();
}

VerbsServer::~VerbsServer() {
  stop_ = true;
  if (cm_thread_.joinable()) cm_thread_.join();
  for (auto& p : pollers_)
    if (p->thread.joinable()) p->thread.join();
  // Connections first (their QPs), then CQs, SRQ, MRs, PD, listener.
  for (auto& [id, c] : by_id_) rdma_disconnect(id);
  for (auto& [id, c] : by_id_) {
    if (c->established) clients_--;
    if (!c->session) continue;
    for (ClientId gone : sessions_.Leave(c->session, c->client_id))
      if (gone != c->client_id || c->connected()) handler_->OnDisconnect(gone);
  }
  by_qp_.clear();
  by_id_.clear();
  {
    MutexLock l(&keys_mu_);
    spans_.clear();
    owners_.clear();
  }
  shared_vs_.reset();
  pollers_.clear();
  region_mr_.reset();
  pd_.reset();
  listener_.reset();
}

void VerbsServer::CmLoop() {
  while (!stop_) {
    if (std::chrono::steady_clock::now() >= next_sweep_) {
      Sweep();
      next_sweep_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
    }
    auto ev = listener_->channel.Next(50);
    if (!ev.ok()) {
      if (ev.status().code() != StatusCode::kTimeout) LOG(ERROR) << "rdma_cm: " << ev.status();
      continue;
    }
    switch (ev->type()) {
      case RDMA_CM_EVENT_CONNECT_REQUEST:
        OnConnectRequest(*ev);
        break;
      case RDMA_CM_EVENT_ESTABLISHED: {
        auto it = by_id_.find(ev->id());
        if (it == by_id_.end()) break;
        it->second->established = true;
        clients_++;
        VLOG(1) << "verbs client " << it->second->client_id << " connected";
        // One that authenticates on its QP is announced once it has (its poller).
        if (!it->second->auth) handler_->OnConnect(it->second->client_id, it->second->session->peer);
        break;
      }
      case RDMA_CM_EVENT_DISCONNECTED:
      case RDMA_CM_EVENT_REJECTED:
      case RDMA_CM_EVENT_CONNECT_ERROR:
      case RDMA_CM_EVENT_UNREACHABLE: {
        rdma_cm_id* id = ev->id();
        const char* why = ev->name();
        ev->Ack();  // before the id is destroyed
        DropConn(id, why);
        break;
      }
      case RDMA_CM_EVENT_DEVICE_REMOVAL:
        LOG(ERROR) << "rdma_cm: the RDMA device was removed; clients will see their connections die";
        break;
      default:
        VLOG(1) << "rdma_cm event " << ev->name();
        break;
    }
  }
}

void VerbsServer::OnConnectRequest(CmEvent& ev) {
  rdma_cm_id* id = ev.id();
  auto reject = [&](StatusCode code, const std::string& why) {
    LOG(WARNING) << "verbs: refusing a connection: " << why;
    // Welcome + the reason, zero-padded (a NUL ends it): what the client reports.
    std::vector<uint8_t> pd =
        internal::EncodeWelcomePayload(code, std::string_view(why).substr(0, wire::kMaxReason - 1));
    pd.resize(sizeof(wire::WelcomePayload) + wire::kMaxReason);
    rdma_reject(id, pd.data(), static_cast<uint8_t>(pd.size()));
    ev.Ack();
    rdma_destroy_id(id);
  };
  const std::string peer = net::AddressString(rdma_get_peer_addr(id));
  if (Status limited = auth_guard_.Admit(peer, Clock::now()); !limited.ok())
    return reject(limited.code(), limited.message());
  auto parsed = ParseHello(ev.private_data());  // rdma_cm zero-pads private data: ParseHello allows it
  if (!parsed.ok()) return reject(parsed.status().code(), parsed.status().message());
  const wire::HelloPayload& hello = parsed->base;
  if (hello.session == 0 && !parsed->auth_on_qp) {
    // Credentials do not fit private data: they come on the QP
    // (kHelloAuthOnQp, verbs_server_auth.cc). Here: anonymous roots.
    if (parsed->authenticates)
      return reject(StatusCode::kInvalidArgument,
                    "over verbs the credentials come after the connect (kHelloAuthOnQp), not in it");
    ServerAuth sauth(opts_.credentials.get());
    std::vector<uint8_t> challenge;
    if (Status s = sauth.Start(*parsed, &challenge); !s.ok()) {
      auth_guard_.Failed(peer, "", false, Clock::now());
      return reject(s.code(), s.message());
    }
  }
  if (ctx_ == nullptr) {
    if (Status s = InitDevice(id->verbs); !s.ok()) return reject(StatusCode::kInternal, s.ToString());
  } else if (id->verbs != ctx_) {
    return reject(StatusCode::kUnavailable, "connection on a second RDMA device; listen on one device's address");
  }
  // Counted from the connect request: established ones against max_clients,
  // those still connecting against max_handshakes.
  const size_t established = clients_.load();
  if (established >= static_cast<size_t>(opts_.max_clients))
    return reject(StatusCode::kUnavailable, "memnode full: " + std::to_string(established) + " of " +
                                                std::to_string(opts_.max_clients) + " clients");
  if (by_id_.size() - established >= static_cast<size_t>(opts_.max_handshakes))
    return reject(StatusCode::kUnavailable, "memnode busy: " + std::to_string(by_id_.size() - established) +
                                                " connections still connecting");
  std::shared_ptr<internal::SessionTable::Session> session;
  const ClientId client_id = next_client_id_;
  if (parsed->auth_on_qp) {
    // Opened once the client has authenticated (verbs_server_auth.cc).
  } else if (hello.session == 0) {
    session = *sessions_.OpenRoot(client_id, Peer{});  // anonymous: never refused
  } else {
    auto joined = sessions_.Join(hello.session, parsed->token);
    if (!joined.ok()) {
      if (joined.status().code() == StatusCode::kPermissionDenied)
        auth_guard_.Failed(peer, "", true, Clock::now());
      return reject(joined.status().code(), joined.status().message());
    }
    session = std::move(*joined);
  }
  wire::WelcomePayload w{};
  auto conn = std::make_unique<Conn>();
  conn->id = CmId::Adopt(id);
  conn->poller = static_cast<int>(rr_++ % pollers_.size());
  conn->client_id = client_id;
  conn->max_message = std::min(opts_.max_message, std::max<uint32_t>(hello.max_message, sizeof(MsgHeader)));
  Poller* p = pollers_[conn->poller].get();
  // Its QP goes in its session's protection domain (confine on): the only
  // memory it can reach one-sidedly is the spans registered there.
  conn->vs = SessionFor(client_id, hello.session);
  verbs::QpSizes sizes;
  sizes.max_send_wr = 2 * opts_.credits + 16;
  sizes.max_send_sge = 1;
  sizes.max_recv_wr = opts_.credits;
  sizes.max_inline_data = 256;
  StatusOr<verbs::QpCaps> qp = Status::OutOfMemory("no protection domain for the session");
  if (conn->vs) qp = verbs::CreateRcQp(conn->id, conn->vs->pd, p->cq->get(), p->cq->get(), nullptr, sizes);
  Status ready = qp.ok() ? PostConnRecvs(conn.get(), opts_.credits) : qp.status();
  if (!ready.ok()) {
    LOG(ERROR) << "verbs: cannot set up a QP for a client: " << ready;
    if (session) sessions_.Leave(session, client_id);  // nobody connected: nothing to reclaim
    ForgetOwner(client_id);
    w.status = static_cast<uint16_t>(StatusCode::kOutOfMemory);
    rdma_reject(id, &w, sizeof w);
    ev.Ack();
    return;  // conn's CmId destroys the id
  }
  max_inline_ = qp->max_inline_data;
  conn->sq_depth = qp->max_send_wr;
  next_client_id_++;
  conn->session = session;
  conn->peer_address = peer;
  w.client_id = conn->client_id;
  w.lease_ms = opts_.lease_ms;
  w.session = session ? session->root : 0;
  w.max_message = opts_.max_message;
  w.region_addr = reinterpret_cast<uint64_t>(opts_.region);
  w.region_size = opts_.region_size;
  w.rkey = region_mr_ ? region_mr_->rkey() : 0;
  w.credits = opts_.credits;
  if (parsed->auth_on_qp) StartAuthOnQp(conn.get(), &w);  // the accept gives no key, no session
  {
    WriterMutexLock l(&conns_mu_);
    by_qp_[conn->id.qp()->qp_num] = conn.get();
  }
  // The welcome; a root's carries its session's token (handshake.h).
  const bool root = session != nullptr && hello.session == 0;
  std::vector<uint8_t> welcome(sizeof w + (root ? session->token.size() : 0));
  std::memcpy(welcome.data(), &w, sizeof w);
  if (root) std::memcpy(welcome.data() + sizeof w, session->token.data(), session->token.size());
  rdma_conn_param param{};
  param.private_data = welcome.data();
  param.private_data_len = static_cast<uint8_t>(welcome.size());
  const rdma_conn_param& req = ev.conn_param();
  param.responder_resources = std::min<uint8_t>(req.initiator_depth, kRdAtomic);
  param.initiator_depth = std::min<uint8_t>(req.responder_resources, kRdAtomic);
  param.rnr_retry_count = 7;
  if (rdma_accept(id, &param) != 0) {
    LOG(ERROR) << verbs::VerbFailed("rdma_accept", errno);
    if (session) sessions_.Leave(session, conn->client_id);
    ForgetOwner(conn->client_id);
    WriterMutexLock l(&conns_mu_);
    by_qp_.erase(conn->id.qp()->qp_num);
    ev.Ack();
    return;
  }
  ev.Ack();
  by_id_[id] = std::move(conn);
}

void VerbsServer::DropConn(rdma_cm_id* id, const std::string& why) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return;
  std::unique_ptr<Conn> c = std::move(it->second);
  by_id_.erase(it);
  {
    WriterMutexLock l(&conns_mu_);
    by_qp_.erase(c->id.qp()->qp_num);
  }
  // The QP goes to error first: no READ or WRITE of this connection can
  // reach the region after this, before any block is reclaimed below.
  rdma_disconnect(id);
  if (c->established) LOG(INFO) << "verbs client " << c->client_id << " gone (" << why << ")";
  if (c->auth) AuthClosed(*c, why);
  // Members of a session go before its root's OnDisconnect (reclamation).
  if (c->session)
    for (ClientId gone : sessions_.Leave(c->session, c->client_id))
      if (gone != c->client_id || c->connected()) handler_->OnDisconnect(gone);
  // Its spans were revoked (deregistered) by the reclamation above, or are
  // deregistered when the allocator revokes them.
  ForgetOwner(c->client_id);
  // Counted out after its OnDisconnect: num_clients() == 0 means reclaimed.
  if (c->established) clients_--;
  // ~Conn destroys the QP, then the id. Completions of its sends that are
  // still in a CQ only free their send slots.
}

void VerbsServer::Sweep() {
  const auto now = std::chrono::steady_clock::now();
  std::vector<std::pair<rdma_cm_id*, std::string>> over;
  for (auto& [id, c] : by_id_) {
    if (std::string why; Unauthenticated(*c, now, &why)) {  // verbs_server_auth.cc
      if (!why.empty()) over.emplace_back(id, why);
    } else if (c->established && sessions_.Expired(*c->session, now)) {
      over.emplace_back(id, "session " + std::to_string(c->session->root) + " over: " + c->session->why.load());
    }
  }
  for (auto& [id, why] : over) {
    LOG(WARNING) << "verbs: dropping client " << by_id_[id]->client_id << ": " << why;
    DropConn(id, why);
  }
}

StatusOr<std::unique_ptr<TransportServer>> StartVerbsServer(const ServerOptions& o, RequestHandler* h) {
  auto s = std::make_unique<VerbsServer>(o, h);
  SHARRY_RETURN_IF_ERROR(s->Start());
  return std::unique_ptr<TransportServer>(std::move(s));
}

}  // namespace sharry::internal
