// Copyright 2024 The Sharry Authors.
//
// FarAllocator: the API SharryAllocator and its baseline MutexAllocator
// share, so that benchmarks and tests drive either through one template.
// Both headers static_assert that their class satisfies it.
//
// An allocator hands out UMA offsets to owners, in batches or one at a
// time; frees are checked against the owner; FreeAllOf reclaims an owner's
// blocks; Flush applies pending frees; Usage and Stats report (Stats' type
// is the allocator's own: per section or for the whole UMA).

#ifndef SHARRY_ALLOC_ALLOCATOR_CONCEPT_H_
#define SHARRY_ALLOC_ALLOCATOR_CONCEPT_H_

#include <concepts>
#include <cstdint>
#include <span>

#include "alloc/types.h"

namespace sharry::alloc {

template <typename A>
concept FarAllocator = requires(A& a, OwnerId owner, uint64_t n, std::span<const uint64_t> in,
                                std::span<AllocResult> results, std::span<AllocStatus> statuses) {
  a.AllocBatch(owner, in, results);
  { a.Allocate(owner, n) } -> std::same_as<AllocResult>;
  a.FreeBatch(owner, in, statuses);
  { a.Free(owner, n) } -> std::same_as<AllocStatus>;
  { a.FreeAllOf(owner) } -> std::same_as<ReclaimResult>;
  { a.Flush() } -> std::same_as<uint64_t>;
  { a.Usage(owner) } -> std::same_as<OwnerUsage>;
  a.Stats();
};

}  // namespace sharry::alloc

#endif  // SHARRY_ALLOC_ALLOCATOR_CONCEPT_H_
