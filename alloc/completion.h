// Copyright 2024 The Sharry Authors.
//
// Completion: the one-shot slot through which a section thread answers one
// request. The requester owns it (typically on its stack), puts its address
// in the request, and calls Wait(); the section thread calls Signal() once
// after writing the results.
//
// State word (std::atomic<uint32_t>, the futex word of std::atomic::wait):
//
//   kPending --Signal--> kDone                      requester still spinning
//   kPending --Wait: about to sleep--> kWaiting
//   kWaiting --Signal--> kNotifying --notify_one--> kDone
//
// Wait() spins (unless it shares its CPU with the signaller), then yields,
// then sleeps in std::atomic::wait, and returns only on kDone. Because the waiter cannot return during kNotifying, the
// signaller's notify_one never touches a completion that has been destroyed,
// and a signaller that finds no sleeper makes no system call at all.
// Results written before Signal() are visible after Wait() (release/acquire).
//
// Thread-safety: exactly one thread calls Wait() and one calls Signal().

#ifndef SHARRY_ALLOC_COMPLETION_H_
#define SHARRY_ALLOC_COMPLETION_H_

#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

#include "base/cpu_relax.h"

namespace sharry::alloc {

class Completion {
 public:
  // How long Wait() polls before it sleeps: kSpinPolls PAUSE polls, then
  // sched_yield polls for up to kYieldNanos (which lets a section thread
  // that shares this core run).
  static constexpr int kSpinPolls = 256;
  static constexpr int64_t kYieldNanos = 50'000;

  Completion() = default;
  Completion(const Completion&) = delete;
  Completion& operator=(const Completion&) = delete;

  // Makes the completion reusable. REQUIRES: no Signal() outstanding.
  void Reset() { state_.store(kPending, std::memory_order_relaxed); }

  bool done() const { return state_.load(std::memory_order_acquire) == kDone; }

  // Called once by the section thread.
  void Signal() {
    uint32_t s = kPending;
    if (state_.compare_exchange_strong(s, kDone, std::memory_order_acq_rel)) return;
    // The requester is (about to be) asleep: wake it while it cannot leave.
    state_.store(kNotifying, std::memory_order_release);
    state_.notify_one();
    state_.store(kDone, std::memory_order_release);
  }

  // Blocks until Signal() has completed. `signaller_cpu`, if given, is
  // where the signalling thread last ran (SectionThread::running_cpu()):
  // while it is this thread's CPU, spinning cannot help (the signaller
  // needs this very CPU), so Wait() skips the PAUSE phase and yields at
  // once.
  void Wait(const std::atomic<int>* signaller_cpu = nullptr) {
    if (signaller_cpu == nullptr ||
        signaller_cpu->load(std::memory_order_relaxed) != sched_getcpu()) {
      for (int i = 0; i < kSpinPolls; ++i) {
        if (done()) return;
        CpuRelax();
      }
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::nanoseconds(kYieldNanos);
    do {
      if (done()) return;
      std::this_thread::yield();
    } while (std::chrono::steady_clock::now() < deadline);
    uint32_t s = kPending;
    if (!state_.compare_exchange_strong(s, kWaiting, std::memory_order_acq_rel)) {
      // Already kDone (only Signal() moves it out of kPending).
      return;
    }
    for (;;) {
      s = state_.load(std::memory_order_acquire);
      if (s == kDone) return;
      if (s == kWaiting) {
        state_.wait(kWaiting, std::memory_order_acquire);
      } else {
        CpuRelax();  // kNotifying: the signaller is inside notify_one
      }
    }
  }

 private:
  static constexpr uint32_t kPending = 0;
  static constexpr uint32_t kWaiting = 1;
  static constexpr uint32_t kNotifying = 2;
  static constexpr uint32_t kDone = 3;

  std::atomic<uint32_t> state_{kPending};
};

}  // namespace sharry::alloc

#endif  // SHARRY_ALLOC_COMPLETION_H_
