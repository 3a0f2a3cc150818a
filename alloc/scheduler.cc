// Copyright 2024 The Sharry Authors.

#include "alloc/scheduler.h"

#include <algorithm>
#include <limits>

#include "alloc/size_classes.h"
#include "glog/logging.h"

namespace sharry::alloc {
namespace {

constexpr uint64_t kCountMask = 0xFFFFFFFFu;

uint32_t EpochOf(uint64_t word) { return static_cast<uint32_t>(word >> 32); }

}  // namespace

RequestScheduler::RequestScheduler(const Options& options, const SectionLoadSource* load)
    : num_sections_(options.num_sections),
      section_bytes_(options.section_bytes),
      pressure_weight_(options.pressure_weight),
      bucket_nanos_(options.bucket_nanos),
      window_buckets_(options.window_buckets),
      clock_(options.clock != nullptr ? options.clock : Clock::Real()),
      load_(load),
      state_(new SectionState[options.num_sections]) {
  CHECK(num_sections_ >= 1 && num_sections_ <= kMaxSections) << num_sections_;
  CHECK_GT(section_bytes_, 0u);
  CHECK_GE(pressure_weight_, 0.0);
  CHECK_GT(bucket_nanos_, 0u);
  CHECK(window_buckets_ >= 1 && window_buckets_ <= kMaxBuckets) << window_buckets_;
  CHECK(load_ != nullptr);
}

uint64_t RequestScheduler::RoundedBytes(uint64_t size) {
  return SizeMap::RoundedSize(std::max<uint64_t>(size, 1));
}

void RequestScheduler::Route(uint32_t s, uint64_t ops, uint64_t bytes, uint64_t now_bucket) {
  SectionState& st = state_[s];
  if (bytes > 0) st.inflight_bytes.fetch_add(bytes, std::memory_order_relaxed);
  if (ops == 0) return;
  std::atomic<uint64_t>& bucket = st.buckets[now_bucket % window_buckets_];
  const uint32_t epoch = static_cast<uint32_t>(now_bucket);
  uint64_t word = bucket.load(std::memory_order_relaxed);
  for (;;) {
    uint64_t next;
    if (EpochOf(word) == epoch) {
      const uint64_t count = std::min<uint64_t>((word & kCountMask) + ops, kCountMask);
      next = (word & ~kCountMask) | count;
    } else {
      next = (uint64_t{epoch} << 32) | std::min<uint64_t>(ops, kCountMask);
    }
    if (bucket.compare_exchange_weak(word, next, std::memory_order_relaxed)) return;
  }
}

void RequestScheduler::RecordOps(uint32_t s, uint64_t ops) {
  CHECK_LT(s, num_sections_);
  Route(s, ops, 0, NowBucket());
}

void RequestScheduler::Completed(uint32_t s, uint64_t bytes) {
  CHECK_LT(s, num_sections_);
  const uint64_t before = state_[s].inflight_bytes.fetch_sub(bytes, std::memory_order_relaxed);
  CHECK_GE(before, bytes) << "in-flight bytes of section " << s << " went negative";
}

uint64_t RequestScheduler::WindowOpsAt(uint32_t s, uint64_t now_bucket) const {
  const uint32_t now = static_cast<uint32_t>(now_bucket);
  uint64_t sum = 0;
  for (uint32_t i = 0; i < window_buckets_; ++i) {
    const uint64_t word = state_[s].buckets[i].load(std::memory_order_relaxed);
    const uint32_t age = now - EpochOf(word);  // wraps correctly mod 2^32
    if (age < window_buckets_) sum += word & kCountMask;
  }
  return sum;
}

uint64_t RequestScheduler::WindowOps(uint32_t s) const {
  CHECK_LT(s, num_sections_);
  return WindowOpsAt(s, NowBucket());
}

double RequestScheduler::OpsPerSecond(uint32_t s) const {
  return static_cast<double>(WindowOps(s)) * 1e9 /
         (static_cast<double>(bucket_nanos_) * window_buckets_);
}

uint64_t RequestScheduler::EstimatedUsedBytes(uint32_t s) const {
  CHECK_LT(s, num_sections_);
  return load_->UsedBytes(s) + state_[s].inflight_bytes.load(std::memory_order_relaxed);
}

double RequestScheduler::Usage(uint32_t s) const {
  return static_cast<double>(EstimatedUsedBytes(s)) / static_cast<double>(section_bytes_);
}

double RequestScheduler::Score(uint32_t s) const {
  const uint64_t now = NowBucket();
  uint64_t total = 0;
  for (uint32_t i = 0; i < num_sections_; ++i) total += WindowOpsAt(i, now);
  return Usage(s) + pressure_weight_ * static_cast<double>(WindowOpsAt(s, now)) /
                        static_cast<double>(std::max<uint64_t>(total, 1));
}

void RequestScheduler::Plan(std::span<const uint64_t> sizes, std::span<uint32_t> section_of) {
  CHECK_EQ(sizes.size(), section_of.size());
  if (sizes.empty()) return;
  const uint64_t now = NowBucket();

  // Snapshot of the estimates, updated locally as elements are placed.
  std::array<uint64_t, kMaxSections> used;
  std::array<uint64_t, kMaxSections> ops;
  std::array<uint64_t, kMaxSections> planned_bytes{};
  std::array<uint64_t, kMaxSections> planned_ops{};
  uint64_t total_ops = 0;
  for (uint32_t s = 0; s < num_sections_; ++s) {
    used[s] = EstimatedUsedBytes(s);
    ops[s] = WindowOpsAt(s, now);
    total_ops += ops[s];
  }
  auto score = [&](uint32_t s) {
    return static_cast<double>(used[s]) / static_cast<double>(section_bytes_) +
           pressure_weight_ * static_cast<double>(ops[s]) /
               static_cast<double>(std::max<uint64_t>(total_ops, 1));
  };
  // Lowest score among sections whose estimated free space fits `bytes`;
  // kNoSection if none.
  auto best_fitting = [&](uint64_t bytes) {
    uint32_t best = kNoSection;
    double best_score = std::numeric_limits<double>::infinity();
    for (uint32_t s = 0; s < num_sections_; ++s) {
      if (used[s] > section_bytes_ || section_bytes_ - used[s] < bytes) continue;
      const double sc = score(s);
      if (sc < best_score) {
        best_score = sc;
        best = s;
      }
    }
    return best;
  };

  uint64_t batch_bytes = 0;
  for (uint64_t size : sizes) batch_bytes += RoundedBytes(size);

  const uint32_t whole = best_fitting(batch_bytes);
  if (whole != kNoSection) {
    std::fill(section_of.begin(), section_of.end(), whole);
    Route(whole, sizes.size(), batch_bytes, now);
    return;
  }
  // Split: place elements one by one.
  for (size_t i = 0; i < sizes.size(); ++i) {
    const uint64_t bytes = RoundedBytes(sizes[i]);
    uint32_t s = best_fitting(bytes);
    if (s == kNoSection) {
      // Nothing fits by the estimates; the least used section answers (and
      // the caller retries the others on out-of-memory).
      s = 0;
      for (uint32_t t = 1; t < num_sections_; ++t) {
        if (used[t] < used[s]) s = t;
      }
    }
    section_of[i] = s;
    used[s] += bytes;
    ++ops[s];
    ++total_ops;
    planned_bytes[s] += bytes;
    ++planned_ops[s];
  }
  for (uint32_t s = 0; s < num_sections_; ++s) {
    if (planned_ops[s] > 0) Route(s, planned_ops[s], planned_bytes[s], now);
  }
}

uint32_t RequestScheduler::PickForRetry(uint64_t bytes, uint64_t excluded) {
  const uint64_t now = NowBucket();
  uint64_t total_ops = 0;
  for (uint32_t s = 0; s < num_sections_; ++s) total_ops += WindowOpsAt(s, now);
  uint32_t best = kNoSection;
  double best_score = std::numeric_limits<double>::infinity();
  for (uint32_t s = 0; s < num_sections_; ++s) {
    if ((excluded >> s) & 1) continue;
    const double sc = static_cast<double>(EstimatedUsedBytes(s)) /
                          static_cast<double>(section_bytes_) +
                      pressure_weight_ * static_cast<double>(WindowOpsAt(s, now)) /
                          static_cast<double>(std::max<uint64_t>(total_ops, 1));
    if (sc < best_score) {
      best_score = sc;
      best = s;
    }
  }
  if (best != kNoSection) Route(best, 1, RoundedBytes(bytes), now);
  return best;
}

}  // namespace sharry::alloc
