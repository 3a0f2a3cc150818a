// Copyright 2024 The Sharry Authors.

#include "alloc/clock.h"

#include <chrono>

namespace sharry::alloc {
namespace {

class SteadyClock final : public Clock {
 public:
  uint64_t NowNanos() const override {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::steady_clock::now().time_since_epoch())
                                     .count());
  }
};

}  // namespace

const Clock* Clock::Real() {
  static const SteadyClock* const clock = new SteadyClock();
  return clock;
}

}  // namespace sharry::alloc
