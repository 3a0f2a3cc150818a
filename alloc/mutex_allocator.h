// Copyright 2024 The Sharry Authors.
//
// MutexAllocator: the baseline Sharry is measured against. The same
// SectionAllocator logic over the whole UMA (one section), called directly
// by the requester threads behind one mutex: the "global free list
// behind a lock" design of paper 4.3, with no offloading.
//
// Its API mirrors SharryAllocator (both satisfy FarAllocator) so
// benchmarks and tests can drive both.
//
// Thread-safety: all methods may be called concurrently; each holds mu_ for
// the whole batch.

#ifndef SHARRY_ALLOC_MUTEX_ALLOCATOR_H_
#define SHARRY_ALLOC_MUTEX_ALLOCATOR_H_

#include <cstdint>
#include <span>
#include <vector>

#include "alloc/allocator_concept.h"
#include "base/mutex.h"
#include "alloc/section_allocator.h"
#include "alloc/types.h"

namespace sharry::alloc {

class MutexAllocator {
 public:
  struct Options {
    uint64_t uma_bytes = 0;  // rounded down to whole pages; >= one page
    uint32_t free_batch_threshold = 64;
  };

  explicit MutexAllocator(const Options& options);

  // As SharryAllocator's (alloc/sharry_allocator.h), over one section.
  void AllocBatch(OwnerId owner, std::span<const uint64_t> sizes, std::span<AllocResult> out) EXCLUDES(mu_);
  [[nodiscard]] AllocResult Allocate(OwnerId owner, uint64_t size) EXCLUDES(mu_);
  void FreeBatch(OwnerId owner, std::span<const uint64_t> offsets, std::span<AllocStatus> out) EXCLUDES(mu_);
  [[nodiscard]] AllocStatus Free(OwnerId owner, uint64_t offset) EXCLUDES(mu_);
  ReclaimResult FreeAllOf(OwnerId owner) EXCLUDES(mu_);
  uint64_t Flush() EXCLUDES(mu_);
  SectionStats Stats() EXCLUDES(mu_);
  OwnerUsage Usage(OwnerId owner) EXCLUDES(mu_);
  // Every owner with live blocks, by bytes descending (as in AllocatorStats).
  std::vector<OwnerUsage> Owners() EXCLUDES(mu_);

 private:
  // AllocBatch and FreeBatch: out[i] = (alloc_.*op)(in[i], owner), the
  // whole batch under one hold of mu_.
  template <typename T>
  void RunBatch(T (SectionAllocator::*op)(uint64_t, OwnerId), OwnerId owner, std::span<const uint64_t> in,
                std::span<T> out) EXCLUDES(mu_);

  Mutex mu_;  // the one lock of the baseline
  SectionAllocator alloc_ GUARDED_BY(mu_);
};
static_assert(FarAllocator<MutexAllocator>);

}  // namespace sharry::alloc

#endif  // SHARRY_ALLOC_MUTEX_ALLOCATOR_H_
