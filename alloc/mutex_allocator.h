// Copyright 2024 The Sharry Authors.
//
// MutexAllocator: the baseline Sharry is measured against. The same
// SectionAllocator logic over the whole UMA (one section), called directly
// by the requester threads behind one std::mutex: the "global free list
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
#include <mutex>
#include <span>
#include <vector>

#include "alloc/allocator_concept.h"
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

  void AllocBatch(OwnerId owner, std::span<const uint64_t> sizes, std::span<AllocResult> out);
  [[nodiscard]] AllocResult Allocate(OwnerId owner, uint64_t size);
  void FreeBatch(OwnerId owner, std::span<const uint64_t> offsets, std::span<AllocStatus> out);
  [[nodiscard]] AllocStatus Free(OwnerId owner, uint64_t offset);
  ReclaimResult FreeAllOf(OwnerId owner);
  uint64_t Flush();
  SectionStats Stats();
  OwnerUsage Usage(OwnerId owner);
  // Every owner with live blocks, by bytes descending (as in AllocatorStats).
  std::vector<OwnerUsage> Owners();

 private:
  std::mutex mu_;
  SectionAllocator alloc_;  // GUARDED_BY(mu_)
};
static_assert(FarAllocator<MutexAllocator>);

}  // namespace sharry::alloc

#endif  // SHARRY_ALLOC_MUTEX_ALLOCATOR_H_
