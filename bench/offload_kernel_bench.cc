// offload_kernel_bench: rows/s of the offload kernel (offload/kernel.h:
// RunUnit + Result::Add) against a hand-written fused C++ loop over the same
// data, on Fig. 8-like queries over the taxi frame (workloads/taxi.h):
//
//   q1  key = hour of pickup (i64 / 3600 % 24); count,
//       sum(dropoff - pickup), sum(distance / ((dropoff - pickup) / 3600))
//   q1f the same, only trips with distance >= 1 mile (a filter)
//
// Both compute each unit's partial from zero over its rows in order, then
// merge the units in order (the kernel's exactness contract), so their
// results are compared bit for bit; the kernel reads its columns as
// --piece_bytes pieces (a RemoteArray's chunks), the fused loop reads plain
// contiguous arrays. Single thread; prints the best of --reps runs.
//
//   build/bench/offload_kernel_bench [--rows=4194304] [--unit_rows=16384] [--piece_bytes=4096]

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <vector>

#include "bench/bench_stats.h"
#include "offload/kernel.h"
#include "offload/spec.h"
#include "tools/cli/program.h"
#include "tools/cli/ranged_flag.h"
#include "workloads/taxi.h"

SHARRY_FLAG(uint64, rows, uint64_t{1} << 22, 1, uint64_t{1} << 30, "rows of the frame");
SHARRY_FLAG(uint64, unit_rows, 16384, 1, uint64_t{1} << 30, "rows per unit (the kernel's reduction unit)");
SHARRY_FLAG(uint64, piece_bytes, 4096, 8, uint64_t{1} << 30, "bytes per piece of a column (a multiple of 8)");
SHARRY_FLAG(int32, reps, 5, 1, 1000, "runs of each; the best is printed");

namespace sharry::offload {
namespace {

struct Frame {
  std::vector<int64_t> pickup, dropoff;
  std::vector<float> distance;
};

// One query's partial per hour: count, duration sum, speed sum.
struct Hours {
  int64_t count[24] = {};
  double dur[24] = {};
  double speed[24] = {};
};

// The fused loop: what one would write by hand for the query.
Hours Fused(const Frame& f, uint64_t unit, bool filtered) {
  Hours total;
  const uint64_t rows = f.pickup.size();
  const int64_t* pk = f.pickup.data();
  const int64_t* dr = f.dropoff.data();
  const float* ds = f.distance.data();
  for (uint64_t from = 0; from < rows; from += unit) {
    Hours u;
    const uint64_t to = std::min(rows, from + unit);
    for (uint64_t r = from; r < to; ++r) {
      if (filtered && !(ds[r] >= 1.0f)) continue;
      const int64_t h = pk[r] / 3600 % 24;
      const double secs = static_cast<double>(dr[r]) - static_cast<double>(pk[r]);
      ++u.count[h];
      u.dur[h] += secs;
      u.speed[h] += static_cast<double>(ds[r]) / (secs / 3600.0);
    }
    for (int h = 0; h < 24; ++h) {
      total.count[h] += u.count[h];
      total.dur[h] += u.dur[h];
      total.speed[h] += u.speed[h];
    }
  }
  return total;
}

Spec QuerySpec(bool filtered) {
  Spec s;
  const uint8_t cp = s.Column(ElemType::kI64), cd = s.Column(ElemType::kI64), cx = s.Column(ElemType::kF32);
  s.key = {.column = cp, .add = 0, .div = 3600, .mod = 24};
  s.groups = 24;
  if (filtered) s.filters.push_back({.column = cx, .cmp = Cmp::kGe, .float_value = 1.0});
  const Node col_p{ExprOp::kColumn, cp, 0}, col_d{ExprOp::kColumn, cd, 0}, col_x{ExprOp::kColumn, cx, 0};
  const Node sub{ExprOp::kSub, 0, 0}, div{ExprOp::kDiv, 0, 0}, hour{ExprOp::kConst, 0, 3600};
  s.Aggregate(AggKind::kCount);
  s.Aggregate(AggKind::kSum, s.AddExpr({col_d, col_p, sub}));
  s.Aggregate(AggKind::kSum, s.AddExpr({col_x, col_d, col_p, sub, hour, div, div}));
  return s;
}

// A column as pieces of piece_bytes, and the spans of each unit.
struct Units {
  std::vector<std::vector<std::span<const uint8_t>>> per_unit;  // unit-major, then column-major pieces
  std::vector<std::vector<Pieces>> columns;                     // per unit: one Pieces per column
  std::vector<uint64_t> rows;
};

Units MakeUnits(const Frame& f, uint64_t unit, uint64_t piece_bytes) {
  Units u;
  const uint64_t rows = f.pickup.size();
  auto bytes = [](const auto& v) {
    return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(v[0]));
  };
  const std::span<const uint8_t> cols[3] = {bytes(f.pickup), bytes(f.dropoff), bytes(f.distance)};
  const size_t esize[3] = {8, 8, 4};
  for (uint64_t from = 0; from < rows; from += unit) {
    const uint64_t to = std::min(rows, from + unit);
    std::vector<std::span<const uint8_t>> spans;
    std::vector<size_t> counts;
    for (int c = 0; c < 3; ++c) {
      // The pieces a chunked array has: boundaries at multiples of piece_bytes.
      uint64_t at = from * esize[c];
      const uint64_t end = to * esize[c];
      size_t n = 0;
      while (at < end) {
        const uint64_t next = std::min(end, (at / piece_bytes + 1) * piece_bytes);
        spans.push_back(cols[c].subspan(at, next - at));
        at = next;
        ++n;
      }
      counts.push_back(n);
    }
    u.per_unit.push_back(std::move(spans));
    u.rows.push_back(to - from);
    std::vector<Pieces> p;
    size_t off = 0;
    for (size_t n : counts) {
      p.push_back(Pieces(u.per_unit.back().data() + off, n));
      off += n;
    }
    u.columns.push_back(std::move(p));
  }
  return u;
}

bool RunKernel(const Spec& s, const Units& u, uint64_t unit, Result* out) {
  Result total(s);
  std::vector<uint8_t> partial(PartialBytes(s));
  for (size_t i = 0; i < u.rows.size(); ++i) {
    Status st = RunUnit(s, u.rows[i], u.columns[i], partial, i * unit);
    if (st.ok()) st = total.Add(partial);
    if (!st.ok()) {
      std::fprintf(stderr, "offload_kernel_bench: %s\n", st.ToString().c_str());
      return false;
    }
  }
  *out = std::move(total);
  return true;
}

bool Same(const Result& r, const Hours& h) {
  for (uint32_t g = 0; g < 24; ++g) {
    if (r.Int(g, 0) != h.count[g]) return false;
    if (std::bit_cast<uint64_t>(r.Value(g, 1)) != std::bit_cast<uint64_t>(h.dur[g])) return false;
    if (std::bit_cast<uint64_t>(r.Value(g, 2)) != std::bit_cast<uint64_t>(h.speed[g])) return false;
  }
  return true;
}

int Main() {
  const uint64_t rows = FLAGS_rows, unit = FLAGS_unit_rows;
  if (FLAGS_piece_bytes % 8 != 0) {
    std::fprintf(stderr, "offload_kernel_bench: --piece_bytes=%lu is not a multiple of 8\n", FLAGS_piece_bytes);
    return 2;
  }
  Frame f;
  f.pickup.resize(rows);
  f.dropoff.resize(rows);
  f.distance.resize(rows);
  for (uint64_t r = 0; r < rows; ++r) {
    const bench::Trip t = bench::TaxiTrip(1, r);
    f.pickup[r] = t.pickup;
    f.dropoff[r] = t.dropoff;
    f.distance[r] = t.distance;
  }
  const Units units = MakeUnits(f, unit, FLAGS_piece_bytes);
  std::printf("rows %lu, units of %lu rows, pieces of %lu B, best of %d\n", rows, unit, FLAGS_piece_bytes,
              FLAGS_reps);
  std::printf("%-5s %16s %16s %8s %6s\n", "query", "kernel rows/s", "fused rows/s", "ratio", "same");
  for (bool filtered : {false, true}) {
    const Spec s = QuerySpec(filtered);
    double best_kernel = 1e300, best_fused = 1e300;
    Result r;
    Hours h;
    for (int rep = 0; rep < FLAGS_reps; ++rep) {
      auto t0 = bench::Clock::now();
      if (!RunKernel(s, units, unit, &r)) return 1;
      best_kernel = std::min(best_kernel, bench::SecondsSince(t0));
      t0 = bench::Clock::now();
      h = Fused(f, unit, filtered);
      best_fused = std::min(best_fused, bench::SecondsSince(t0));
    }
    const double kr = static_cast<double>(rows) / best_kernel, fr = static_cast<double>(rows) / best_fused;
    std::printf("%-5s %16.3e %16.3e %8.2f %6s\n", filtered ? "q1f" : "q1", kr, fr, fr / kr, Same(r, h) ? "yes" : "NO");
    if (!Same(r, h)) return 1;
  }
  return 0;
}

}  // namespace
}  // namespace sharry::offload

int main(int argc, char** argv) {
  sharry::cli::InitProgram(&argc, &argv, "offload kernel vs fused loop: [--rows=N] [--unit_rows=N] [--piece_bytes=N]");
  return sharry::offload::Main();
}
