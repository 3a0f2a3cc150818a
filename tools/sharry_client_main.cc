// sharry_client: runs the array and hashtable workloads against a memnode
// and reports throughput, local hit rate, swaps in/out and far memory used.
//
//   build/tools/sharry_client --memnode=127.0.0.1:7000 --workload=array
//       --working_set_mb=64 --local_pct=25 --mode=unique --ops=1000000
//
// The array workload is the paper's micro-benchmark (section 6.1): --arrays
// remoteable arrays of uint64_t in objects (chunks) of --object_bytes; each
// operation reads or writes (--write_pct) one element of a random array at a
// random index (or scans). The working set is --working_set_mb, or
// --objects objects of --object_bytes; the local budget is --local_pct of it,
// or --local_mb. With --ready_file/--go_file the timed phase starts only when
// the driver says so (tools/cli/start_barrier.h), so that processes sharing a
// memnode are measured over the same interval.
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "base/flag_check.h"
#include "compute/runtime.h"
#include "remote_ds/remote_array.h"
#include "remote_ds/remote_hashtable.h"
#include "tools/cli/client_flags.h"
#include "tools/cli/client_options.h"
#include "tools/cli/output.h"
#include "tools/cli/program.h"
#include "tools/cli/ranged_flag.h"

DEFINE_string(workload, "array", "array or hashtable");
SHARRY_FLAG(uint64, working_set_mb, 64, 1, sharry::flags::kMaxFlagMiB,
            "bytes of data, in MiB (and at most what the memnode holds)");
SHARRY_FLAG(double, local_pct, 25, 0, 100, "local memory budget, percent of the working set");
DEFINE_uint64(ops, 1000000, "operations (array: element reads/writes; hashtable: gets/puts)");
SHARRY_FLAG(double, write_pct, 20, 0, 100, "percent of operations that write");
DEFINE_string(pattern, "random", "array: random or scan");
SHARRY_FLAG(int32, threads, 1, 1, 256, "worker threads (array workload)");
DEFINE_uint64(seed, 1, "random seed");
SHARRY_FLAG(uint32, arrays, 1, 1, 65536, "array workload: number of remoteable arrays the working set is split into");
DEFINE_uint32(object_bytes, 4096, "array workload: bytes per object (chunk of elements), a multiple of 8 in 8..1048576");
DEFINE_uint64(objects, 0, "array workload: working set as a number of objects (overrides --working_set_mb; at most 16 TiB of them)");
SHARRY_FLAG(uint64, local_mb, 0, 0, sharry::flags::kMaxFlagMiB, "local memory budget in MiB (0: use --local_pct; else overrides it)");
SHARRY_FLAG(double, min_secs, 0, 0, 86400, "array workload (random): repeat the --ops operations until this long has passed");

namespace {

using sharry::compute::Runtime;
using Clock = std::chrono::steady_clock;

struct Value {
  uint64_t key;
  uint8_t bytes[248];
};

// Exit status: 0 ok; 1 bad flags or no runtime; 3 wrong values read; a
// failed run: sharry::compute::ExitCodeOf (2 far memory failed mid-run,
// 4 far memory exhausted).

int Fail(const sharry::Status& s, const char* what) {
  std::fprintf(stderr, "sharry_client: %s: %s\n", what, s.ToString().c_str());
  return 1;
}

// A far access failed mid-run: say so, with the local usage, and exit.
int FailRun(Runtime& rt, const sharry::Status& s, const char* what) {
  const auto st = rt.Stats();
  std::fprintf(stderr, "sharry_client: %s: %s\nsharry_client: peak_local_bytes=%llu local_limit_bytes=%llu "
               "failed_far_accesses=%llu lost_objects=%llu far_exhausted=%llu quota_exceeded=%llu\n", what,
               s.ToString().c_str(),
               static_cast<unsigned long long>(st.peak_local_bytes),
               static_cast<unsigned long long>(rt.local_limit_bytes()),
               static_cast<unsigned long long>(st.failed_far_accesses),
               static_cast<unsigned long long>(st.lost_objects), static_cast<unsigned long long>(st.far_exhausted),
               static_cast<unsigned long long>(st.quota_exceeded));
  // At once: tearing the runtime down could wait for an in-flight reconnect
  // step (up to op_timeout_ms); the memnode reclaims our blocks anyway.
  std::fflush(nullptr);
  std::_Exit(sharry::compute::ExitCodeOf(s));
}

int Main(int argc, char** argv) {
  sharry::cli::InitProgram(&argc, &argv, "Sharry compute client: array and hashtable workloads over far memory",
                           sharry::cli::Log::kWarnings);
  namespace f = sharry::flags;
  sharry::compute::RuntimeOptions o;
  sharry::compute::ConnectionFromFlags("sharry_client", &o);
  const bool object_bytes_ok =
      FLAGS_object_bytes >= 8 && FLAGS_object_bytes % 8 == 0 && FLAGS_object_bytes <= o.max_object_bytes;
  f::ExitOnBadFlags("sharry_client", {
      f::CheckOneOf("workload", FLAGS_workload, {"array", "hashtable"}),
      f::CheckOneOf("pattern", FLAGS_pattern, {"random", "scan"}),
      object_bytes_ok ? sharry::Status::Ok()
                      : sharry::Status::InvalidArgument("--object_bytes=" + std::to_string(FLAGS_object_bytes) +
                                                        " is not allowed: want a multiple of 8 in 8.." +
                                                        std::to_string(o.max_object_bytes)),
      // Checked in objects, so that objects * object_bytes cannot wrap.
      f::CheckRangeU("objects", FLAGS_objects, 0, f::kMaxFlagBytes / std::max(8u, FLAGS_object_bytes)),
  });
  sharry::cli::Emitter out = sharry::cli::EmitterFromFlags("sharry_client");
  const uint64_t ws = FLAGS_objects ? FLAGS_objects * FLAGS_object_bytes : FLAGS_working_set_mb << 20;
  if (FLAGS_workload == "hashtable" && ws < sizeof(Value))
    f::ExitOnBadFlags("sharry_client",
                      sharry::Status::InvalidArgument("--objects=" + std::to_string(FLAGS_objects) +
                                                      " of --object_bytes=" + std::to_string(FLAGS_object_bytes) +
                                                      " is too small: the hashtable workload needs at least one " +
                                                      std::to_string(sizeof(Value)) + "-byte value"));
  uint64_t local = FLAGS_local_mb ? FLAGS_local_mb << 20 : static_cast<uint64_t>(ws * FLAGS_local_pct / 100);
  // 100 % means all of it stays local: add the evictor's headroom (it starts
  // a little below the budget).
  if (!FLAGS_local_mb && FLAGS_local_pct >= 100) local += ws / 32 + (1u << 20);
  o.local_budget_bytes = std::max<uint64_t>(local, std::max<uint64_t>(64 << 10, 2 * FLAGS_object_bytes));
  // What stays local, min(working set, budget), must fit in this machine.
  if (const uint64_t held = std::min(ws, o.local_budget_bytes); held >> 20 > f::PhysicalMiB())
    f::ExitOnBadFlags("sharry_client",
                      sharry::Status::InvalidArgument(
                          "--local_pct/--local_mb: " + std::to_string(held >> 20) + " MiB of the working set would "
                          "stay local, more than this machine's " + std::to_string(f::PhysicalMiB()) + " MiB"));
  auto rt = Runtime::Create(o);
  if (!rt.ok()) return Fail(rt.status(), "runtime");
  // A working set that cannot fit in far memory plus the local budget is
  // refused before the fill, not discovered as an allocation failure later.
  if (auto ms = (*rt)->MemnodeStats(); ms.ok() && ws > ms->head.uma_bytes + o.local_budget_bytes) {
    std::fprintf(stderr,
                 "sharry_client: --working_set_mb/--objects: a working set of %llu B does not fit in the "
                 "memnode's %llu B of far memory plus the local budget of %llu B\n",
                 static_cast<unsigned long long>(ws), static_cast<unsigned long long>(ms->head.uma_bytes),
                 static_cast<unsigned long long>(o.local_budget_bytes));
    return 2;
  }

  uint64_t done = 0, bad = 0;
  double secs = 0, fill_secs = 0;
  const auto t_fill = Clock::now();
  // Taken while the data structure still exists.
  // Counters of the timed phase: st (at its end) minus st0 (at its start).
  sharry::compute::RuntimeStats st, st0;
  uint64_t far_mine = 0, far_total = 0;
  auto snapshot = [&] {
    st = (*rt)->Stats().Since(st0);
    if (auto ms = (*rt)->MemnodeStats(); ms.ok()) {
      far_total = ms->head.used_bytes;
      far_mine = ms->BytesHeldBy((*rt)->control_client_id());
    }
  };
  if (FLAGS_workload == "array") {
    // The working set, as FLAGS_arrays arrays of whole objects.
    const size_t per_obj = FLAGS_object_bytes / sizeof(uint64_t);
    const uint64_t objects = std::max<uint64_t>(ws / FLAGS_object_bytes, FLAGS_arrays);
    std::vector<sharry::remote_ds::RemoteArray<uint64_t>> arrs;
    std::vector<size_t> base;  // global index of each array's element 0
    size_t n = 0;
    for (uint32_t a = 0; a < FLAGS_arrays; ++a) {
      const uint64_t objs = objects / FLAGS_arrays + (a < objects % FLAGS_arrays);
      const size_t b = n;
      auto arr = sharry::remote_ds::RemoteArray<uint64_t>::MakeWith(
          **rt, objs * per_obj, [b](size_t i, uint64_t& v) { v = b + i; }, FLAGS_object_bytes);
      if (!arr.ok()) return FailRun(**rt, arr.status(), "fill");
      base.push_back(n);
      n += arr->size();
      arrs.push_back(std::move(*arr));
    }
    fill_secs = std::chrono::duration<double>(Clock::now() - t_fill).count();
    if (auto s = sharry::compute::WaitAtStartBarrierOfFlags(); !s.ok())
      return Fail(s, "start barrier");
    st0 = (*rt)->Stats();
    auto t0 = Clock::now();
    std::vector<std::thread> ts;
    std::atomic<uint64_t> ops{0}, errors{0};
    // The first failed access stops every thread (a lost memnode must not
    // turn into hours of failing accesses).
    std::mutex first_mu;
    sharry::Status first;
    std::atomic<bool> failed{false};
    auto note = [&](const sharry::Status& s) {
      std::lock_guard<std::mutex> l(first_mu);
      if (first.ok()) first = s;
      failed = true;
    };
    for (int t = 0; t < FLAGS_threads; ++t) {
      ts.emplace_back([&, t] {
        std::mt19937_64 rng(FLAGS_seed * 1000 + t);
        const uint64_t mine = FLAGS_ops / FLAGS_threads;
        if (FLAGS_pattern == "scan") {
          uint64_t count = 0;
          for (size_t a = 0; count < mine; a = (a + 1) % arrs.size()) {
            const uint64_t len = std::min<uint64_t>(arrs[a].size(), mine - count);
            const size_t b = base[a];
            auto s = arrs[a].ForEach([&](size_t i, const uint64_t& v) { errors += (v % n) != b + i; }, 0, len);
            if (!s.ok()) { note(s); break; }
            if (failed.load(std::memory_order_relaxed)) break;
            count += len;
          }
          ops += count;
          return;
        }
        // --ops operations, repeated until --min_secs have passed (so that
        // fast, all-local configurations are not timed over microseconds).
        uint64_t count = 0;
        do {
          for (uint64_t k = 0; k < mine; ++k) {
            const size_t a = arrs.size() == 1 ? 0 : rng() % arrs.size();
            const size_t i = rng() % arrs[a].size();
            const size_t want = base[a] + i;
            if ((rng() % 10000) < FLAGS_write_pct * 100) {
              if (auto s = arrs[a].Set(i, want + n); !s.ok()) note(s);  // v % n == want still holds
            } else {
              auto v = arrs[a].Get(i);
              if (!v.ok()) note(v.status());
              else errors += (*v % n) != want;
            }
            if (k % 1024 == 0 && !failed.load(std::memory_order_relaxed))
              if (auto h = (*rt)->health(); !h.ok()) note(h);
            if (failed.load(std::memory_order_relaxed)) {
              count += k;
              ops += count;
              return;
            }
          }
          count += mine;
        } while (std::chrono::duration<double>(Clock::now() - t0).count() < FLAGS_min_secs);
        ops += count;
      });
    }
    for (auto& t : ts) t.join();
    if (failed) return FailRun(**rt, first, "far memory");
    secs = std::chrono::duration<double>(Clock::now() - t0).count();
    done = ops;
    bad = errors;
    snapshot();
  } else if (FLAGS_workload == "hashtable") {
    sharry::remote_ds::RemoteHashTable<uint64_t, Value> table(**rt);
    const uint64_t keys = ws / sizeof(Value);
    for (uint64_t k = 0; k < keys; ++k)
      if (auto s = table.Put(k, Value{k, {}}); !s.ok()) return FailRun(**rt, s, "fill");
    fill_secs = std::chrono::duration<double>(Clock::now() - t_fill).count();
    if (auto s = sharry::compute::WaitAtStartBarrierOfFlags(); !s.ok())
      return Fail(s, "start barrier");
    st0 = (*rt)->Stats();
    std::mt19937_64 rng(FLAGS_seed);
    auto t0 = Clock::now();
    for (uint64_t i = 0; i < FLAGS_ops; ++i) {
      uint64_t k = rng() % keys;
      if ((rng() % 10000) < FLAGS_write_pct * 100) {
        if (auto s = table.Put(k, Value{k, {1}}); !s.ok()) return FailRun(**rt, s, "far memory");
      } else {
        auto v = table.Get(k);
        if (!v.ok()) return FailRun(**rt, v.status(), "far memory");
        bad += v->key != k;
      }
      if (i % 1024 == 0)
        if (auto h = (*rt)->health(); !h.ok()) return FailRun(**rt, h, "far memory");
    }
    secs = std::chrono::duration<double>(Clock::now() - t0).count();
    done = FLAGS_ops;
    snapshot();
  } else {
    return Fail(sharry::Status::InvalidArgument("array or hashtable"), "--workload");
  }
  sharry::cli::Record result("sharry_client");
  result.Add("workload", FLAGS_workload).Add("mode", FLAGS_mode).Add("transport", FLAGS_transport);
  result.Add("working_set_bytes", ws).Add("local_budget_bytes", o.local_budget_bytes).Add("arrays", FLAGS_arrays);
  result.Add("object_bytes", FLAGS_object_bytes).Add("threads", FLAGS_threads).Add("fill_secs", fill_secs, "%.3f");
  result.Add("alloc_rpcs", st.alloc_rpcs).Add("free_rpcs", st.free_rpcs).Add("recycled", st.recycled_blocks);
  result.Add("ops", done).Add("secs", secs, "%.3f").Add("ops_per_s", done / secs, "%.0f");
  sharry::compute::AddSwapCounters(st, &result);
  result.Add("local_bytes", st.local_bytes).Add("peak_local_bytes", st.peak_local_bytes);
  out.Emit(result.Add("far_bytes_mine", far_mine).Add("far_bytes_memnode", far_total).Add("errors", bad));
  if (bad != 0) {
    std::fprintf(stderr, "sharry_client: %llu of %llu operations failed or read wrong data\n",
                 static_cast<unsigned long long>(bad), static_cast<unsigned long long>(done));
    return 3;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // The fill allocates the working set's local metadata (object handles,
  // per-array indexes): too large a working set ends here.
  return sharry::flags::RunMain("sharry_client", Main, argc, argv,
                                "out of local memory (std::bad_alloc) for the working set: use a smaller "
                                "--working_set_mb or --objects, or a larger --object_bytes");
}
