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
// memnode are measured over the same interval. With --timeline_ms the timed
// phase is also reported every interval (tools/cli/timeline.h), e.g. to plot
// throughput while a memnode is killed under --redundancy=replicate:2.
//
// Every value read is checked: element g of the array workload always holds
// g modulo the element count (a wrong element is an error); with
// --verify_versions each thread writes only the elements g = t (mod
// --threads), keeps a one-byte version of each, and checks its reads of
// them exactly, so a stale far copy (a lost write) is an error too.
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
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
#include "tools/cli/timeline.h"

DEFINE_string(workload, "array", "array or hashtable");
SHARRY_FLAG(uint64, working_set_mb, 64, 1, sharry::flags::kMaxFlagMiB,
            "bytes of data, in MiB (and at most what the memnode holds)");
SHARRY_FLAG(double, local_pct, 25, 0, 100, "local memory budget, percent of the working set");
DEFINE_uint64(ops, 1000000, "operations (array: element reads/writes; hashtable: gets/puts)");
SHARRY_FLAG(double, write_pct, 20, 0, 100, "percent of operations that write");
DEFINE_string(pattern, "random", "array: random, scan, or aggregate (count/sum/min/max of each array through "
              "compute::Aggregate, the far part where --offload says; --ops counts rows)");
SHARRY_FLAG(int32, threads, 1, 1, 256, "worker threads (array workload)");
DEFINE_uint64(seed, 1, "random seed");
SHARRY_FLAG(uint32, arrays, 1, 1, 65536, "array workload: number of remoteable arrays the working set is split into");
DEFINE_uint32(object_bytes, 4096, "array workload: bytes per object (chunk of elements), a multiple of 8 in 8..1048576");
DEFINE_uint64(objects, 0, "array workload: working set as a number of objects (overrides --working_set_mb; at most 16 TiB of them)");
SHARRY_FLAG(uint64, local_mb, 0, 0, sharry::flags::kMaxFlagMiB, "local memory budget in MiB (0: use --local_pct; else overrides it)");
SHARRY_FLAG(double, min_secs, 0, 0, 86400, "array workload (random): repeat the --ops operations until this long has passed");
SHARRY_FLAG(int32, timeline_ms, 0, 0, 10000,
            "during the timed phase, a timeline row every this many ms (0: none): ops, errors, degraded reads, "
            "repairs, dead memnodes");
DEFINE_string(timeline_file, "", "with --timeline_ms: write the timeline to this file as CSV instead of stdout");
DEFINE_bool(verify_versions, false,
            "array workload (random): keep a one-byte version of every element (working set / 8 bytes, locally) "
            "and check reads exactly, so that a stale far copy is caught; each thread writes only its own elements");

namespace {

using sharry::compute::Runtime;
using Clock = std::chrono::steady_clock;

struct Value {
  uint64_t key;
  uint8_t bytes[248];
};

// Exit status: 0 ok; 1 bad flags or no runtime; 3 wrong values read; a
// failed run: sharry::compute::ExitCodeOf (2 far memory failed mid-run,
// 4 far memory exhausted). A failed far access is never an "error" of the
// result: the run stops at the first one, says why on stderr and exits with
// its status. Under --redundancy=replicate:R a memnode's death is not a
// failure (its objects have copies elsewhere): only a loss of data is.

int Fail(const sharry::Status& s, const char* what) {
  std::fprintf(stderr, "sharry_client: %s: %s\n", what, s.ToString().c_str());
  return 1;
}

// Whether the runtime's health() ends the run: with one copy any failure
// (a memnode unreachable, far data lost), with replicas only lost data.
bool FatalHealth(const Runtime& rt, const sharry::Status& h) {
  if (h.ok()) return false;
  return rt.options().redundancy.kind == sharry::compute::Redundancy::Kind::kNone ||
         h.code() == sharry::StatusCode::kDataLoss;
}

// How long a failed run waits for the runtime to settle what a memnode's
// loss cost (its reconnector marks the objects lost), so that lost_objects
// and the message report it: a killed memnode is settled in milliseconds, a
// frozen one may not be within this (then the message says "unreachable").
constexpr auto kSettle = std::chrono::milliseconds(1000);

// A far access failed mid-run: say so, with what it cost, and exit.
int FailRun(Runtime& rt, const sharry::Status& s, const char* what,
            sharry::cli::Timeline* timeline = nullptr) {
  if (timeline != nullptr) timeline->Stop();
  sharry::Status h = rt.health();
  const auto code = s.code();
  if (code == sharry::StatusCode::kUnavailable || code == sharry::StatusCode::kDisconnected ||
      code == sharry::StatusCode::kTimeout) {
    const auto until = Clock::now() + kSettle;
    while (!h.ok() && h.code() != sharry::StatusCode::kDataLoss && Clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      h = rt.health();
    }
  }
  const auto st = rt.Stats();
  std::fprintf(stderr, "sharry_client: %s: %s\n", what, s.ToString().c_str());
  if (!h.ok() && h.message() != s.message())
    std::fprintf(stderr, "sharry_client: runtime health: %s\n", h.ToString().c_str());
  auto u = [](uint64_t v) { return static_cast<unsigned long long>(v); };
  std::fprintf(stderr, "sharry_client: peak_local_bytes=%llu local_limit_bytes=%llu "
               "failed_far_accesses=%llu lost_objects=%llu far_exhausted=%llu quota_exceeded=%llu "
               "dead_memnodes=%llu degraded_reads=%llu repaired_objects=%llu repair_pending=%llu\n",
               u(st.peak_local_bytes), u(rt.local_limit_bytes()), u(st.failed_far_accesses), u(st.lost_objects),
               u(st.far_exhausted), u(st.quota_exceeded), u(st.dead_memnodes), u(st.degraded_reads),
               u(st.repaired_objects), u(st.repair_pending));
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
      f::CheckOneOf("pattern", FLAGS_pattern, {"random", "scan", "aggregate"}),
      object_bytes_ok ? sharry::Status::Ok()
                      : sharry::Status::InvalidArgument("--object_bytes=" + std::to_string(FLAGS_object_bytes) +
                                                        " is not allowed: want a multiple of 8 in 8.." +
                                                        std::to_string(o.max_object_bytes)),
      // Checked in objects, so that objects * object_bytes cannot wrap.
      f::CheckRangeU("objects", FLAGS_objects, 0, f::kMaxFlagBytes / std::max(8u, FLAGS_object_bytes)),
      FLAGS_timeline_file.empty() || FLAGS_timeline_ms > 0
          ? sharry::Status::Ok()
          : sharry::Status::InvalidArgument("--timeline_file=" + FLAGS_timeline_file +
                                            " needs --timeline_ms in 1..10000 (the interval of its rows)"),
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
  // The timeline's file, opened before anything runs (a bad path is a bad flag).
  struct Close {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  std::unique_ptr<std::FILE, Close> timeline_file;
  if (!FLAGS_timeline_file.empty()) {
    timeline_file.reset(std::fopen(FLAGS_timeline_file.c_str(), "w"));
    if (!timeline_file)
      f::ExitOnBadFlags("sharry_client", sharry::Status::InvalidArgument(
                                             "--timeline_file=" + FLAGS_timeline_file + " cannot be written: " +
                                             std::strerror(errno)));
  }
  auto rt = Runtime::Create(o);
  if (!rt.ok()) return Fail(rt.status(), "runtime");
  // A working set that cannot fit in far memory plus the local budget is
  // refused before the fill, not discovered as an allocation failure later:
  // far memory is every memnode's UMA, less what the copies or parity take.
  {
    uint64_t uma = 0;
    bool all = true;
    for (size_t i = 0; i < (*rt)->memnode_count(); ++i) {
      auto ms = (*rt)->MemnodeStats(i);
      all = all && ms.ok();
      if (ms.ok()) uma += ms->head.uma_bytes;
    }
    // none: all of it; replicate:R: 1/R; ec:K+M: K/(K+M) (the parity blocks).
    using Kind = sharry::compute::Redundancy::Kind;
    const Kind kind = o.redundancy.kind;
    const uint64_t far = kind == Kind::kReplicate ? uma / o.redundancy.replicas
                         : kind == Kind::kErasure ? uma / (o.redundancy.k + o.redundancy.m) * o.redundancy.k
                                                  : uma;
    if (all && ws > far + o.local_budget_bytes) {
      std::fprintf(stderr,
                   "sharry_client: --working_set_mb/--objects: a working set of %llu B does not fit in the "
                   "memnodes' %llu B of far memory (%s) plus the local budget of %llu B\n",
                   static_cast<unsigned long long>(ws), static_cast<unsigned long long>(far),
                   sharry::compute::RedundancyName(o.redundancy).c_str(),
                   static_cast<unsigned long long>(o.local_budget_bytes));
      return 2;
    }
  }

  uint64_t done = 0, bad = 0;
  double secs = 0, fill_secs = 0;
  const auto t_fill = Clock::now();
  // Counters of the timed phase: st (at its end) minus st0 (at its start).
  sharry::compute::RuntimeStats st, st0;
  sharry::cli::Record far("far");
  // Taken while the data structure still exists.
  auto snapshot = [&] {
    st = (*rt)->Stats().Since(st0);
    far = sharry::compute::FarCounters(**rt, st);
  };
  const int threads = FLAGS_workload == "array" ? FLAGS_threads : 1;
  sharry::cli::OpCounters counters(threads);
  sharry::cli::Timeline timeline(**rt, counters, FLAGS_timeline_ms, timeline_file.get(), &out);
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
          **rt, objs * per_obj, [b](size_t i, uint64_t& v) { v = b + i; }, FLAGS_object_bytes,
          // Aggregates: each unit's chunks on one memnode (docs/offload.md).
          FLAGS_pattern == "aggregate" ? sharry::remote_ds::ChunkPlacement::kRowAffinity
                                       : sharry::remote_ds::ChunkPlacement::kAnywhere);
      if (!arr.ok()) return FailRun(**rt, arr.status(), "fill");
      base.push_back(n);
      n += arr->size();
      arrs.push_back(std::move(*arr));
    }
    // --verify_versions: element g was written version[g] times (mod 256)
    // by its one writer, thread g % threads; it holds g + n x version[g].
    const bool exact = FLAGS_verify_versions;
    std::vector<uint8_t> version(exact ? n : 0);
    fill_secs = std::chrono::duration<double>(Clock::now() - t_fill).count();
    if (auto s = sharry::compute::WaitAtStartBarrierOfFlags(); !s.ok())
      return Fail(s, "start barrier");
    st0 = (*rt)->Stats();
    auto t0 = Clock::now();
    timeline.Start();
    std::vector<std::thread> ts;
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
    for (int t = 0; t < threads; ++t) {
      ts.emplace_back([&, t] {
        sharry::cli::OpCounters::Slot& slot = counters.slot(t);
        std::mt19937_64 rng(FLAGS_seed * 1000 + t);
        const uint64_t mine = FLAGS_ops / threads;
        if (FLAGS_pattern == "aggregate") {
          // Count, sum, min and max of each array through compute::Aggregate
          // (where the far part runs: --offload), checked exactly: array a
          // holds base[a] + i at element i.
          sharry::offload::Spec spec;
          spec.Column(sharry::offload::ElemType::kU64);
          const uint8_t e = spec.ColumnExpr(0);
          spec.Aggregate(sharry::offload::AggKind::kCount);
          spec.Aggregate(sharry::offload::AggKind::kSum, e);
          spec.Aggregate(sharry::offload::AggKind::kMin, e);
          spec.Aggregate(sharry::offload::AggKind::kMax, e);
          uint64_t count = 0;
          for (size_t a = t % arrs.size(); count < mine; a = (a + 1) % arrs.size()) {
            auto r = arrs[a].Aggregate(spec);
            if (!r.ok()) { note(r.status()); break; }
            const uint64_t len = arrs[a].size(), b = base[a];
            const unsigned __int128 sum = static_cast<unsigned __int128>(len) * b + len * (len - 1) / 2;
            if (static_cast<uint64_t>(r->Int(0, 0)) != len || static_cast<uint64_t>(r->Int(0, 2)) != b ||
                static_cast<uint64_t>(r->Int(0, 3)) != b + len - 1 ||
                static_cast<unsigned __int128>(r->Int(0, 1)) != sum)
              slot.AddError();
            count += len;
            slot.Set(count);
            if (failed.load(std::memory_order_relaxed)) break;
          }
          return;
        }
        if (FLAGS_pattern == "scan") {
          uint64_t count = 0;
          for (size_t a = 0; count < mine; a = (a + 1) % arrs.size()) {
            const uint64_t len = std::min<uint64_t>(arrs[a].size(), mine - count);
            const size_t b = base[a];
            auto s = arrs[a].ForEach(
                [&](size_t i, const uint64_t& v) {
                  if (v % n != b + i) slot.AddError();
                  slot.Set(count + i + 1);
                },
                0, len);
            if (!s.ok()) { note(s); break; }
            if (failed.load(std::memory_order_relaxed)) break;
            count += len;
          }
          return;
        }
        // --ops operations, repeated until --min_secs have passed (so that
        // fast, all-local configurations are not timed over microseconds).
        const size_t nt = static_cast<size_t>(threads);
        uint64_t count = 0;
        do {
          for (uint64_t k = 0; k < mine; ++k) {
            const size_t a = arrs.size() == 1 ? 0 : rng() % arrs.size();
            const size_t lo = base[a], hi = base[a] + arrs[a].size();
            size_t g = lo + rng() % (hi - lo);
            bool write = (rng() % 10000) < FLAGS_write_pct * 100;
            if (write && exact) {
              // This thread's element nearest g (none: read g instead).
              const size_t w = g - g % nt + static_cast<size_t>(t);
              const size_t own = w < hi ? w : w >= lo + nt ? w - nt : hi;
              if (own < hi) g = own;
              else write = false;
            }
            if (write) {
              uint64_t v = g + n;  // v % n == g still holds
              if (exact) v = g + n * ++version[g];
              if (auto s = arrs[a].Set(g - lo, v); !s.ok()) note(s);
            } else {
              auto v = arrs[a].Get(g - lo);
              if (!v.ok()) note(v.status());
              else if ((exact && g % nt == static_cast<size_t>(t)) ? *v != g + n * version[g] : *v % n != g)
                slot.AddError();
            }
            slot.Set(count + k + 1);
            if (k % 1024 == 0 && !failed.load(std::memory_order_relaxed))
              if (auto h = (*rt)->health(); FatalHealth(**rt, h)) note(h);
            if (failed.load(std::memory_order_relaxed)) return;
          }
          count += mine;
        } while (std::chrono::duration<double>(Clock::now() - t0).count() < FLAGS_min_secs);
      });
    }
    for (auto& t : ts) t.join();
    if (failed) return FailRun(**rt, first, "far memory", &timeline);
    secs = std::chrono::duration<double>(Clock::now() - t0).count();
    timeline.Stop();
    const sharry::cli::Progress p = counters.Sum();
    done = p.ops;
    bad = p.errors;
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
    sharry::cli::OpCounters::Slot& slot = counters.slot(0);
    std::mt19937_64 rng(FLAGS_seed);
    auto t0 = Clock::now();
    timeline.Start();
    for (uint64_t i = 0; i < FLAGS_ops; ++i) {
      uint64_t k = rng() % keys;
      if ((rng() % 10000) < FLAGS_write_pct * 100) {
        if (auto s = table.Put(k, Value{k, {1}}); !s.ok()) return FailRun(**rt, s, "far memory", &timeline);
      } else {
        auto v = table.Get(k);
        if (!v.ok()) return FailRun(**rt, v.status(), "far memory", &timeline);
        if (v->key != k) slot.AddError();
      }
      slot.Set(i + 1);
      if (i % 1024 == 0)
        if (auto h = (*rt)->health(); FatalHealth(**rt, h)) return FailRun(**rt, h, "far memory", &timeline);
    }
    secs = std::chrono::duration<double>(Clock::now() - t0).count();
    timeline.Stop();
    done = FLAGS_ops;
    bad = counters.Sum().errors;
    snapshot();
  } else {
    return Fail(sharry::Status::InvalidArgument("array or hashtable"), "--workload");
  }
  sharry::cli::Record result("sharry_client");
  result.Add("workload", FLAGS_workload).Add("mode", FLAGS_mode).Add("transport", FLAGS_transport);
  result.Add("redundancy", sharry::compute::RedundancyName(o.redundancy)).Add("memnodes", (*rt)->memnode_count());
  result.Add("working_set_bytes", ws).Add("local_budget_bytes", o.local_budget_bytes).Add("arrays", FLAGS_arrays);
  result.Add("object_bytes", FLAGS_object_bytes).Add("threads", FLAGS_threads).Add("fill_secs", fill_secs, "%.3f");
  result.Add("alloc_rpcs", st.alloc_rpcs).Add("free_rpcs", st.free_rpcs).Add("recycled", st.recycled_blocks);
  result.Add("ops", done).Add("secs", secs, "%.3f").Add("ops_per_s", done / secs, "%.0f");
  sharry::compute::AddSwapCounters(st, &result);
  result.Add("local_bytes", st.local_bytes).Add("peak_local_bytes", st.peak_local_bytes);
  out.Emit(result.Append(far).Add("errors", bad));
  if (bad != 0) {
    std::fprintf(stderr, "sharry_client: %llu of %llu operations read wrong data\n",
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
