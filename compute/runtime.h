// The compute runtime: what an application links to use far memory.
//
// Glossary
//   object        a trivially copyable blob of up to max_object_bytes, the
//                 unit of swapping; it lives either locally or far.
//   RemoteObject  the unique owner of one object (move-only); RemotePtr<T>
//                 (remote_ptr.h) is its typed form.
//   DerefScope    while a scope lives, every object dereferenced through it
//                 stays local at the same address (pinned); the evictor
//                 never touches a pinned object.
//   local budget  bytes of object data kept locally; past it, cold objects
//                 (CLOCK over hot bits) are swapped out.
//   Unique-Copy   (default, paper 4.2) an object is either local or far,
//                 never both: swap-out allocates a far block and WRITEs the
//                 data there; swap-in READs it back and queues a FREE of the
//                 far block; queued FREEs go out in batches of free_batch,
//                 always keeping the newest evict_batch blocks queued. A
//                 queued block of the right size is reused by the next
//                 swap-out, which then needs no ALLOC at all: the far memory
//                 held stays within working set - local + free_batch +
//                 evict_batch blocks, and steady swapping costs no
//                 allocation RPCs.
//   Multi-Copy    (as AIFM) the far block is allocated at the first swap-out
//                 and kept; later swap-outs write back only dirty objects; it
//                 is freed only when the object is destroyed.
//
// Threading model
//   - A Runtime is shared by all threads of the application.
//   - The local-hit path (DerefScope::Pin on a present object) is one CAS on
//     the object's metadata word: no lock, no system call.
//   - Misses, allocation of objects and eviction take the slow path:
//     object data moves over per-thread data connections (one-sided READ and
//     WRITE, one per thread, created on first use), while ALLOC and FREE go
//     over ONE control connection (the memnode's owner of all our blocks),
//     guarded by a mutex. One thread evicts at a time; the others go on.
//   - Eviction: the thread that takes local usage past the budget evicts
//     (synchronously) down to one batch below it. With evict_thread (off by
//     default: on a 2-core tcp host it measured no faster, see
//     docs/compute.md) a background evictor thread swaps out ahead: when
//     usage passes the low watermark (budget - evict_ahead_bytes) the thread
//     that pushed it there only signals the evictor, which swaps out batches
//     on its own data connection until usage is one batch below that mark;
//     the application goes on meanwhile. Either way the budget is a bound:
//     local usage <= budget + budget/8 + one object per thread.
//   - The prefetch thread (prefetch_thread) serves Prefetch() and sends full
//     FREE batches; it is a separate thread from the evictor, so a prefetch
//     never waits behind an eviction round.
//   - A DerefScope belongs to the thread that made it.
//   - Failures (docs/compute.md, "When the memnode fails"): one health state
//     for the memnode. Every far access holds a shared lock and fails at once
//     while the runtime is unhealthy; the first dead connection starts one
//     reconnector thread. A lost control connection means the memnode
//     reclaims all our blocks: far-only objects are marked lost, never read.
//     Local usage is held to budget + budget/8 (+ one object per thread) even
//     when nothing can be evicted: New() and swap-ins past it fail.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "compute/object.h"
#include "memnode/client.h"
#include "verbs/transport.h"

namespace sharry::compute {

enum class CopyMode { kUniqueCopy, kMultiCopy };

// The far "offset" of an object lost with the far memory (kFar set, not
// present): no real block has it (UMA offsets are aligned and below 2^48-1).
inline constexpr uint64_t kLostFar = meta::kAddrMask;
std::string_view CopyModeName(CopyMode m);
StatusOr<CopyMode> ParseCopyMode(std::string_view s);  // "unique" / "multi"

struct RuntimeOptions {
  TransportKind transport = TransportKind::kTcp;
  std::string memnode_addr = "127.0.0.1";
  uint16_t memnode_port = 7000;
  uint64_t local_budget_bytes = 64u << 20;
  CopyMode mode = CopyMode::kUniqueCopy;
  uint32_t max_object_bytes = 1u << 20;  // the largest object New() accepts
  uint32_t free_batch = 64;              // Unique-Copy: far blocks freed per FREE RPC (beyond
                                         // evict_batch kept queued for reuse by swap-outs)
  uint32_t evict_batch = 64;             // objects swapped out per eviction round
  bool prefetch_thread = true;           // a background thread serves Prefetch() and sends
                                         // full FREE batches off the swap-in path
  bool evict_thread = false;             // a background evictor swaps out ahead of the budget,
                                         // off the application's threads (see the threading model;
                                         // off: no gain measured on a 2-core box, docs/compute.md)
  uint64_t evict_ahead_bytes = 0;        // evict_thread: the evictor starts this far below the
                                         // budget; 0 = a quarter of one eviction batch of
                                         // min(budget/16, evict_batch x 4 KiB); at most budget/2
  int connect_timeout_ms = 3000;         // Create(): the first connection (per attempt)
  int connect_attempts = 3;              // Create(): attempts, with a doubling pause
  // Failure handling (see "When the memnode fails" in docs/compute.md).
  int op_timeout_ms = 2000;              // a READ/WRITE/RPC unanswered this long kills its connection
                                         // (a stopped memnode is noticed within this)
  int reconnect_attempts = 3;            // after a connection failure: connects tried in the background,
                                         // one at a time; then the runtime gives up (permanently failed)
  int reconnect_timeout_ms = 500;        // each reconnect attempt's connect timeout
  int reconnect_pause_ms = 250;          // pause before the 2nd attempt, doubling after each
                                         // (defaults: all attempts over within ~3.3 s)
};

struct RuntimeStats {
  uint64_t objects = 0;           // live objects
  uint64_t local_objects = 0;     // of which present locally (a scan of the headers)
  uint64_t pinned_objects = 0;    // of which pinned by a live scope
  uint64_t hot_objects = 0;       // of which hot
  uint64_t local_bytes = 0;       // object data held locally
  uint64_t peak_local_bytes = 0;  // the most ever held locally (the budget's real bound)
  uint64_t far_bytes = 0;         // object data with a far copy (requested sizes)
  uint64_t pending_free_blocks = 0;  // Unique-Copy: far blocks queued for FREE
  uint64_t pending_free_bytes = 0;
  uint64_t local_hits = 0;        // pins of present objects
  uint64_t swap_ins = 0;
  uint64_t swap_outs = 0;         // objects written far
  uint64_t drops = 0;             // Multi-Copy: clean objects dropped without a write
  uint64_t eviction_rounds = 0;
  uint64_t background_rounds = 0; // of which run by the evictor thread
  uint64_t sync_rounds = 0;       // of which run by an application thread past the budget
  uint64_t prefetches = 0;
  uint64_t alloc_rpcs = 0, free_rpcs = 0;
  uint64_t recycled_blocks = 0;   // swap-outs that reused a queued far block (no ALLOC, no FREE)
  // Failures (docs/compute.md, "When the memnode fails").
  uint64_t failed_far_accesses = 0;  // swap-ins, swap-out rounds, FREE/STATS RPCs that failed for want of
                                     // the memnode (unreachable, reconnecting, far data lost)
  uint64_t connection_failures = 0;  // times the runtime went unhealthy
  uint64_t lease_renewals = 0;       // RENEWs sent (the memnode announced a lease)
  uint64_t reconnects = 0;           // times it became healthy again
  uint64_t lost_objects = 0, lost_bytes = 0;  // objects whose only copy was far when the far memory was lost
  uint64_t far_exhausted = 0;        // times far memory ran out (ALLOC refused), each episode counted once
  uint64_t refused_local = 0;        // New() and swap-ins refused at the local bound (kResourceExhausted)
  double hit_rate() const {
    uint64_t t = local_hits + swap_ins;
    return t ? static_cast<double>(local_hits) / t : 1.0;
  }
  // The counters since `before` (an earlier Stats() of the same runtime):
  // every event count is this minus before; the levels (objects, bytes,
  // peaks, pending frees) are this snapshot's.
  RuntimeStats Since(const RuntimeStats& before) const {
    RuntimeStats d = *this;
    for (auto m : {&RuntimeStats::local_hits, &RuntimeStats::swap_ins, &RuntimeStats::swap_outs,
                   &RuntimeStats::drops, &RuntimeStats::eviction_rounds, &RuntimeStats::background_rounds,
                   &RuntimeStats::sync_rounds, &RuntimeStats::prefetches, &RuntimeStats::alloc_rpcs,
                   &RuntimeStats::free_rpcs, &RuntimeStats::recycled_blocks, &RuntimeStats::failed_far_accesses,
                   &RuntimeStats::connection_failures, &RuntimeStats::lease_renewals, &RuntimeStats::reconnects,
                   &RuntimeStats::lost_objects, &RuntimeStats::lost_bytes, &RuntimeStats::far_exhausted,
                   &RuntimeStats::refused_local})
      d.*m -= before.*m;
    return d;
  }
};

class Runtime;

// Pins objects for its lifetime. Not copyable, not movable, one thread.
class DerefScope {
 public:
  explicit DerefScope(Runtime& rt);
  ~DerefScope();
  DerefScope(const DerefScope&) = delete;
  DerefScope& operator=(const DerefScope&) = delete;
  Runtime& runtime() const { return rt_; }
  size_t pinned() const { return n_inline_ + overflow_.size(); }

 private:
  friend class Runtime;
  // The object, if this scope already pins it (the last few pins are
  // checked): a repeated dereference then costs no atomic operation.
  bool Holds(const ObjectHeader* h) const {
    for (uint32_t i = n_inline_; i > 0 && i + 4 > n_inline_; --i)
      if (inline_[i - 1] == h) return true;
    for (size_t i = overflow_.size(); i > 0 && i + 4 > overflow_.size(); --i)
      if (overflow_[i - 1] == h) return true;
    return false;
  }
  void Add(ObjectHeader* h) {
    if (n_inline_ < kInline) inline_[n_inline_++] = h;
    else overflow_.push_back(h);
  }
  static constexpr uint32_t kInline = 8;  // no allocation for scopes of up to 8 objects
  Runtime& rt_;
  ObjectHeader* inline_[kInline];
  uint32_t n_inline_ = 0;
  uint32_t hits_ = 0;  // local hits, added to the runtime's count once, at the end
  std::vector<ObjectHeader*> overflow_;
  std::thread::id owner_;
  bool alive_ = true;
};

// The unique owner of one object.
class RemoteObject {
 public:
  RemoteObject() = default;
  RemoteObject(RemoteObject&& o) noexcept : rt_(o.rt_), h_(o.h_) { o.h_ = nullptr; }
  RemoteObject& operator=(RemoteObject&& o) noexcept;
  ~RemoteObject() { Reset(); }
  void Reset();  // destroys the object (its local memory and far block)

  explicit operator bool() const { return h_ != nullptr; }
  uint32_t size() const { return h_->size; }
  bool is_local() const { return meta::Is(h_->word.load(std::memory_order_acquire), meta::kPresent); }
  bool has_far_copy() const {
    const uint64_t m = h_->word.load(std::memory_order_acquire);
    return meta::Is(m, meta::kFar) && meta::Addr(m) != kLostFar;
  }
  // The far memory holding the object's only copy was lost (the memnode, or
  // our control connection to it, went away): Deref fails for good.
  bool lost() const {
    const uint64_t m = h_->word.load(std::memory_order_acquire);
    return !meta::Is(m, meta::kPresent) && meta::Is(m, meta::kFar) && meta::Addr(m) == kLostFar;
  }
  uint64_t word() const { return h_->word.load(std::memory_order_acquire); }

  // The object's data, local and pinned until `scope` ends. `write` marks it
  // dirty. Fails only if a swap-in is needed and cannot be done:
  //   kUnavailable  the memnode is unreachable or the runtime is reconnecting
  //                 (the object is unchanged; a later call may succeed)
  //   kDataLoss     the object was lost with the far memory ("far memory
  //                 lost": for good, see lost())
  //   kResourceExhausted  local usage is at its bound (budget + budget/8)
  //                 and far memory is exhausted or refused
  StatusOr<void*> Deref(DerefScope& scope, bool write) const;
  // Asks the runtime to bring the object local in the background.
  void Prefetch() const;

 private:
  friend class Runtime;
  RemoteObject(Runtime* rt, ObjectHeader* h) : rt_(rt), h_(h) {}
  Runtime* rt_ = nullptr;
  ObjectHeader* h_ = nullptr;
};

class Runtime {
 public:
  static StatusOr<std::unique_ptr<Runtime>> Create(const RuntimeOptions& options);
  ~Runtime();  // REQUIRES: every RemoteObject and DerefScope is gone

  // A new object of `size` bytes, local, zero-filled (or copied from `init`).
  // kInvalidArgument for 0 or above max_object_bytes.
  StatusOr<RemoteObject> New(uint32_t size, const void* init = nullptr);

  // Swaps one object out now (if unpinned and local); returns why not, e.g.
  // kOutOfMemory when far memory is exhausted — then it stays local.
  Status SwapOut(const RemoteObject& obj);
  // Runs eviction until local usage is within the budget (normally automatic).
  Status EvictToBudget();
  // Sends the queued FREEs now (Unique-Copy batches them).
  Status FlushFrees();
  // Waits until the background evictor is between rounds with no signal
  // pending (returns at once without it). While a round is in flight its
  // victims are still local AND already hold far blocks, so take accounting
  // snapshots (far vs local bytes) after this, with no other thread running.
  void WaitEvictorIdle();

  RuntimeStats Stats() const;
  // The memnode's view (STATS over the control connection).
  StatusOr<memnode::Stats> MemnodeStats();
  // Our client id at the memnode (owner of our far blocks).
  // (A new one after a reconnect.)
  ClientId control_client_id() const { return control_id_.load(std::memory_order_acquire); }
  // The last automatic eviction error (OK if none): e.g. far memory exhausted.
  Status eviction_status() const;
  // OK while the memnode is reachable and no far data was lost; otherwise the
  // error, naming the memnode and what happened, e.g. "memnode 127.0.0.1:7000
  // unreachable since 2.1 s: ...". A loss of far memory (kDataLoss, "far
  // memory lost: ...") is permanent: health() reports it even after the
  // runtime reconnected and carries on with the objects that survived.
  Status health() const;
  // The largest local usage New() and swap-ins admit: budget + budget/8 (each
  // thread may overshoot it by the one object it is adding).
  uint64_t local_limit_bytes() const { return local_limit_; }
  const RuntimeOptions& options() const { return opts_; }

 private:
  friend class RemoteObject;
  friend class DerefScope;
  explicit Runtime(const RuntimeOptions& o);
  Status Init();

  // Slow and fast paths.
  StatusOr<void*> Pin(DerefScope& scope, ObjectHeader* h, bool write);
  void Unpin(ObjectHeader* h) { h->word.fetch_sub(meta::kPinOne, std::memory_order_release); }
  Status SwapIn(ObjectHeader* h, uint64_t busy_word);
  void Destroy(ObjectHeader* h);
  // Local usage went up: signal the evictor past the low watermark; evict
  // here only past the budget.
  void MaybeEvict();
  // drops_only: only objects that already hold a far block (Multi-Copy,
  // when far memory is exhausted).
  Status Evict(uint64_t bytes_to_free, ObjectHeader* only, bool drops_only = false);
  void AddLocal(uint64_t size);  // local_bytes_ += size, and the peak
  void RecordEvictionError(const Status& s);
  void SignalEvictor();
  void EvictorLoop();
  // guard_held: the caller holds a FarGuard (then a full queue may be FREEd here).
  Status QueueFree(uint64_t offset, uint32_t size, bool guard_held);
  // FREEs all queued blocks but the newest `keep`.
  Status FlushFreesLocked(std::unique_lock<std::mutex>& control_lock, size_t keep);
  size_t FreeReserve() const;  // queued blocks kept for reuse by swap-outs
  void PrefetchLoop();
  void EnqueuePrefetch(ObjectHeader* h);

  // Object headers: chunks of kChunk at stable addresses.
  static constexpr size_t kChunk = 4096;
  ObjectHeader* AllocHeader();
  void FreeHeader(ObjectHeader* h);
  ObjectHeader* HeaderAt(size_t i) const { return &chunks_[i / kChunk][i % kChunk]; }

  // This thread's data connection. REQUIRES: a FarGuard held. Errors are
  // kUnavailable (already counted as failed accesses).
  StatusOr<TransportClient*> DataConnection();

  // ---- health: the one place that decides whether the memnode is usable.
  // Every far access (swap-in, swap-out round, FREE, STATS) holds a FarGuard
  // (shared epoch_mu_) for its duration; BeginFar fails at once, without a
  // network wait, while the runtime is unhealthy or reconnecting. The first
  // failed connection marks it unhealthy and starts the reconnector thread
  // (at most one), which takes epoch_mu_ exclusively to replace connections.
  // Hook for the memnode's client lease: a heartbeat (MemnodeClient::Renew)
  // would report its failure through OnFarFailure, like any far access.
  using FarGuard = std::shared_lock<std::shared_mutex>;
  Status BeginFar(FarGuard* guard);
  // A far access failed because a connection died (`s` says why): record it.
  void OnFarFailure(const Status& s);
  Status FailedAccess(Status s);  // counts it, returns it
  // OnFarFailure(s), then the failed access `what` as kUnavailable (counted).
  Status ConnectionFailed(const Status& s, std::string_view what);
  Status UnhealthyStatus() const;  // the recorded error, with its age
  void ReconnectLoop();
  // REQUIRES: epoch_mu_ held exclusively. The control connection is gone, so
  // the memnode reclaims (or has reclaimed) every block we held: marks
  // far-only objects lost, drops Multi-Copy far copies of local objects.
  void MarkFarMemoryLost(const Status& why);
  // Room for `size` more local bytes within local_limit_, evicting if need be.
  // swap_in: a swap-in may overshoot by its own object (Unique-Copy: it frees
  // the far block the next eviction reuses).
  Status MakeRoom(uint64_t size, bool swap_in);
  void NoteAllocResult(const Status& s, bool any_refused);
  std::string MemnodeName() const;

  RuntimeOptions opts_;
  ClientOptions conn_opts_;
  std::atomic<ClientId> control_id_{0};

  std::mutex control_mu_;  // the control connection and the pending frees
  // Used under a FarGuard + control_mu_; replaced under epoch_mu_ exclusive
  // + control_mu_ (so the reconnector's probe needs only epoch_mu_).
  std::unique_ptr<memnode::MemnodeClient> control_;
  // Far blocks this runtime no longer needs (Unique-Copy swap-ins, destroyed
  // objects): reused by the next swap-out of the same size, or sent back in
  // one FREE once free_batch of them are queued (delayed reclamation).
  struct FreeBlock { uint64_t offset; uint32_t size; };
  std::vector<FreeBlock> pending_free_;                        // GUARDED_BY(control_mu_)
  uint64_t pending_free_bytes_ = 0;                            // GUARDED_BY(control_mu_)

  std::mutex conns_mu_;
  std::vector<std::unique_ptr<TransportClient>> data_conns_;   // GUARDED_BY(conns_mu_)
  std::atomic<uint64_t> conn_epoch_{1};  // bumped (epoch_mu_ exclusive) when data connections are replaced

  // Health (see BeginFar).
  enum HealthState : int { kHealthy = 0, kReconnecting = 1, kFailed = 2 };
  std::shared_mutex epoch_mu_;
  std::atomic<int> health_{kHealthy};
  mutable std::mutex health_mu_;
  Status health_status_;                                       // GUARDED_BY(health_mu_): why not healthy
  Status loss_status_;                                         // GUARDED_BY(health_mu_): far memory lost (sticky)
  std::chrono::steady_clock::time_point unhealthy_since_;      // GUARDED_BY(health_mu_)
  bool reconnector_stop_ = false;                              // GUARDED_BY(health_mu_)
  std::condition_variable health_cv_;
  std::thread reconnector_;                                    // GUARDED_BY(health_mu_)

  // The lease (docs/security.md): while the memnode announces one, this
  // thread sends a RENEW on the control connection every lease/3, so a
  // runtime whose threads only hit locally (or only use one-sided verbs)
  // keeps its far memory; a failed RENEW is a far failure like any other
  // (so a dead memnode is noticed even by a workload that never misses).
  void LeaseLoop();
  std::mutex lease_mu_;
  std::condition_variable lease_cv_;
  bool lease_stop_ = false;                                    // GUARDED_BY(lease_mu_)
  std::atomic<uint64_t> renewals_{0};
  std::thread lease_thread_;
  std::atomic<bool> far_exhausted_{false};
  std::atomic<bool> exhausted_said_{false};
  uint64_t local_limit_ = 0;
  const uint64_t instance_;  // distinguishes runtimes in thread-local caches

  std::mutex headers_mu_;
  std::unique_ptr<ObjectHeader[]> chunks_[1 << 14];            // up to 64 M objects
  std::atomic<size_t> high_water_{0};                          // slots ever used
  std::vector<ObjectHeader*> free_headers_;                    // GUARDED_BY(headers_mu_)

  std::mutex evict_mu_;   // one evicting thread at a time (the evictor or an application thread)
  size_t clock_hand_ = 0; // GUARDED_BY(evict_mu_)
  mutable std::mutex evict_status_mu_;
  Status evict_status_;   // GUARDED_BY(evict_status_mu_)

  // Watermarks (bytes of local object data), fixed at Init:
  //   budget          past it, an application thread evicts synchronously
  //   sync_target_    ... down to here (budget - one batch)
  //   evict_start_    past it, the evictor is signalled (budget without one)
  //   evict_target_   the evictor swaps out down to here (evict_start_ - one batch)
  uint64_t sync_target_ = 0, evict_start_ = 0, evict_target_ = 0;

  std::atomic<uint64_t> local_bytes_{0}, peak_local_bytes_{0}, far_bytes_{0}, objects_{0};
  mutable std::atomic<uint64_t> hits_{0}, swap_ins_{0}, swap_outs_{0}, drops_{0}, rounds_{0},
      background_rounds_{0}, sync_rounds_{0}, prefetches_{0}, alloc_rpcs_{0}, free_rpcs_{0}, recycled_{0},
      failed_far_{0}, connection_failures_{0}, reconnects_{0}, lost_objects_{0}, lost_bytes_{0},
      far_exhausted_count_{0}, refused_local_{0};

  // The evictor thread (evict_thread). evict_wanted_ is set by the thread
  // that signals (once per wake-up: no lock or syscall while it is set) and
  // cleared by the evictor before it looks at usage, so no signal is lost.
  std::mutex evictor_mu_;
  std::condition_variable evictor_cv_;
  std::atomic<bool> evict_wanted_{false};
  bool evictor_stop_ = false;                                  // GUARDED_BY(evictor_mu_)
  bool evictor_busy_ = false;                                  // GUARDED_BY(evictor_mu_): in its rounds
  std::condition_variable evictor_idle_cv_;                    // evictor_busy_ went false
  std::thread evictor_;

  std::mutex prefetch_mu_;
  std::condition_variable prefetch_cv_;
  std::deque<ObjectHeader*> prefetch_q_;                       // GUARDED_BY(prefetch_mu_)
  bool flush_wanted_ = false;                                  // GUARDED_BY(prefetch_mu_)
  bool stop_ = false;                                          // GUARDED_BY(prefetch_mu_)
  std::thread prefetcher_;
};

}  // namespace sharry::compute
