// Memnode discovery through etcd: memnodes register themselves under a key
// prefix, runtimes watch the prefix.
//
//   memnode side   MemnodeRegistration  puts <prefix><addr> -> MemnodeInfo
//                  (memnode_info.h) attached to a lease, and keeps the lease
//                  alive from its own thread. The key lives exactly as long
//                  as the memnode: Stop() revokes the lease (the key goes at
//                  once); a memnode that dies or freezes stops renewing, and
//                  etcd deletes the key when the lease's TTL runs out.
//   runtime side   MemnodeWatcher  lists the prefix, then watches it, and
//                  tells the runtime who joined and who left.
//
// The registry in etcd (docs/discovery.md):
//
//   key    <prefix><addr>     e.g. /sharry/memnodes/10.0.0.7:7000
//   value  MemnodeInfo JSON   {"addr":"10.0.0.7:7000","transport":"tcp","uma_bytes":N,"started":unix_ms}
//   lease  the memnode's, TTL ttl_s (renewed every ttl_s/3)
//
// Errors: Start() returns why it could not (the EtcdClient's Status, naming
// the endpoint); after that both classes keep going on their own and log
// each change of their connection's state as one line on stderr
// ("memnode registration: ...", "memnode watcher: ...").
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "base/status.h"
#include "discovery/etcd_client.h"
#include "discovery/memnode_info.h"

namespace sharry::discovery {

inline constexpr char kDefaultPrefix[] = "/sharry/memnodes/";

// ---------------------------------------------------------------- memnode side

struct RegistrationOptions {
  EtcdOptions etcd;
  std::string prefix = kDefaultPrefix;  // non-empty
  MemnodeInfo info;                     // info.addr (host:port) is the key's suffix
  int ttl_s = 5;                        // 1..3600
};

struct RegistrationStats {
  uint64_t keepalives = 0;  // renewals that succeeded
  uint64_t failures = 0;    // keepalives, grants or puts that failed (each logged)
  uint64_t regrants = 0;    // times the lease was lost and the key put again
};

// Thread-safety: Stop(), the accessors and the test hook may be called from
// any thread; Stop() at most from one at a time. The keepalive thread is the
// object's own.
class MemnodeRegistration {
 public:
  // Grants a lease of o.ttl_s, puts the key with it and starts the keepalive
  // thread: it renews the lease every ttl_s/3 (at least every 100 ms). A
  // renewal that fails is logged and retried sooner (ttl_s/9, at least 100
  // ms); if the lease was lost (it expired while etcd was unreachable, or
  // etcd lost it), a new one is granted and the key put again.
  // InvalidArgument for bad options; else the etcd call's error.
  static StatusOr<std::unique_ptr<MemnodeRegistration>> Start(RegistrationOptions o);

  // Stop().
  ~MemnodeRegistration();
  MemnodeRegistration(const MemnodeRegistration&) = delete;
  MemnodeRegistration& operator=(const MemnodeRegistration&) = delete;

  // Stops and joins the keepalive thread, then revokes the lease: the key
  // disappears at once and watchers see the memnode leave. Returns the
  // revoke's error if etcd could not be told (the key then expires after
  // the TTL); a lease that had already expired is OK. Idempotent.
  Status Stop();

  const std::string& key() const;  // <prefix><addr>
  int64_t lease_id() const;        // the current lease (0 while there is none)
  RegistrationStats stats() const;

  // Test hook: the keepalive thread stops renewing (the lease then expires
  // after its TTL, as if the memnode had frozen). Stop() still revokes.
  void PauseKeepAliveForTest();

 private:
  struct Impl;
  explicit MemnodeRegistration(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------- runtime side

struct WatcherCallbacks {
  // A memnode is registered: addr is host:port (the key's suffix).
  std::function<void(const std::string& addr, const MemnodeInfo& info)> on_join;
  // It is gone: its lease was revoked or expired, or its key deleted.
  std::function<void(const std::string& addr)> on_leave;
};

struct WatcherOptions {
  EtcdOptions etcd;
  std::string prefix = kDefaultPrefix;  // non-empty
  // After the watch fails: wait, re-list, watch again; the wait doubles from
  // min to max while etcd stays unreachable.
  int min_backoff_ms = 100;
  int max_backoff_ms = 2000;
};

struct WatcherStats {
  uint64_t joins = 0;
  uint64_t leaves = 0;
  uint64_t watch_failures = 0;  // watches that ended (each logged)
  uint64_t relists = 0;         // re-lists after a failed watch that succeeded
  uint64_t bad_values = 0;      // keys under the prefix whose value is not a MemnodeInfo (ignored)
};

// The callbacks run one at a time, never concurrently: first on the thread
// that calls Start() (the memnodes registered at the time), then on the
// watcher's own thread. They must not throw or call Stop(). The set they
// describe is the set of keys under the prefix whose value decodes as a
// MemnodeInfo with the key's addr; a key whose value changes (a memnode
// restarted at the same address before its old lease ran out) is a leave
// and a join.
//
// When the watch fails (etcd restarted, compacted the watched revision, the
// connection dropped) the watcher lists the prefix again and delivers the
// difference to what it had told, so no join or leave is lost, only
// coalesced: a memnode that left and came back while the watch was down is
// seen as still there (or as a leave and a join, if its MemnodeInfo changed).
//
// Thread-safety: Snapshot() and stats() from any thread; Stop() from one
// thread, not from a callback.
class MemnodeWatcher {
 public:
  // Lists the prefix (RangePrefix), delivers on_join for each memnode found,
  // then starts the watch thread from the list's revision + 1. Returns the
  // list's error (etcd unreachable) or InvalidArgument for bad options.
  static StatusOr<std::unique_ptr<MemnodeWatcher>> Start(WatcherOptions o, WatcherCallbacks cb);

  // Stop().
  ~MemnodeWatcher();
  MemnodeWatcher(const MemnodeWatcher&) = delete;
  MemnodeWatcher& operator=(const MemnodeWatcher&) = delete;

  // Ends the watch and joins the thread, promptly (a stop request wakes any
  // etcd call in progress). No callback runs after it returns. Idempotent.
  void Stop();

  // The memnodes as the callbacks have described them so far (updated just
  // before each callback runs).
  std::map<std::string, MemnodeInfo> Snapshot() const;
  WatcherStats stats() const;

 private:
  struct Impl;
  explicit MemnodeWatcher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sharry::discovery
