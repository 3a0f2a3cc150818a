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
//     WRITE, one per thread and memnode, created on first use), while ALLOC
//     and FREE go over ONE control connection per memnode (the memnode's
//     owner of all our blocks there), guarded by a mutex. One thread evicts
//     at a time; the others go on. Many memnodes and redundancy:
//     docs/redundancy.md (placement, replicas, stripes, repair).
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
//   - Failures (docs/compute.md, "When the memnode fails"; docs/redundancy.md):
//     one health state per memnode. A far access to a memnode that is not
//     healthy fails at once (or goes to another copy); the first dead
//     connection to a memnode starts its reconnector thread. A lost control
//     connection means that memnode reclaims all our blocks there: objects
//     with no copy elsewhere are marked lost, never read; the others are
//     repaired onto the surviving memnodes by the repair thread.
//     Local usage is held to budget + budget/8 (+ one object per thread) even
//     when nothing can be evicted: New() and swap-ins past it fail.
//
// Where the runtime is (the files of compute/, one idea each; the private
// state and the lock order are in runtime_impl.h, not installed):
//   runtime.h           this API: options, stats, DerefScope, RemoteObject
//   runtime_impl.h      RuntimeImpl: every lock, slab, queue, thread handle,
//                       and the lock order, written once beside the locks
//   runtime.cc          Create/Init/~Runtime, the API's entry points, Stats()
//   object_table.cc     the header slab; an object's lifecycle: New, Pin (the
//                       local-hit path), SwapIn, Destroy; DerefScope
//   far_block_queue.h/.cc  far blocks we no longer need: the queue (its own
//                       lock), the reuse reserve, batched FREEs
//   data_connections.cc the per-thread data connection cache; a data
//                       connection joins the control connection's session
//   eviction.cc         when to evict (MaybeEvict, MakeRoom) and one round:
//                       PickVictims -> AssignFarBlocks -> WriteBack -> Commit
//   background_threads.cc  the evictor, the prefetch/FREE thread, the lease
//                       renewer
//   health.cc           each memnode's health, the far-access gate, the
//                       reconnector, marking what a dead memnode held lost
//   repair.cc           replicas made again after a memnode died
//   stripes.cc          ec:K+M stripes: write, degraded read, holes, restriper
//   membership.cc       memnodes from etcd: joins and leaves
//   aggregate.h, offload.cc  aggregates split between local chunks and the
//                       memnodes holding the far ones (docs/offload.md);
//                       aggregate_run.h (one call's state), offload_jobs.cc
//                       (its OFFLOAD jobs)
//   far_node.h          one memnode as the runtime sees it; far addresses
//   erasure_code.h/.cc  the Reed-Solomon code (ISA-L)
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
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

// One memnode a runtime uses ("host:port"; loopback transport: "loopback:port").
using memnode::MemnodeAddress;
inline constexpr size_t kMaxMemnodes = 254;  // node ids 0..253 in a far address (far_node.h)
// memnode::ParseMemnodeList with at most kMaxMemnodes entries.
StatusOr<std::vector<MemnodeAddress>> ParseMemnodeList(std::string_view list, uint16_t default_port);

// How many memnodes hold each far object (docs/redundancy.md):
//   none           one copy (today's behaviour; a dead memnode loses its objects)
//   replicate:R    R copies on R different memnodes (2 <= R <= 4)
//   ec:K+M         Unique-Copy only: the objects of an eviction round are
//                  coded in stripes of K data blocks plus M parity blocks
//                  (Reed-Solomon, ISA-L), each on a different memnode; a
//                  healthy swap-in is one READ, a degraded one rebuilds the
//                  block from K others (K >= 1, M >= 1, K+M <= 32)
struct Redundancy {
  enum class Kind { kNone, kReplicate, kErasure };
  Kind kind = Kind::kNone;
  uint32_t replicas = 1;  // kReplicate: R
  uint32_t k = 0, m = 0;  // kErasure
  uint32_t nodes_needed() const { return kind == Kind::kErasure ? k + m : replicas; }
};
StatusOr<Redundancy> ParseRedundancy(std::string_view s);  // "none" | "replicate:R" | "ec:K+M"
std::string RedundancyName(const Redundancy& r);

// Where the far part of an aggregate (compute/aggregate.h, docs/offload.md)
// runs: kAuto — at the memnode holding it when that moves fewer bytes than
// bringing it here (and the memnode takes the work); kAlways — at the
// memnode whenever a unit is far on one memnode; kNever — here, swapping the
// far chunks in as any scan does.
enum class OffloadMode { kAuto, kAlways, kNever };
std::string_view OffloadModeName(OffloadMode m);
StatusOr<OffloadMode> ParseOffloadMode(std::string_view s);  // "auto" | "always" | "never"

struct RuntimeOptions {
  TransportKind transport = TransportKind::kTcp;
  // The memnodes: `memnodes` if not empty, else the one at memnode_addr:memnode_port.
  std::string memnode_addr = "127.0.0.1";
  uint16_t memnode_port = 7000;
  std::vector<MemnodeAddress> memnodes;
  Redundancy redundancy;                 // needs at least nodes_needed() memnodes
  // Discovery (docs/discovery.md): with an etcd endpoint ("host:port"), the
  // memnodes registered under etcd_prefix are used too (with `memnodes`, or
  // alone if it is empty), a memnode whose key goes (lease expired or
  // revoked) is dead at once, and one that joins later takes new blocks
  // and repairs.
  std::string etcd;
  std::string etcd_prefix = "/sharry/memnodes/";
  // ec: holes (members swapped in or destroyed) are compacted away only while
  // the stripes' far memory is more than this fraction over (K+M)/K of the
  // data: a hole whose stripe-mates are swapped in meanwhile costs nothing.
  double ec_hole_budget = 0.05;
  // ec: a swap-in keeps the member's old bytes, up to this many bytes in
  // all, so that the next eviction round refills its hole in place with a
  // victim that fills at least 3/4 of its block (a parity delta, no compaction;
  // docs/redundancy.md, "Refills"). -1: min(budget / 16, 2 x evict_batch
  // x 4 KiB); 0: no refills (holes are only compacted).
  int64_t ec_refill_bytes = -1;
  int placement_refresh_ms = 500;        // how often each memnode's used bytes are asked (STATS)
                                         // for placement (least used first); 0: never, ours only
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
  // Credentials (docs/security.md): the tenant the runtime authenticates as
  // and its secret (auth::ReadSecretFile; wiped when the options go). An
  // empty tenant connects anonymously (a memnode without --tenants_file).
  std::string tenant;
  auth::Secret secret;
  // Aggregates (compute/aggregate.h): the default of AggregateOptions::offload.
  OffloadMode offload = OffloadMode::kAuto;
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
  uint64_t quota_exceeded = 0;       // of those, the episodes that began with a quota refusal (kQuotaExceeded)
  uint64_t refused_local = 0;        // New() and swap-ins refused at the local bound (kResourceExhausted)
  // Many memnodes (docs/redundancy.md).
  uint64_t far_copy_bytes = 0;       // bytes of far copies held (far_bytes x copies): the far memory we use
  uint64_t degraded_reads = 0;       // swap-ins served by another copy: the first one's memnode was dead
  uint64_t dead_memnodes = 0;        // times a memnode was declared dead (its control connection lost)
  uint64_t repair_pending = 0;       // objects short of a copy, waiting for the repairer
  uint64_t repaired_objects = 0;     // copies made again on surviving memnodes (ec: objects moved
                                     // out of a stripe that lost blocks)
  uint64_t stripes = 0;              // ec: live stripes
  uint64_t restriped_objects = 0;    // ec: objects moved out of stripes with holes (compaction)
  uint64_t restripe_pending = 0;     // ec: stripes with holes queued for compaction
  uint64_t ec_refills = 0;           // ec: victims written into a kept hole (parity updated in place)
  uint64_t ec_kept_holes = 0;        // ec: holes whose old bytes are kept for a refill (now)
  uint64_t ec_kept_bytes = 0;        // ec: their bytes, local memory outside the budget (now)
  // Bytes moved over the transports (object data, both directions; RPCs not counted here).
  uint64_t far_read_bytes = 0;       // READs: swap-ins, aggregates' far chunks, results, repair
  uint64_t far_write_bytes = 0;      // WRITEs: swap-outs, repair, restriping
  // Aggregates (compute/aggregate.h, docs/offload.md).
  uint64_t aggregates = 0;           // Aggregate() calls
  uint64_t agg_local_units = 0;      // units computed here on local chunks
  uint64_t agg_pulled_units = 0;     // units computed here after READing far chunks (no swap-in)
  uint64_t agg_offloaded_units = 0;  // units computed by a memnode
  uint64_t agg_offloaded_rows = 0;
  uint64_t offload_jobs = 0;         // OFFLOAD requests accepted by memnodes
  uint64_t offload_refused = 0;      // OFFLOADs refused (memnode busy or failed): their units pulled
  uint64_t offload_rpc_bytes = 0;    // OFFLOAD and OFFLOAD_WAIT requests and replies
  uint64_t offload_cpu_ns = 0;       // memnodes' CPU time on our jobs (as they report it)
  uint64_t offload_abandoned_blocks = 0;  // result/staging blocks never freed: a memnode that did not
                                          // confirm a job's end (no answer in op_timeout_ms) might write them
  struct Memnode {
    std::string name;                // host:port
    std::string state;               // "healthy", "reconnecting", "dead"
    uint64_t copies = 0, copy_bytes = 0;  // our far copies there (object sizes)
    uint64_t alloc_rpcs = 0, free_rpcs = 0;
    uint64_t pending_free_blocks = 0;  // queued there for FREE (or reuse)
    uint64_t used_bytes = 0;         // the memnode's whole use at its last STATS (placement)
  };
  std::vector<Memnode> memnodes;     // one per memnode, in the order of the options
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
                   &RuntimeStats::quota_exceeded, &RuntimeStats::refused_local, &RuntimeStats::degraded_reads,
                   &RuntimeStats::dead_memnodes, &RuntimeStats::repaired_objects,
                   &RuntimeStats::restriped_objects, &RuntimeStats::ec_refills, &RuntimeStats::far_read_bytes,
                   &RuntimeStats::far_write_bytes, &RuntimeStats::aggregates, &RuntimeStats::agg_local_units,
                   &RuntimeStats::agg_pulled_units, &RuntimeStats::agg_offloaded_units,
                   &RuntimeStats::agg_offloaded_rows, &RuntimeStats::offload_jobs, &RuntimeStats::offload_refused,
                   &RuntimeStats::offload_rpc_bytes, &RuntimeStats::offload_cpu_ns,
                   &RuntimeStats::offload_abandoned_blocks})
      d.*m -= before.*m;
    return d;
  }
};

class Runtime;
class RuntimeImpl;

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
  // The scope's own state stays inline here (not in runtime_impl.h): Pin's
  // local hit reads and appends to it without a call.
  friend class RuntimeImpl;
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
  // The memnode (its index in the runtime's list) of the object's first far
  // copy; -1 if it has none.
  int far_memnode() const;
  // The placement key given to Runtime::New (0: none).
  uint32_t affinity() const { return h_->affinity; }

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
  friend class RuntimeImpl;
  RemoteObject(Runtime* rt, ObjectHeader* h) : rt_(rt), h_(h) {}
  Runtime* rt_ = nullptr;
  ObjectHeader* h_ = nullptr;
};

// The runtime. Create() returns a RuntimeImpl (runtime_impl.h), whose
// state — locks, the header slab, queues, connections, threads — stays out of
// this header; this class is only its API.
class Runtime {
 public:
  static StatusOr<std::unique_ptr<Runtime>> Create(const RuntimeOptions& options);
  virtual ~Runtime();  // REQUIRES: every RemoteObject and DerefScope is gone
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // A new object of `size` bytes, local, zero-filled (or copied from `init`).
  // kInvalidArgument for 0 or above max_object_bytes.
  //
  // `affinity` (0: none) is a placement key, fixed for the object's life:
  // with many memnodes, objects with the same key put their first far copy
  // on the same memnode — the healthy one the key hashes to (rendezvous
  // hashing over the healthy memnodes), unless it ran out of far memory —
  // so that work on them can run at that memnode (an aggregate offloads a
  // unit only when all its chunks have a copy on one memnode). The other
  // copies of replicate:R go least used first, as for objects without a
  // key; ec:K+M stripes and repaired copies ignore the key.
  // RemoteArray gives its chunks keys by row (remote_ds/remote_array.h).
  // Details: docs/redundancy.md, "Affinity".
  StatusOr<RemoteObject> New(uint32_t size, const void* init = nullptr, uint32_t affinity = 0);

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
  // A memnode's view (STATS over our control connection to it); `node`
  // indexes the memnodes as in the options.
  StatusOr<memnode::Stats> MemnodeStats(size_t node = 0);
  size_t memnode_count() const;
  // Our client id at a memnode (owner of our far blocks there).
  // (A new one after a reconnect.)
  ClientId control_client_id(size_t node = 0) const;
  // The last automatic eviction error (OK if none): e.g. far memory exhausted.
  Status eviction_status() const;
  // With redundancy (replicate, ec): OK while no far data was lost and at
  // least as many memnodes as the redundancy needs are healthy (a dead one
  // is in Stats().memnodes). Without: OK while every memnode is reachable
  // and no far data was lost; otherwise the
  // error, naming the memnode and what happened, e.g. "memnode 127.0.0.1:7000
  // unreachable since 2.1 s: ...". A loss of far memory (kDataLoss, "far
  // memory lost: ...") is permanent: health() reports it even after the
  // runtime reconnected and carries on with the objects that survived.
  Status health() const;
  // The largest local usage New() and swap-ins admit: budget + budget/8 (each
  // thread may overshoot it by the one object it is adding).
  uint64_t local_limit_bytes() const;
  const RuntimeOptions& options() const;

 private:
  friend class RuntimeImpl;  // the only subclass
  Runtime() = default;
};

}  // namespace sharry::compute
