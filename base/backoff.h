// Idle backoff for polling threads: spin briefly, then sleep.
//
// A poller calls Idle() each time it found no work and Reset() when it did.
// The first `spin_iters` idle rounds only pause the CPU; after that
// ShouldSleep() is true and the poller blocks in its own way (epoll_wait,
// a completion channel, a futex) for up to sleep_ms. With busy_poll set it
// never sleeps: for dedicated cores. On a two-core test machine the sleep is
// what keeps pollers from starving the threads they serve.
#pragma once

#include <cstdint>

#include "base/cpu_relax.h"

namespace sharry {

struct BackoffOptions {
  bool busy_poll = false;
  uint32_t spin_iters = 2000;  // ~tens of microseconds of spinning
  int sleep_ms = 50;           // longest single sleep; pollers re-check stop flags after it
};

class Backoff {
 public:
  explicit Backoff(const BackoffOptions& o) : o_(o) {}
  void Reset() { idle_ = 0; }
  // Called after a round that found no work. Returns true when the caller
  // should now block (for at most sleep_ms()).
  bool Idle() {
    if (o_.busy_poll || ++idle_ < o_.spin_iters) {
      CpuRelax();
      return false;
    }
    return true;
  }
  int sleep_ms() const { return o_.sleep_ms; }

 private:
  BackoffOptions o_;
  uint32_t idle_ = 0;
};

}  // namespace sharry
