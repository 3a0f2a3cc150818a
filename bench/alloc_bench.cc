// Copyright 2024 The Sharry Authors.
//
// alloc_bench: allocation + free throughput and latency of
//   sharry-1   SharryAllocator, 1 section, requests offloaded to its thread
//   sharry-K   SharryAllocator, --sections sections and section threads
//   mutex      MutexAllocator (same SectionAllocator logic behind a mutex),
//              called directly by the requesters
//   malloc     the process's malloc/free on the same request stream. Run
//              the binary under LD_PRELOAD=libjemalloc.so / libtcmalloc.so
//              / libmimalloc.so to measure those instead of glibc.
//
// Part 1 (throughput): each of T requester threads keeps a FIFO window of
// --window live objects; one step allocates a batch of B objects (one
// AllocBatch call; B separate malloc calls for malloc) and, once the window
// is full, frees the B oldest (one FreeBatch call). Reported: objects
// allocated + freed per second over all threads, and the p50/p99 latency of
// one call (a whole batch), alloc and free separately.
// Part 2 (scale): one thread, --scale_size objects, with 10^3 vs 10^7 live
// objects prefilled; cost of one alloc + one free (FIFO) per object.
//
// Sharry and mutex manage UMA offsets only (no data area is mapped), so a
// large --uma_gib costs nothing but metadata for what is allocated.

#include <gflags/gflags.h>
#include <glog/logging.h>
#include <pthread.h>
#include <sched.h>

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

#include "alloc/mutex_allocator.h"
#include "alloc/sharry_allocator.h"

DEFINE_string(modes, "sharry-1,sharry-K,mutex,malloc", "Backends to run (comma separated)");
DEFINE_string(threads, "1,2,4,8,16", "Requester thread counts");
DEFINE_string(batches, "1,16", "Objects per AllocBatch/FreeBatch call");
DEFINE_string(workloads, "4k,mixed", "4k: 4 KiB objects; mixed: log-uniform 16 B..64 KiB");
DEFINE_uint32(sections, 2, "K for sharry-K (default: one per core of the 2-core dev box)");
DEFINE_string(cores, "", "Cores for section threads, e.g. 0,1 (empty: unpinned)");
DEFINE_string(requester_cores, "", "Cores for requester threads, round robin (empty: unpinned)");
DEFINE_bool(busy_poll, false, "Section threads never sleep");
DEFINE_uint32(free_batch_threshold, 64, "Pending frees applied per batch (paper 4.2)");
DEFINE_uint32(window, 1024, "Live objects per requester thread in part 1");
DEFINE_uint32(duration_ms, 100, "Measured time per configuration in part 1");
DEFINE_uint64(uma_gib, 64, "UMA size for sharry/mutex, GiB");
DEFINE_bool(scale, true, "Run part 2 (10^3 vs 10^7 live objects)");
DEFINE_string(scale_live, "1000,10000000", "Live-object counts for part 2");
DEFINE_uint64(scale_ops, 200000, "Alloc+free pairs measured per point in part 2");
DEFINE_uint64(scale_size, 64, "Object size in part 2, bytes");
DEFINE_string(scale_modes, "sharry-1,mutex,malloc", "Backends for part 2");

namespace sharry::alloc {
namespace {

using Clock = std::chrono::steady_clock;

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

std::vector<uint64_t> SplitNumbers(const std::string& s) {
  std::vector<uint64_t> out;
  for (const auto& x : Split(s)) out.push_back(std::stoull(x));
  return out;
}

// One allocator under test. Handles are UMA offsets or malloc pointers.
class Backend {
 public:
  virtual ~Backend() = default;
  // Returns the number of failed elements.
  virtual int AllocBatch(OwnerId owner, const std::vector<uint64_t>& sizes,
                         std::vector<uint64_t>* handles) = 0;
  virtual int FreeBatch(OwnerId owner, const std::vector<uint64_t>& handles) = 0;
};

class SharryBackend final : public Backend {
 public:
  explicit SharryBackend(uint32_t sections) {
    SharryAllocatorOptions o;
    o.uma_bytes = FLAGS_uma_gib << 30;
    o.num_sections = sections;
    for (auto c : SplitNumbers(FLAGS_cores)) o.cores.push_back(static_cast<int>(c));
    o.busy_poll = FLAGS_busy_poll;
    o.free_batch_threshold = FLAGS_free_batch_threshold;
    a_ = std::make_unique<SharryAllocator>(o);
  }
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

 private:
  std::unique_ptr<SharryAllocator> a_;
};

class MutexBackend final : public Backend {
 public:
  MutexBackend() : a_({.uma_bytes = FLAGS_uma_gib << 30,
                       .free_batch_threshold = FLAGS_free_batch_threshold}) {}
  int AllocBatch(OwnerId owner, const std::vector<uint64_t>& sizes,
                 std::vector<uint64_t>* handles) override {
    thread_local std::vector<AllocResult> out;
    out.resize(sizes.size());
    a_.AllocBatch(owner, sizes, out);
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
    a_.FreeBatch(owner, handles, st);
    return static_cast<int>(std::count_if(st.begin(), st.end(),
                                          [](AllocStatus s) { return s != AllocStatus::kOk; }));
  }

 private:
  MutexAllocator a_;
};

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

// Pins the calling requester thread per --requester_cores (thread t gets
// the t-th core, round robin).
void PinRequester(uint32_t t) {
  static const std::vector<uint64_t> cores = SplitNumbers(FLAGS_requester_cores);
  if (cores.empty()) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(static_cast<int>(cores[t % cores.size()]), &set);
  const int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
  if (rc != 0) LOG(WARNING) << "pinning requester " << t << " failed: " << rc;
}

std::unique_ptr<Backend> MakeBackend(const std::string& mode) {
  if (mode == "sharry-1") return std::make_unique<SharryBackend>(1);
  if (mode == "sharry-K") return std::make_unique<SharryBackend>(FLAGS_sections);
  if (mode == "mutex") return std::make_unique<MutexBackend>();
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

struct ThreadResult {
  uint64_t objects = 0;  // allocated + freed
  uint64_t errors = 0;
  std::vector<uint32_t> alloc_ns;  // per call
  std::vector<uint32_t> free_ns;
};

uint32_t Nanos(Clock::time_point a, Clock::time_point b) {
  return static_cast<uint32_t>(
      std::min<int64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count(),
                        UINT32_MAX));
}

double Percentile(std::vector<uint32_t>& v, double p) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(p * v.size()));
  std::nth_element(v.begin(), v.begin() + k, v.end());
  return v[k] / 1000.0;  // microseconds
}

void RunThroughput() {
  std::printf("\nPart 1: alloc+free throughput (objects/s = allocations + frees) and latency of one\n"
              "call (a whole batch), %u live objects per thread, %u ms per row, %u cores online\n\n",
              FLAGS_window, FLAGS_duration_ms, std::thread::hardware_concurrency());
  std::printf("%-8s %-9s %5s %7s %12s %10s %10s %10s %10s %7s\n", "workload", "mode", "batch",
              "threads", "Mobjects/s", "alloc p50", "alloc p99", "free p50", "free p99", "errors");
  std::printf("%-8s %-9s %5s %7s %12s %10s %10s %10s %10s %7s\n", "", "", "", "", "", "(us)",
              "(us)", "(us)", "(us)", "");
  for (const auto& workload : Split(FLAGS_workloads)) {
    for (const auto& mode : Split(FLAGS_modes)) {
      for (uint64_t batch : SplitNumbers(FLAGS_batches)) {
        for (uint64_t threads : SplitNumbers(FLAGS_threads)) {
          std::unique_ptr<Backend> backend = MakeBackend(mode);
          std::vector<ThreadResult> results(threads);
          std::atomic<uint32_t> ready{0};
          std::atomic<bool> go{false}, stop{false};
          std::vector<std::thread> ts;
          for (uint32_t t = 0; t < threads; ++t) {
            ts.emplace_back([&, t] {
              PinRequester(t);
              ThreadResult& r = results[t];
              r.alloc_ns.reserve(1 << 20);
              r.free_ns.reserve(1 << 20);
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
                if (r.alloc_ns.size() < r.alloc_ns.capacity()) r.alloc_ns.push_back(Nanos(t0, t1));
                live.insert(live.end(), handles.begin(), handles.end());
                r.objects += batch;
                if (live.size() > FLAGS_window) {
                  victims.assign(live.begin(), live.begin() + batch);
                  live.erase(live.begin(), live.begin() + batch);
                  t0 = Clock::now();
                  r.errors += backend->FreeBatch(t, victims);
                  t1 = Clock::now();
                  if (r.free_ns.size() < r.free_ns.capacity()) r.free_ns.push_back(Nanos(t0, t1));
                  r.objects += batch;
                }
              }
              // Not timed: return the window.
              victims.assign(live.begin(), live.end());
              if (!victims.empty()) r.errors += backend->FreeBatch(t, victims);
            });
          }
          while (ready.load() < threads) std::this_thread::yield();
          const auto start = Clock::now();
          go.store(true, std::memory_order_release);
          std::this_thread::sleep_for(std::chrono::milliseconds(FLAGS_duration_ms));
          stop.store(true);
          const double secs = std::chrono::duration<double>(Clock::now() - start).count();
          for (auto& th : ts) th.join();

          uint64_t objects = 0, errors = 0;
          std::vector<uint32_t> alloc_ns, free_ns;
          for (auto& r : results) {
            objects += r.objects;
            errors += r.errors;
            alloc_ns.insert(alloc_ns.end(), r.alloc_ns.begin(), r.alloc_ns.end());
            free_ns.insert(free_ns.end(), r.free_ns.begin(), r.free_ns.end());
          }
          std::printf("%-8s %-9s %5lu %7lu %12.3f %10.2f %10.2f %10.2f %10.2f %7lu\n",
                      workload.c_str(), mode.c_str(), batch, threads, objects / secs / 1e6,
                      Percentile(alloc_ns, 0.50), Percentile(alloc_ns, 0.99),
                      Percentile(free_ns, 0.50), Percentile(free_ns, 0.99), errors);
          std::fflush(stdout);
        }
      }
    }
  }
}

void RunScale() {
  PinRequester(0);
  std::printf("\nPart 2: one thread, %lu-byte objects, FIFO alloc+free with N live objects;\n"
              "sharry uses batches of 16, the others single calls\n\n",
              FLAGS_scale_size);
  std::printf("%-9s %12s %16s %16s\n", "mode", "live", "ns per alloc", "ns per free");
  for (const auto& mode : Split(FLAGS_scale_modes)) {
    for (uint64_t live_n : SplitNumbers(FLAGS_scale_live)) {
      std::unique_ptr<Backend> backend = MakeBackend(mode);
      const uint64_t batch = mode.rfind("sharry", 0) == 0 ? 16 : 1;
      std::deque<uint64_t> live;
      std::vector<uint64_t> sizes, handles, victims;
      // Prefill in big batches (not timed).
      for (uint64_t n = 0; n < live_n;) {
        const uint64_t b = std::min<uint64_t>(256, live_n - n);
        sizes.assign(b, FLAGS_scale_size);
        CHECK_EQ(backend->AllocBatch(0, sizes, &handles), 0);
        live.insert(live.end(), handles.begin(), handles.end());
        n += b;
      }
      sizes.assign(batch, FLAGS_scale_size);
      Clock::duration alloc_time{}, free_time{};
      for (uint64_t done = 0; done < FLAGS_scale_ops; done += batch) {
        auto t0 = Clock::now();
        CHECK_EQ(backend->AllocBatch(0, sizes, &handles), 0);
        auto t1 = Clock::now();
        live.insert(live.end(), handles.begin(), handles.end());
        victims.assign(live.begin(), live.begin() + batch);
        live.erase(live.begin(), live.begin() + batch);
        auto t2 = Clock::now();
        CHECK_EQ(backend->FreeBatch(0, victims), 0);
        auto t3 = Clock::now();
        alloc_time += t1 - t0;
        free_time += t3 - t2;
      }
      const double ops = static_cast<double>(FLAGS_scale_ops);
      std::printf("%-9s %12lu %16.1f %16.1f\n", mode.c_str(), live_n,
                  std::chrono::duration<double, std::nano>(alloc_time).count() / ops,
                  std::chrono::duration<double, std::nano>(free_time).count() / ops);
      std::fflush(stdout);
      // Return everything (not timed), in big batches.
      while (!live.empty()) {
        const size_t b = std::min<size_t>(256, live.size());
        victims.assign(live.begin(), live.begin() + b);
        live.erase(live.begin(), live.begin() + b);
        CHECK_EQ(backend->FreeBatch(0, victims), 0);
      }
    }
  }
}

}  // namespace
}  // namespace sharry::alloc

int main(int argc, char** argv) {
  gflags::SetUsageMessage("Sharry allocator benchmark (see the file comment)");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  google::InitGoogleLogging(argv[0]);
  sharry::alloc::RunThroughput();
  if (FLAGS_scale) sharry::alloc::RunScale();
  return 0;
}
