// Copyright 2024 The Sharry Authors.
//
// SharryAllocator: the front end of the Sharry allocator (paper 4.3-4.4).
//
// The UMA of N bytes is cut into K equal sections of C = N / K bytes
// (rounded down to whole pages; a remainder past K * C is never used).
// Section i covers UMA offsets [i*C, (i+1)*C) and is owned by its own
// SectionThread, which serves requests from a lock-free ring; the
// allocator's metadata is touched only by those threads.
//
//   requester threads (any number)
//     AllocBatch(owner, sizes) ──► RequestScheduler picks sections (usage,
//                                  request pressure), may split the batch
//     FreeBatch(owner, offsets) ─► section = offset / C   (one division)
//            │  one SectionRequest per section touched, carrying its slice
//            ▼  of the batch; the requester waits on a Completion
//     RequestRing[i] ──► SectionThread[i] ──► SectionAllocator[i]
//
// An allocation that comes back kOutOfMemory is retried on the other
// sections, lowest score first, before kOutOfMemory is reported. Frees are
// delayed per section (free_batch_threshold; paper 4.2) and validated at
// once, so FreeBatch reports double frees and owner mismatches directly.
//
// Thread-safety: every public method may be called concurrently from any
// number of threads, except the destructor, which REQUIRES that no call is
// in progress. Calls block until their answer arrives.

#ifndef SHARRY_ALLOC_SHARRY_ALLOCATOR_H_
#define SHARRY_ALLOC_SHARRY_ALLOCATOR_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "alloc/allocator_concept.h"
#include "alloc/clock.h"
#include "alloc/scheduler.h"
#include "alloc/section_thread.h"
#include "alloc/types.h"

namespace sharry::alloc {

struct SharryAllocatorOptions {
  uint64_t uma_bytes = 0;            // N; at least num_sections pages
  uint32_t num_sections = 1;         // K, 1..RequestScheduler::kMaxSections
  // Core for section i: cores[i % cores.size()]; empty or -1 = unpinned.
  std::vector<int> cores;
  uint32_t free_batch_threshold = 64;  // pending frees applied per batch
  bool private_spans = true;         // a span holds one owner's blocks (section_allocator.h)
  SpanObserver* observer = nullptr;  // told of span grants/revokes, on the section threads
  bool busy_poll = false;            // section threads never sleep
  uint32_t ring_capacity = 1024;     // per section, power of two
  uint64_t idle_spin_nanos = 5'000;    // an idle section thread polls (PAUSE),
  uint64_t idle_yield_nanos = 250'000; // then yields, then sleeps
  double pressure_weight = 0.05;     // see scheduler.h
  uint64_t window_bucket_nanos = 10'000'000;
  uint32_t window_buckets = 4;
  const Clock* clock = nullptr;      // nullptr: Clock::Real()
};

struct AllocatorStats {
  struct Section {
    uint32_t index = 0;
    uint64_t base = 0;
    SectionStats stats;              // exact, taken by the section thread
    double requests_per_second = 0;  // elements routed, over the window
    uint64_t window_ops = 0;
    uint64_t ring_depth = 0;
    uint64_t requests_served = 0;
    uint64_t elements_served = 0;
    uint64_t parks = 0;              // times the section thread went to sleep
    bool pinned = false;
  };
  std::vector<Section> sections;
  SectionStats total;  // counters summed over sections (largest_free_run: max)
  // Every owner with live blocks (pending frees included, as in used_bytes),
  // summed over sections, by bytes descending (ties: owner ascending).
  std::vector<OwnerUsage> owners;
};

class SharryAllocator {
 public:
  // Starts one section thread per section. CHECK-fails on invalid options.
  explicit SharryAllocator(const SharryAllocatorOptions& options);
  SharryAllocator(const SharryAllocator&) = delete;
  SharryAllocator& operator=(const SharryAllocator&) = delete;
  // Serves every queued request, then stops the section threads.
  ~SharryAllocator();

  // out[i] answers sizes[i]: an offset, or kInvalidSize (0 or > C),
  // kInvalidOwner, kOutOfMemory (no section could serve it).
  // REQUIRES: out.size() == sizes.size().
  void AllocBatch(OwnerId owner, std::span<const uint64_t> sizes, std::span<AllocResult> out);
  [[nodiscard]] AllocResult Allocate(OwnerId owner, uint64_t size);

  // out[i] answers offsets[i]: kOk, kOutOfRange, kNotAllocated, kNotOwner.
  // *freed_bytes (if given) += the rounded bytes of the blocks freed (kOk):
  // what the owner's Usage drops by once the frees are applied.
  // REQUIRES: out.size() == offsets.size().
  void FreeBatch(OwnerId owner, std::span<const uint64_t> offsets, std::span<AllocStatus> out,
                 uint64_t* freed_bytes = nullptr);
  [[nodiscard]] AllocStatus Free(OwnerId owner, uint64_t offset);

  // Reclaims every block of `owner` in all sections: applies each section's
  // pending frees, then frees the owner's remaining blocks. Returns the
  // latter (what the owner had not freed itself). Afterwards the owner
  // holds nothing (Usage is zero, it is absent from Stats().owners) unless
  // a concurrent AllocBatch for it was still in flight.
  ReclaimResult FreeAllOf(OwnerId owner);

  // Applies all pending frees in all sections; returns how many.
  uint64_t Flush();

  // Exact per section (each taken by its thread between two requests; the
  // sections are not frozen together). O(sections + owners).
  AllocatorStats Stats();

  // What `owner` holds, summed over sections: live blocks and their rounded
  // bytes, pending frees included until they are applied. Unknown owner:
  // {owner, 0, 0}.
  OwnerUsage Usage(OwnerId owner);

  uint64_t uma_bytes() const { return uma_bytes_; }
  uint32_t num_sections() const { return num_sections_; }
  uint64_t section_bytes() const { return section_bytes_; }
  // The section holding `offset`, or RequestScheduler::kNoSection.
  uint32_t SectionOf(uint64_t offset) const {
    const uint64_t s = offset / section_bytes_;
    return s < num_sections_ ? static_cast<uint32_t>(s) : RequestScheduler::kNoSection;
  }

 private:
  friend class SharryAllocatorPeer;

  class LoadSource final : public SectionLoadSource {
   public:
    explicit LoadSource(const SharryAllocator* a) : a_(a) {}
    uint64_t UsedBytes(uint32_t s) const override {
      return a_->sections_[s]->published_used_bytes();
    }

   private:
    const SharryAllocator* a_;
  };


  const uint64_t uma_bytes_;
  const uint32_t num_sections_;
  const uint64_t section_bytes_;
  LoadSource load_source_;
  RequestScheduler scheduler_;
  std::vector<std::unique_ptr<SectionThread>> sections_;
};
static_assert(FarAllocator<SharryAllocator>);

}  // namespace sharry::alloc

#endif  // SHARRY_ALLOC_SHARRY_ALLOCATOR_H_
