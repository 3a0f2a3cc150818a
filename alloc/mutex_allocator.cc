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

void MutexAllocator::AllocBatch(OwnerId owner, std::span<const uint64_t> sizes,
                                std::span<AllocResult> out) {
  CHECK_EQ(sizes.size(), out.size());
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < sizes.size(); ++i) out[i] = alloc_.Allocate(sizes[i], owner);
}

AllocResult MutexAllocator::Allocate(OwnerId owner, uint64_t size) {
  std::lock_guard<std::mutex> lock(mu_);
  return alloc_.Allocate(size, owner);
}

void MutexAllocator::FreeBatch(OwnerId owner, std::span<const uint64_t> offsets,
                               std::span<AllocStatus> out) {
  CHECK_EQ(offsets.size(), out.size());
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < offsets.size(); ++i) out[i] = alloc_.Free(offsets[i], owner);
}

AllocStatus MutexAllocator::Free(OwnerId owner, uint64_t offset) {
  std::lock_guard<std::mutex> lock(mu_);
  return alloc_.Free(offset, owner);
}

ReclaimResult MutexAllocator::FreeAllOf(OwnerId owner) {
  std::lock_guard<std::mutex> lock(mu_);
  return alloc_.FreeAllOf(owner);
}

uint64_t MutexAllocator::Flush() {
  std::lock_guard<std::mutex> lock(mu_);
  return alloc_.FlushPendingFrees();
}

SectionStats MutexAllocator::Stats() {
  std::lock_guard<std::mutex> lock(mu_);
  return alloc_.stats();
}

OwnerUsage MutexAllocator::Usage(OwnerId owner) {
  std::lock_guard<std::mutex> lock(mu_);
  return alloc_.Usage(owner);
}

std::vector<OwnerUsage> MutexAllocator::Owners() {
  std::vector<OwnerUsage> out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    alloc_.AppendOwners(&out);
  }
  std::sort(out.begin(), out.end(), [](const OwnerUsage& a, const OwnerUsage& b) {
    return a.bytes != b.bytes ? a.bytes > b.bytes : a.owner < b.owner;
  });
  return out;
}

}  // namespace sharry::alloc
