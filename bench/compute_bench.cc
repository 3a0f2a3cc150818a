// Compute-runtime benchmark: what far memory costs an application, against
// the plain local structure it replaces, over tcp or verbs, with an
// in-process memnode (started here, like memnode_rpc_bench does).
//
//   compute_bench --transport=tcp --mode=unique,multi
//   compute_bench --transport=verbs            # --addr defaults to $SHARRY_RDMA_ADDR
//
// Tests (--tests, all by default), per copy mode:
//   deref      local-hit dereference: DerefScope + RemoteObject::Deref (pin)
//              + scope end (unpin) per access on a present object, against
//              a raw pointer load of the same data; with the scope alone and
//              a pin inside an open scope as a breakdown.
//   scan       RemoteArray<uint64_t>::ForEach (one scope per chunk, prefetch
//              on) against a loop over std::vector, at each --local_pcts
//              budget; at 100 % also a hand-written per-chunk loop (public
//              API: a scope per chunk and a plain pointer walk).
//   random     RemoteArray::Get of random indices against vector[index],
//              the same index sequence.
//   swapin     rounds of: --swap_objects 4 KiB objects swapped out
//              (Runtime::SwapOut, not timed), then each dereferenced (timed),
//              against a plain 4 KiB TransportClient::Read on a separate
//              connection to the same memnode, sample by sample in the same
//              run. Unique-Copy's batched FREE is inside the samples that
//              send it; judged: p50 + their extra time spread over all.
//   hashtable  RemoteHashTable<uint64_t, 256-byte value> insert, get and
//              update throughput at each --ht_pcts budget, beside
//              std::unordered_map.
//
// Budgets are a percentage of the working set's object bytes; the runtime's
// headers and the hashtable's local index are not counted in it.
//
// Every measurement is one machine-readable line (or csv/json with --format,
// tools/cli/output.h; the human table is then left out):
//   computebench transport=tcp mode=unique test=scan local_pct=50 sharry_Mps=.. vector_Mps=.. ratio=..
// and the run ends with a human table (lines starting with '|' and TARGET).
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/flag_check.h"
#include "bench/bench_stats.h"
#include "compute/runtime.h"
#include "memnode/memnode.h"
#include "remote_ds/remote_array.h"
#include "remote_ds/remote_hashtable.h"
#include "tools/cli/output.h"
#include "tools/cli/program.h"
#include "tools/cli/ranged_flag.h"

DEFINE_string(addr, "", "memnode address to serve on and connect to (default: tcp 127.0.0.1, verbs "
                        "$SHARRY_RDMA_ADDR, else 192.0.2.1)");
DEFINE_string(mode, "unique,multi", "copy modes, comma-separated: unique, multi");
DEFINE_string(tests, "deref,scan,random,swapin,hashtable", "what to measure, comma-separated");
SHARRY_FLAG(double, seconds, 0.25, 0, 86400, "least measuring time of one throughput measurement");
SHARRY_FLAG(int32, rounds, 3, 1, 1000, "rounds per local comparison, Sharry and baseline back to back; medians (far budgets: 1)");
SHARRY_FLAG(uint64, uma_mb, 512, 1, std::min(sharry::flags::kMaxFlagMiB, sharry::flags::PhysicalMiB()), "memnode UMA size");
SHARRY_FLAG(uint32, sections, 1, 1, 64, "memnode sections");
SHARRY_FLAG(uint32, free_batch, 64, 1, 1u << 20, "Unique-Copy: far blocks per FREE RPC (RuntimeOptions::free_batch)");
SHARRY_FLAG(uint32, evict_batch, 64, 1, 1u << 20, "objects per eviction round (RuntimeOptions::evict_batch)");
DEFINE_bool(prefetch_thread, true, "the runtime's background prefetcher");
// deref
SHARRY_FLAG(int32, deref_objects, 64, 1, 1 << 24, "deref: present objects visited round robin");
SHARRY_FLAG(int32, deref_object_bytes, 64, 8, 1 << 20, "deref: object size");
// scan / random
SHARRY_FLAG(uint64, array_mb, 32, 1, sharry::flags::kMaxFlagMiB, "scan/random: working set (MiB of uint64_t)");
SHARRY_FLAG(uint32, chunk_bytes, 4096, 8, 1u << 20, "scan/random: RemoteArray chunk size");
DEFINE_string(local_pcts, "100,50,25", "scan/random: local budgets, percent of the working set");
SHARRY_FLAG(uint64, random_indices, 1 << 20, 1, uint64_t{1} << 26, "random: length of the random index sequence (cycled)");
SHARRY_FLAG(int32, prefetch, 4, 0, 1024, "scan: chunks prefetched ahead");
// swapin
SHARRY_FLAG(int32, swap_samples, 2000, 1, 1 << 24, "swapin: samples");
SHARRY_FLAG(int32, swap_objects, 256, 1, 1 << 20, "swapin: objects swapped out together, then swapped in one by one, per round");
SHARRY_FLAG(int32, swap_bytes, 4096, 8, 1 << 20, "swapin: object size");
// hashtable
SHARRY_FLAG(uint64, ht_entries, 65536, 1, uint64_t{1} << 32, "hashtable: entries (256-byte values)");
DEFINE_string(ht_pcts, "100,25", "hashtable: local budgets, percent of the values' bytes");

namespace sharry {
namespace {

using bench::Clock;
using compute::CopyMode;
using compute::DerefScope;
using compute::RemoteObject;
using compute::Runtime;
using compute::RuntimeOptions;
using compute::RuntimeStats;
using remote_ds::RemoteArray;
using remote_ds::RemoteHashTable;

// Keeps a value alive in a register or memory: the compiler must compute it.
template <typename T>
inline void DoNotOptimize(const T& v) {
  asm volatile("" : : "r,m"(v) : "memory");
}
// Makes a value opaque: the compiler cannot know it after this point, so a
// load through it cannot be hoisted out of a loop or folded.
template <typename T>
inline void Launder(T& v) {
  asm volatile("" : "+r"(v));
}

using bench::Mean;
using bench::Median;
using bench::Percentile;
using bench::SecondsSince;
using bench::Split;

bool Want(const std::string& test) {
  for (const auto& t : Split(FLAGS_tests))
    if (t == test) return true;
  return false;
}

// Calls step() (which does some work and returns how many operations) until
// `seconds` passed; returns operations per second.
double Rate(const std::function<uint64_t()>& step, double seconds) {
  uint64_t ops = 0;
  auto t0 = Clock::now();
  double el;
  do {
    ops += step();
    el = SecondsSince(t0);
  } while (el < seconds);
  return ops / el;
}

// Counter deltas of the runtime around a measurement.
struct Delta {
  RuntimeStats before;
  explicit Delta(Runtime& rt) : before(rt.Stats()) {}
  // `derefs_per_s`: the measured rate of dereferences (pins), for the time
  // per demand miss.
  cli::Record Format(Runtime& rt, double derefs_per_s = 0) const {
    const RuntimeStats d = rt.Stats().Since(before);
    const uint64_t hits = d.local_hits, ins = d.swap_ins, pf = d.prefetches;
    // A prefetched object is swapped in by the prefetcher and then pinned
    // as a local hit; "demand" misses are the swap-ins the user waited for.
    uint64_t demand = ins - std::min(ins, pf);
    double hit = hits + demand ? static_cast<double>(hits) / (hits + demand) : 1.0;
    cli::Record r("delta");
    r.Add("hit_rate", hit, "%.3f")
        .Add("swap_ins", ins)
        .Add("prefetched", pf)
        .Add("swap_outs", d.swap_outs)
        .Add("drops", d.drops)
        .Add("eviction_rounds", d.eviction_rounds)
        .Add("alloc_rpcs", d.alloc_rpcs)
        .Add("free_rpcs", d.free_rpcs)
        .Add("recycled_blocks", d.recycled_blocks);
    // Time per dereference, and per demand miss if the hits cost nothing:
    // what one miss costs the user, eviction and FREEs included.
    if (derefs_per_s > 0 && hit < 1.0)
      r.Add("us_per_deref", 1e6 / derefs_per_s, "%.2f").Add("us_per_demand_miss", 1e6 / derefs_per_s / (1.0 - hit), "%.2f");
    return r;
  }
};

// One row of the final human table.
struct Row {
  std::string mode, what, sharry, baseline, ratio, target, verdict;
};

class Bench {
 public:
  Bench(TransportKind kind, std::string addr, memnode::Memnode* node, cli::Emitter& out)
      : kind_(kind), addr_(std::move(addr)), node_(node), out_(out) {}

  void RunMode(CopyMode mode) {
    mode_ = mode;
    if (Want("deref")) Deref();
    if (Want("scan") || Want("random")) Array();
    if (Want("swapin")) SwapIn();
    if (Want("hashtable")) HashTable();
  }
  void StdHashTable();
  void PrintTable() const;

 private:
  std::unique_ptr<Runtime> MakeRuntime(uint64_t budget, uint32_t max_object = 1u << 20) {
    RuntimeOptions o;
    o.transport = kind_;
    o.memnode_addr = addr_;
    o.memnode_port = node_->port();
    o.local_budget_bytes = std::max<uint64_t>(budget, 1);
    o.mode = mode_;
    o.max_object_bytes = max_object;
    o.free_batch = FLAGS_free_batch;
    o.evict_batch = FLAGS_evict_batch;
    o.prefetch_thread = FLAGS_prefetch_thread;
    auto rt = Runtime::Create(o);
    CHECK(rt.ok()) << rt.status();
    return std::move(*rt);
  }
  // A result line: "computebench transport=.. mode=.. test=..", then its values.
  cli::Record Head(const char* test, std::string_view mode = "") const {
    cli::Record r("computebench");
    r.Add("transport", TransportName(kind_)).Add("mode", mode.empty() ? compute::CopyModeName(mode_) : mode);
    r.Add("test", test);
    return r;
  }
  void AddRow(std::string what, std::string sharry, std::string baseline, std::string ratio, std::string target = "",
              std::string verdict = "") {
    rows_.push_back({std::string(compute::CopyModeName(mode_)), std::move(what), std::move(sharry),
                     std::move(baseline), std::move(ratio), std::move(target), std::move(verdict)});
  }

  void Deref();
  void Array();
  void SwapIn();
  void HashTable();

  TransportKind kind_;
  std::string addr_;
  memnode::Memnode* node_;
  cli::Emitter& out_;
  CopyMode mode_ = CopyMode::kUniqueCopy;
  std::vector<Row> rows_;
  std::vector<Row> std_rows_;
};

std::string F(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

// ---------------------------------------------------------------- deref

void Bench::Deref() {
  const int k = FLAGS_deref_objects;
  const uint32_t bytes = std::max<int>(FLAGS_deref_object_bytes, 8);
  auto rt = MakeRuntime(uint64_t{bytes} * k * 4);
  std::vector<RemoteObject> objs;
  for (int i = 0; i < k; ++i) {
    std::vector<uint64_t> init(bytes / 8, i + 1);
    auto o = rt->New(bytes, init.data());
    CHECK(o.ok()) << o.status();
    objs.push_back(std::move(*o));
  }
  // The baseline reads the same bytes through raw pointers, taken inside a
  // scope that pins every object for as long as the pointers are used.
  DerefScope all(*rt);
  std::vector<const uint64_t*> ptrs;
  for (auto& o : objs) {
    auto p = o.Deref(all, false);
    CHECK(p.ok()) << p.status();
    ptrs.push_back(static_cast<const uint64_t*>(*p));
  }
  auto raw_step = [&]() -> uint64_t {
    uint64_t sum = 0;
    for (int rep = 0; rep < 64; ++rep)
      for (int i = 0; i < k; ++i) {
        const uint64_t* q = ptrs[i];
        Launder(q);
        sum += *q;
      }
    DoNotOptimize(sum);
    return uint64_t{64} * k;
  };
  // What RemoteArray::Get and RemoteHashTable::Get do per access.
  auto scope_step = [&]() -> uint64_t {
    uint64_t sum = 0;
    for (int rep = 0; rep < 64; ++rep)
      for (int i = 0; i < k; ++i) {
        DerefScope s(*rt);
        auto p = objs[i].Deref(s, false);
        if (!p.ok()) LOG(FATAL) << p.status();
        sum += *static_cast<const uint64_t*>(*p);
      }
    DoNotOptimize(sum);
    return uint64_t{64} * k;
  };
  // Breakdown: the scope alone, and a pin inside a scope shared by k derefs.
  auto scope_only_step = [&]() -> uint64_t {
    for (int rep = 0; rep < 64 * k; ++rep) {
      DerefScope s(*rt);
      DoNotOptimize(s);
    }
    return uint64_t{64} * k;
  };
  auto pin_step = [&]() -> uint64_t {
    uint64_t sum = 0;
    for (int rep = 0; rep < 64; ++rep) {
      DerefScope s(*rt);
      for (int i = 0; i < k; ++i) {
        auto p = objs[i].Deref(s, false);
        if (!p.ok()) LOG(FATAL) << p.status();
        sum += *static_cast<const uint64_t*>(*p);
      }
    }
    DoNotOptimize(sum);
    return uint64_t{64} * k;
  };
  std::vector<double> raw_ns, scope_ns, only_ns, pin_ns;
  const double secs = std::max(0.05, FLAGS_seconds / 2);
  for (int r = 0; r < FLAGS_rounds; ++r) {
    raw_ns.push_back(1e9 / Rate(raw_step, secs));
    scope_ns.push_back(1e9 / Rate(scope_step, secs));
    only_ns.push_back(1e9 / Rate(scope_only_step, secs));
    pin_ns.push_back(1e9 / Rate(pin_step, secs));
  }
  double raw = Median(raw_ns), scope = Median(scope_ns), only = Median(only_ns), pin = Median(pin_ns);
  out_.Emit(Head("deref")
                .Add("objects", k)
                .Add("object_bytes", bytes)
                .Add("deref_ns", scope, "%.2f")
                .Add("raw_ns", raw, "%.3f")
                .Add("ratio", scope / raw, "%.1f")
                .Add("scope_only_ns", only, "%.2f")
                .Add("pin_in_open_scope_ns", pin, "%.2f"));
  double ratio = scope / raw;
  AddRow("local hit (a): ns per access, scope + Deref + unpin vs raw load", F("%.1f", scope), F("%.2f", raw) + " (raw load)",
         F("%.1f", ratio), "<= 2", ratio <= 2 ? "met" : "MISSED");
  AddRow("  breakdown: scope alone / pin in an open scope, ns", F("%.1f", only) + " / " + F("%.1f", pin), "", "");
}

// ---------------------------------------------------------------- array

void Bench::Array() {
  const size_t n = (FLAGS_array_mb << 20) / sizeof(uint64_t);
  std::vector<uint64_t> vec(n);
  for (size_t i = 0; i < n; ++i) vec[i] = i * 0x9E3779B97F4A7C15ull;
  std::mt19937_64 rng(42);
  std::vector<uint64_t> idx(std::min<uint64_t>(FLAGS_random_indices, 1u << 26));
  for (auto& x : idx) x = rng() % n;

  auto vec_scan = [&]() -> uint64_t {
    uint64_t sum = 0;
    for (uint64_t v : vec) sum += v;
    DoNotOptimize(sum);
    return n;
  };
  size_t vpos = 0;
  auto vec_random = [&]() -> uint64_t {
    uint64_t sum = 0;
    for (int j = 0; j < 4096; ++j) {
      sum += vec[idx[vpos]];
      if (++vpos == idx.size()) vpos = 0;
    }
    DoNotOptimize(sum);
    return 4096;
  };

  uint64_t want = 0;
  for (uint64_t v : vec) want += v;

  for (const auto& pct_s : Split(FLAGS_local_pcts)) {
    const int pct = std::stoi(pct_s);
    // Far budgets are bound by the network: one round, no target.
    const int rounds = pct >= 100 ? FLAGS_rounds : 1;
    const uint64_t ws = uint64_t{n} * sizeof(uint64_t);
    auto rt = MakeRuntime(ws * pct / 100);
    auto made = RemoteArray<uint64_t>::Make(*rt, n, FLAGS_chunk_bytes);
    CHECK(made.ok()) << made.status();
    RemoteArray<uint64_t> arr = std::move(*made);
    // Filling is a sequential pass: it leaves the budget's steady state.
    CHECK(arr.ForEachMut([&](size_t i, uint64_t& v) { v = vec[i]; }).ok());
    const double per_chunk = static_cast<double>(arr.elements_per_chunk());

    if (Want("scan")) {
      // Every scan checks the sum: the array holds what the vector holds.
      auto foreach_scan = [&]() -> uint64_t {
        uint64_t sum = 0;
        Status s = arr.ForEach([&](size_t, const uint64_t& v) { sum += v; }, 0, ~size_t{0}, FLAGS_prefetch);
        if (!s.ok()) LOG(FATAL) << s;
        CHECK_EQ(sum, want) << "the array lost data";
        return n;
      };
      // The same scan by hand through the public API: one scope per chunk,
      // the same prefetch, and a plain pointer walk over the chunk.
      auto chunk_scan = [&]() -> uint64_t {
        uint64_t sum = 0;
        const size_t per = arr.elements_per_chunk(), chunks = arr.chunks();
        for (size_t c = 0; c < chunks; ++c) {
          for (size_t k = 1; k <= static_cast<size_t>(FLAGS_prefetch) && c + k < chunks; ++k)
            arr.chunk(c + k).Prefetch();
          DerefScope s(*rt);
          auto p = arr.chunk(c).Deref(s, false);
          if (!p.ok()) LOG(FATAL) << p.status();
          const uint64_t* b = static_cast<const uint64_t*>(*p);
          const size_t m = std::min(per, n - c * per);
          for (size_t j = 0; j < m; ++j) sum += b[j];
        }
        CHECK_EQ(sum, want) << "the array lost data";
        return n;
      };
      std::vector<double> r_vec, r_fe, r_ch, r_np;
      cli::Record stats("delta"), np_stats("delta");
      for (int r = 0; r < rounds; ++r) {
        r_vec.push_back(Rate(vec_scan, FLAGS_seconds));
        Delta d(*rt);
        r_fe.push_back(Rate(foreach_scan, FLAGS_seconds));
        if (r == 0) stats = d.Format(*rt, r_fe.back() / per_chunk);
        if (pct >= 100) r_ch.push_back(Rate(chunk_scan, FLAGS_seconds));
      }
      // Far budgets: the same ForEach without prefetching, for comparison.
      if (pct < 100 && FLAGS_prefetch > 0) {
        auto no_prefetch = [&]() -> uint64_t {
          uint64_t sum = 0;
          Status s = arr.ForEach([&](size_t, const uint64_t& v) { sum += v; }, 0, ~size_t{0}, 0);
          if (!s.ok()) LOG(FATAL) << s;
          CHECK_EQ(sum, want) << "the array lost data";
          return n;
        };
        Delta d(*rt);
        r_np.push_back(Rate(no_prefetch, FLAGS_seconds));
        np_stats = d.Format(*rt, r_np.back() / per_chunk);
      }
      double v = Median(r_vec), fe = Median(r_fe), ch = Median(r_ch);
      cli::Record scan = Head("scan");
      scan.Add("local_pct", pct).Add("elements", n);
      cli::Record no_prefetch = scan;
      scan.Add("sharry_Mps", fe / 1e6, "%.2f").Add("vector_Mps", v / 1e6, "%.2f").Add("ratio", fe / v, "%.4f");
      if (pct >= 100) scan.Add("chunkloop_Mps", ch / 1e6, "%.2f").Add("chunkloop_ratio", ch / v, "%.3f");
      out_.Emit(scan.Append(stats));
      if (!r_np.empty())
        out_.Emit(no_prefetch.Add("prefetch", 0)
                      .Add("sharry_Mps", r_np[0] / 1e6, "%.2f")
                      .Add("vector_Mps", v / 1e6, "%.2f")
                      .Add("ratio", r_np[0] / v, "%.4f")
                      .Append(np_stats));
      std::string what = "scan " + std::to_string(pct) + " % local, ForEach, M elem/s";
      if (pct >= 100) {
        AddRow("local hit (b): ns per element, ForEach (scope per chunk) vs vector loop", F("%.2f", 1e9 / fe),
               F("%.2f", 1e9 / v) + " (vector)", F("%.2f", v / fe), "<= 2", v / fe <= 2 ? "met" : "MISSED");
        AddRow(what, F("%.1f", fe / 1e6), F("%.1f", v / 1e6) + " (vector)", F("%.3f", fe / v), ">= 0.5",
               fe / v >= 0.5 ? "met" : "MISSED");
        AddRow("  same scan, hand-written per-chunk loop", F("%.1f", ch / 1e6), F("%.1f", v / 1e6),
               F("%.3f", ch / v));
      } else {
        AddRow(what, F("%.2f", fe / 1e6), F("%.1f", v / 1e6) + " (vector)", F("%.4f", fe / v));
        if (!r_np.empty())
          AddRow("  same scan without prefetching", F("%.2f", r_np[0] / 1e6), F("%.1f", v / 1e6),
                 F("%.4f", r_np[0] / v));
      }
    }
    if (Want("random")) {
      size_t pos = 0;
      auto get_random = [&]() -> uint64_t {
        uint64_t sum = 0;
        for (int j = 0; j < 256; ++j) {
          auto v = arr.Get(idx[pos]);
          if (!v.ok()) LOG(FATAL) << v.status();
          sum += *v;
          if (++pos == idx.size()) pos = 0;
        }
        DoNotOptimize(sum);
        return 256;
      };
      // Warm up on indices the measurement does not start with.
      pos = idx.size() / 2;
      Rate(get_random, FLAGS_seconds / 3);
      pos = 0;
      vpos = 0;
      std::vector<double> r_vec, r_get;
      cli::Record stats("delta");
      for (int r = 0; r < rounds; ++r) {
        r_vec.push_back(Rate(vec_random, FLAGS_seconds));
        Delta d(*rt);
        r_get.push_back(Rate(get_random, FLAGS_seconds));
        if (r == 0) stats = d.Format(*rt, r_get.back());
      }
      double v = Median(r_vec), g = Median(r_get);
      out_.Emit(Head("random")
                    .Add("local_pct", pct)
                    .Add("elements", n)
                    .Add("sharry_Mps", g / 1e6, "%.4f")
                    .Add("vector_Mps", v / 1e6, "%.2f")
                    .Add("ratio", g / v, "%.5f")
                    .Append(stats));
      AddRow("random Get " + std::to_string(pct) + " % local, M elem/s", F(pct >= 100 ? "%.2f" : "%.4f", g / 1e6),
             F("%.1f", v / 1e6) + " (vector)", F(pct >= 100 ? "%.3f" : "%.5f", g / v));
    }
  }
}

// ---------------------------------------------------------------- swap-in

void Bench::SwapIn() {
  const uint32_t bytes = FLAGS_swap_bytes;
  const int nobj = FLAGS_swap_objects;
  auto rt = MakeRuntime(uint64_t{bytes} * nobj * 2);
  std::vector<RemoteObject> objs;
  std::vector<uint8_t> init(bytes, 7);
  for (int i = 0; i < nobj; ++i) {
    auto o = rt->New(bytes, init.data());
    CHECK(o.ok()) << o.status();
    objs.push_back(std::move(*o));
  }
  // The yardstick: transport_bench's 4 KiB READ (registered destination),
  // on its own connection to the same memnode; and the same READ into
  // unregistered memory (verbs: through the bounce buffer, as a swap-in
  // into malloc'd memory is).
  ClientOptions co;
  co.server_addr = addr_;
  co.port = node_->port();
  auto cr = TransportClient::Connect(kind_, co);
  CHECK(cr.ok()) << cr.status();
  auto& conn = *cr;
  std::vector<uint8_t> reg(bytes), unreg(bytes);
  CHECK(conn->RegisterLocal(reg.data(), reg.size()).ok());
  const uint64_t span = conn->info().region_size;

  // Rounds of: swap every object out (not timed), then dereference each
  // (timed), a READ sample just before each. Swapping all out first means no
  // swap-out comes between the swap-ins to reuse their queued far blocks, so
  // Unique-Copy sends its batched FREE every free_batch swap-ins — the
  // conservative case; its cost is in the samples that sent one.
  std::vector<double> t_swap, t_read, t_staged, t_free_samples;
  uint64_t free_rpcs = 0;
  auto us = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::micro>(b - a).count();
  };
  const Delta delta(*rt);
  for (int i = 0, warm = std::min(nobj, 32); static_cast<int>(t_swap.size()) < FLAGS_swap_samples;) {
    for (const RemoteObject& o : objs) {
      Status s = rt->SwapOut(o);
      CHECK(s.ok()) << s;
      CHECK(!o.is_local());
    }
    for (const RemoteObject& o : objs) {
      const uint64_t off = (uint64_t(i) * bytes) % (span - bytes);
      auto t0 = Clock::now();
      Status s = conn->Read(off, reg.data(), bytes);
      auto t1 = Clock::now();
      CHECK(s.ok()) << s;
      s = conn->Read(off, unreg.data(), bytes);
      auto t2 = Clock::now();
      CHECK(s.ok()) << s;
      const uint64_t frees_before = rt->Stats().free_rpcs;
      auto t3 = Clock::now();
      {
        DerefScope scope(*rt);
        auto p = o.Deref(scope, false);
        CHECK(p.ok()) << p.status();
        DoNotOptimize(*static_cast<const uint8_t*>(*p));
      }
      auto t4 = Clock::now();
      const bool flushed = rt->Stats().free_rpcs != frees_before;
      if (i++ < warm) continue;
      t_read.push_back(us(t0, t1));
      t_staged.push_back(us(t1, t2));
      t_swap.push_back(us(t3, t4));
      if (flushed) {
        free_rpcs++;
        t_free_samples.push_back(us(t3, t4));
      }
    }
  }
  const cli::Record stats = delta.Format(*rt);
  const double sw50 = Percentile(t_swap, 0.5), rd50 = Percentile(t_read, 0.5);
  // The FREE RPC sent every free_batch swap-ins (Unique-Copy), spread over
  // all swap-ins: p50 plus the extra time of the samples that sent one.
  double extra = 0;
  for (double t : t_free_samples) extra += std::max(0.0, t - sw50);
  const double amortized = sw50 + extra / t_swap.size();
  out_.Emit(Head("swapin")
                .Add("bytes", bytes)
                .Add("samples", t_swap.size())
                .Add("swapin_p50_us", sw50, "%.2f")
                .Add("swapin_p99_us", Percentile(t_swap, 0.99), "%.2f")
                .Add("swapin_mean_us", Mean(t_swap), "%.2f")
                .Add("swapin_p50_plus_free_us", amortized, "%.2f")
                .Add("samples_with_free", free_rpcs)
                .Add("free_sample_mean_us", Mean(t_free_samples), "%.2f")
                .Add("read_p50_us", rd50, "%.2f")
                .Add("read_p99_us", Percentile(t_read, 0.99), "%.2f")
                .Add("read_mean_us", Mean(t_read), "%.2f")
                .Add("read_unregistered_p50_us", Percentile(t_staged, 0.5), "%.2f")
                .Add("ratio_p50", sw50 / rd50, "%.3f")
                .Add("ratio_with_free", amortized / rd50, "%.3f")
                .Add("ratio_mean", Mean(t_swap) / Mean(t_read), "%.3f")
                .Append(stats));
  const bool unique = mode_ == CopyMode::kUniqueCopy;
  const double judged = unique ? amortized / rd50 : sw50 / rd50;
  AddRow(unique ? "swap-in 4 KiB p50 + amortized FREE, us" : "swap-in 4 KiB p50, us",
         F("%.1f", unique ? amortized : sw50), F("%.1f", rd50) + " (READ p50)", F("%.2f", judged), "<= 1.3",
         judged <= 1.3 ? "met" : "MISSED");
  AddRow("  swap-in p50 / mean; READ unregistered p50, us", F("%.1f", sw50) + " / " + F("%.1f", Mean(t_swap)),
         F("%.1f", Percentile(t_staged, 0.5)), F("%.2f", sw50 / rd50));
}

// ---------------------------------------------------------------- hashtable

struct Value256 {
  uint64_t w[32];
};
static_assert(sizeof(Value256) == 256);

// The keys of both hashtable benchmarks, and the random order in which
// they are looked up and updated.
std::pair<std::vector<uint64_t>, std::vector<uint64_t>> HashKeys(uint64_t n) {
  std::mt19937_64 rng(7);
  std::vector<uint64_t> keys(n);
  for (uint64_t i = 0; i < n; ++i) keys[i] = i * 2654435761u + 1;
  std::vector<uint64_t> order(std::min<uint64_t>(FLAGS_random_indices, 1u << 24));
  for (auto& x : order) x = keys[rng() % n];
  return {std::move(keys), std::move(order)};
}

void Bench::HashTable() {
  const uint64_t n = FLAGS_ht_entries;
  // Not a structured binding: clang 14 cannot capture one in a lambda.
  std::vector<uint64_t> keys, order;
  std::tie(keys, order) = HashKeys(n);
  for (const auto& pct_s : Split(FLAGS_ht_pcts)) {
    const int pct = std::stoi(pct_s);
    auto rt = MakeRuntime(n * sizeof(Value256) * pct / 100);
    RemoteHashTable<uint64_t, Value256> ht(*rt);
    Value256 v{};
    auto t0 = Clock::now();
    for (uint64_t i = 0; i < n; ++i) {
      v.w[0] = keys[i];
      Status s = ht.Put(keys[i], v);
      if (!s.ok()) LOG(FATAL) << s;
    }
    const double insert = n / SecondsSince(t0);
    size_t pos = 0;
    uint64_t bad = 0;
    auto get_step = [&]() -> uint64_t {
      for (int j = 0; j < 256; ++j) {
        auto r = ht.Get(order[pos]);
        if (!r.ok()) LOG(FATAL) << r.status();
        bad += r->w[0] != order[pos];
        if (++pos == order.size()) pos = 0;
      }
      return 256;
    };
    auto put_step = [&]() -> uint64_t {
      for (int j = 0; j < 256; ++j) {
        v.w[0] = order[pos];
        v.w[1]++;
        Status s = ht.Put(order[pos], v);
        if (!s.ok()) LOG(FATAL) << s;
        if (++pos == order.size()) pos = 0;
      }
      return 256;
    };
    pos = order.size() / 2;
    Rate(get_step, FLAGS_seconds / 3);  // warm
    pos = 0;
    std::vector<double> r_get, r_put;
    cli::Record gstats("delta"), pstats("delta");
    for (int r = 0; r < (pct >= 100 ? FLAGS_rounds : 1); ++r) {
      Delta dg(*rt);
      r_get.push_back(Rate(get_step, FLAGS_seconds));
      if (r == 0) gstats = dg.Format(*rt);
      Delta dp(*rt);
      r_put.push_back(Rate(put_step, FLAGS_seconds));
      if (r == 0) pstats = dp.Format(*rt);
    }
    CHECK_EQ(bad, 0u) << "the hashtable returned a wrong value";
    const double g = Median(r_get), p = Median(r_put);
    out_.Emit(Head("hashtable")
                  .Add("local_pct", pct)
                  .Add("entries", n)
                  .Add("value_bytes", 256)
                  .Add("insert_Mops", insert / 1e6, "%.4f")
                  .Add("get_Mops", g / 1e6, "%.4f")
                  .Add("update_Mops", p / 1e6, "%.4f")
                  .Append(gstats, "get")
                  .Append(pstats, "update"));
    const std::string at = " " + std::to_string(pct) + " % local, M ops/s";
    AddRow("hashtable put (insert)" + at, F("%.3f", insert / 1e6), "", "");
    AddRow("hashtable put (update)" + at, F("%.3f", p / 1e6), "", "");
    AddRow("hashtable get" + at, F("%.3f", g / 1e6), "", "");
  }
}

void Bench::StdHashTable() {
  const uint64_t n = FLAGS_ht_entries;
  // Not a structured binding: clang 14 cannot capture one in a lambda.
  std::vector<uint64_t> keys, order;
  std::tie(keys, order) = HashKeys(n);
  std::unordered_map<uint64_t, Value256> m;
  Value256 v{};
  auto t0 = Clock::now();
  for (uint64_t i = 0; i < n; ++i) {
    v.w[0] = keys[i];
    m[keys[i]] = v;
  }
  const double insert = n / SecondsSince(t0);
  size_t pos = 0;
  auto get_step = [&]() -> uint64_t {
    uint64_t sum = 0;
    for (int j = 0; j < 256; ++j) {
      auto it = m.find(order[pos]);
      CHECK(it != m.end());
      Value256 copy = it->second;  // RemoteHashTable::Get returns a copy too
      DoNotOptimize(copy);
      sum += copy.w[0];
      if (++pos == order.size()) pos = 0;
    }
    DoNotOptimize(sum);
    return 256;
  };
  auto put_step = [&]() -> uint64_t {
    for (int j = 0; j < 256; ++j) {
      v.w[0] = order[pos];
      v.w[1]++;
      m[order[pos]] = v;
      if (++pos == order.size()) pos = 0;
    }
    DoNotOptimize(m);
    return 256;
  };
  std::vector<double> r_get, r_put;
  for (int r = 0; r < FLAGS_rounds; ++r) {
    r_get.push_back(Rate(get_step, FLAGS_seconds));
    r_put.push_back(Rate(put_step, FLAGS_seconds));
  }
  const double g = Median(r_get), p = Median(r_put);
  out_.Emit(Head("hashtable_std", "none")
                .Add("entries", n)
                .Add("value_bytes", 256)
                .Add("insert_Mops", insert / 1e6, "%.4f")
                .Add("get_Mops", g / 1e6, "%.4f")
                .Add("update_Mops", p / 1e6, "%.4f"));
  std_rows_.push_back({"-", "std::unordered_map insert / update / get, M ops/s",
                       F("%.3f", insert / 1e6) + " / " + F("%.3f", p / 1e6) + " / " + F("%.3f", g / 1e6), "", "", "",
                       ""});
}

void Bench::PrintTable() const {
  if (!out_.text()) return;  // csv/json: the results alone
  std::printf("\n| mode | measurement | Sharry | baseline | ratio | target | verdict |\n");
  std::printf("|---|---|---:|---:|---:|---|---|\n");
  auto print = [](const Row& r) {
    std::printf("| %s | %s | %s | %s | %s | %s | %s |\n", r.mode.c_str(), r.what.c_str(), r.sharry.c_str(),
                r.baseline.c_str(), r.ratio.c_str(), r.target.c_str(), r.verdict.c_str());
  };
  for (const Row& r : rows_) print(r);
  for (const Row& r : std_rows_) print(r);
  std::printf("\n");
  for (const Row& r : rows_)
    if (!r.target.empty())
      std::printf("TARGET transport=%s mode=%s %s: %s (%s): %s\n", std::string(TransportName(kind_)).c_str(),
                  r.mode.c_str(), r.what.c_str(), r.ratio.c_str(), r.target.c_str(), r.verdict.c_str());
  std::fflush(stdout);
}

int Main(TransportKind kind, cli::Emitter& out) {
  std::vector<CopyMode> modes;
  for (const auto& m : Split(FLAGS_mode)) {
    auto cm = compute::ParseCopyMode(m);
    if (!cm.ok()) {
      std::fprintf(stderr, "--mode: %s\n", cm.status().ToString().c_str());
      return 2;
    }
    modes.push_back(*cm);
  }
  std::string addr = FLAGS_addr;
  if (addr.empty()) {
    const char* env = std::getenv("SHARRY_RDMA_ADDR");
    addr = kind == TransportKind::kTcp ? "127.0.0.1" : (env && *env ? env : "192.0.2.1");
  }
  memnode::MemnodeOptions mo;
  mo.transport = kind;
  mo.server.listen_addr = addr;
  mo.uma_bytes = FLAGS_uma_mb << 20;
  mo.sections = FLAGS_sections;
  auto node = memnode::Memnode::Start(mo);
  if (!node.ok()) {
    std::fprintf(stderr, "memnode: %s\n", node.status().ToString().c_str());
    return 1;
  }
  out.Emit(cli::Record("computebench_config", "computebench transport=" + FLAGS_transport + " config")
               .AddHidden("transport", FLAGS_transport)
               .Add("addr", addr)
               .Add("array_mb", FLAGS_array_mb)
               .Add("chunk_bytes", FLAGS_chunk_bytes)
               .Add("ht_entries", FLAGS_ht_entries)
               .Add("seconds", FLAGS_seconds, "%.2f")
               .Add("rounds", FLAGS_rounds)
               .Add("free_batch", FLAGS_free_batch)
               .Add("evict_batch", FLAGS_evict_batch)
               .Add("prefetch", FLAGS_prefetch)
               .Add("prefetch_thread", FLAGS_prefetch_thread ? 1 : 0)
               .Add("uma_mb", FLAGS_uma_mb));
  Bench b(kind, addr, node->get(), out);
  for (CopyMode m : modes) b.RunMode(m);
  if (Want("hashtable")) b.StdHashTable();
  // The memnode's stats: a text report (on stderr with csv/json).
  std::fprintf(out.text() ? stdout : stderr, "computebench memnode: %s",
               memnode::FormatStats((*node)->service().CollectStats()).c_str());
  b.PrintTable();
  return 0;
}

}  // namespace
}  // namespace sharry

namespace {

int CheckedMain(int argc, char** argv) {
  sharry::cli::InitProgram(&argc, &argv,
                           "compute-runtime benchmark: --transport=tcp|verbs --mode=unique,multi [--tests=...]");
  const sharry::TransportKind kind = sharry::cli::TransportFromFlags("compute_bench");
  namespace f = sharry::flags;
  f::ExitOnBadFlags("compute_bench", {
      f::CheckListOf("mode", FLAGS_mode, {"unique", "unique-copy", "multi", "multi-copy"}),
      f::CheckListOf("tests", FLAGS_tests, {"deref", "scan", "random", "swapin", "hashtable"}),
      f::ParseU64List("local_pcts", FLAGS_local_pcts, 0, 100).status(),
      f::ParseU64List("ht_pcts", FLAGS_ht_pcts, 0, 100).status(),
  });
  sharry::cli::Emitter out = sharry::cli::EmitterFromFlags("compute_bench");
  return sharry::Main(kind, out);
}

}  // namespace

int main(int argc, char** argv) { return sharry::flags::RunMain("compute_bench", CheckedMain, argc, argv); }
