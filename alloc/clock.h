// Copyright 2024 The Sharry Authors.
//
// Clock: the time source of the request scheduler, behind a small class so
// that tests can drive time by hand (ManualClock) instead of sleeping.
//
// Thread-safety: NowNanos() may be called from any thread.

#ifndef SHARRY_ALLOC_CLOCK_H_
#define SHARRY_ALLOC_CLOCK_H_

#include <atomic>
#include <cstdint>

namespace sharry::alloc {

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic nanoseconds since an arbitrary epoch.
  virtual uint64_t NowNanos() const = 0;

  // std::chrono::steady_clock. Never destroyed.
  static const Clock* Real();
};

// A clock that moves only when told to.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(uint64_t start_nanos = 0) : now_(start_nanos) {}
  uint64_t NowNanos() const override { return now_.load(std::memory_order_acquire); }
  void Advance(uint64_t nanos) { now_.fetch_add(nanos, std::memory_order_acq_rel); }
  void Set(uint64_t nanos) { now_.store(nanos, std::memory_order_release); }

 private:
  std::atomic<uint64_t> now_;
};

}  // namespace sharry::alloc

#endif  // SHARRY_ALLOC_CLOCK_H_
