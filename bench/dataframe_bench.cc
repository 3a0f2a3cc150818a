// dataframe_bench: the paper's data-analysis application (section 6.3,
// Fig. 8) — a columnar data frame of NYC-taxi-shaped trips (workloads/taxi.h) on
// remoteable arrays, analysed with five group-by queries (trip duration and
// speed by hour of day, fare by passenger count, detour by weekday, a
// per-hour travel-time model), or the same on plain local memory.
//
//   build/bench/dataframe_bench --storage=local --rows=2000000
//   build/bench/dataframe_bench --storage=remote --memnode=127.0.0.1:7000
//       --mode=unique --local_pct=50 --rows=2000000 --passes=3 --print
//
// Prints one line of key=value results: load and query time, rows scanned per
// second (rows x queries x passes / query time), a checksum of the query
// results (equal for every storage and mode: the benchmark is also a check),
// the runtime's swap counts and the far memory this process holds.
// --verify recomputes the results on local memory and fails on a difference.
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <chrono>
#include <cstdio>
#include <functional>

#include "base/flag_check.h"
#include "bench/bench_stats.h"
#include "compute/runtime.h"
#include "tools/cli/client_flags.h"
#include "tools/cli/client_options.h"
#include "tools/cli/output.h"
#include "tools/cli/program.h"
#include "tools/cli/ranged_flag.h"
#include "workloads/taxi.h"

DEFINE_string(storage, "remote", "remote (remoteable arrays in far memory) or local (std::vector; "
                                 "--memnode, --transport and --mode are then not used)");
SHARRY_FLAG(uint64, rows, 1000000, 1, sharry::flags::kMaxFlagBytes / sharry::bench::kTripBytes, "trips in the data frame (57 bytes each)");
SHARRY_FLAG(double, local_pct, 50, 0, 100, "local memory budget, percent of the frame's bytes (remote)");
SHARRY_FLAG(uint32, passes, 3, 1, 1u << 20, "times the five queries run over the frame");
SHARRY_FLAG(double, min_secs, 0, 0, 86400, "more passes until the queries have run this long");
DEFINE_uint64(seed, 2016, "data set seed: the same seed makes the same trips");
DEFINE_bool(verify, false, "also compute the results on local memory and compare");
DEFINE_bool(print, false, "print the query results as tables");
DEFINE_string(queries, "cursor", "how the five queries run: cursor (RemoteArray cursors, every chunk brought "
              "here: the paper's Fig. 8) or aggregate (offload::Specs through compute::Aggregate, split between "
              "here and the memnodes as --offload says; docs/offload.md)");

namespace {

using sharry::Status;
using sharry::bench::LocalColumn;
using sharry::bench::RemoteColumn;
using sharry::bench::TaxiFrame;
using sharry::bench::TaxiResults;
using sharry::bench::Clock;
using sharry::bench::SecondsSince;

// Exit status as sharry_client's (sharry::compute::ExitCodeOf), 3 for wrong results.
int Fail(const Status& s, const char* what) {
  std::fprintf(stderr, "dataframe_bench: %s: %s\n", what, s.ToString().c_str());
  return sharry::compute::ExitCodeOf(s);
}

sharry::compute::RuntimeStats g_at_start;  // the runtime's counters when the queries start

void Print(const TaxiResults& r) {
  static const char* kDays[7] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  std::printf("hour  trips  mean_min  mean_mph  model_min_1mi  model_min_5mi\n");
  for (int h = 0; h < 24; ++h) {
    const double n = static_cast<double>(std::max<uint64_t>(r.trips_by_hour[h], 1));
    std::printf("%4d %7llu %9.1f %9.1f %14.1f %14.1f\n", h, static_cast<unsigned long long>(r.trips_by_hour[h]),
                r.duration_s_by_hour[h] / n / 60, r.mph_by_hour[h] / n, r.PredictMinutes(h, 1),
                r.PredictMinutes(h, 5));
  }
  std::printf("passengers  trips  mean_fare\n");
  for (int p = 0; p < 7; ++p)
    std::printf("%10d %7llu %10.2f\n", p, static_cast<unsigned long long>(r.trips_by_passengers[p]),
                r.fare_by_passengers[p] / static_cast<double>(std::max<uint64_t>(r.trips_by_passengers[p], 1)));
  std::printf("weekday  trips  metered/straight\n");
  for (int w = 0; w < 7; ++w)
    std::printf("%7s %7llu %17.3f\n", kDays[w], static_cast<unsigned long long>(r.trips_by_weekday[w]),
                r.detour_by_weekday[w] / static_cast<double>(std::max<uint64_t>(r.trips_by_weekday[w], 1)));
}

// Loads the frame, waits at the barrier, runs the passes; fills `r` and the
// times, and calls `done` while the frame still exists.
template <template <typename> class Column>
Status Run(sharry::compute::Runtime* rt, TaxiResults& r, double& load_secs, double& query_secs,
           const std::function<void()>& done = [] {}) {
  auto t = Clock::now();
  auto frame = TaxiFrame<Column>::Load(rt, FLAGS_rows, FLAGS_seed);
  if (!frame.ok()) return frame.status().WithContext("load");
  load_secs = SecondsSince(t);
  SHARRY_RETURN_IF_ERROR(sharry::compute::WaitAtStartBarrierOfFlags());
  if (rt != nullptr) g_at_start = rt->Stats();
  t = Clock::now();
  for (uint32_t p = 0; p < FLAGS_passes || SecondsSince(t) < FLAGS_min_secs; ++p) {
    TaxiResults pass;
    SHARRY_RETURN_IF_ERROR(FLAGS_queries == "aggregate" ? frame->RunAggregates(pass) : frame->RunQueries(pass));
    if (p > 0 && pass.Checksum() != r.Checksum())
      return Status::Internal("pass " + std::to_string(p) + " computed different results");
    const uint64_t scanned = r.rows_scanned + pass.rows_scanned;
    r = pass;
    r.rows_scanned = scanned;
  }
  query_secs = SecondsSince(t);
  done();
  return Status::Ok();
}

int Main(int argc, char** argv) {
  sharry::cli::InitProgram(&argc, &argv,
                           "Sharry data-frame benchmark: NYC-taxi-shaped trips, group-bys over far memory",
                           sharry::cli::Log::kWarnings);
  namespace f = sharry::flags;
  f::ExitOnBadFlags("dataframe_bench", {
      f::CheckOneOf("storage", FLAGS_storage, {"remote", "local"}),
      f::CheckOneOf("queries", FLAGS_queries, {"cursor", "aggregate"}),
      // Checked in rows, so that rows * kTripBytes cannot wrap.
      FLAGS_local_pct != 0 ? Status::Ok()
                           : Status::InvalidArgument("--local_pct=0 is out of range: allowed above 0, up to 100"),
  });
  sharry::cli::Emitter out = sharry::cli::EmitterFromFlags("dataframe_bench");
  const uint64_t frame_bytes = FLAGS_rows * sharry::bench::kTripBytes;
  TaxiResults r;
  double load_secs = 0, query_secs = 0;
  sharry::compute::RuntimeStats st;
  uint64_t far_mine = 0, budget = 0;
  std::unique_ptr<sharry::compute::Runtime> rt;
  if (FLAGS_storage == "local") {
    if (Status s = Run<LocalColumn>(nullptr, r, load_secs, query_secs); !s.ok()) return Fail(s, "local");
  } else if (FLAGS_storage == "remote") {
    sharry::compute::RuntimeOptions o;
    sharry::compute::ConnectionFromFlags("dataframe_bench", &o);
    // At least a few chunks per column, so that a scan of six columns fits.
    budget = std::max<uint64_t>(static_cast<uint64_t>(frame_bytes * FLAGS_local_pct / 100), 64 * 4096);
    // 100 % means all of it stays local: add the evictor's headroom (it
    // starts a little below the budget), or a scan would cycle the margin.
    if (FLAGS_local_pct >= 100) budget += frame_bytes / 32 + (1u << 20);
    o.local_budget_bytes = budget;
    auto made = sharry::compute::Runtime::Create(o);
    if (!made.ok()) return Fail(made.status(), "runtime");
    rt = std::move(*made);
    Status s = Run<RemoteColumn>(rt.get(), r, load_secs, query_secs, [&] {
      st = rt->Stats().Since(g_at_start);  // of the query phase only
      if (auto ms = rt->MemnodeStats(); ms.ok()) far_mine = ms->BytesHeldBy(rt->control_client_id());
    });
    if (!s.ok()) return Fail(s, "remote");
  } else {
    return Fail(Status::InvalidArgument("remote or local"), "--storage");
  }
  uint64_t errors = 0;
  if (FLAGS_verify) {
    TaxiResults want;
    double l = 0, q = 0;
    FLAGS_ready_file.clear();
    FLAGS_go_file.clear();
    if (Status s = Run<LocalColumn>(nullptr, want, l, q); !s.ok()) return Fail(s, "verify");
    if (want.Checksum() != r.Checksum()) {
      std::fprintf(stderr, "dataframe_bench: results differ from plain local memory: %016llx vs %016llx\n",
                   static_cast<unsigned long long>(r.Checksum()), static_cast<unsigned long long>(want.Checksum()));
      errors++;
    }
  }
  if (FLAGS_print) Print(r);
  char checksum[17];
  std::snprintf(checksum, sizeof checksum, "%016llx", static_cast<unsigned long long>(r.Checksum()));
  sharry::cli::Record result("dataframe_bench");
  result.Add("storage", FLAGS_storage).Add("mode", rt ? FLAGS_mode : "-").Add("transport", rt ? FLAGS_transport : "-");
  result.Add("rows", FLAGS_rows).Add("frame_bytes", frame_bytes).Add("local_budget_bytes", budget);
  result.Add("passes", r.rows_scanned / 5 / FLAGS_rows).Add("load_secs", load_secs, "%.3f");
  result.Add("query_secs", query_secs, "%.3f").Add("rows_per_s", r.rows_scanned / query_secs, "%.0f");
  result.Add("checksum", checksum);
  sharry::compute::AddSwapCounters(st, &result);
  result.Add("prefetches", st.prefetches).Add("alloc_rpcs", st.alloc_rpcs).Add("free_rpcs", st.free_rpcs);
  // Bytes moved over the transport during the queries (object data both
  // ways, OFFLOAD requests, results), per query (5 per pass).
  const uint64_t moved = st.far_read_bytes + st.far_write_bytes + st.offload_rpc_bytes;
  const uint64_t queries = std::max<uint64_t>(1, r.rows_scanned / std::max<uint64_t>(1, FLAGS_rows));
  result.Add("queries", FLAGS_queries).Add("offload", rt && FLAGS_queries == "aggregate" ? FLAGS_offload : "-");
  result.Add("bytes_moved", moved).Add("bytes_per_query", moved / queries);
  result.Add("local_units", st.agg_local_units).Add("pulled_units", st.agg_pulled_units);
  result.Add("offloaded_units", st.agg_offloaded_units).Add("offload_jobs", st.offload_jobs);
  result.Add("offload_refused", st.offload_refused);
  result.Add("memnode_cpu_ns_per_row",
             st.agg_offloaded_rows ? static_cast<double>(st.offload_cpu_ns) / st.agg_offloaded_rows : 0.0, "%.2f");
  out.Emit(result.Add("far_bytes_mine", far_mine).Add("errors", errors));
  return errors == 0 ? 0 : 3;
}

}  // namespace

int main(int argc, char** argv) {
  return sharry::flags::RunMain("dataframe_bench", Main, argc, argv,
                                "out of local memory (std::bad_alloc) for the frame: use fewer --rows (or "
                                "--storage=remote)");
}
