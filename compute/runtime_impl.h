// RuntimeImpl: the compute runtime's state and internal functions. Private
// to compute/ (not installed); applications see runtime.h only.
//
// Runtime (runtime.h) is the API; the one object behind it is a RuntimeImpl
// (LevelDB's db.h / db_impl.h), reached with a static_cast (ImplOf), so the
// local-hit path (RemoteObject::Deref -> Pin, ~DerefScope) costs no pointer
// chase and no virtual call. The functions are spread over the files that
// runtime.h lists; each section below names its file.
//
// Contracts are written as thread-safety annotations (base/mutex.h), checked
// by clang's -Wthread-safety (the clang-tsa build): GUARDED_BY a lock,
// REQUIRES (the caller holds it), EXCLUDES (the function takes it).
// REQUIRES_SHARED(epoch_mu_) reads "the caller is inside a far access".
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"
#include "compute/far_block_queue.h"
#include "compute/object.h"
#include "compute/runtime.h"
#include "memnode/client.h"
#include "verbs/transport.h"

namespace sharry::compute {

class RuntimeImpl final : public Runtime {
 public:
  explicit RuntimeImpl(const RuntimeOptions& o);
  ~RuntimeImpl() override;
  Status Init();  // runtime.cc: the control connection, watermarks, threads

  // ---- The API (runtime.h says what each does), by file.
  // object_table.cc
  StatusOr<RemoteObject> New(uint32_t size, const void* init) EXCLUDES(evict_mu_, headers_mu_);
  // eviction.cc
  Status SwapOut(const RemoteObject& obj) EXCLUDES(evict_mu_);
  Status EvictToBudget() EXCLUDES(evict_mu_);
  // far_block_queue.cc
  Status FlushFrees() EXCLUDES(epoch_mu_, control_mu_);
  // background_threads.cc
  void WaitEvictorIdle() EXCLUDES(evictor_mu_);
  // runtime.cc
  RuntimeStats Stats() const;
  StatusOr<memnode::Stats> MemnodeStats() EXCLUDES(epoch_mu_, control_mu_);
  Status eviction_status() const EXCLUDES(evict_status_mu_);
  // health.cc
  Status health() const EXCLUDES(health_mu_);

  const RuntimeOptions& opts() const { return opts_; }
  ClientId control_id() const { return control_id_.load(std::memory_order_acquire); }
  uint64_t local_limit() const { return local_limit_; }

  // ---- The local-hit path and the handles (object_table.cc).
  // Pins h in `scope` (swapping it in if need be): its local address.
  StatusOr<void*> Pin(DerefScope& scope, ObjectHeader* h, bool write);
  static void Unpin(ObjectHeader* h) { h->word.fetch_sub(meta::kPinOne, std::memory_order_release); }
  void AddHits(uint32_t n) { hits_.fetch_add(n, std::memory_order_relaxed); }
  // REQUIRES: no pins. Frees its local memory and queues its far block.
  void Destroy(ObjectHeader* h);
  void EnqueuePrefetch(ObjectHeader* h) EXCLUDES(prefetch_mu_);  // background_threads.cc

 private:
  // ---- object_table.cc: the header slab and the object lifecycle.
  // Object headers: chunks of kChunk at stable addresses, never freed before
  // ~RuntimeImpl; slots [0, high_water_) may be read without a lock (the
  // CLOCK hand, Stats(), MarkFarMemoryLost): chunks_ grows under headers_mu_
  // before high_water_ is released past it.
  static constexpr size_t kChunk = 4096;
  ObjectHeader* AllocHeader() EXCLUDES(headers_mu_);
  void FreeHeader(ObjectHeader* h) EXCLUDES(headers_mu_);
  ObjectHeader* HeaderAt(size_t i) const { return &chunks_[i / kChunk][i % kChunk]; }
  // REQUIRES: the caller set kBusy on `h` (whose word was `busy_word`: far,
  // not present). On success h is present, hot and STILL busy; on error the
  // word is restored.
  Status SwapIn(ObjectHeader* h, uint64_t busy_word) EXCLUDES(epoch_mu_, control_mu_);
  void AddLocal(uint64_t size);  // local_bytes_ += size, and the peak

  // ---- eviction.cc: when to evict, and one eviction round.
  // Local usage went up: signal the evictor past the low watermark; evict
  // here only past the budget.
  void MaybeEvict() EXCLUDES(evict_mu_);
  // The synchronous rounds of MaybeEvict, down to sync_target_.
  void EvictPastBudget() REQUIRES(evict_mu_);
  // Room for `size` more local bytes within local_limit_, evicting if need be.
  // swap_in: a swap-in may overshoot by its own object (Unique-Copy: it frees
  // the far block the next eviction reuses).
  Status MakeRoom(uint64_t size, bool swap_in) EXCLUDES(evict_mu_);
  // One round: picks up to evict_batch cold, unpinned, local objects (CLOCK
  // over the hot bits; or just `only`), swaps them out with one batched
  // ALLOC and one chain of WRITEs, and releases their local memory.
  // drops_only: only objects that already hold a far block (Multi-Copy,
  // when far memory is exhausted). Counts a round only if it found victims.
  Status Evict(uint64_t bytes_to_free, ObjectHeader* only, bool drops_only = false) REQUIRES(evict_mu_)
      EXCLUDES(epoch_mu_);
  struct Victim {
    ObjectHeader* h;
    uint64_t word;                  // its word before we set kBusy (restored on rollback)
    uint64_t far = kNoFarOffset;    // the far block it goes to (kNoFarOffset: none, stays local)
    bool new_block = false;         // `far` was reused from the queue or ALLOCated for this round
  };
  // Sets kBusy on each victim it returns. An error (`only` pinned or busy)
  // leaves no victim busy.
  Status PickVictims(uint64_t bytes_to_free, ObjectHeader* only, bool drops_only, std::vector<Victim>* victims)
      REQUIRES(evict_mu_);
  // Gives each victim a far block: its own (Multi-Copy, already far), a
  // queued one of its size, or a new one from one ALLOC. A refused ALLOC
  // (far memory exhausted) leaves those victims without one (`far` =
  // kNoFarOffset) and is returned in *refused. If the control connection
  // died instead, the round is over: every victim is released unchanged,
  // the reused blocks are queued again, and the error is returned.
  Status AssignFarBlocks(std::vector<Victim>& victims, Status* refused) REQUIRES(evict_mu_)
      REQUIRES_SHARED(epoch_mu_) EXCLUDES(control_mu_);
  // WRITEs (one chain, this thread's data connection) every victim with a
  // block that must be written (Unique-Copy: all; Multi-Copy: new or dirty).
  // On failure nothing was lost: every victim is released unchanged and its
  // new block queued for reuse; the error is returned.
  Status WriteBack(std::vector<Victim>& victims) REQUIRES(evict_mu_) REQUIRES_SHARED(epoch_mu_)
      EXCLUDES(conns_mu_, control_mu_);
  // After a good WriteBack: each victim with a block becomes far (its local
  // memory freed, the counters updated); the others are released local.
  void Commit(const std::vector<Victim>& victims) REQUIRES(evict_mu_);
  static void Release(const Victim& v) { v.h->word.store(v.word, std::memory_order_release); }
  void RecordEvictionError(const Status& s) EXCLUDES(evict_status_mu_);
  void NoteAllocResult(const Status& s, bool any_refused);

  // ---- far_block_queue.cc: delayed reclamation of far blocks.
  // Queues the far block of an object that no longer needs it; a full batch
  // is FREEd by the prefetch thread, or here if it has fallen far behind.
  // The first form is for a caller inside a far access (a swap-in).
  Status QueueFreeInFarAccess(uint64_t offset, uint32_t size) REQUIRES_SHARED(epoch_mu_)
      EXCLUDES(control_mu_, prefetch_mu_);
  Status QueueFree(uint64_t offset, uint32_t size) EXCLUDES(epoch_mu_, control_mu_, prefetch_mu_);
  // Queues the block; true if the caller must FREE a batch itself now.
  bool QueueAndMaybeSignal(uint64_t offset, uint32_t size) EXCLUDES(prefetch_mu_);
  // FREEs all queued blocks but the newest `keep`.
  Status FlushQueued(size_t keep) REQUIRES_SHARED(epoch_mu_) EXCLUDES(control_mu_);
  size_t FreeReserve() const;  // queued blocks kept for reuse by swap-outs

  // ---- data_connections.cc
  // This thread's data connection, made on first use and again after the
  // reconnector replaced the connections. Errors are kUnavailable (already
  // counted as failed accesses).
  StatusOr<TransportClient*> DataConnection() REQUIRES_SHARED(epoch_mu_) EXCLUDES(conns_mu_, control_mu_);
  // Closes every data connection; threads make new ones on their next access.
  void DropDataConnections() REQUIRES(epoch_mu_) EXCLUDES(conns_mu_);

  // ---- background_threads.cc
  void StartThreads();
  void StopThreads() EXCLUDES(evictor_mu_, prefetch_mu_, lease_mu_, health_mu_);
  void SignalEvictor() EXCLUDES(evictor_mu_);
  void EvictorLoop() EXCLUDES(evictor_mu_, evict_mu_);
  void PrefetchLoop() EXCLUDES(prefetch_mu_, epoch_mu_);
  // The lease (docs/security.md): while the memnode announces one, this
  // thread sends a RENEW on the control connection every lease/3, so a
  // runtime whose threads only hit locally (or only use one-sided verbs)
  // keeps its far memory; a failed RENEW is a far failure like any other
  // (so a dead memnode is noticed even by a workload that never misses).
  void LeaseLoop() EXCLUDES(lease_mu_, epoch_mu_, control_mu_);

  // ---- health.cc: the one place that decides whether the memnode is usable.
  // Every far access (swap-in, swap-out round, FREE, STATS, RENEW) holds
  // epoch_mu_ shared for its duration: TryBeginFar takes it, or fails at
  // once, without a network wait, while the runtime is unhealthy or the
  // reconnector holds it (then *why is the error, counted as a failed
  // access). The caller adopts the hold:
  //   Status why;
  //   if (!TryBeginFar(&why)) return why;
  //   ReaderMutexLock far(&epoch_mu_, std::adopt_lock);
  // The first failed connection marks the runtime unhealthy and starts the
  // reconnector thread (at most one), which takes epoch_mu_ exclusively to
  // replace connections.
  [[nodiscard]] bool TryBeginFar(Status* why) TRY_ACQUIRE_SHARED(true, epoch_mu_) EXCLUDES(health_mu_);
  // A far access failed because a connection died (`s` says why): record it.
  void OnFarFailure(const Status& s) EXCLUDES(health_mu_);
  Status FailedAccess(Status s);  // counts it, returns it
  // OnFarFailure(s), then the failed access `what` as kUnavailable (counted).
  Status ConnectionFailed(const Status& s, std::string_view what) EXCLUDES(health_mu_);
  Status UnhealthyStatus() const REQUIRES(health_mu_);  // the recorded error, with its age
  // The error of a swap-in of an object lost with the far memory (counted).
  Status LostObjectStatus() EXCLUDES(health_mu_);
  void ReconnectLoop() EXCLUDES(epoch_mu_, control_mu_, health_mu_);
  // false: the runtime is being destroyed.
  bool ReconnectPause(int ms) EXCLUDES(health_mu_);
  void SetHealth(int state) EXCLUDES(health_mu_);
  // The control connection is gone, so the memnode reclaims (or has
  // reclaimed) every block we held: marks far-only objects lost, drops
  // Multi-Copy far copies of local objects.
  void MarkFarMemoryLost(const Status& why) REQUIRES(epoch_mu_) EXCLUDES(health_mu_);
  std::string MemnodeName() const;

  const RuntimeOptions opts_;
  ClientOptions conn_opts_;  // set by Init, then read only
  std::atomic<ClientId> control_id_{0};
  uint64_t local_limit_ = 0;  // set by Init
  const uint64_t instance_;   // distinguishes runtimes in thread-local caches
  // Watermarks (bytes of local object data), fixed at Init:
  //   budget          past it, an application thread evicts synchronously
  //   sync_target_    ... down to here (budget - one batch)
  //   evict_start_    past it, the evictor is signalled (budget without one)
  //   evict_target_   the evictor swaps out down to here (evict_start_ - one batch)
  uint64_t sync_target_ = 0, evict_start_ = 0, evict_target_ = 0;

  // ---- The locks. Lock order: a thread holding a lock takes only locks
  // further down this list (ACQUIRED_AFTER states each step):
  //   evict_mu_      one eviction round at a time
  //   epoch_mu_      shared: a far access; exclusive: the reconnector
  //                  (taken with a try-lock only, never waited for, except
  //                  by the reconnector, which holds no other lock then)
  //   control_mu_    the control connection (ALLOC, FREE, STATS, RENEW)
  //   then leaves, which are held alone or last: conns_mu_, health_mu_,
  //   evict_status_mu_, headers_mu_, evictor_mu_, prefetch_mu_, lease_mu_,
  //   and the far-block queue's own lock (far_block_queue.h).
  // No lock is held across a wait for another thread, except that
  // OnFarFailure joins a finished reconnector while its caller may be
  // inside a far access (the old reconnector has already set the state).
  Mutex evict_mu_;
  SharedMutex epoch_mu_ ACQUIRED_AFTER(evict_mu_);
  Mutex control_mu_ ACQUIRED_AFTER(epoch_mu_);
  Mutex conns_mu_ ACQUIRED_AFTER(epoch_mu_);
  mutable Mutex health_mu_ ACQUIRED_AFTER(control_mu_, conns_mu_);
  mutable Mutex evict_status_mu_ ACQUIRED_AFTER(evict_mu_);
  Mutex headers_mu_;
  Mutex evictor_mu_;
  Mutex prefetch_mu_;
  Mutex lease_mu_;

  // The control connection: the memnode's client that owns all our far
  // blocks. Used inside a far access, under control_mu_; replaced by the
  // reconnector with epoch_mu_ exclusive, under control_mu_.
  std::unique_ptr<memnode::MemnodeClient> control_ GUARDED_BY(control_mu_);
  // Far blocks we no longer need (far_block_queue.h; its own lock).
  FarBlockQueue free_queue_;

  // One data connection per (thread, runtime); owned here, cached per thread.
  std::vector<std::unique_ptr<TransportClient>> data_conns_ GUARDED_BY(conns_mu_);
  std::atomic<uint64_t> conn_epoch_{1};  // bumped (epoch_mu_ exclusive) when data connections are replaced

  // Health (see TryBeginFar). health_ is read without a lock (the gate's
  // fast path) and written under health_mu_.
  enum HealthState : int { kHealthy = 0, kReconnecting = 1, kFailed = 2 };
  std::atomic<int> health_{kHealthy};
  Status health_status_ GUARDED_BY(health_mu_);  // why not healthy
  Status loss_status_ GUARDED_BY(health_mu_);    // far memory lost (sticky)
  std::chrono::steady_clock::time_point unhealthy_since_ GUARDED_BY(health_mu_);
  bool reconnector_stop_ GUARDED_BY(health_mu_) = false;
  CondVar health_cv_;  // with health_mu_: reconnector_stop_ set
  std::thread reconnector_ GUARDED_BY(health_mu_);

  bool lease_stop_ GUARDED_BY(lease_mu_) = false;
  CondVar lease_cv_;  // with lease_mu_: lease_stop_ set
  std::thread lease_thread_;
  std::atomic<bool> far_exhausted_{false};
  std::atomic<bool> exhausted_said_{false};

  std::unique_ptr<ObjectHeader[]> chunks_[1 << 14];  // up to 64 M objects (see AllocHeader)
  std::atomic<size_t> high_water_{0};                // slots ever used
  std::vector<ObjectHeader*> free_headers_ GUARDED_BY(headers_mu_);

  size_t clock_hand_ GUARDED_BY(evict_mu_) = 0;
  Status evict_status_ GUARDED_BY(evict_status_mu_);

  std::atomic<uint64_t> local_bytes_{0}, peak_local_bytes_{0}, far_bytes_{0}, objects_{0};
  std::atomic<uint64_t> hits_{0}, swap_ins_{0}, swap_outs_{0}, drops_{0}, rounds_{0}, background_rounds_{0},
      sync_rounds_{0}, prefetches_{0}, alloc_rpcs_{0}, free_rpcs_{0}, recycled_{0}, failed_far_{0},
      connection_failures_{0}, renewals_{0}, reconnects_{0}, lost_objects_{0}, lost_bytes_{0},
      far_exhausted_count_{0}, quota_exceeded_count_{0}, refused_local_{0};

  // The evictor thread (evict_thread). evict_wanted_ is set by the thread
  // that signals (once per wake-up: no lock or syscall while it is set) and
  // cleared by the evictor before it looks at usage, so no signal is lost.
  CondVar evictor_cv_;       // with evictor_mu_: evict_wanted_ or evictor_stop_ set
  std::atomic<bool> evict_wanted_{false};
  bool evictor_stop_ GUARDED_BY(evictor_mu_) = false;
  bool evictor_busy_ GUARDED_BY(evictor_mu_) = false;  // in its rounds
  CondVar evictor_idle_cv_;  // with evictor_mu_: evictor_busy_ went false
  std::thread evictor_;

  // The prefetch thread (prefetch_thread): Prefetch() requests and FREE batches.
  CondVar prefetch_cv_;  // with prefetch_mu_: work queued or prefetch_stop_ set
  std::deque<ObjectHeader*> prefetch_q_ GUARDED_BY(prefetch_mu_);
  bool flush_wanted_ GUARDED_BY(prefetch_mu_) = false;
  bool prefetch_stop_ GUARDED_BY(prefetch_mu_) = false;
  std::thread prefetcher_;
};

// The one object behind every Runtime (its constructor is private to RuntimeImpl).
inline RuntimeImpl& ImplOf(Runtime& rt) { return static_cast<RuntimeImpl&>(rt); }
inline const RuntimeImpl& ImplOf(const Runtime& rt) { return static_cast<const RuntimeImpl&>(rt); }

}  // namespace sharry::compute
