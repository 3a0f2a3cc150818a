#include "tools/cli/timeline.h"

namespace sharry::cli {

void Timeline::Start() {
  if (interval_ms_ <= 0 || thread_.joinable()) return;
  t0_ = last_t_ = Clock::now();
  last_ = counters_.Sum();
  st0_ = last_st_ = rt_.Stats();
  if (file_ != nullptr) {
    std::fprintf(file_, "t_ms,ops,ops_per_s,errors,degraded_reads,repaired_objects,repair_pending,dead_memnodes\n");
    std::fflush(file_);
  }
  thread_ = std::thread([this] { Loop(); });
}

void Timeline::Stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Timeline::Loop() {
  // Ticks at t0 + k x interval (no drift from the time a sample takes).
  auto next = t0_;
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    next += std::chrono::milliseconds(interval_ms_);
    if (cv_.wait_until(l, next, [this] { return stop_; })) break;
    l.unlock();
    Sample();
    l.lock();
  }
  l.unlock();
  // The partial interval at the end: if at least a millisecond long, or if
  // ops were done since the last row (the rows must add up to the phase's
  // counts even when the workers end just after a tick).
  const Progress p = counters_.Sum();
  if (Clock::now() - last_t_ >= std::chrono::milliseconds(1) || p.ops != last_.ops || p.errors != last_.errors)
    Sample();
}

void Timeline::Sample() {
  const auto now = Clock::now();
  const Progress p = counters_.Sum();
  const compute::RuntimeStats st = rt_.Stats();
  const double secs = std::chrono::duration<double>(now - last_t_).count();
  const uint64_t t_ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(now - t0_).count());
  const uint64_t ops = p.ops - last_.ops, errors = p.errors - last_.errors;
  const uint64_t degraded = st.degraded_reads - last_st_.degraded_reads;
  const uint64_t repaired = st.repaired_objects - last_st_.repaired_objects;
  const uint64_t dead = st.dead_memnodes - st0_.dead_memnodes;
  const double rate = secs > 0 ? ops / secs : 0;
  if (file_ != nullptr) {
    std::fprintf(file_, "%llu,%llu,%.0f,%llu,%llu,%llu,%llu,%llu\n", static_cast<unsigned long long>(t_ms),
                 static_cast<unsigned long long>(ops), rate, static_cast<unsigned long long>(errors),
                 static_cast<unsigned long long>(degraded), static_cast<unsigned long long>(repaired),
                 static_cast<unsigned long long>(st.repair_pending), static_cast<unsigned long long>(dead));
    std::fflush(file_);
  } else {
    Record r("timeline");
    r.Add("t_ms", t_ms).Add("ops", ops).Add("ops_per_s", rate, "%.0f").Add("errors", errors);
    r.Add("degraded_reads", degraded).Add("repaired_objects", repaired).Add("repair_pending", st.repair_pending);
    out_->Emit(r.Add("dead_memnodes", dead));
  }
  last_t_ = now;
  last_ = p;
  last_st_ = st;
}

}  // namespace sharry::cli
