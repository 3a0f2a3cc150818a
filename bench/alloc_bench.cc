// Copyright 2024 The Sharry Authors.
//
// alloc_bench: allocation + free throughput and latency of
//   sharry-1   SharryAllocator, 1 section, requests offloaded to its thread;
//              no thread is pinned
//   sharry-1p  the same, section thread pinned to --pin_section_core and
//              every requester to --pin_requester_core (on a 2-core box:
//              the allocator gets a core of its own, as in the paper)
//   sharry-K   SharryAllocator, --sections sections and section threads,
//              unpinned
//   mutex      MutexAllocator (the same SectionAllocator code behind one
//              std::mutex), called directly by the requesters, unpinned
//   malloc     the process's malloc/free on the same request stream. Run
//              the binary under LD_PRELOAD=libjemalloc.so.2 etc. (and name
//              it with --malloc_name) to measure another allocator.
// --cores / --requester_cores override the pinning of every mode.
//
// Part 1 (throughput): each of T requester threads keeps a FIFO window of
// --window live objects; one step allocates a batch of B objects (one
// AllocBatch call; B malloc calls for malloc) and, once the window is
// full, frees the B oldest (one FreeBatch call). Reported per row: objects
// allocated + freed per second over all threads (median of --reps runs of
// --duration_ms), the p50 / p99 latency of one call (a whole batch; alloc
// and free calls pooled, all reps), and the process's context switches per
// 1000 calls (voluntary: futex sleeps; involuntary: preemption and yields).
// The modes of a row run back to back and the reps outermost, so noise
// from other processes hits every mode alike.
//
// Part 2 (scale, paper 6.2): one requester thread, --scale_size-byte
// objects, FIFO alloc + free with N live objects for each N in
// --scale_live. All N are prefilled first (not timed), each in its own
// allocator instance, and then measured in --scale_rounds interleaved
// rounds (N1, N2, N1, N2, ...), so that noise from other processes hits
// every N alike. Each round is preceded by an untimed warm-up that wakes
// the section thread. Reported per N, in ns per object for one alloc plus
// one free: the median over rounds of the round's mean (every call), the
// median call, and the "clean" mean over the calls not longer than
// --scale_cutoff_us (a longer call was preempted or woke a sleeping
// thread; how many were cut is shown, per N, so that a real slow path
// could not hide). The ratio to the first N uses the clean mean. Page
// faults and context switches during the timed rounds are counted. The
// requester keeps its live handles in a preallocated ring (HandleFifo), so
// its own bookkeeping costs the same at every N.
//
// Output: a human-readable table, plus one `row ...` / `scale ...` line of
// key=value pairs per result; with --format=csv or json (tools/cli/output.h)
// the results alone, as scripts/bench-alloc.sh reads them.
//
// Sharry and mutex manage UMA offsets only (no data area is mapped), so a
// large --uma_gib costs nothing but metadata for what is allocated. malloc
// does not touch the memory it gets either.

#include <gflags/gflags.h>
#include <glog/logging.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/utsname.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "alloc/allocator_concept.h"
#include "alloc/mutex_allocator.h"
#include "alloc/sharry_allocator.h"
#include "bench/bench_stats.h"
#include "base/flag_check.h"
#include "tools/cli/output.h"
#include "tools/cli/program.h"
#include "tools/cli/ranged_flag.h"

DEFINE_string(modes, "sharry-1,sharry-1p,sharry-K,mutex,malloc", "Backends for part 1");
DEFINE_string(malloc_name, "glibc", "Name printed for the malloc mode (e.g. jemalloc)");
DEFINE_string(threads, "1,2,4,8,16", "Requester thread counts");
DEFINE_string(batches, "1,16", "Objects per AllocBatch/FreeBatch call");
DEFINE_string(workloads, "4k,mixed", "4k: 4 KiB objects; mixed: log-uniform 16 B..64 KiB");
SHARRY_FLAG(uint32, sections, 2, 1, sharry::alloc::RequestScheduler::kMaxSections, "K for sharry-K (default: one per core of the 2-core dev box)");
SHARRY_FLAG(int32, pin_section_core, 1, -1, sharry::flags::NumCores() - 1, "sharry-1p: core of the section thread");
SHARRY_FLAG(int32, pin_requester_core, 0, -1, sharry::flags::NumCores() - 1, "sharry-1p: core of every requester thread");
DEFINE_string(cores, "", "Override: cores for section threads of every sharry mode, e.g. 0,1");
DEFINE_string(requester_cores, "", "Override: cores for requester threads, round robin");
DEFINE_bool(busy_poll, false, "Section threads never sleep");
SHARRY_FLAG(uint64, idle_spin_ns, 5'000, 0, 1'000'000'000, "Section threads: PAUSE polling when idle, ns");
SHARRY_FLAG(uint64, idle_yield_ns, 250'000, 0, 1'000'000'000, "Section threads: sched_yield polling after that, ns");
SHARRY_FLAG(uint32, free_batch_threshold, 64, 1, 1u << 20, "Pending frees applied per batch (paper 4.2)");
SHARRY_FLAG(uint32, window, 1024, 1, 1u << 24, "Live objects per requester thread in part 1");
SHARRY_FLAG(uint32, duration_ms, 100, 1, 3600000, "Measured time per run in part 1");
SHARRY_FLAG(uint32, reps, 1, 1, 1000, "Runs per row in part 1 (median throughput, pooled latencies)");
SHARRY_FLAG(uint64, uma_gib, 64, 1, sharry::flags::kMaxFlagBytes >> 30, "UMA size for sharry/mutex, GiB");
DEFINE_bool(throughput, true, "Run part 1");
DEFINE_bool(scale, true, "Run part 2 (10^3 vs 10^7 live objects)");
DEFINE_string(scale_live, "1000,10000000", "Live-object counts for part 2");
SHARRY_FLAG(uint64, scale_ops, 400000, 1, uint64_t{1} << 32, "Alloc+free pairs measured per N in part 2 (all rounds)");
SHARRY_FLAG(uint32, scale_rounds, 20, 1, 1000, "Interleaved rounds in part 2");
SHARRY_FLAG(uint64, scale_cutoff_us, 10, 1, 1000000, "Part 2: calls longer than this count as disturbed");
SHARRY_FLAG(uint64, scale_size, 64, 1, 1u << 20, "Object size in part 2, bytes");
SHARRY_FLAG(uint32, scale_batch, 16, 1, 65536, "Objects per call in part 2 for sharry and mutex");
DEFINE_string(scale_modes, "sharry-1p,mutex,malloc", "Backends for part 2");

namespace sharry::alloc {
namespace {

using Clock = std::chrono::steady_clock;

using bench::Median;
using bench::Percentile;
using bench::Split;
using bench::SplitNumbers;

std::vector<int> SplitCores(const std::string& s) { return SplitNumbers<int>(s); }

// Where a mode's threads run.
struct Placement {
  std::vector<int> section_cores;    // empty: unpinned
  std::vector<int> requester_cores;  // empty: unpinned; else round robin
};

Placement PlacementFor(const std::string& mode) {
  Placement p;
  if (mode == "sharry-1p") {
    p.section_cores = {FLAGS_pin_section_core};
    p.requester_cores = {FLAGS_pin_requester_core};
  }
  if (!FLAGS_cores.empty()) p.section_cores = SplitCores(FLAGS_cores);
  if (!FLAGS_requester_cores.empty()) p.requester_cores = SplitCores(FLAGS_requester_cores);
  return p;
}

void PinSelf(const std::vector<int>& cores, uint32_t t) {
  if (cores.empty()) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cores[t % cores.size()], &set);
  const int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
  if (rc != 0) LOG(WARNING) << "pinning requester " << t << " failed: " << rc;
}

void UnpinSelf() {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (unsigned c = 0; c < std::thread::hardware_concurrency(); ++c) CPU_SET(c, &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

std::string Display(const std::string& mode) {
  return mode == "malloc" ? FLAGS_malloc_name : mode;
}

// One allocator under test. Handles are UMA offsets or malloc pointers.
class Backend {
 public:
  virtual ~Backend() = default;
  // Returns the number of failed elements.
  virtual int AllocBatch(OwnerId owner, const std::vector<uint64_t>& sizes,
                         std::vector<uint64_t>* handles) = 0;
  virtual int FreeBatch(OwnerId owner, const std::vector<uint64_t>& handles) = 0;
  // Times a section thread went to sleep (0 where there is none).
  virtual uint64_t Parks() { return 0; }
};

// SharryAllocator or MutexAllocator: the same batch calls on either.
template <FarAllocator A>
class FarBackend final : public Backend {
 public:
  explicit FarBackend(std::unique_ptr<A> a) : a_(std::move(a)) {}
  int AllocBatch(OwnerId owner, const std::vector<uint64_t>& sizes,
                 std::vector<uint64_t>* handles) override {
    thread_local std::vector<AllocResult> out;
    out.resize(sizes.size());
    a_->AllocBatch(owner, sizes, out);
    int errors = 0;
    handles->resize(sizes.size());
    for (size_t i = 0; i < sizes.size(); ++i) {
      errors += !out[i].ok();
      (*handles)[i] = out[i].offset;
    }
    return errors;
  }
  int FreeBatch(OwnerId owner, const std::vector<uint64_t>& handles) override {
    thread_local std::vector<AllocStatus> st;
    st.resize(handles.size());
    a_->FreeBatch(owner, handles, st);
    return static_cast<int>(std::count_if(st.begin(), st.end(),
                                          [](AllocStatus s) { return s != AllocStatus::kOk; }));
  }
  uint64_t Parks() override {
    uint64_t n = 0;
    if constexpr (requires { a_->Stats().sections; }) {  // section threads (SharryAllocator)
      for (const auto& s : a_->Stats().sections) n += s.parks;
    }
    return n;
  }

 private:
  std::unique_ptr<A> a_;
};

std::unique_ptr<Backend> MakeSharryBackend(uint32_t sections, const Placement& placement) {
  SharryAllocatorOptions o;
  o.uma_bytes = FLAGS_uma_gib << 30;
  o.num_sections = sections;
  o.cores = placement.section_cores;
  o.busy_poll = FLAGS_busy_poll;
  o.idle_spin_nanos = FLAGS_idle_spin_ns;
  o.idle_yield_nanos = FLAGS_idle_yield_ns;
  o.free_batch_threshold = FLAGS_free_batch_threshold;
  return std::make_unique<FarBackend<SharryAllocator>>(std::make_unique<SharryAllocator>(o));
}

std::unique_ptr<Backend> MakeMutexBackend() {
  return std::make_unique<FarBackend<MutexAllocator>>(std::make_unique<MutexAllocator>(
      MutexAllocator::Options{.uma_bytes = FLAGS_uma_gib << 30, .free_batch_threshold = FLAGS_free_batch_threshold}));
}

// The process allocator (glibc unless LD_PRELOADed). A batch is a loop.
class MallocBackend final : public Backend {
 public:
  int AllocBatch(OwnerId, const std::vector<uint64_t>& sizes,
                 std::vector<uint64_t>* handles) override {
    int errors = 0;
    handles->resize(sizes.size());
    for (size_t i = 0; i < sizes.size(); ++i) {
      void* p = std::malloc(sizes[i]);
      errors += p == nullptr;
      (*handles)[i] = reinterpret_cast<uint64_t>(p);
    }
    return errors;
  }
  int FreeBatch(OwnerId, const std::vector<uint64_t>& handles) override {
    for (uint64_t h : handles) std::free(reinterpret_cast<void*>(h));
    return 0;
  }
};

std::unique_ptr<Backend> MakeBackend(const std::string& mode, const Placement& placement) {
  if (mode == "sharry-1" || mode == "sharry-1p") {
    return MakeSharryBackend(1, placement);
  }
  if (mode == "sharry-K") return MakeSharryBackend(FLAGS_sections, placement);
  if (mode == "mutex") return MakeMutexBackend();
  if (mode == "malloc") return std::make_unique<MallocBackend>();
  LOG(FATAL) << "unknown mode " << mode;
}

// Object sizes of one workload, deterministic per thread.
class SizeStream {
 public:
  SizeStream(const std::string& workload, uint64_t seed) : mixed_(workload == "mixed"), rng_(seed) {
    CHECK(workload == "4k" || workload == "mixed") << "unknown workload " << workload;
  }
  uint64_t Next() {
    if (!mixed_) return 4096;
    // log-uniform in [16 B, 64 KiB]
    const double e = std::uniform_real_distribution<double>(4.0, 16.0)(rng_);
    return static_cast<uint64_t>(std::exp2(e));
  }

 private:
  bool mixed_;
  std::mt19937_64 rng_;
};

// Context switches and page faults of the whole process.
struct Usage {
  uint64_t voluntary = 0, involuntary = 0, minor_faults = 0;

  static Usage Now() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return {static_cast<uint64_t>(ru.ru_nvcsw), static_cast<uint64_t>(ru.ru_nivcsw),
            static_cast<uint64_t>(ru.ru_minflt)};
  }
  Usage operator-(const Usage& o) const {
    return {voluntary - o.voluntary, involuntary - o.involuntary, minor_faults - o.minor_faults};
  }
};

uint32_t Nanos(Clock::time_point a, Clock::time_point b) {
  return static_cast<uint32_t>(
      std::min<int64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count(),
                        UINT32_MAX));
}

struct ThreadResult {
  uint64_t objects = 0;  // allocated + freed
  uint64_t calls = 0;
  uint64_t errors = 0;
  std::vector<uint32_t> call_ns;  // alloc and free calls, a sample
};

struct RunResult {
  double mobjects_per_s = 0;
  uint64_t calls = 0;
  uint64_t errors = 0;
  uint64_t parks = 0;
  Usage usage;
  std::vector<uint32_t> call_ns;
};

RunResult RunOnce(const std::string& workload, const std::string& mode, uint64_t batch,
                  uint64_t threads) {
  const Placement placement = PlacementFor(mode);
  std::unique_ptr<Backend> backend = MakeBackend(mode, placement);
  std::vector<ThreadResult> results(threads);
  std::atomic<uint32_t> ready{0}, done{0};
  std::atomic<bool> go{false}, stop{false};
  std::vector<std::thread> ts;
  for (uint32_t t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      PinSelf(placement.requester_cores, t);
      ThreadResult& r = results[t];
      r.call_ns.reserve(1 << 18);
      SizeStream sizes_of(workload, 1000 + t);
      std::deque<uint64_t> live;
      std::vector<uint64_t> sizes(batch), handles, victims;
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      while (!stop.load(std::memory_order_relaxed)) {
        for (auto& s : sizes) s = sizes_of.Next();
        auto t0 = Clock::now();
        r.errors += backend->AllocBatch(t, sizes, &handles);
        auto t1 = Clock::now();
        if (r.call_ns.size() < r.call_ns.capacity()) r.call_ns.push_back(Nanos(t0, t1));
        live.insert(live.end(), handles.begin(), handles.end());
        r.objects += batch;
        ++r.calls;
        if (live.size() > FLAGS_window) {
          victims.assign(live.begin(), live.begin() + batch);
          live.erase(live.begin(), live.begin() + batch);
          t0 = Clock::now();
          r.errors += backend->FreeBatch(t, victims);
          t1 = Clock::now();
          if (r.call_ns.size() < r.call_ns.capacity()) r.call_ns.push_back(Nanos(t0, t1));
          r.objects += batch;
          ++r.calls;
        }
      }
      done.fetch_add(1);
      // Not timed: return the window.
      victims.assign(live.begin(), live.end());
      if (!victims.empty()) r.errors += backend->FreeBatch(t, victims);
    });
  }
  while (ready.load() < threads) std::this_thread::yield();
  const uint64_t parks0 = backend->Parks();
  const Usage u0 = Usage::Now();
  const auto start = Clock::now();
  go.store(true, std::memory_order_release);
  std::this_thread::sleep_for(std::chrono::milliseconds(FLAGS_duration_ms));
  stop.store(true);
  while (done.load() < threads) std::this_thread::yield();
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  RunResult out;
  out.usage = Usage::Now() - u0;
  for (auto& th : ts) th.join();
  out.parks = backend->Parks() - parks0;

  uint64_t objects = 0;
  for (auto& r : results) {
    objects += r.objects;
    out.calls += r.calls;
    out.errors += r.errors;
    out.call_ns.insert(out.call_ns.end(), r.call_ns.begin(), r.call_ns.end());
  }
  out.mobjects_per_s = objects / secs / 1e6;
  return out;
}

// One row of part 1, accumulated over reps.
struct Row {
  std::string workload, mode;
  uint64_t batch = 0, threads = 0;
  std::vector<double> rates;
  std::vector<uint32_t> call_ns;
  uint64_t calls = 0, errors = 0, parks = 0;
  Usage usage;
};

void RunThroughput(cli::Emitter& out) {
  if (out.text())
    std::printf("\nPart 1: alloc+free throughput (objects/s = allocations + frees) and latency of one\n"
                "call (a whole batch), %u live objects per thread, %u x %u ms per row (median),\n"
                "%u cores online. csw/kcall: context switches per 1000 calls, voluntary +\n"
                "involuntary; parks: section-thread sleeps per 1000 calls.\n\n",
                FLAGS_window, FLAGS_reps, FLAGS_duration_ms, std::thread::hardware_concurrency());
  // The modes of one (workload, batch, threads) run back to back, and the
  // reps are outermost: noise from other processes lands on all modes of a
  // row alike instead of on one of them.
  std::vector<Row> rows;
  for (const auto& workload : Split(FLAGS_workloads)) {
    for (uint64_t batch : SplitNumbers(FLAGS_batches)) {
      for (uint64_t threads : SplitNumbers(FLAGS_threads)) {
        for (const auto& mode : Split(FLAGS_modes)) {
          Row row;
          row.workload = workload;
          row.mode = mode;
          row.batch = batch;
          row.threads = threads;
          rows.push_back(std::move(row));
        }
      }
    }
  }
  for (uint32_t rep = 0; rep < std::max(1u, FLAGS_reps); ++rep) {
    for (Row& row : rows) {
      RunResult r = RunOnce(row.workload, row.mode, row.batch, row.threads);
      row.rates.push_back(r.mobjects_per_s);
      row.call_ns.insert(row.call_ns.end(), r.call_ns.begin(), r.call_ns.end());
      row.calls += r.calls;
      row.errors += r.errors;
      row.parks += r.parks;
      row.usage.voluntary += r.usage.voluntary;
      row.usage.involuntary += r.usage.involuntary;
    }
  }
  if (out.text())
    std::printf("%-8s %-10s %5s %7s %11s %9s %9s %13s %8s %6s\n", "workload", "mode", "batch", "threads",
                "Mobjects/s", "p50 (us)", "p99 (us)", "csw/kcall", "parks/k", "errors");
  for (Row& row : rows) {
    const double rate = Median(row.rates);
    const double p50 = Percentile(row.call_ns, 0.50) / 1000, p99 = Percentile(row.call_ns, 0.99) / 1000;  // us
    const double kcalls = std::max<double>(1, row.calls) / 1000.0;
    char csw[32];
    std::snprintf(csw, sizeof(csw), "%.0f+%.0f", row.usage.voluntary / kcalls,
                  row.usage.involuntary / kcalls);
    if (out.text())
      std::printf("%-8s %-10s %5lu %7lu %11.3f %9.2f %9.2f %13s %8.1f %6lu\n", row.workload.c_str(),
                  Display(row.mode).c_str(), row.batch, row.threads, rate, p50, p99, csw, row.parks / kcalls,
                  row.errors);
    out.Emit(cli::Record("row")
                 .Add("workload", row.workload)
                 .Add("mode", Display(row.mode))
                 .Add("batch", row.batch)
                 .Add("threads", row.threads)
                 .Add("mobjs", rate, "%.4f")
                 .Add("p50_us", p50, "%.3f")
                 .Add("p99_us", p99, "%.3f")
                 .Add("vcsw_per_kcall", row.usage.voluntary / kcalls, "%.1f")
                 .Add("ivcsw_per_kcall", row.usage.involuntary / kcalls, "%.1f")
                 .Add("parks_per_kcall", row.parks / kcalls, "%.2f")
                 .Add("errors", row.errors));
  }
  std::fflush(stdout);
}

// A FIFO of handles in a ring allocated once: O(1) per element at any
// size. (A std::deque of 10^7 handles now and then moves its whole node map,
// tens of microseconds between two timed calls, long enough for an idle
// section thread to go to sleep; that cost belongs to the benchmark, not to
// the allocator, and it only hits the large N.)
class HandleFifo {
 public:
  explicit HandleFifo(size_t capacity) : ring_(capacity) {}
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  void Push(const std::vector<uint64_t>& v) {
    CHECK_LE(size_ + v.size(), ring_.size());
    for (uint64_t h : v) {
      ring_[(head_ + size_) % ring_.size()] = h;
      ++size_;
    }
  }
  // Moves the n oldest handles to *out.
  void Pop(size_t n, std::vector<uint64_t>* out) {
    CHECK_LE(n, size_);
    out->resize(n);
    for (size_t i = 0; i < n; ++i) {
      (*out)[i] = ring_[head_];
      head_ = (head_ + 1) % ring_.size();
    }
    size_ -= n;
  }

 private:
  std::vector<uint64_t> ring_;
  size_t head_ = 0;
  size_t size_ = 0;
};

// Part 2: one allocator instance holding `live_n` objects.
struct ScalePoint {
  uint64_t live_n = 0;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<HandleFifo> live;
  std::vector<double> round_pair_ns;  // per round: ns per alloc + free
  std::vector<uint32_t> alloc_call_ns, free_call_ns;  // every timed call
  Usage usage;                        // timed rounds only
  uint64_t parks = 0;
};

// Mean of the calls not longer than `cutoff` ns, per object; and how many
// calls were longer.
struct Trimmed {
  double ns_per_object = 0;
  uint64_t cut = 0;
};
Trimmed TrimmedMean(const std::vector<uint32_t>& calls, uint64_t batch, uint64_t cutoff) {
  double sum = 0;
  uint64_t n = 0, cut = 0;
  for (uint32_t c : calls) {
    if (c > cutoff) {
      ++cut;
      continue;
    }
    sum += c;
    ++n;
  }
  return {n == 0 ? 0 : sum / static_cast<double>(n) / static_cast<double>(batch), cut};
}

void RunScale(cli::Emitter& out) {
  const std::vector<uint64_t> lives = SplitNumbers(FLAGS_scale_live);
  CHECK(!lives.empty());
  const uint32_t rounds = std::max(1u, FLAGS_scale_rounds);
  if (out.text()) {
    std::printf("\nPart 2: one thread, %lu-byte objects, FIFO alloc+free with N live objects,\n"
                "%u interleaved rounds, %lu pairs per N in total; batch %u for sharry and mutex,\n"
                "single calls for malloc. ns per object (alloc + free):\n"
                "  all      median over rounds of the round's mean, every call counted\n"
                "  p50      median call\n"
                "  clean    mean of the calls not longer than --scale_cutoff_us (longer\n"
                "           ones are preemptions or wake-ups; their number is shown)\n"
                "ratio is clean / clean at the first N.\n\n",
                FLAGS_scale_size, rounds, FLAGS_scale_ops, FLAGS_scale_batch);
    std::printf("%-10s %10s %8s %8s %8s %9s %7s %9s %8s %7s\n", "mode", "live", "all", "p50", "clean", "cut",
                "ratio", "faults/k", "csw/k", "parks");
  }
  const uint64_t cutoff = FLAGS_scale_cutoff_us * 1000;
  for (const auto& mode : Split(FLAGS_scale_modes)) {
    const Placement placement = PlacementFor(mode);
    UnpinSelf();
    PinSelf(placement.requester_cores, 0);
    const uint64_t batch = mode == "malloc" ? 1 : FLAGS_scale_batch;
    std::vector<ScalePoint> points(lives.size());
    std::vector<uint64_t> sizes, handles, victims;
    for (size_t i = 0; i < lives.size(); ++i) {
      ScalePoint& p = points[i];
      p.live_n = lives[i];
      p.backend = MakeBackend(mode, placement);
      p.live = std::make_unique<HandleFifo>(p.live_n + std::max<uint64_t>(batch, 256));
      // Prefill in big batches (not timed).
      for (uint64_t n = 0; n < p.live_n;) {
        const uint64_t b = std::min<uint64_t>(256, p.live_n - n);
        sizes.assign(b, FLAGS_scale_size);
        CHECK_EQ(p.backend->AllocBatch(0, sizes, &handles), 0);
        p.live->Push(handles);
        n += b;
      }
    }
    const uint64_t per_round =
        std::max<uint64_t>(batch, FLAGS_scale_ops / rounds / batch * batch);
    for (ScalePoint& p : points) {
      p.alloc_call_ns.reserve(per_round / batch * rounds);
      p.free_call_ns.reserve(per_round / batch * rounds);
    }
    sizes.assign(batch, FLAGS_scale_size);
    auto step = [&](ScalePoint& p, bool timed, Clock::duration* alloc_time,
                    Clock::duration* free_time) {
      auto t0 = Clock::now();
      CHECK_EQ(p.backend->AllocBatch(0, sizes, &handles), 0);
      auto t1 = Clock::now();
      p.live->Push(handles);
      p.live->Pop(batch, &victims);
      auto t2 = Clock::now();
      CHECK_EQ(p.backend->FreeBatch(0, victims), 0);
      auto t3 = Clock::now();
      if (timed) {
        *alloc_time += t1 - t0;
        *free_time += t3 - t2;
        p.alloc_call_ns.push_back(Nanos(t0, t1));
        p.free_call_ns.push_back(Nanos(t2, t3));
      }
    };
    for (uint32_t round = 0; round < rounds; ++round) {
      for (ScalePoint& p : points) {
        // Untimed warm-up: wakes a parked section thread, refills caches.
        for (int w = 0; w < 64; ++w) step(p, false, nullptr, nullptr);
        const uint64_t parks0 = p.backend->Parks();
        const Usage u0 = Usage::Now();
        Clock::duration alloc_time{}, free_time{};
        for (uint64_t done = 0; done < per_round; done += batch) {
          step(p, true, &alloc_time, &free_time);
        }
        const Usage du = Usage::Now() - u0;
        p.parks += p.backend->Parks() - parks0;
        p.usage.voluntary += du.voluntary;
        p.usage.involuntary += du.involuntary;
        p.usage.minor_faults += du.minor_faults;
        p.round_pair_ns.push_back(
            std::chrono::duration<double, std::nano>(alloc_time + free_time).count() / per_round);
      }
    }
    double base_all = 0, base_clean = 0;
    for (ScalePoint& p : points) {
      const double all = Median(p.round_pair_ns);
      const Trimmed a = TrimmedMean(p.alloc_call_ns, batch, cutoff);
      const Trimmed f = TrimmedMean(p.free_call_ns, batch, cutoff);
      const double clean = a.ns_per_object + f.ns_per_object;
      const uint64_t calls = p.alloc_call_ns.size() + p.free_call_ns.size();
      const double cut_pct = 100.0 * (a.cut + f.cut) / std::max<uint64_t>(1, calls);
      std::vector<uint32_t> pairs(p.alloc_call_ns.size());
      for (size_t i = 0; i < pairs.size(); ++i) pairs[i] = p.alloc_call_ns[i] + p.free_call_ns[i];
      const double p50 = Percentile(pairs, 0.5) / batch;
      if (&p == &points[0]) {
        base_all = all;
        base_clean = clean;
      }
      const double kops = (per_round * rounds) / 1000.0;
      char cut[32];
      std::snprintf(cut, sizeof(cut), "%.2f%%", cut_pct);
      if (out.text())
        std::printf("%-10s %10lu %8.1f %8.1f %8.1f %9s %7.2f %9.2f %8.2f %7lu\n", Display(mode).c_str(), p.live_n,
                    all, p50, clean, cut, clean / base_clean, p.usage.minor_faults / kops,
                    (p.usage.voluntary + p.usage.involuntary) / kops, p.parks);
      out.Emit(cli::Record("scale")
                   .Add("mode", Display(mode))
                   .Add("live", p.live_n)
                   .Add("batch", batch)
                   .Add("pair_ns", all, "%.2f")
                   .Add("pair_p50_ns", p50, "%.2f")
                   .Add("clean_pair_ns", clean, "%.2f")
                   .Add("cut_pct", cut_pct, "%.3f")
                   .Add("ratio", clean / base_clean, "%.4f")
                   .Add("ratio_all", all / base_all, "%.4f")
                   .Add("faults_per_kop", p.usage.minor_faults / kops, "%.3f")
                   .Add("csw_per_kop", (p.usage.voluntary + p.usage.involuntary) / kops, "%.3f")
                   .Add("parks", p.parks));
    }
    // Return everything (not timed), in big batches, then drop the backends.
    for (ScalePoint& p : points) {
      while (!p.live->empty()) {
        p.live->Pop(std::min<size_t>(256, p.live->size()), &victims);
        CHECK_EQ(p.backend->FreeBatch(0, victims), 0);
      }
    }
    UnpinSelf();
  }
}

}  // namespace
}  // namespace sharry::alloc

namespace {

int Main(int argc, char** argv) {
  sharry::cli::InitProgram(&argc, &argv, "Sharry allocator benchmark (see the file comment)");
  namespace f = sharry::flags;
  const std::initializer_list<std::string_view> modes = {"sharry-1", "sharry-1p", "sharry-K", "mutex", "malloc"};
  f::ExitOnBadFlags("alloc_bench", {
      f::CheckListOf("modes", FLAGS_modes, modes),
      f::CheckListOf("scale_modes", FLAGS_scale_modes, modes),
      f::CheckListOf("workloads", FLAGS_workloads, {"4k", "mixed"}),
      f::ParseU64List("threads", FLAGS_threads, 1, 1024).status(),
      f::ParseU64List("batches", FLAGS_batches, 1, 65536).status(),
      f::ParseU64List("scale_live", FLAGS_scale_live, 1, uint64_t{1} << 32).status(),
      f::ParseCoreList("cores", FLAGS_cores).status(),
      f::ParseCoreList("requester_cores", FLAGS_requester_cores).status(),
  });
  sharry::cli::Emitter out = sharry::cli::EmitterFromFlags("alloc_bench");
  utsname u{};
  uname(&u);
  out.Emit(sharry::cli::Record("machine")
               .Add("cores", std::thread::hardware_concurrency())
               .Add("kernel", u.release)
               .Add("malloc", FLAGS_malloc_name));
  if (FLAGS_throughput) sharry::alloc::RunThroughput(out);
  if (FLAGS_scale) sharry::alloc::RunScale(out);
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return sharry::flags::RunMain("alloc_bench", Main, argc, argv); }
