// The verbs server's side of authentication on the QP (kHelloAuthOnQp; the
// exchange is drawn in wire.h): a client whose credentials do not fit the
// connect's private data is accepted with no key and no session, then sends
// its hello on the QP; its poller challenges it, verifies its answer, opens
// its session and sends the welcome with the key — or refuses it with the
// reason, and the sweep closes it. See verbs_server_impl.h for the map of
// the server's files.
#include <glog/logging.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>

#include "verbs/error.h"
#include "verbs/handshake.h"
#include "verbs/transport_internal.h"
#include "verbs/verbs_server_impl.h"
#include "verbs/wr_id.h"

namespace sharry::internal {
namespace {

// A refused connection is closed by the sweep this long after its refusal
// went out (an honest client disconnects first, once it read the reason).
constexpr auto kRefusedGrace = std::chrono::milliseconds(200);

int64_t Ns(Clock::time_point t) { return t.time_since_epoch().count(); }

void LogAuthFailed(const std::string& address, std::string_view tenant, std::string_view why) {
  LOG(WARNING) << "verbs: authentication from " << address << " failed"
               << (tenant.empty() ? std::string() : " (tenant '" + std::string(tenant) + "')") << ": " << why;
}

}  // namespace

void VerbsServer::StartAuthOnQp(Conn* c, wire::WelcomePayload* accept_welcome) {
  c->auth = std::make_unique<ServerAuth>(opts_.credentials.get());
  c->auth_close_ns.store(Ns(Clock::now() + std::chrono::milliseconds(opts_.handshake_timeout_ms)),
                         std::memory_order_relaxed);
  c->auth_state.store(AuthState::kHello, std::memory_order_relaxed);
  c->welcome = *accept_welcome;  // what it gets once authenticated (its session is set then)
  accept_welcome->rkey = 0;      // no key to memory before authentication
  accept_welcome->session = 0;   // "authentication follows on the QP"
}

void VerbsServer::HandleAuthMessage(Poller* p, Conn* c, const uint8_t* msg, uint32_t len) {
  const AuthState state = c->auth_state.load(std::memory_order_relaxed);
  if (state == AuthState::kRefused) return;  // answered already; the sweep closes it
  MsgHeader h{};
  if (len >= sizeof h) std::memcpy(&h, msg, sizeof h);
  const std::span<const uint8_t> payload(msg + sizeof h, len >= sizeof h ? len - sizeof h : 0);
  // A refusal: the reason goes back (a welcome refusing the handshake, or a
  // kError answering a request), then the connection is closed.
  auto refuse = [&](Kind kind, const Status& why) {
    LOG(WARNING) << "verbs: refusing client " << c->client_id << " from " << c->peer_address << ": " << why;
    c->auth_close_ns.store(Ns(Clock::now() + kRefusedGrace), std::memory_order_relaxed);
    c->auth_state.store(AuthState::kRefused, std::memory_order_release);
    SendAuthMessage(p, c, kind, h.tag,
                    kind == Kind::kError ? EncodeError(why) : EncodeWelcomePayload(why.code(), why.message()));
  };
  if (len < sizeof h || h.magic != wire::kMagic || h.version != wire::kVersion || h.length != len - sizeof h)
    return refuse(Kind::kError, Status::Protocol("bad message header while authenticating"));

  if (h.kind == Kind::kHello && state == AuthState::kHello) {
    auto hello = ParseHello(payload);
    if (!hello.ok()) return refuse(Kind::kWelcome, hello.status());
    if (!hello->authenticates)
      return refuse(Kind::kWelcome, Status::InvalidArgument("the hello on the QP must carry credentials"));
    std::vector<uint8_t> challenge;
    Status s = c->auth->Start(*hello, &challenge);
    if (s.ok() && challenge.empty()) s = Status::Internal("no challenge for an authenticating hello");
    if (!s.ok()) {
      auth_guard_.Failed(c->peer_address, hello->tenant, false, Clock::now());
      LogAuthFailed(c->peer_address, hello->tenant, c->auth->log_reason());
      return refuse(Kind::kWelcome, s);
    }
    c->auth_state.store(AuthState::kChallenged, std::memory_order_release);
    return SendAuthMessage(p, c, Kind::kChallenge, h.tag, challenge);
  }

  if (h.kind == Kind::kAuth && state == AuthState::kChallenged) {
    if (Status s = c->auth->Verify(payload); !s.ok()) {
      auth_guard_.Failed(c->peer_address, c->auth->tenant(), c->auth->known(), Clock::now());
      LogAuthFailed(c->peer_address, c->auth->tenant(), c->auth->log_reason());
      return refuse(Kind::kWelcome, s);
    }
    // As over tcp (TcpServer::Admit): the root of a session of this tenant.
    Peer peer;
    peer.tenant = c->auth->tenant();
    peer.admin = c->auth->admin();
    const uint32_t max = opts_.credentials ? opts_.credentials->MaxSessions(peer.tenant) : 0;
    auto opened = sessions_.OpenRoot(c->client_id, std::move(peer), max);
    if (!opened.ok()) return refuse(Kind::kWelcome, opened.status());
    c->session = std::move(*opened);
    c->auth_state.store(AuthState::kDone, std::memory_order_release);  // publishes c->session
    handler_->OnConnect(c->client_id, c->session->peer);
    VLOG(1) << "verbs client " << c->client_id << " authenticated (session " << c->session->root << ")";
    wire::WelcomePayload w = c->welcome;
    w.session = c->session->root;
    const auto& token = c->session->token;
    std::vector<uint8_t> welcome(sizeof w + token.size());
    std::memcpy(welcome.data(), &w, sizeof w);
    std::memcpy(welcome.data() + sizeof w, token.data(), token.size());
    return SendAuthMessage(p, c, Kind::kWelcome, h.tag, welcome);
  }

  refuse(Kind::kError, h.kind == Kind::kRequest
                           ? Status::PermissionDenied("authenticate first: this connection has not authenticated")
                           : Status::Protocol("message kind " + std::to_string(int(h.kind)) +
                                              " out of order while authenticating"));
}

bool VerbsServer::Unauthenticated(const Conn& c, Clock::time_point now, std::string* why) const {
  if (c.auth == nullptr) return false;
  const AuthState state = c.auth_state.load(std::memory_order_acquire);
  if (state == AuthState::kDone) return false;
  if (Ns(now) >= c.auth_close_ns.load(std::memory_order_relaxed))
    *why = state == AuthState::kRefused
               ? std::string("refused while authenticating")
               : "did not authenticate within " + std::to_string(opts_.handshake_timeout_ms) + " ms";
  return true;
}

void VerbsServer::AuthClosed(const Conn& c, const std::string& why) {
  if (!c.auth->pending()) return;
  auth_guard_.Failed(c.peer_address, c.auth->tenant(), c.auth->known(), Clock::now());
  LogAuthFailed(c.peer_address, c.auth->tenant(), "gave up after the challenge: " + why);
}

void VerbsServer::SendAuthMessage(Poller* p, Conn* c, Kind kind, uint64_t tag, std::span<const uint8_t> payload) {
  auto out = AcquireSlot(p);
  if (!out) {
    LOG(ERROR) << "verbs: no send slot to answer client " << c->client_id << " while it authenticates; dropping it";
    rdma_disconnect(c->id.get());
    return;
  }
  // Everything sent before the welcome fits the client's receives
  // (wire::kMaxAuthMessage); a longer reason is cut.
  MsgHeader h{};
  h.kind = kind;
  h.tag = tag;
  const size_t cap = std::min<size_t>(opts_.max_message, wire::kMaxAuthMessage) - sizeof h;
  h.length = static_cast<uint32_t>(std::min(payload.size(), cap));
  uint8_t* m = slot(p, *out);
  std::memcpy(m, &h, sizeof h);
  std::memcpy(m + sizeof h, payload.data(), h.length);
  ibv_sge sge{reinterpret_cast<uintptr_t>(m), static_cast<uint32_t>(sizeof h + h.length), c->vs->slot_lkeys[p->index]};
  ibv_send_wr wr{};
  wr.wr_id = MakeWrId(kWrSend, *out);  // the slot is free when this completes
  wr.opcode = IBV_WR_SEND;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.send_flags = IBV_SEND_SIGNALED;
  c->unsignalled = 0;
  ibv_send_wr* bad = nullptr;
  if (int rc = ibv_post_send(c->id.qp(), &wr, &bad); rc != 0) {
    LOG(WARNING) << verbs::VerbFailed("ibv_post_send(authentication message to client " +
                                          std::to_string(c->client_id) + ")",
                                      rc);
    p->free_slots.push_back(*out);
  }
}

}  // namespace sharry::internal
