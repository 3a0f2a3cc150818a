// The verbs backend's server: RDMA RC through rdma_cm. Private to the build.
//
// One listener thread handles rdma_cm events (connect, disconnect); each
// connection's QP has its own receive queue (credits receives of
// max_message bytes, registered in the QP's protection domain) and its
// completions in the CQ of one poller thread (round robin), so requests of
// many clients share the pollers. Requests are SENDs: header + payload
// (wire.h) into a posted receive buffer; the poller calls the RequestHandler
// and SENDs the response (inline when the device allows) on the same QP.
//
// One-sided READ and WRITE go to the region at region_addr + offset:
//   - confine off (a bare transport): the region is ONE memory region in the
//     server's protection domain, and every client gets its key;
//   - confine on (the memnode; docs/tenants.md "Verbs confinement"): each
//     session has its own protection domain (VSession) holding its QPs,
//     their receive buffers, and one memory region per span granted to the
//     session (RegionKeys::Grant; deregistered on Revoke). No other
//     memory region reaches the region, so a QP can touch only its
//     session's spans: the device enforces it.
// Why not one shared receive queue (the paper's design): the receive
// buffers of an SRQ are looked up in the PD of the QP that a SEND arrives
// on, so QPs of per-session PDs cannot share one (measured on rxe 6.1,
// docs/tenants.md); each connection's own queue is bounded by its credits.
//
// Where the code is:
//   verbs_server.cc       device setup (PD, region MR, pollers), the
//                         rdma_cm thread: accept/reject (hello checks,
//                         welcome), disconnects, the sessions sweep
//   verbs_server_keys.cc  sessions' protection domains, the MRs of granted
//                         spans (RegionKeys)
//   verbs_server_poll.cc  the pollers: receives, the handler, response
//                         SENDs from send slots
//   verbs_server_auth.cc  authentication on the QP (kHelloAuthOnQp, wire.h):
//                         the poller's side of the exchange, the sweep's
//                         deadline for it
//   wr_id.h               work-request id packing
//   verbs_common.h        page-aligned buffers, the RDMA READ depth
// The client is in verbs_client_impl.h.
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/mutex.h"
#include "verbs/cm.h"
#include "verbs/handshake.h"
#include "verbs/queue_pair.h"
#include "verbs/remote_keys.h"
#include "verbs/resources.h"
#include "verbs/session.h"
#include "verbs/transport.h"
#include "verbs/transport_internal.h"
#include "verbs/verbs_common.h"
#include "verbs/wire.h"
#include "verbs/wr_id.h"

namespace sharry::internal {

class VerbsServer final : public NetServer, public RegionKeys {
 public:
  VerbsServer(const ServerOptions& o, RequestHandler* h) : NetServer(TransportKind::kVerbs, o, h) {}
  ~VerbsServer() override;
  Status Start();
  RegionKeys* region_keys() override { return opts_.confine ? this : nullptr; }

  // RegionKeys (confine on): called by the memnode's allocator threads.
  void Grant(ClientId owner, uint64_t offset, uint64_t bytes) override;
  void Revoke(ClientId owner, uint64_t offset, uint64_t bytes) override;
  uint32_t RemoteKey(uint64_t offset) const override;

 private:
  // The verbs side of one session (confine on; else one shared by all): its
  // protection domain. Held by its connections, by owners_ under each of
  // their client ids while they are open, and by each span registered in
  // it: the PD goes after the last of its QPs and MRs.
  struct VSession {
    ClientId root = 0;
    std::optional<ProtectionDomain> own_pd;  // confine on
    ibv_pd* pd = nullptr;                    // own_pd's, or the server's (confine off)
    // A SEND's buffer must be registered in its QP's PD: each poller's send
    // slots are registered once more in the session's PD (the same memory;
    // confine on), and slot_lkeys[poller] is the key a response uses.
    std::vector<MemoryRegion> slot_mrs;
    std::vector<uint32_t> slot_lkeys;
  };
  // A granted span's memory region (destroyed before its session's PD).
  struct Span {
    std::shared_ptr<VSession> vs;
    MemoryRegion mr;
  };
  // A connection that authenticates on its QP (kHelloAuthOnQp) goes
  // kHello -> kChallenged -> kDone, or to kRefused (answered, closed by the
  // sweep); every other one is kNone from the start.
  enum class AuthState : uint8_t { kNone, kHello, kChallenged, kDone, kRefused };
  struct Conn {
    // Destroyed in reverse order: the QP (id) first, then its receive
    // buffers' MR and memory, then (the last reference) the session's PD.
    std::shared_ptr<VSession> vs;
    Buffer recv;
    std::optional<MemoryRegion> recv_mr;
    CmId id;
    ClientId client_id = 0;
    int poller = 0;
    bool established = false;
    uint32_t max_message = 0;  // min of ours and the client's receive slots
    uint32_t sq_depth = 0;
    uint32_t unsignalled = 0;  // its poller only: inline sends since the last signalled one
    // Set at the connect request; for a connection that authenticates on
    // its QP, null until then, set by its poller before auth_state becomes
    // kDone (release): the CM thread reads it only after that (acquire), or
    // once the connection left by_qp_.
    std::shared_ptr<internal::SessionTable::Session> session;
    uint8_t* recv_slot(uint32_t i) const { return recv.get() + size_t{i} * max_message; }
    // Authentication on the QP (verbs_server_auth.cc). `auth` is set at the
    // connect request (null: the connection does not authenticate there)
    // and used by its poller only; auth_state is written by the poller only.
    std::unique_ptr<ServerAuth> auth;
    std::atomic<AuthState> auth_state{AuthState::kNone};
    // Nanoseconds on Clock: an authenticating connection not kDone by then
    // is closed by the sweep (the poller brings it forward at a refusal).
    std::atomic<int64_t> auth_close_ns{0};
    wire::WelcomePayload welcome{};  // the welcome it gets once authenticated
    std::string peer_address;        // for the failed-authentication guard
    // OnConnect ran for it: an authenticating connection once it has its
    // session, any other once established.
    bool connected() const { return session != nullptr && (auth != nullptr || established); }
  };
  // One poller thread: its CQ (sends and receives of its connections) and
  // its send slots. Everything here is touched only by that thread, except
  // at creation and destruction.
  struct Poller {
    int index = 0;
    std::optional<CompletionChannel> comp;
    std::optional<CompletionQueue> cq;
    Buffer slots_buf;
    std::optional<MemoryRegion> slots_mr;
    std::vector<uint32_t> free_slots;
    std::deque<ibv_wc> deferred;  // receives seen while waiting for a send slot
    std::thread thread;
  };

  Status InitDevice(ibv_context* ctx);
  void CmLoop();
  void OnConnectRequest(CmEvent& ev);
  void DropConn(rdma_cm_id* id, const std::string& why);
  void Sweep();  // CM thread: connections of sessions that are over (lease, root gone)
  void PollLoop(Poller* p);
  void HandleRecv(Poller* p, const ibv_wc& wc);
  // Authentication on the QP (verbs_server_auth.cc). At the connect
  // request (CM thread): sets up c (not yet published) to authenticate
  // and turns *accept_welcome into the accept's (no key, no session).
  void StartAuthOnQp(Conn* c, wire::WelcomePayload* accept_welcome);
  // Poller: a message on a connection that has not authenticated yet.
  void HandleAuthMessage(Poller* p, Conn* c, const uint8_t* msg, uint32_t len) REQUIRES_SHARED(conns_mu_);
  // CM thread (sweep): true while c authenticates on its QP and is not
  // done; *why is then set when it is to be closed now.
  bool Unauthenticated(const Conn& c, Clock::time_point now, std::string* why) const;
  // CM thread (DropConn): c is closed; a challenge it left unanswered is a
  // failed authentication. c has left by_qp_ (its poller is done with it).
  void AuthClosed(const Conn& c, const std::string& why);
  // Poller: one SEND of `kind` (signalled, from a send slot) to c.
  void SendAuthMessage(Poller* p, Conn* c, Kind kind, uint64_t tag, std::span<const uint8_t> payload);
  // A free send slot of `p`, reaping send completions if needed.
  std::optional<uint32_t> AcquireSlot(Poller* p);
  void HandleSendWc(Poller* p, const ibv_wc& wc);
  uint8_t* slot(Poller* p, uint32_t i) const { return p->slots_buf.get() + size_t{i} * opts_.max_message; }
  // The verbs session a new connection belongs to: a root's new one, or
  // the one of the session it joins (nullptr: that session has none).
  std::shared_ptr<VSession> SessionFor(ClientId client_id, ClientId root);
  // A connection is closed: its client id is no longer a grant's owner.
  void ForgetOwner(ClientId client_id);
  // Its QP's receive buffers: `n` of c->max_message, posted.
  Status PostConnRecvs(Conn* c, uint32_t n);
  // A receive's work-request id names its connection too: a completion of a
  // dropped connection is never taken for one that reuses its QP number.
  static uint64_t RecvWrId(ClientId c, uint32_t slot) { return MakeWrId(kWrRecv, uint64_t{c} << 24 | slot); }
  static ClientId RecvClientOf(uint64_t wr_id) { return static_cast<ClientId>(WrSlotOf(wr_id) >> 24); }
  static uint32_t RecvSlotOf(uint64_t wr_id) { return static_cast<uint32_t>(WrSlotOf(wr_id) & 0xFFFFFF); }

  uint32_t next_client_id_ = 1;  // CM thread only
  std::chrono::steady_clock::time_point next_sweep_{};  // CM thread only
  size_t rr_ = 0;                // CM thread only
  uint32_t slots_per_poller_ = 0;

  // Creation order: listener, then the device's PD, region MR (confine
  // off), pollers (CQs, send slots). Destroyed in reverse by the destructor.
  std::optional<verbs::Listener> listener_;
  ibv_context* ctx_ = nullptr;
  std::optional<ProtectionDomain> pd_;
  std::optional<MemoryRegion> region_mr_;
  std::vector<std::unique_ptr<Poller>> pollers_;
  // confine off: the one VSession every connection shares (the server's PD).
  std::shared_ptr<VSession> shared_vs_;

  // confine on: each open connection's client id -> its session's VSession
  // (a member's ALLOCs are granted to its own id); the granted spans by
  // offset (a revoke finds its MR by offset, whoever the owner was); the
  // key of the MR covering each 8 KiB page of the region (0: none).
  // keys_mu_ is a leaf lock, never held while registering.
  mutable Mutex keys_mu_;
  std::unordered_map<ClientId, std::shared_ptr<VSession>> owners_ GUARDED_BY(keys_mu_);
  std::map<uint64_t, Span> spans_ GUARDED_BY(keys_mu_);
  RemoteKeys page_keys_;  // the same table a client keeps (remote_keys.h)
  uint32_t max_inline_ = 0;

  // Connections by QP number (pollers read, the CM thread writes) and by id.
  // conns_mu_ is this server's only lock besides SessionTable's (a leaf,
  // taken under conns_mu_ shared by a poller that authenticates a
  // connection); a poller holds it shared across the RequestHandler's
  // Handle and OnConnect (so a connection is dropped only between its
  // requests).
  mutable SharedMutex conns_mu_;
  std::unordered_map<uint32_t, Conn*> by_qp_ GUARDED_BY(conns_mu_);
  std::unordered_map<rdma_cm_id*, std::unique_ptr<Conn>> by_id_;  // CM thread only
  std::thread cm_thread_;
};

}  // namespace sharry::internal
