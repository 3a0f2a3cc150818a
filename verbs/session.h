// Sessions and leases, shared by the transport backends (not public API).
//
// Glossary
//   session   the connections of one client process that live and die
//             together: a root connection (a runtime's control connection,
//             the owner of its far blocks) and the members that joined it
//             by naming the root's client id in their hello (the runtime's
//             per-thread data connections). A connection that names no
//             session is the root of its own.
//   lease     with lease_ms > 0, a session from which nothing has arrived for
//             lease_ms (no request on any of its connections; the runtime
//             sends a RENEW every lease/3 when idle) is expired: every one
//             of its connections is closed and its far memory reclaimed. A
//             frozen client (SIGSTOP, a debugger, a VM pause) thus gives its
//             memory back; when it wakes, its connections are gone and a
//             reconnect naming the session is refused ("session N is gone"),
//             so it can never touch memory that now belongs to someone else.
//
// Order of teardown: when a session ends (its root closed, orderly or not,
// or its lease expired) the members are closed first and the root's
// OnDisconnect — which reclaims the session's far memory — runs only after
// the last member is closed. Until then no member can READ or WRITE a block
// that is handed to another client.
//
// Thread-safety: all methods may be called from any thread. Touch() is one
// relaxed atomic store (the request path); the rest take a mutex.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <span>
#include <unordered_map>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"
#include "verbs/auth.h"
#include "verbs/transport.h"

namespace sharry::internal {

class SessionTable {
 public:
  using Clock = std::chrono::steady_clock;

  struct Session {
    Session(ClientId r, Peer p) : root(r), peer(std::move(p)), token(auth::NewNonce()) {}
    const ClientId root;
    // Who the session is (its root's handshake): every connection that
    // joins it is this tenant.
    const Peer peer;
    // Drawn at random when the session opens and sent to its root only (in
    // the welcome): a connection joins the session by showing it.
    const std::array<uint8_t, 32> token;
    // Nanoseconds on Clock of the last request from any connection.
    std::atomic<int64_t> last_heard_ns{0};
    // Set once: the session is over; every connection of it is to be closed.
    std::atomic<bool> over{false};
    void Touch() {
      last_heard_ns.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    }
    // Guarded by SessionTable::mu_ (the analysis cannot name another
    // object's lock here; SessionTable's methods are the only writers).
    int members = 0;          // open connections besides the root
    bool root_closed = false; // the root's OnDisconnect is owed once members == 0
    // Why it is over (a string literal; for logs and refusals). Written
    // under mu_ before `over` is set, read by any thread after it.
    std::atomic<const char*> why{""};
  };

  explicit SessionTable(uint32_t lease_ms) : lease_ms_(lease_ms) {}
  uint32_t lease_ms() const { return lease_ms_; }

  // A new root connection `id` (hello.session == 0) of `peer` (its
  // tenant; peer.session is set here). Fails with kResourceExhausted and a
  // reason when peer.tenant already has max_tenant_sessions live sessions
  // (0: no limit; anonymous sessions are not counted).
  StatusOr<std::shared_ptr<Session>> OpenRoot(ClientId id, Peer peer, uint32_t max_tenant_sessions = 0)
      EXCLUDES(mu_);
  // A connection joining session `root` (hello.session == root) with the
  // session's `token`. Fails with kUnavailable and a reason when that
  // session is unknown or over, kPermissionDenied when the token is not
  // the session's (compared in constant time).
  StatusOr<std::shared_ptr<Session>> Join(ClientId root, std::span<const uint8_t> token) EXCLUDES(mu_);

  // True when the session is over or its lease has run out (then it is
  // marked over, with the reason "lease expired").
  bool Expired(Session& s, Clock::time_point now) EXCLUDES(mu_);
  // Ends the session (e.g. the server drops its root): idempotent.
  void End(Session& s, const char* why) EXCLUDES(mu_);

  // Connection `id` of session `s` closed. Returns the client ids whose
  // OnDisconnect is due now, in order: `id` itself if it is a member, then
  // the root when it was the last one out (or `id` is the root and no
  // member is left).
  std::vector<ClientId> Leave(const std::shared_ptr<Session>& s, ClientId id) EXCLUDES(mu_);

  size_t sessions() const EXCLUDES(mu_);

 private:
  const uint32_t lease_ms_;
  // A leaf lock: nothing else is taken under it. The transports call in
  // with their own locks held (loopback: LoopCore::mu_).
  mutable Mutex mu_;
  std::unordered_map<ClientId, std::shared_ptr<Session>> live_ GUARDED_BY(mu_);  // by root id
  std::unordered_map<std::string, uint32_t> tenant_sessions_ GUARDED_BY(mu_);  // live sessions per tenant
  void Forget(Session& s) REQUIRES(mu_);  // s leaves live_ (and its tenant's count)
};

}  // namespace sharry::internal
