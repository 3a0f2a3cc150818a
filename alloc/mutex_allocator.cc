// Copyright 2024 The Sharry Authors.

#include "alloc/mutex_allocator.h"

#include <algorithm>

#include "glog/logging.h"

namespace sharry::alloc {

MutexAllocator::MutexAllocator(const Options& options)
    : alloc_(SectionAllocator::Options{
          .base = 0,
          .length = options.uma_bytes & ~(kPageSize - 1),
          .free_batch_threshold = options.free_batch_threshold,
      }) {}

template <typename T>
void MutexAllocator::RunBatch(T (SectionAllocator::*op)(uint64_t, OwnerId), OwnerId owner,
                              std::span<const uint64_t> in, std::span<T> out) {
  CHECK_EQ(in.size(), out.size());
  MutexLock lock(&mu_);
  for (size_t i = 0; i < in.size(); ++i) out[i] = (alloc_.*op)(in[i], owner);
}

void MutexAllocator::AllocBatch(OwnerId owner, std::span<const uint64_t> sizes,
                                std::span<AllocResult> out) {
  RunBatch(&SectionAllocator::Allocate, owner, sizes, out);
}

AllocResult MutexAllocator::Allocate(OwnerId owner, uint64_t size) {
  AllocResult r;
  AllocBatch(owner, {&size, 1}, {&r, 1});
  return r;
}

void MutexAllocator::FreeBatch(OwnerId owner, std::span<const uint64_t> offsets,
                               std::span<AllocStatus> out) {
  RunBatch(&SectionAllocator::Free, owner, offsets, out);
}

AllocStatus MutexAllocator::Free(OwnerId owner, uint64_t offset) {
  AllocStatus s{};
  FreeBatch(owner, {&offset, 1}, {&s, 1});
  return s;
}

ReclaimResult MutexAllocator::FreeAllOf(OwnerId owner) {
  MutexLock lock(&mu_);
  return alloc_.FreeAllOf(owner);
}

uint64_t MutexAllocator::Flush() {
  MutexLock lock(&mu_);
  return alloc_.FlushPendingFrees();
}

SectionStats MutexAllocator::Stats() {
  MutexLock lock(&mu_);
  return alloc_.stats();
}

OwnerUsage MutexAllocator::Usage(OwnerId owner) {
  MutexLock lock(&mu_);
  return alloc_.Usage(owner);
}

std::vector<OwnerUsage> MutexAllocator::Owners() {
  std::vector<OwnerUsage> out;
  {
    MutexLock lock(&mu_);
    alloc_.AppendOwners(&out);
  }
  std::sort(out.begin(), out.end(), [](const OwnerUsage& a, const OwnerUsage& b) {
    return a.bytes != b.bytes ? a.bytes > b.bytes : a.owner < b.owner;
  });
  return out;
}

}  // namespace sharry::alloc
