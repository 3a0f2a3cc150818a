// The transport seam: the narrow interface through which compute/ and
// memnode/ talk, with two backends that run the SAME server code:
//
//   kVerbs  RDMA RC through rdma_cm (the primary path). One-sided READ and
//           WRITE go straight between a local buffer and the server's
//           region (one memory region for a bare transport; with
//           ServerOptions::confine a memory region per granted span in the
//           session's own protection domain: RegionKeys); requests are SENDs
//           into each connection's receive queue, served by poller threads.
//   kTcp    For hosts without RDMA (the paper's prototype used TCP). The
//           server serves READ and WRITE itself by copying to and from the
//           region; requests go to the same RequestHandler.
//   kLoopback In-process, for tests only (not a production transport): the
//           client calls the server's RequestHandler and copies to and from
//           its region directly, no sockets; servers are found by port in a
//           process-wide registry. It carries deterministic fault injection
//           (verbs/fault_injection.h) so that error paths are unit tests.
//
// Glossary
//   region      the memory a server exposes (for the memnode: the UMA). A
//               client names bytes in it by offset in [0, region_size);
//               the verbs backend turns an offset into an address by one
//               addition (flat mapping).
//   request     an opaque message to the server's RequestHandler; its
//               response comes back with the same tag.
//   client id   a number the server gives each connection (never 0), the
//               key for per-client ownership on the server.
//
// Thread-safety: a TransportClient is owned by one thread at a time (no
// internal locking on the data path); open one per thread, as eRPC does.
// A TransportServer runs its own threads and calls the RequestHandler from
// its poller threads concurrently (one call per request, several pollers).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/backoff.h"
#include "base/status.h"
#include "verbs/auth.h"

namespace sharry {

enum class TransportKind { kVerbs, kTcp, kLoopback };
std::string_view TransportName(TransportKind k);
// "verbs", "tcp" or "loopback" (also "rdma" for verbs).
StatusOr<TransportKind> ParseTransport(std::string_view name);

using ClientId = uint32_t;

// Who a connection is, as its handshake established (issue #11).
struct Peer {
  ClientId session = 0;  // its session's root (itself for a root connection)
  std::string tenant;    // the tenant it authenticated as; empty: anonymous
  bool admin = false;    // authenticated with the tenants file's admin secret
                         // (tenant is then empty): may see every client's STATS
};

// Runs on the server's poller threads. Implementations must be thread-safe.
class RequestHandler {
 public:
  virtual ~RequestHandler() = default;
  // A client connected / went away (orderly or not). Called once each, from
  // the server's connection thread (verbs: OnConnect of a connection that
  // authenticates on its QP from its poller thread); OnConnect after the
  // handshake (and its authentication) succeeded, before the client's first
  // request.
  virtual void OnConnect(ClientId, const Peer&) {}
  virtual void OnDisconnect(ClientId) {}
  // Handles one request and writes the response into `response` (its size is
  // the largest response allowed). Returns the response length; 0 is a valid
  // empty response.
  virtual size_t Handle(ClientId client, std::span<const uint8_t> request,
                        std::span<uint8_t> response) = 0;
};

// Confinement of one-sided access (issue #11, docs/tenants.md): which
// session may touch which bytes of the region. The tcp and loopback servers
// call Pin(session, offset, length) before they copy to or from those bytes
// for a connection of `session` (its root's client id) and Unpin after the
// copy; a false Pin refuses the access (kPermissionDenied). A pin is never
// held while the server waits for a peer. Over verbs the NIC enforces it:
// see RegionKeys.
class RegionAccess {
 public:
  virtual ~RegionAccess() = default;
  [[nodiscard]] virtual bool Pin(uint32_t session, uint64_t offset, uint64_t length) = 0;
  virtual void Unpin(uint64_t offset, uint64_t length) = 0;
};

// Confinement over verbs (ServerOptions::confine; docs/tenants.md "Verbs
// confinement"): the memnode tells the transport when a span of the region
// becomes client `owner`'s and when it stops being anyone's; the verbs
// server then registers the span as a memory region in the protection
// domain of that client's session, and deregisters it on Revoke — after
// which no key the owner was given reaches those bytes. RemoteKey(offset)
// is the key of the memory region covering `offset` now (0: none), which
// the memnode returns with each ALLOC. Grant/Revoke follow the allocator's
// SpanObserver contract (never concurrently for overlapping ranges);
// RemoteKey may be called from any thread.
class RegionKeys {
 public:
  virtual ~RegionKeys() = default;
  virtual void Grant(ClientId owner, uint64_t offset, uint64_t bytes) = 0;
  virtual void Revoke(ClientId owner, uint64_t offset, uint64_t bytes) = 0;
  virtual uint32_t RemoteKey(uint64_t offset) const = 0;
};

class RemoteKeys;  // verbs/remote_keys.h: a client's keys to its far blocks

struct ServerOptions {
  std::string listen_addr = "0.0.0.0";  // verbs: an address of the RDMA netdev
  uint16_t port = 0;                    // 0: pick a free port; see port()
  void* region = nullptr;               // exposed memory; stays owned by the caller
  size_t region_size = 0;
  int num_pollers = 1;                  // threads that serve requests
  std::vector<int> poller_cores;        // core per poller; empty or -1: not pinned
  uint32_t max_message = 8192;          // header + payload, both directions
  uint32_t recv_depth = 512;            // verbs: response send slots per poller (+64); each
                                        // connection posts `credits` receives of its own
  uint32_t credits = 32;                // requests one client may have in flight
  int max_clients = 256;                // connections that said hello, served at once
  // Hostile or failing peers (docs/security.md). Every connection is counted
  // from accept: at most max_clients greeted plus max_handshakes that have
  // not said hello yet; past that a connection is refused with a reason.
  int max_handshakes = 64;
  int handshake_timeout_ms = 5000;      // tcp: no hello by then -> closed; verbs: not authenticated
  // tcp backpressure: while a connection's unsent replies exceed this, its
  // requests are not read; if it then takes nothing for stall_timeout_ms it
  // is dropped. Memory per connection <= max_unsent_bytes + one reply.
  size_t max_unsent_bytes = 4u << 20;
  int stall_timeout_ms = 10000;
  int linger_ms = 1000;                 // tcp: a closing connection's last replies get this long
  int keepalive_s = 10;                 // tcp: keepalive idle time (probes every s/3, 3 of them); 0 off
  uint32_t lease_ms = 0;                // 0: no lease; else see verbs/session.h
  BackoffOptions backoff;
  // Null: every client may READ and WRITE the whole region (a bare
  // transport). The memnode sets its page-owner map.
  RegionAccess* region_access = nullptr;
  // verbs: false (a bare transport): the region is one memory region whose
  // key every client gets in its welcome. true (the memnode): each session
  // gets its own protection domain, holding a memory region per span
  // granted to it (region_keys()); the welcome carries no key.
  bool confine = false;
  // Who may connect (verbs/auth.h, docs/security.md). Null: anonymous
  // clients only (a bare transport; the memnode without --tenants_file).
  std::shared_ptr<const auth::ServerCredentials> credentials;
  // An address with auth_max_failures failed handshakes within
  // auth_window_s is refused at accept for auth_cooldown_s (0 failures: no
  // limit). Every local client shares 127.0.0.1: docs/security.md.
  int auth_max_failures = 10;
  int auth_window_s = 60;
  int auth_cooldown_s = 60;
};

// Failed authentications a server has seen (AuthGuard, auth_guard.h).
struct AuthCounters {
  uint64_t failures = 0;      // failed handshakes
  uint64_t rate_limited = 0;  // connections refused at accept for too many failures
  std::map<std::string, uint64_t> failures_by_tenant;  // "" = no credentials given; "(unknown)"
};

class TransportServer {
 public:
  // Starts serving (threads running) or says why it cannot.
  static StatusOr<std::unique_ptr<TransportServer>> Start(TransportKind kind,
                                                          const ServerOptions& options,
                                                          RequestHandler* handler);
  virtual ~TransportServer() = default;  // stops and joins every thread
  virtual uint16_t port() const = 0;
  virtual size_t num_clients() const = 0;
  virtual TransportKind kind() const = 0;
  virtual AuthCounters auth_counters() const { return {}; }
  // verbs with confine: where the memnode reports grants and asks for keys
  // (see RegionKeys); null otherwise.
  virtual RegionKeys* region_keys() { return nullptr; }
};

struct ClientOptions {
  std::string server_addr = "127.0.0.1";
  uint16_t port = 0;
  int connect_timeout_ms = 3000;  // per attempt
  int connect_attempts = 3;       // with a doubling pause between attempts
  int op_timeout_ms = 10000;      // a one-sided op or a request without answer -> dead
  uint32_t max_message = 8192;
  uint32_t max_inflight = 32;     // requests in flight (the server may grant fewer)
  ClientId session = 0;           // 0: a session of its own; else join that one (verbs/session.h)
  std::array<uint8_t, 32> session_token{};  // joining: the token of that session (ConnectionInfo)
  // Credentials (verbs/auth.h): the tenant to authenticate as ("admin" for
  // the tenants file's admin) and its secret. Empty tenant: anonymous.
  std::string tenant;
  auth::Secret secret;
  size_t staging_bytes = 4u << 20;  // verbs: bounce buffer for unregistered memory
  // verbs: the keys to this session's far blocks, shared by the session's
  // connections (a joining connection passes its root's keys()); null: the
  // connection keeps its own.
  std::shared_ptr<RemoteKeys> keys;
  BackoffOptions backoff{false, 20000, 10};
};

// One one-sided operation of a batch.
struct RemoteOp {
  uint64_t offset;  // in the server's region
  void* local;      // destination of a read, source of a write
  size_t length;
};

// What a client learns at connect time.
struct ConnectionInfo {
  ClientId client_id = 0;
  uint64_t region_size = 0;
  uint64_t region_addr = 0;  // verbs only: base virtual address on the server
  uint32_t rkey = 0;         // verbs only: the whole region's key; 0: confined, one key per block (keys())
  uint32_t max_message = 0;  // negotiated
  uint32_t credits = 0;      // requests in flight allowed
  uint32_t max_inline = 0;   // verbs only: inline bytes the QP allows
  uint32_t lease_ms = 0;     // the server's lease (0: none): renew at least every lease/3
  ClientId session = 0;      // the session this connection belongs to (its root's client id)
  std::array<uint8_t, 32> session_token{};  // a root's: what its session's other connections show to join
};

class TransportClient {
 public:
  // Connects, retrying as the options say; a server that is not there gives
  // kUnavailable or kTimeout naming the address.
  static StatusOr<std::unique_ptr<TransportClient>> Connect(TransportKind kind,
                                                            const ClientOptions& options);
  virtual ~TransportClient() = default;
  virtual TransportKind kind() const = 0;
  virtual const ConnectionInfo& info() const = 0;

  // Registers [addr, addr+len) for zero-copy one-sided operations (verbs: one
  // memory region; tcp: nothing to do). Memory not registered is staged
  // through a bounce buffer. The memory must outlive the client.
  virtual Status RegisterLocal(void* addr, size_t len) = 0;

  // Copies [offset, offset+len) of the remote region into dst / from src.
  // An out-of-range request fails with kOutOfRange and leaves the connection
  // usable; a failure of the connection itself makes it dead (alive() false,
  // every later call fails with the first error).
  // (By default one-op batches; a backend may do better.)
  virtual Status Read(uint64_t offset, void* dst, size_t len);
  virtual Status Write(uint64_t offset, const void* src, size_t len);
  // Many operations posted together (verbs: one chain, one doorbell, one
  // signalled completion per chain). All-or-error.
  virtual Status ReadBatch(std::span<const RemoteOp> ops) = 0;
  virtual Status WriteBatch(std::span<const RemoteOp> ops) = 0;

  // One request/response round trip. `response` is reused (no allocation
  // when its capacity suffices).
  virtual Status Call(std::span<const uint8_t> request, std::vector<uint8_t>* response);
  // Many requests in flight at once (up to the credits; more are pipelined);
  // responses[i] answers requests[i].
  virtual Status CallMany(std::span<const std::span<const uint8_t>> requests,
                          std::vector<std::vector<uint8_t>>* responses) = 0;

  // verbs to a confining server: the table of keys of this session's far
  // blocks, which READ and WRITE look up; whoever learns a block's key (the
  // memnode client, from the ALLOC reply) records it there. Null otherwise.
  virtual std::shared_ptr<RemoteKeys> keys() const { return nullptr; }

  virtual bool alive() const = 0;
  // The error that killed the connection (OK while alive).
  virtual Status dead_reason() const = 0;
};

// Checks that [offset, offset+len) is inside a region of `size` bytes,
// without overflow. Shared by both backends and the memnode.
Status CheckRange(uint64_t offset, uint64_t len, uint64_t size, std::string_view what);

}  // namespace sharry
