// Copyright 2024 The Sharry Authors.
//
// SectionThread: the allocator thread of one section (paper 4.3, "offload to
// dedicated core"). It owns a SectionAllocator that no other thread touches,
// and serves SectionRequests from its RequestRing in arrival order, so the
// allocator needs no locks.
//
// Request slot layout (RequestRing<SectionRequest>::Slot, one cache line):
//
//   byte  0  seq           uint64  ring sequence number (see request_ring.h)
//         8  kind          uint8   kAlloc | kFree | kFreeAllOf | kFlush | kStats
//                                  | kUsage
//        12  owner         uint32  client id
//        16  count         uint32  elements in `in` / `out`
//        20  cpu           int32   requester's CPU at Submit (-1: unknown)
//        24  in            ptr     sizes (kAlloc) or UMA offsets (kFree);
//                                  nullptr: the single element is in1
//        32  out           ptr     AllocResult[count] | AllocStatus[count] |
//                                  ReclaimResult | SectionSnapshot |
//                                  uint64 (flushed) | OwnerUsage
//        40  done          ptr     Completion signalled after `out` is written
//        48  in1           uint64  the element of a one-element batch, inline
//        56  freed_bytes   ptr     kFree: if set, += the rounded bytes of the
//                                  blocks whose free was accepted
//
// The requester owns `in`, `out` and `done`, and keeps them alive until
// done->Wait() returns. A request carries a whole batch, so one ring
// round-trip serves many allocations or frees; a one-element batch travels
// inline in the slot (in1), which saves the section thread a cache miss on
// the requester's memory.
//
// The thread loop: pop and serve everything queued; publish the section's
// used bytes (for the scheduler); when the ring is empty poll with PAUSE
// for idle_spin_nanos, then with sched_yield for idle_yield_nanos (so that
// a requester sharing this core can run), then Park() on the ring (futex
// sleep; producers wake it). With busy_poll it only polls. On a dedicated
// core (the paper's setting) a long idle budget costs nothing; a wake-up
// from futex sleep costs tens of microseconds on a VM. The thread is pinned
// with pthread_setaffinity_np to `core` (-1: not pinned); a failed pin is
// logged and the thread runs unpinned.
//
// Shared CPU (fewer cores than threads). The thread publishes the CPU it
// runs on (running_cpu()), and each request carries its requester's CPU.
// A requester that finds the section thread on its own CPU yields at once
// instead of spinning (Completion::Wait). When everything the section
// thread has just served came from requesters of its own CPU, it yields at
// once (and skips PAUSE polling until it parks), so those requesters get
// the CPU back without waiting out a spin budget; if requesters on other
// CPUs are active too, it keeps its CPU for them. Neither changes anything
// when every thread has its own core.
//
// Shutdown: Stop() (also run by the destructor) sets the stop flag, wakes
// the thread, and joins it after it has served every request already in
// the ring. REQUIRES: no Submit() concurrent with or after Stop().
//
// Thread-safety: Submit and the synchronous wrappers may be called from any
// number of threads at once. The counters are lock-free snapshots.

#ifndef SHARRY_ALLOC_SECTION_THREAD_H_
#define SHARRY_ALLOC_SECTION_THREAD_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <thread>
#include <vector>

#include "alloc/completion.h"
#include "alloc/request_ring.h"
#include "alloc/section_allocator.h"
#include "alloc/types.h"

namespace sharry::alloc {

// An exact picture of one section, taken by its thread between two
// requests: the counters, and every owner with live blocks (unordered).
struct SectionSnapshot {
  SectionStats stats;
  std::vector<OwnerUsage> owners;
};

struct SectionRequest {
  enum class Kind : uint8_t { kAlloc, kFree, kFreeAllOf, kFlush, kStats, kUsage };

  Kind kind = Kind::kAlloc;
  OwnerId owner = kNoOwner;
  uint32_t count = 0;
  int32_t cpu = -1;                 // set by Submit
  const uint64_t* in = nullptr;     // nullptr: the element is in1 (count 1)
  union Out {
    AllocResult* alloc;       // kAlloc: count results
    AllocStatus* status;      // kFree: count statuses
    ReclaimResult* reclaim;   // kFreeAllOf
    SectionSnapshot* snapshot;  // kStats
    uint64_t* flushed;        // kFlush: number of frees applied
    OwnerUsage* usage;        // kUsage: what `owner` holds
  } out = {nullptr};
  Completion* done = nullptr;
  uint64_t in1 = 0;
  uint64_t* freed_bytes = nullptr;  // kFree: if set, += bytes freed (see the layout)
};
// Points a request's answer at `p`, the union member chosen by p's type:
// for code generic over the kinds.
inline void SetOut(SectionRequest::Out& o, AllocResult* p) { o.alloc = p; }
inline void SetOut(SectionRequest::Out& o, AllocStatus* p) { o.status = p; }
inline void SetOut(SectionRequest::Out& o, ReclaimResult* p) { o.reclaim = p; }
inline void SetOut(SectionRequest::Out& o, SectionSnapshot* p) { o.snapshot = p; }
inline void SetOut(SectionRequest::Out& o, uint64_t* p) { o.flushed = p; }
inline void SetOut(SectionRequest::Out& o, OwnerUsage* p) { o.usage = p; }
static_assert(sizeof(SectionRequest) == 56);
static_assert(offsetof(SectionRequest, cpu) == 12 && offsetof(SectionRequest, in1) == 40 &&
                  offsetof(SectionRequest, freed_bytes) == 48,
              "keep the slot layout drawn above");
static_assert(sizeof(RequestRing<SectionRequest>::Slot) == kCacheLineSize);

class SectionThread {
 public:
  struct Options {
    SectionAllocator::Options section;
    int core = -1;                // CPU to pin to; -1 = not pinned
    bool busy_poll = false;       // never sleep when idle
    uint32_t ring_capacity = 1024;  // power of two
    // An idle thread polls with PAUSE for idle_spin_nanos, then with
    // sched_yield for idle_yield_nanos, then sleeps until a producer wakes
    // it. Time-based, so that the budget outlasts a requester's own
    // spin-then-sleep cycle whatever PAUSE costs on the machine.
    uint64_t idle_spin_nanos = 5'000;
    uint64_t idle_yield_nanos = 250'000;
  };

  // Starts the thread.
  explicit SectionThread(const Options& options);
  SectionThread(const SectionThread&) = delete;
  SectionThread& operator=(const SectionThread&) = delete;
  ~SectionThread();

  // Serves all queued requests, then stops and joins the thread. Idempotent.
  void Stop();

  // Enqueues a request (blocks while the ring is full), recording the
  // caller's CPU in it. The answer arrives through r.done; wait for it with
  // r.done->Wait(&running_cpu()).
  void Submit(const SectionRequest& r);

  // The CPU the thread last ran on (-1 before it starts). Relaxed; a hint.
  const std::atomic<int>& running_cpu() const { return cpu_; }

  // Synchronous wrappers: submit one request and wait for it.
  // REQUIRES: out.size() == sizes.size() (resp. offsets.size()).
  void AllocBatch(OwnerId owner, std::span<const uint64_t> sizes, std::span<AllocResult> out);
  // *freed_bytes (if given) += the rounded bytes of the blocks freed.
  void FreeBatch(OwnerId owner, std::span<const uint64_t> offsets, std::span<AllocStatus> out,
                 uint64_t* freed_bytes = nullptr);
  ReclaimResult FreeAllOf(OwnerId owner);
  uint64_t Flush();
  SectionStats Stats();  // exact, taken between two requests
  SectionSnapshot Snapshot();  // Stats() plus the owners; O(owners)
  OwnerUsage Usage(OwnerId owner);  // exact, O(1) in the section thread

  uint64_t base() const { return base_; }
  uint64_t length() const { return length_; }

  // Lock-free counters, updated by the thread (relaxed; for monitoring and
  // scheduling, not for exact accounting).
  uint64_t published_used_bytes() const { return used_bytes_.load(std::memory_order_relaxed); }
  uint64_t requests_served() const { return requests_.load(std::memory_order_relaxed); }
  uint64_t elements_served() const { return elements_.load(std::memory_order_relaxed); }
  size_t ring_depth() const { return ring_.size(); }
  uint64_t parks() const { return ring_.parks(); }
  // True once the thread runs pinned to its core.
  bool pinned() const { return pinned_.load(std::memory_order_acquire); }

 private:
  void Run();
  // Serves one request and signals it. Returns true if its requester runs
  // on this thread's CPU.
  bool Serve(const SectionRequest& r, int cpu);
  void PinToCore();
  // AllocBatch and FreeBatch: submits a request of `kind` for the elements
  // `in`, answered into `out` (T: AllocResult or AllocStatus), and waits.
  template <typename T>
  void RunBatch(SectionRequest::Kind kind, OwnerId owner, std::span<const uint64_t> in, std::span<T> out,
                uint64_t* freed_bytes = nullptr);
  // FreeAllOf, Flush, Snapshot, Usage: submits a request of `kind` whose
  // answer is a T (SetOut), waits, and returns the answer.
  template <typename T>
  T RunOne(SectionRequest::Kind kind, OwnerId owner);

  const uint64_t base_;
  const uint64_t length_;
  const int core_;
  const bool busy_poll_;
  const uint64_t idle_spin_nanos_;
  const uint64_t idle_yield_nanos_;

  SectionAllocator alloc_;  // only the thread touches it once started
  RequestRing<SectionRequest> ring_;

  std::atomic<bool> stop_{false};
  std::atomic<bool> pinned_{false};
  // Written only by the thread, each when it changes; read by requesters.
  alignas(kCacheLineSize) std::atomic<int> cpu_{-1};
  // Written by the thread after every request (single writer: plain
  // stores, no read-modify-write).
  alignas(kCacheLineSize) std::atomic<uint64_t> used_bytes_{0};
  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> elements_{0};

  std::thread thread_;  // last: started after everything above exists
};

}  // namespace sharry::alloc

#endif  // SHARRY_ALLOC_SECTION_THREAD_H_
