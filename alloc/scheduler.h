// Copyright 2024 The Sharry Authors.
//
// RequestScheduler: picks the memory section for each allocation (paper
// 4.4, "request scheduler").
//
// Inputs, per section s (capacity C bytes each):
//   used(s)      bytes in use as last published by the section thread
//                (SectionLoadSource), plus bytes routed to s whose answer
//                has not come back yet (in flight), so that a burst of
//                requests does not all land on the section that looked
//                emptiest a moment ago;
//   ops(s)       elements (allocations, frees, ...) routed to s during the
//                sliding window: the last `window_buckets` buckets of
//                `bucket_nanos` each (default 4 x 10 ms).
//
// Policy. The score of s is
//
//   score(s) = used(s) / C  +  pressure_weight * ops(s) / max(1, sum ops)
//
// i.e. memory usage plus a penalty for taking a large share of the recent
// requests (which load that section's thread). A batch goes whole to the
// section with the lowest score among those whose estimated free space fits
// the whole batch; if none fits, the batch is split element by element,
// each to the lowest-scoring section that fits it, updating a local copy of
// the estimates as it goes. Frees are not scheduled (they go to the owning
// section, offset / C) but count in ops(s). The caller retries an element
// that found its section out of memory on PickForRetry's choices.
//
// Balance bound. A section s receives an allocation only if its score is
// the lowest, so used(s)/C <= used(t)/C + pressure_weight for every t at
// that moment; hence once the load has caught up, no section's usage
// exceeds another's by more than pressure_weight + (one batch) / C. Usage
// gaps present at the start (a prefilled section) only shrink.
//
// Buckets. Each bucket is one 64-bit atomic word (epoch << 32 | count),
// updated by CAS: a request landing in a new 10-ms epoch resets the bucket
// it reuses. Readers sum the buckets whose epoch lies in the window.
//
// Thread-safety: all methods may be called from any thread concurrently;
// the state is atomics only. Estimates read during a concurrent update are
// approximate, which only affects balance, never correctness.

#ifndef SHARRY_ALLOC_SCHEDULER_H_
#define SHARRY_ALLOC_SCHEDULER_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>

#include "alloc/clock.h"
#include "alloc/request_ring.h"

namespace sharry::alloc {

// Where the scheduler reads each section's confirmed usage. A class, not a
// callback, so tests can substitute a fake.
class SectionLoadSource {
 public:
  virtual ~SectionLoadSource() = default;
  virtual uint64_t UsedBytes(uint32_t section) const = 0;
};

class RequestScheduler {
 public:
  static constexpr uint32_t kMaxSections = 64;
  static constexpr uint32_t kMaxBuckets = 16;
  static constexpr uint32_t kNoSection = ~0u;

  struct Options {
    uint32_t num_sections = 1;        // 1..kMaxSections
    uint64_t section_bytes = 0;       // capacity of each section
    double pressure_weight = 0.05;    // see the file comment
    uint64_t bucket_nanos = 10'000'000;
    uint32_t window_buckets = 4;      // 1..kMaxBuckets
    const Clock* clock = nullptr;     // nullptr: Clock::Real()
  };

  // `load` must outlive the scheduler.
  RequestScheduler(const Options& options, const SectionLoadSource* load);

  uint32_t num_sections() const { return num_sections_; }

  // Assigns every element of a batch of allocation sizes to a section
  // (section_of[i]) and records the routing: ops(s) += elements and
  // in-flight bytes += their rounded sizes. The caller reports each
  // section's answer with Completed(s, bytes planned for s).
  // REQUIRES: section_of.size() == sizes.size(); every size in
  // [1, section_bytes].
  void Plan(std::span<const uint64_t> sizes, std::span<uint32_t> section_of);

  // The lowest-scoring section not in `excluded` (bit s = section s) for a
  // retry of one allocation of `bytes`, with the routing recorded (report
  // it with Completed(s, RoundedBytes(bytes))); or kNoSection when every
  // section is excluded.
  uint32_t PickForRetry(uint64_t bytes, uint64_t excluded);

  // Counts `ops` elements routed to `s` outside Plan (frees, FreeAllOf).
  void RecordOps(uint32_t s, uint64_t ops);

  // The answer for `bytes` of in-flight allocations of `s` came back.
  void Completed(uint32_t s, uint64_t bytes);

  // The bytes Plan / PickForRetry count in flight for one element of
  // `size`: its rounded block size.
  static uint64_t RoundedBytes(uint64_t size);

  // Estimates used by the policy (see the file comment).
  uint64_t EstimatedUsedBytes(uint32_t s) const;
  double Usage(uint32_t s) const;
  uint64_t WindowOps(uint32_t s) const;
  double OpsPerSecond(uint32_t s) const;
  double Score(uint32_t s) const;

 private:
  struct alignas(kCacheLineSize) SectionState {
    std::atomic<uint64_t> inflight_bytes{0};
    std::array<std::atomic<uint64_t>, kMaxBuckets> buckets{};
  };

  uint64_t NowBucket() const { return clock_->NowNanos() / bucket_nanos_; }
  uint64_t WindowOpsAt(uint32_t s, uint64_t now_bucket) const;
  void Route(uint32_t s, uint64_t ops, uint64_t bytes, uint64_t now_bucket);

  const uint32_t num_sections_;
  const uint64_t section_bytes_;
  const double pressure_weight_;
  const uint64_t bucket_nanos_;
  const uint32_t window_buckets_;
  const Clock* const clock_;
  const SectionLoadSource* const load_;
  std::unique_ptr<SectionState[]> state_;
};

}  // namespace sharry::alloc

#endif  // SHARRY_ALLOC_SCHEDULER_H_
