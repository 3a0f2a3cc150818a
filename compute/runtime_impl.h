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
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <map>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"
#include "compute/aggregate.h"
#include "compute/far_block_queue.h"
#include "compute/erasure_code.h"
#include "discovery/memnode_registry.h"
#include "compute/far_node.h"
#include "compute/object.h"
#include "compute/runtime.h"
#include "memnode/client.h"
#include "verbs/transport.h"

namespace sharry::compute {

class RuntimeImpl final : public Runtime {
 public:
  explicit RuntimeImpl(const RuntimeOptions& o);
  ~RuntimeImpl() override;
  Status Init();  // runtime.cc: the control connections, watermarks, threads

  // ---- The API (runtime.h says what each does), by file.
  // object_table.cc
  StatusOr<RemoteObject> New(uint32_t size, const void* init, uint32_t affinity) EXCLUDES(evict_mu_, headers_mu_);
  // eviction.cc
  Status SwapOut(const RemoteObject& obj) EXCLUDES(evict_mu_);
  Status EvictToBudget() EXCLUDES(evict_mu_);
  // far_block_queue.cc
  Status FlushFrees() EXCLUDES(epoch_mu_);
  // background_threads.cc
  void WaitEvictorIdle() EXCLUDES(evictor_mu_);
  // runtime.cc
  RuntimeStats Stats() const;
  StatusOr<memnode::Stats> MemnodeStats(size_t node) EXCLUDES(epoch_mu_);
  Status eviction_status() const EXCLUDES(evict_status_mu_);
  // health.cc
  Status health() const EXCLUDES(health_mu_);

  const RuntimeOptions& opts() const { return opts_; }
  size_t node_count() const { return nodes_.size(); }
  ClientId control_id(size_t node) const {
    return node < nodes_.size() ? nodes_[node]->control_id.load(std::memory_order_acquire) : 0;
  }
  uint64_t local_limit() const { return local_limit_; }

  // offload.cc (compute/aggregate.h)
  StatusOr<offload::Result> Aggregate(const offload::Spec& spec, std::span<const AggregateColumn> columns,
                                      uint64_t rows, const AggregateOptions& o) EXCLUDES(epoch_mu_);

  // ---- The local-hit path and the handles (object_table.cc).
  // Pins h in `scope` (swapping it in if need be): its local address.
  StatusOr<void*> Pin(DerefScope& scope, ObjectHeader* h, bool write) EXCLUDES(epoch_mu_);
  static void Unpin(ObjectHeader* h) { h->word.fetch_sub(meta::kPinOne, std::memory_order_release); }
  void AddHits(uint32_t n) { hits_.fetch_add(n, std::memory_order_relaxed); }
  // REQUIRES: no pins. Frees its local memory and queues its far blocks.
  void Destroy(ObjectHeader* h);
  void EnqueuePrefetch(ObjectHeader* h) EXCLUDES(prefetch_mu_);  // background_threads.cc

 private:
  // The far copies of an object: the first (its word's or far_offset's far
  // address) and the others (replicas, in the side table). At most
  // kMaxCopies (replicate:4).
  static constexpr uint32_t kMaxCopies = 4;
  struct Copies {
    uint64_t addr[kMaxCopies];
    uint32_t n = 0;
  };

  // ---- object_table.cc: the header slab and the object lifecycle.
  // Object headers: chunks of kChunk at stable addresses, never freed before
  // ~RuntimeImpl; slots [0, high_water_) may be read without a lock (the
  // CLOCK hand, Stats(), MarkFarMemoryLost): chunks_ grows under headers_mu_
  // before high_water_ is released past it. With replicas, each chunk has a
  // side chunk of kMaxCopies-1 far addresses per header (extras_).
  static constexpr size_t kChunk = 4096;
  ObjectHeader* AllocHeader() EXCLUDES(headers_mu_);
  void FreeHeader(ObjectHeader* h) EXCLUDES(headers_mu_);
  ObjectHeader* HeaderAt(size_t i) const { return &chunks_[i / kChunk][i % kChunk]; }
  // The replicas of h (kNoFarOffset where none). REQUIRES: h busy, or
  // epoch_mu_ held exclusively.
  uint64_t* Extras(const ObjectHeader* h) const {
    return &extras_[h->index / kChunk][(h->index % kChunk) * (kMaxCopies - 1)];
  }
  // Every far copy of h: `first` (the word's address, or far_offset) and its
  // replicas. REQUIRES as Extras.
  Copies CopiesOf(const ObjectHeader* h, uint64_t first) const;
  void SetExtras(ObjectHeader* h, const uint64_t* addrs, uint32_t n);
  // REQUIRES: inside a far access, and the caller set kBusy on `h` (whose
  // word was `busy_word`: far, not present). On success h is present, hot
  // and STILL busy; on error the word is restored. Reads the first copy
  // whose memnode is healthy (the others: degraded reads).
  Status SwapIn(ObjectHeader* h, uint64_t busy_word) REQUIRES_SHARED(epoch_mu_);
  // Reads far object h (busy; far address `addr`, not replicated by ec)
  // into out without changing it: the first copy whose memnode is healthy,
  // starting at the object's own (h->index % copies), the others after a
  // failure (degraded reads counted). `what` is the error's context.
  Status ReadCopy(ObjectHeader* h, uint64_t addr, void* out, std::string_view what) REQUIRES_SHARED(epoch_mu_);
  // ReadMember under ec, else ReadCopy.
  Status ReadFar(ObjectHeader* h, uint64_t addr, void* out, std::string_view what) REQUIRES_SHARED(epoch_mu_) {
    return ec_ ? ReadMember(h, addr, out) : ReadCopy(h, addr, out, what);
  }
  void AddLocal(uint64_t size);  // local_bytes_ += size, and the peak

  // ---- eviction.cc: when to evict, and one eviction round.
  void MaybeEvict() EXCLUDES(evict_mu_);
  void EvictPastBudget() REQUIRES(evict_mu_);
  Status MakeRoom(uint64_t size, bool swap_in) EXCLUDES(evict_mu_);
  // One round: picks up to evict_batch cold, unpinned, local objects (CLOCK
  // over the hot bits; or just `only`), gives each its far blocks on the
  // least used healthy memnodes (one per copy, on different memnodes), with
  // one ALLOC per memnode and one chain of WRITEs per memnode, and releases
  // their local memory. drops_only: only objects that already hold a far
  // block (Multi-Copy, when far memory is exhausted). Counts a round only if
  // it found victims.
  Status Evict(uint64_t bytes_to_free, ObjectHeader* only, bool drops_only = false) REQUIRES(evict_mu_)
      EXCLUDES(epoch_mu_);
  struct Victim {
    ObjectHeader* h;
    uint64_t word;          // its word before we set kBusy (restored on rollback)
    Copies far;             // the far blocks it goes to (none: stays local)
    bool new_blocks = false;  // `far` was reused from the queues or ALLOCated for this round
    bool short_copies = false;  // fewer copies than the redundancy wants: repair it
  };
  Status PickVictims(uint64_t bytes_to_free, ObjectHeader* only, bool drops_only, std::vector<Victim>* victims)
      REQUIRES(evict_mu_);
  // Gives each victim its far blocks: its own (Multi-Copy, already far),
  // queued ones of its size, or new ones from one ALLOC per memnode. A
  // refused ALLOC (far memory exhausted) or a memnode that dies leaves those
  // victims with fewer blocks (none: they stay local); *refused says why.
  // With no healthy memnode the round is over: every victim is released
  // unchanged and the error returned.
  Status AssignFarBlocks(std::vector<Victim>& victims, Status* refused) REQUIRES(evict_mu_)
      REQUIRES_SHARED(epoch_mu_);
  // WRITEs every victim's blocks that must be written (Unique-Copy: all;
  // Multi-Copy: new or dirty), a chain per memnode. A memnode that fails
  // takes only its blocks out of the round; a victim left without a block
  // stays local. Any other failure releases every victim unchanged.
  Status WriteBack(std::vector<Victim>& victims) REQUIRES(evict_mu_) REQUIRES_SHARED(epoch_mu_)
      EXCLUDES(conns_mu_);
  void Commit(const std::vector<Victim>& victims) REQUIRES(evict_mu_);
  static void Release(const Victim& v) { v.h->word.store(v.word, std::memory_order_release); }
  // Gives the new blocks of the victims back to their memnodes' queues.
  void GiveBack(const std::vector<Victim>& victims);
  // One chain of WRITEs to memnode n on this thread's data connection: OK;
  // kUnavailable if the memnode cannot be reached or its connection died
  // (counted, its reconnector started); any other failure counted, with
  // `what` as its context.
  Status WriteChain(FarNode& n, std::span<const RemoteOp> ops, std::string_view what) REQUIRES_SHARED(epoch_mu_)
      EXCLUDES(conns_mu_);
  void RecordEvictionError(const Status& s) EXCLUDES(evict_status_mu_);
  void NoteAllocResult(FarNode& node, const Status& s, bool any_refused);
  // The healthy memnodes, least used first (placement).
  std::vector<FarNode*> PlacementOrder() const;
  // The home of affinity key `key` (!= 0) among `healthy`: the one of the
  // highest AffinityWeight that is not far-exhausted; nullptr if all are.
  static FarNode* AffinityHome(uint32_t key, std::span<FarNode* const> healthy);
  // Far blocks at memnode n, one per size: queued free blocks of that size
  // first (no ALLOC; counted as recycled), then one ALLOC for the rest.
  // (*out)[i] is a far address, or kNoFarOffset where the memnode refused
  // (far memory exhausted, quota: returned, *died false). If the memnode
  // died, every (*out)[i] is kNoFarOffset (the reused blocks went with it),
  // *died is true and the error (counted, `what` in it) is returned.
  Status BlocksAt(FarNode& n, std::span<const uint32_t> sizes, std::vector<uint64_t>* out, bool* died,
                  std::string_view what) REQUIRES_SHARED(epoch_mu_);

  // ---- far_block_queue.cc: delayed reclamation of far blocks.
  // Queues a far block (a far address) we no longer need, at its memnode;
  // a full batch is FREEd by the prefetch thread, or here if it has fallen
  // far behind. The first form is for a caller inside a far access.
  Status QueueFreeInFarAccess(uint64_t addr, uint32_t size) REQUIRES_SHARED(epoch_mu_) EXCLUDES(prefetch_mu_);
  Status QueueFree(uint64_t addr, uint32_t size) EXCLUDES(epoch_mu_, prefetch_mu_);
  bool QueueAndMaybeSignal(FarNode& n, uint64_t offset, uint32_t size) EXCLUDES(prefetch_mu_);
  // FREEs all queued blocks of `n` but the newest `keep`.
  Status FlushQueued(FarNode& n, size_t keep) REQUIRES_SHARED(epoch_mu_);
  Status FlushAllQueued(size_t keep) REQUIRES_SHARED(epoch_mu_);
  size_t FreeReserve() const;  // queued blocks kept for reuse by swap-outs, per memnode

  // ---- offload.cc: one Aggregate() call (its units, marks and jobs).
  class AggregateRun;
  static ObjectHeader* HeaderOf(const RemoteObject& o) { return o.h_; }

  // ---- data_connections.cc
  // This thread's data connection to `n`, made on first use and again after
  // its connections were replaced. Errors are kUnavailable (counted).
  StatusOr<TransportClient*> DataConnection(FarNode& n) REQUIRES_SHARED(epoch_mu_) EXCLUDES(conns_mu_);
  // Closes every data connection to `n`; threads make new ones on their next access.
  void DropDataConnections(FarNode& n) REQUIRES(epoch_mu_) EXCLUDES(conns_mu_);

  // ---- background_threads.cc
  void StartThreads();
  void StopThreads() EXCLUDES(evictor_mu_, prefetch_mu_, lease_mu_, health_mu_, repair_mu_);
  void SignalEvictor() EXCLUDES(evictor_mu_);
  void EvictorLoop() EXCLUDES(evictor_mu_, evict_mu_);
  void PrefetchLoop() EXCLUDES(prefetch_mu_, epoch_mu_);
  // Per memnode: a RENEW every lease/3 while it announces a lease, and a
  // STATS every placement_refresh_ms for placement. A failure is a far
  // failure like any other (so a dead memnode is noticed even by a workload
  // that never misses).
  void LeaseLoop() EXCLUDES(lease_mu_, epoch_mu_);

  // ---- repair.cc: objects short of copies after a memnode died get new
  // ones on the surviving memnodes, in batches, by the repair thread.
  void QueueRepair(ObjectHeader* h) EXCLUDES(repair_mu_);
  void RepairLoop() EXCLUDES(repair_mu_, epoch_mu_);
  // One batch; returns how many objects were repaired (0: no progress).
  size_t RepairBatch(std::vector<ObjectHeader*>& batch) REQUIRES_SHARED(epoch_mu_);

  // ---- stripes.cc: erasure-coded far copies (ec:K+M, Unique-Copy; docs/redundancy.md).
  // A stripe: up to K members' data blocks (each its object's bytes, at its
  // own size) on different memnodes, plus M parity blocks of the stripe's
  // length (its largest member), coded as if every data block were padded
  // with zeros to that length and missing members were zero blocks. A member
  // swapped in or destroyed leaves a hole: its block stays (the others'
  // degraded reads need it) until the stripe is rewritten (restriped) or has
  // no live member left.
  //
  // A hole left by a swap-in may keep the member's old bytes (`kept`, up to
  // ec_refill_bytes in all): the next eviction round then *refills* it with
  // a victim that fills at least 3/4 of its block, in place — the victim's bytes WRITTEN over
  // the hole's block and each parity block read, updated by the delta
  // (old xor new) and written back (stripe_refill.cc) — so steady swapping
  // keeps stripes full without compaction. While a refill rewrites a
  // stripe (`busy`) its parity and that hole do not match: degraded reads
  // of the stripe wait for it, and a refill waits for none (`readers`).
  struct Stripe {
    uint64_t serial = 0;  // unique per stripe ever made (refill_holes_ entries name it)
    uint32_t len = 0;
    uint32_t k_real = 0;  // data blocks stored: members at 0..k_real-1
    uint32_t live = 0;    // members still far here (and a refill in flight)
    uint32_t gone = 0;    // blocks lost with dead memnodes (their addr is kNoFarOffset)
    uint32_t busy = 0;    // a refill is rewriting it (1 at most)
    uint32_t readers = 0; // degraded reads reading its blocks
    bool queued = false;         // in restripe_q_ (holes: compaction)
    bool queued_repair = false;  // in repair_stripes_ (lost blocks: repair)
    std::vector<uint64_t> addr;          // K + M far addresses (data, then parity)
    std::vector<uint32_t> size;          // the data members' sizes (zero-padded to len by the code)
    std::vector<uint32_t> block;         // the data blocks' allocated sizes (>= size: a refill may
                                         // put a shorter member into a hole's block)
    std::vector<ObjectHeader*> member;   // live members (nullptr: a hole, or none)
    std::vector<std::unique_ptr<uint8_t[]>> kept;  // K: a hole's old bytes (size[pos]), or null
  };
  // A refillable hole: stripe `id` (if its serial still matches), position `pos`.
  struct HoleRef {
    uint32_t id;
    uint32_t pos;
    uint64_t serial;
  };
  struct StripeItem {
    ObjectHeader* h;
    const void* data;
    uint32_t size;
    uint64_t addr = kNoFarOffset;  // its new data block
    uint64_t ref = 0;              // its stripe and position (StripeRef)
  };
  static uint64_t StripeRef(uint32_t id, uint32_t pos) { return (uint64_t{id} << 8) | pos; }
  // Writes the items as new stripes (grouped by size, up to K each): one
  // ALLOC and one chain of WRITEs per memnode. On success every item has its
  // data block and stripe (the caller makes it far); on failure nothing is
  // left allocated and the error is returned.
  Status WriteStripes(std::vector<StripeItem>& items) REQUIRES_SHARED(epoch_mu_) EXCLUDES(stripes_mu_);
  // Eviction with ec: the victims become stripes (eviction.cc's Evict).
  Status EvictToStripes(std::vector<Victim>& victims) REQUIRES(evict_mu_) REQUIRES_SHARED(epoch_mu_);
  // Reads member h (busy; its data block `addr`) into out: one READ, or a
  // degraded read that rebuilds it from K others of its stripe.
  Status ReadMember(ObjectHeader* h, uint64_t addr, void* out) REQUIRES_SHARED(epoch_mu_) EXCLUDES(stripes_mu_);
  // h (busy) leaves its stripe (swapped in or destroyed): a hole, the
  // stripe queued for restriping, or freed with its last member.
  // Returns true if the caller must FREE a batch now (QueueAndMaybeSignal).
  // `data` (a swap-in: the bytes just read), if given, may be kept so the
  // hole can be refilled (within ec_refill_bytes; stripe_refill.cc).
  [[nodiscard]] bool LeaveStripe(ObjectHeader* h, const void* data = nullptr) EXCLUDES(stripes_mu_);
  [[nodiscard]] bool FreeStripeBlocks(const Stripe& s);
  void MaybeQueueRestripe(uint32_t id, Stripe& s) REQUIRES(stripes_mu_);
  // Blocks at `n` are gone: their stripes degrade; the objects of stripes
  // with more than M blocks gone, whose own block is gone, are lost.
  void MarkStripesLost(FarNode& n, uint64_t* lost, uint64_t* lost_bytes) REQUIRES(epoch_mu_) EXCLUDES(stripes_mu_);
  // ---- stripe_refill.cc: holes refilled in place by an eviction round.
  // Keeps `data` (the old bytes of the hole at s.member[pos]'s place) if the
  // stripe can be refilled and ec_refill_bytes allows.
  void KeepHole(uint32_t id, Stripe& s, uint32_t pos, const void* data) REQUIRES(stripes_mu_);
  void DropKept(Stripe& s, uint32_t pos) REQUIRES(stripes_mu_);
  void DropAllKept(Stripe& s) REQUIRES(stripes_mu_);
  // Victims that fit a kept hole's block (at least 3/4 of it) refill it (one per stripe per round);
  // the rest (and those whose refill failed, still local) go to *rest.
  // Refilled victims are far when it returns.
  void RefillHoles(std::vector<Victim>& victims, std::vector<Victim>* rest) REQUIRES(evict_mu_)
      REQUIRES_SHARED(epoch_mu_) EXCLUDES(stripes_mu_);
  // The block at `pos` of stripe s is unusable (a WRITE to it failed): out
  // of the stripe, which is queued for repair; the block is appended to
  // *to_free (QueueAndMaybeSignal it after releasing stripes_mu_).
  struct BlockToFree {
    uint64_t addr;
    uint32_t size;
  };
  void DropStripeBlock(uint32_t id, Stripe& s, uint32_t pos, std::vector<BlockToFree>* to_free)
      REQUIRES(stripes_mu_);
  // The restriper (the repair thread under ec): rewrites the live members of
  // queued stripes into new full stripes, then frees the old ones.
  size_t RestripeBatch() REQUIRES_SHARED(epoch_mu_) EXCLUDES(stripes_mu_);

  // ---- membership.cc: memnodes that come and go (etcd).
  // Connects a control connection to `addr` (one attempt).
  StatusOr<std::unique_ptr<memnode::MemnodeClient>> ConnectControl(const ClientOptions& base, int timeout_ms) const;
  ClientOptions ControlOptions(const MemnodeAddress& a) const;
  // A new memnode: connected and appended (REQUIRES: membership_mu_ or Init).
  Status AddMemnode(const MemnodeAddress& a, bool at_init);
  Status StartWatcher() EXCLUDES(membership_mu_);
  void MembershipLoop() EXCLUDES(membership_mu_);
  // A memnode's key went from etcd: it is dead now (no probe, no timeout).
  void OnLeave(const std::string& addr);
  // A memnode joined: new, or one we had given up on (it is new and empty).
  void OnJoin(const std::string& addr, const discovery::MemnodeInfo& info);
  FarNode* FindNode(const std::string& name) const;

  // ---- health.cc: whether each memnode is usable.
  // Every far access holds epoch_mu_ shared for its duration:
  //   BeginFar();  // or: if (!TryBeginFar()) ...;
  //   ReaderMutexLock far(&epoch_mu_, std::adopt_lock);
  // It
  // keeps each memnode's connections in place. Only a memnode's reconnector
  // takes it exclusively, briefly (never across a network wait): to mark
  // what its memnode held lost and replace its connections. A thread that
  // holds kBusy on an object must not wait for epoch_mu_ (the reconnector
  // waits for busy objects): it enters the far access first.
  void BeginFar() ACQUIRE_SHARED(epoch_mu_);
  [[nodiscard]] bool TryBeginFar() TRY_ACQUIRE_SHARED(true, epoch_mu_);
  // A far access to `n` failed because a connection died (`s` says why).
  void OnFarFailure(FarNode& n, const Status& s) EXCLUDES(health_mu_);
  Status FailedAccess(Status s);  // counts it, returns it
  // OnFarFailure(n, s), then the failed access `what` as kUnavailable (counted).
  Status ConnectionFailed(FarNode& n, const Status& s, std::string_view what) EXCLUDES(health_mu_);
  Status NodeStatus(const FarNode& n) const;  // OK while healthy, else why, with its age
  bool AllHealthy() const;
  bool AnyHealthy() const;
  // Why no copy of an object could be read / no memnode can take a block.
  Status NoHealthyStatus(const Copies* copies) const;
  Status LostObjectStatus() EXCLUDES(health_mu_);
  // probe: ask the memnode first (a dead data connection may leave our
  // control connection good); without, it is dead (etcd said so).
  void ReconnectLoop(FarNode* n, bool probe) EXCLUDES(epoch_mu_, health_mu_);
  void DeclareDead(FarNode& n, const Status& why) EXCLUDES(health_mu_);
  // Installs a new control connection to n (the memnode is new and empty to us).
  void InstallControl(FarNode* n, std::unique_ptr<memnode::MemnodeClient> c) EXCLUDES(epoch_mu_);
  bool ReconnectPause(int ms) EXCLUDES(health_mu_);
  // Our control connection to `n` is gone, so the memnode reclaims (or has
  // reclaimed) every block we held there: each object keeps its copies
  // elsewhere (queued for repair), or is lost if it had none.
  void MarkFarMemoryLost(FarNode& n, const Status& why) REQUIRES(epoch_mu_) EXCLUDES(health_mu_);

  const RuntimeOptions opts_;
  const uint32_t copies_;  // far copies per object (replicate:R: R; none and ec: 1)
  const bool side_table_;  // replicas or stripe refs per object (extras_)
  FarNodes nodes_;  // the options' list at Init, then etcd's joins (membership_mu_)
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
  //   epoch_mu_      shared: a far access; exclusive: a reconnector,
  //                  briefly (writer_waiting_ holds new far accesses back
  //                  meanwhile, so it is not starved)
  //   a FarNode's control_mu (one at a time: the control connection)
  //   then leaves, which are held alone or last: conns_mu_, health_mu_, a
  //   FarNode's health_mu, evict_status_mu_, headers_mu_, evictor_mu_,
  //   prefetch_mu_, lease_mu_, repair_mu_, stripes_mu_, and the far-block queues' own
  //   locks (far_block_queue.h).
  Mutex evict_mu_;
  SharedMutex epoch_mu_ ACQUIRED_AFTER(evict_mu_);
  std::atomic<int> writers_waiting_{0};
  Mutex conns_mu_ ACQUIRED_AFTER(epoch_mu_);
  mutable Mutex health_mu_ ACQUIRED_AFTER(conns_mu_);
  mutable Mutex evict_status_mu_ ACQUIRED_AFTER(evict_mu_);
  Mutex headers_mu_;
  Mutex evictor_mu_;
  Mutex prefetch_mu_;
  Mutex lease_mu_;
  Mutex repair_mu_;
  Mutex stripes_mu_;
  Mutex membership_mu_;

  // One data connection per (thread, runtime, memnode); owned here, cached per thread.
  struct DataConn {
    uint32_t node;
    std::unique_ptr<TransportClient> conn;
  };
  std::vector<DataConn> data_conns_ GUARDED_BY(conns_mu_);

  Status loss_status_ GUARDED_BY(health_mu_);  // far memory lost (sticky)
  std::string marking_ GUARDED_BY(health_mu_);  // the memnode whose losses are being marked (or the last)
  bool reconnector_stop_ GUARDED_BY(health_mu_) = false;
  CondVar health_cv_;  // with health_mu_: reconnector_stop_ set

  bool lease_stop_ GUARDED_BY(lease_mu_) = false;
  CondVar lease_cv_;  // with lease_mu_: lease_stop_ set
  std::thread lease_thread_;
  std::atomic<bool> exhausted_said_{false};

  std::unique_ptr<ObjectHeader[]> chunks_[1 << 14];  // up to 64 M objects (see AllocHeader)
  std::unique_ptr<uint64_t[]> extras_[1 << 14];      // replicas: kMaxCopies-1 per header
  std::atomic<size_t> high_water_{0};                // slots ever used
  std::vector<ObjectHeader*> free_headers_ GUARDED_BY(headers_mu_);

  size_t clock_hand_ GUARDED_BY(evict_mu_) = 0;
  Status evict_status_ GUARDED_BY(evict_status_mu_);

  std::atomic<uint64_t> local_bytes_{0}, peak_local_bytes_{0}, far_bytes_{0}, far_copy_bytes_{0}, objects_{0};
  std::atomic<uint64_t> hits_{0}, swap_ins_{0}, swap_outs_{0}, drops_{0}, rounds_{0}, background_rounds_{0},
      sync_rounds_{0}, prefetches_{0}, alloc_rpcs_{0}, free_rpcs_{0}, recycled_{0}, failed_far_{0},
      connection_failures_{0}, renewals_{0}, reconnects_{0}, lost_objects_{0}, lost_bytes_{0},
      far_exhausted_count_{0}, quota_exceeded_count_{0}, refused_local_{0}, degraded_reads_{0},
      dead_memnodes_{0}, repaired_{0}, far_read_bytes_{0}, far_write_bytes_{0};
  // Aggregates (offload.cc).
  std::atomic<uint64_t> aggregates_{0}, agg_local_units_{0}, agg_pulled_units_{0}, agg_offloaded_units_{0},
      agg_offloaded_rows_{0}, offload_jobs_{0}, offload_refused_{0}, offload_rpc_bytes_{0}, offload_cpu_ns_{0},
      offload_abandoned_blocks_{0};

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

  // The repair thread (with replicas): objects that lost a copy.
  CondVar repair_cv_;  // with repair_mu_: work queued or repair_stop_ set
  std::vector<ObjectHeader*> repair_q_ GUARDED_BY(repair_mu_);
  bool repair_stop_ GUARDED_BY(repair_mu_) = false;
  std::atomic<uint64_t> repair_pending_{0};
  std::thread repairer_;

  // Membership (etcd): the watcher's events, handled by membership_.
  struct MemberEvent {
    bool join;
    std::string addr;
    discovery::MemnodeInfo info;
  };
  std::unique_ptr<discovery::MemnodeWatcher> watcher_;
  CondVar membership_cv_;  // with membership_mu_: an event or membership_stop_
  std::deque<MemberEvent> member_events_ GUARDED_BY(membership_mu_);
  bool membership_stop_ GUARDED_BY(membership_mu_) = false;
  std::thread membership_;
  std::atomic<uint64_t> joins_{0}, leaves_{0};

  // Erasure coding (ec:K+M).
  std::unique_ptr<ErasureCode> ec_;
  std::vector<std::unique_ptr<Stripe>> stripes_ GUARDED_BY(stripes_mu_);
  std::vector<uint32_t> free_stripe_ids_ GUARDED_BY(stripes_mu_);
  std::deque<uint32_t> restripe_q_ GUARDED_BY(stripes_mu_);      // stripes with holes
  std::deque<uint32_t> repair_stripes_ GUARDED_BY(stripes_mu_);  // stripes with lost blocks (first)
  size_t repair_in_flight_ GUARDED_BY(stripes_mu_) = 0;  // repair stripes taken by the batch in flight
  size_t holes_in_flight_ GUARDED_BY(stripes_mu_) = 0;   // hole stripes taken by the batch in flight
  std::atomic<uint64_t> holes_pending_{0};
  // Compaction runs only while the far memory of the stripes is more than
  // ec_hole_budget over the code's own (K+M)/K of the data (docs/redundancy.md).
  bool OverHoleBudget() const;
  void UpdateRestripePending() REQUIRES(stripes_mu_);
  std::atomic<uint64_t> live_stripes_{0}, restriped_{0}, restripe_pending_{0};
  // Refills (stripe_refill.cc): kept holes by block size, oldest first
  // (entries whose stripe changed are skipped when met); the bytes kept.
  CondVar stripes_cv_;  // with stripes_mu_: a stripe's busy went 0
  std::map<uint32_t, std::deque<HoleRef>> refill_holes_ GUARDED_BY(stripes_mu_);  // by block size
  uint64_t next_stripe_serial_ GUARDED_BY(stripes_mu_) = 1;
  uint64_t refill_cap_ = 0;  // bytes that kept holes may hold (set by Init)
  std::atomic<uint64_t> kept_bytes_{0}, kept_holes_{0}, refills_{0};
};

// The one object behind every Runtime (its constructor is private to RuntimeImpl).
inline RuntimeImpl& ImplOf(Runtime& rt) { return static_cast<RuntimeImpl&>(rt); }
inline const RuntimeImpl& ImplOf(const Runtime& rt) { return static_cast<const RuntimeImpl&>(rt); }

}  // namespace sharry::compute
