// The progress of a client's timed phase, and its timeline: per-thread op
// and error counters (OpCounters) that worker threads bump without sharing a
// cache line, and a Timeline thread that samples them with the runtime's
// counters every interval, so that an experiment can plot throughput per
// 100 ms while a memnode is killed (docs/compute.md, "Binaries").
//
// Each sample is one row: t_ms (since Start), then, over the interval since
// the previous row, ops, ops_per_s, errors (wrong values read),
// degraded_reads and repaired_objects; then the levels repair_pending (now)
// and dead_memnodes (since Start). The rows go to a plain CSV file (a header
// line `t_ms,ops,...`, then one line per row) or, without a file, through
// the binary's Emitter as "timeline" records (--format text|csv|json).
//
// Threading: OpCounters::Slot(t) belongs to worker t, which only stores to
// it (relaxed); Sum() may run on any thread. A Timeline owns one thread;
// Start and Stop are called by one thread (the binary's main), and the
// Emitter it was given must not be used by anyone else between them.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "compute/runtime.h"
#include "tools/cli/output.h"

namespace sharry::cli {

// Counts of the timed phase so far.
struct Progress {
  uint64_t ops = 0;     // operations done
  uint64_t errors = 0;  // of which read a wrong value
};

// One counter pair per worker thread, each on its own cache line.
class OpCounters {
 public:
  explicit OpCounters(int threads) : slots_(static_cast<size_t>(threads)) {}

  struct alignas(64) Slot {
    std::atomic<uint64_t> ops{0}, errors{0};
    // The owner's counts so far (plain stores: one writer per slot).
    void Set(uint64_t o) { ops.store(o, std::memory_order_relaxed); }
    void AddError() { errors.store(errors.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed); }
  };
  Slot& slot(int t) { return slots_[static_cast<size_t>(t)]; }
  Progress Sum() const {
    Progress p;
    for (const Slot& s : slots_) {
      p.ops += s.ops.load(std::memory_order_relaxed);
      p.errors += s.errors.load(std::memory_order_relaxed);
    }
    return p;
  }

 private:
  std::vector<Slot> slots_;
};

class Timeline {
 public:
  // interval_ms 0: Start and Stop do nothing. `file`, if not null, gets the
  // CSV rows (the caller opens and closes it); else `out` gets records.
  Timeline(compute::Runtime& rt, const OpCounters& counters, int interval_ms, std::FILE* file, Emitter* out)
      : rt_(rt), counters_(counters), interval_ms_(interval_ms), file_(file), out_(out) {}
  ~Timeline() { Stop(); }
  Timeline(const Timeline&) = delete;
  Timeline& operator=(const Timeline&) = delete;

  // Starts sampling: the timed phase begins now.
  void Start();
  // Emits the last (partial) interval and joins the thread. Idempotent.
  void Stop();

 private:
  using Clock = std::chrono::steady_clock;
  void Loop();
  void Sample();  // one row: now minus the previous sample

  compute::Runtime& rt_;
  const OpCounters& counters_;
  const int interval_ms_;
  std::FILE* const file_;
  Emitter* const out_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  // The sampling thread's own state (and Stop's, after the join).
  Clock::time_point t0_, last_t_;
  Progress last_;
  compute::RuntimeStats st0_, last_st_;
};

}  // namespace sharry::cli
