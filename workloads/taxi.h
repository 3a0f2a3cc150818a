// The data-analysis workload of the paper's section 6.3 (Fig. 8): a columnar
// data frame of taxi trips shaped like the 2016 NYC yellow-taxi records, and
// the group-by queries run over it ("analyse and predict taxi travel times at
// different periods of day").
//
// The real data set cannot be downloaded here, so TaxiTrip(seed, row)
// generates row `row` deterministically from a counter-based hash: any row can
// be made on its own, in any order, on any machine, with the same bytes. The
// shapes follow the published 2016 records: pickups over the leap year 2016
// with the hourly demand curve (trough at 5 am, peak at 7 pm), 1 passenger in
// ~70 % of trips, log-normal distances (median ~1.7 mi), speeds that drop in
// the rush hours, the metered fare ($2.50 + $2.50/mi + $0.30/min), pickups
// around midtown Manhattan and dropoffs the trip's distance away.
//
// Columns (57 bytes a row):
//   pickup, dropoff   int64   seconds since 1970-01-01 UTC
//   passengers        uint8   0..6
//   distance          float   miles, as the meter reports them
//   fare              float   US dollars
//   pickup_lon/lat,
//   dropoff_lon/lat   double  degrees
//
// The queries are templates over the column type: TaxiFrame<LocalColumn>
// runs them on plain local memory (std::vector), TaxiFrame<RemoteColumn> on
// remoteable arrays. Both walk every column front to back in one pass per
// query, in the same order, so their results are bit-identical — the
// benchmark checks that with a checksum.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <vector>

#include "base/status.h"
#include "offload/local.h"
#include "offload/spec.h"
#include "remote_ds/remote_array.h"

namespace sharry::bench {

struct Trip {
  int64_t pickup, dropoff;
  uint8_t passengers;
  float distance, fare;
  double pickup_lon, pickup_lat, dropoff_lon, dropoff_lat;
};
inline constexpr size_t kTripBytes = 2 * 8 + 1 + 2 * 4 + 4 * 8;  // 57: the columns of one row

inline constexpr int64_t k2016 = 1451606400;  // 2016-01-01 00:00:00 UTC

namespace taxi_detail {
inline uint64_t Mix(uint64_t x) {  // splitmix64's finalizer
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
// Uniform in (0, 1), never 0 (log of it is finite).
inline double Unit(uint64_t h) { return (static_cast<double>(h >> 11) + 0.5) * 0x1.0p-53; }
inline double Normal(double u1, double u2) { return std::sqrt(-2 * std::log(u1)) * std::cos(6.283185307179586 * u2); }

// Share of the day's trips starting in each hour (2016 yellow cabs, rounded).
inline constexpr double kHourShare[24] = {3.9, 2.9, 2.1, 1.5, 1.1, 0.9, 1.9, 3.4, 4.3, 4.4, 4.3, 4.5,
                                          4.7, 4.7, 4.9, 4.8, 4.4, 5.2, 6.1, 6.3, 5.8, 5.6, 5.5, 4.8};
// Mean speed in mph by hour of day: fast at night, slow in the rush hours.
inline constexpr double kHourMph[24] = {17.5, 18.5, 19.5, 20.5, 21.5, 20.0, 16.0, 12.5, 10.5, 10.0, 10.5, 10.5,
                                        10.5, 10.5, 10.0, 9.5,  10.0, 10.5, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0};
inline constexpr double kPassengerCdf[7] = {0.005, 0.715, 0.855, 0.895, 0.915, 0.965, 1.0};  // 0..6 passengers
}  // namespace taxi_detail

inline Trip TaxiTrip(uint64_t seed, uint64_t row) {
  using namespace taxi_detail;
  uint64_t h = Mix(seed * 0x2545f4914f6cdd1dull ^ Mix(row));
  auto u = [&h] { h = Mix(h); return Unit(h); };
  Trip t{};
  const int day = static_cast<int>(u() * 366);  // 2016 is a leap year
  double total = 0;
  for (double share : kHourShare) total += share;
  double x = u() * total, cum = 0;
  int hour = 23;
  for (int i = 0; i < 24; ++i) {
    cum += kHourShare[i];
    if (x < cum) { hour = i; break; }
  }
  t.pickup = k2016 + int64_t{day} * 86400 + hour * 3600 + static_cast<int64_t>(u() * 3600);
  const double p = u();
  t.passengers = 6;
  for (int i = 0; i < 7; ++i)
    if (p < kPassengerCdf[i]) { t.passengers = static_cast<uint8_t>(i); break; }
  const double u1 = u(), u2 = u();
  const double miles = std::clamp(1.7 * std::exp(0.8 * Normal(u1, u2)), 0.1, 60.0);
  const double mph = kHourMph[hour] * std::exp(0.25 * Normal(u2, u1));
  const double secs = miles / mph * 3600 + 30 + 90 * u();  // plus getting in and out
  t.dropoff = t.pickup + static_cast<int64_t>(secs);
  t.distance = static_cast<float>(std::round(miles * 100) / 100);
  t.fare = static_cast<float>(std::round((2.5 + 2.5 * miles + 0.3 * secs / 60) * 2) / 2);
  const double a = u(), b = u(), theta = 6.283185307179586 * u();
  const double detour = 1.15 + 0.35 * u();  // streets are not straight lines
  t.pickup_lat = 40.7580 + 0.025 * Normal(a, b);
  t.pickup_lon = -73.9855 + 0.020 * Normal(b, a);
  t.dropoff_lat = t.pickup_lat + miles / detour * std::cos(theta) / 69.0;  // miles per degree of latitude
  t.dropoff_lon = t.pickup_lon + miles / detour * std::sin(theta) / 52.4;  // ... of longitude at 40.76 N
  return t;
}

inline int HourOf(int64_t ts) { return static_cast<int>((ts % 86400) / 3600); }
inline int WeekdayOf(int64_t ts) { return static_cast<int>((ts / 86400 + 4) % 7); }  // 0 = Sunday

// ---------------------------------------------------------------- columns

// Plain local memory: the baseline.
template <typename T>
class LocalColumn {
 public:
  class Cursor {
   public:
    Cursor(const T* p, const T* end) : p_(p), end_(end) {}
    const T* Next() { return p_ != end_ ? p_++ : nullptr; }
    const Status& status() const { return ok_; }

   private:
    const T* p_;
    const T* end_;
    Status ok_;
  };
  // n elements, element i set by init(i, T&).
  template <typename Init>
  static StatusOr<LocalColumn> Make(compute::Runtime*, size_t n, Init&& init) {
    LocalColumn c;
    c.v_.resize(n);
    for (size_t i = 0; i < n; ++i) init(i, c.v_[i]);
    return c;
  }
  Cursor Read() const { return Cursor(v_.data(), v_.data() + v_.size()); }
  std::span<const uint8_t> bytes() const { return {reinterpret_cast<const uint8_t*>(v_.data()), v_.size() * sizeof(T)}; }

 private:
  std::vector<T> v_;
};

// Far memory: a remoteable array of 4 KiB objects.
template <typename T>
class RemoteColumn {
 public:
  using Cursor = typename remote_ds::RemoteArray<T>::Cursor;
  template <typename Init>
  static StatusOr<RemoteColumn> Make(compute::Runtime* rt, size_t n, Init&& init) {
    // Row affinity: with many memnodes each unit of every column on one
    // memnode, so the aggregate queries offload it there (docs/offload.md).
    auto a = remote_ds::RemoteArray<T>::MakeWith(*rt, n, std::forward<Init>(init), 4096,
                                                 remote_ds::ChunkPlacement::kRowAffinity);
    if (!a.ok()) return a.status();
    RemoteColumn c;
    c.a_ = std::move(*a);
    return c;
  }
  Cursor Read() const { return a_.Read(); }
  compute::AggregateColumn column() const { return a_.column(); }

 private:
  remote_ds::RemoteArray<T> a_;
};

// ---------------------------------------------------------------- queries

// Group-by results. Every field is a plain sum/count in row order, so local
// and remote runs agree bit for bit.
struct TaxiResults {
  uint64_t trips_by_hour[24] = {};
  double duration_s_by_hour[24] = {};          // Q1: sum of trip durations
  double fare_by_passengers[7] = {};           // Q2
  uint64_t trips_by_passengers[7] = {};
  double mph_by_hour[24] = {};                 // Q3: sum of speeds
  double detour_by_weekday[7] = {};            // Q4: sum of metered / straight-line distance
  uint64_t trips_by_weekday[7] = {};
  double fit_x[24] = {}, fit_y[24] = {}, fit_xx[24] = {}, fit_xy[24] = {};  // Q5: duration ~ distance
  uint64_t rows_scanned = 0;                   // rows x queries

  // Q5's model: predicted minutes for a trip of `miles` starting at `hour`.
  double PredictMinutes(int hour, double miles) const {
    const double n = static_cast<double>(trips_by_hour[hour]);
    const double den = n * fit_xx[hour] - fit_x[hour] * fit_x[hour];
    if (n < 2 || den == 0) return 0;
    const double b = (n * fit_xy[hour] - fit_x[hour] * fit_y[hour]) / den;
    const double a = (fit_y[hour] - b * fit_x[hour]) / n;
    return (a + b * miles) / 60;
  }
  uint64_t Checksum() const {  // FNV-1a over every result byte (not rows_scanned)
    uint64_t h = 1469598103934665603ull;
    const auto* p = reinterpret_cast<const unsigned char*>(this);
    for (size_t i = 0; i < offsetof(TaxiResults, rows_scanned); ++i) h = (h ^ p[i]) * 1099511628211ull;
    return h;
  }
};

// ---------------------------------------------------------------- the queries as aggregates

// Q1..Q5 as offload::Specs (issue #13): the same statistics as the cursor
// queries below, computed by the aggregate kernel, so they can run at the
// memnodes. Each spec's columns are listed at its function.
namespace taxi_specs {
using offload::AggKind;
using offload::ElemType;
using offload::ExprOp;
inline offload::Node C(uint8_t col) { return {ExprOp::kColumn, col, 0}; }
inline offload::Node K(double v) { return {ExprOp::kConst, 0, v}; }
inline offload::Node Op(ExprOp op) { return {op, 0, 0}; }
inline void HourKey(offload::Spec& s) {
  s.key = {0, 0, 3600, 24};
  s.groups = 24;
}
// Q1 (pickup, dropoff): trips and duration by hour of day.
inline offload::Spec DurationByHour() {
  offload::Spec s;
  s.Column(ElemType::kI64);
  s.Column(ElemType::kI64);
  HourKey(s);
  s.Aggregate(AggKind::kCount);
  s.Aggregate(AggKind::kSum, s.AddExpr({C(1), C(0), Op(ExprOp::kSub)}));
  return s;
}
// Q2 (passengers, fare): trips and fares by passenger count.
inline offload::Spec FareByPassengers() {
  offload::Spec s;
  s.Column(ElemType::kU8);
  s.Column(ElemType::kF32);
  s.key = {0, 0, 1, 0};
  s.groups = 7;
  s.Aggregate(AggKind::kCount);
  s.Aggregate(AggKind::kSum, s.ColumnExpr(1));
  return s;
}
// Q3 (pickup, dropoff, distance): sum of speeds (mph) by hour.
inline offload::Spec SpeedByHour() {
  offload::Spec s;
  s.Column(ElemType::kI64);
  s.Column(ElemType::kI64);
  s.Column(ElemType::kF32);
  HourKey(s);
  s.Aggregate(AggKind::kSum,
              s.AddExpr({C(2), C(1), C(0), Op(ExprOp::kSub), K(3600), Op(ExprOp::kDiv), Op(ExprOp::kDiv)}));
  return s;
}
// Q4 (pickup, distance, pickup_lon, pickup_lat, dropoff_lon, dropoff_lat):
// metered / straight-line distance by weekday.
inline offload::Spec DetourByWeekday() {
  offload::Spec s;
  s.Column(ElemType::kI64);
  s.Column(ElemType::kF32);
  for (int i = 0; i < 4; ++i) s.Column(ElemType::kF64);
  s.key = {0, 4 * 86400, 86400, 7};
  s.groups = 7;
  s.Aggregate(AggKind::kCount);
  // straight = sqrt(((y1-y0)*69)^2 + ((x1-x0)*52.4)^2); straight > 0.01 ? d / straight : 1
  s.Aggregate(AggKind::kSum, s.AddExpr({C(5), C(3), Op(ExprOp::kSub), K(69.0), Op(ExprOp::kMul), Op(ExprOp::kDup),
                                        Op(ExprOp::kMul), C(4), C(2), Op(ExprOp::kSub), K(52.4), Op(ExprOp::kMul),
                                        Op(ExprOp::kDup), Op(ExprOp::kMul), Op(ExprOp::kAdd), Op(ExprOp::kSqrt),
                                        Op(ExprOp::kDup), C(1), Op(ExprOp::kSwap), Op(ExprOp::kDiv), K(0.01),
                                        Op(ExprOp::kSwap), K(1.0), Op(ExprOp::kSelectGt)}));
  return s;
}
// Q5 (pickup, dropoff, distance): least-squares sums of duration on distance by hour.
inline offload::Spec TravelTimeModel() {
  offload::Spec s;
  s.Column(ElemType::kI64);
  s.Column(ElemType::kI64);
  s.Column(ElemType::kF32);
  HourKey(s);
  const uint8_t x = s.ColumnExpr(2), y = s.AddExpr({C(1), C(0), Op(ExprOp::kSub)});
  s.Aggregate(AggKind::kSum, x);
  s.Aggregate(AggKind::kSum, y);
  s.Aggregate(AggKind::kSumSq, x);
  s.Aggregate(AggKind::kSumProd, x, y);
  return s;
}
}  // namespace taxi_specs

// Rows per unit of the aggregate queries: a multiple of every column's
// rows per 4 KiB chunk (4096 for the u8 column); the same for the local
// reference, so the results are bit-identical.
inline constexpr uint64_t kTaxiUnitRows = 16384;

template <template <typename> class Column>
class TaxiFrame {
 public:
  // Generates `rows` trips of `seed` into the columns.
  static StatusOr<TaxiFrame> Load(compute::Runtime* rt, uint64_t rows, uint64_t seed) {
    TaxiFrame f;
    f.rows_ = rows;
    f.rt_ = rt;
#define SHARRY_TAXI_COLUMN(col, field)                                                          \
    {                                                                                           \
      auto c = decltype(f.col)::Make(rt, rows, [seed](size_t i, auto& v) { v = TaxiTrip(seed, i).field; }); \
      if (!c.ok()) return c.status();                                                                    \
      f.col = std::move(*c);                                                                             \
    }
    SHARRY_TAXI_COLUMN(pickup, pickup)
    SHARRY_TAXI_COLUMN(dropoff, dropoff)
    SHARRY_TAXI_COLUMN(passengers, passengers)
    SHARRY_TAXI_COLUMN(distance, distance)
    SHARRY_TAXI_COLUMN(fare, fare)
    SHARRY_TAXI_COLUMN(pickup_lon, pickup_lon)
    SHARRY_TAXI_COLUMN(pickup_lat, pickup_lat)
    SHARRY_TAXI_COLUMN(dropoff_lon, dropoff_lon)
    SHARRY_TAXI_COLUMN(dropoff_lat, dropoff_lat)
#undef SHARRY_TAXI_COLUMN
    return f;
  }
  uint64_t rows() const { return rows_; }

  // Q1..Q5 as aggregates (taxi_specs): the same statistics, in unit order
  // (their floating sums differ from RunQueries' in the last bits; compare
  // aggregate runs with aggregate runs). `o` says where the far part runs.
  Status RunAggregates(TaxiResults& r, const compute::AggregateOptions& o = {}) const {
    auto q1 = Agg(taxi_specs::DurationByHour(), o, pickup, dropoff);
    if (!q1.ok()) return q1.status().WithContext("Q1");
    for (uint32_t h = 0; h < 24; ++h) {
      r.trips_by_hour[h] += static_cast<uint64_t>(q1->Int(h, 0));
      r.duration_s_by_hour[h] += q1->Value(h, 1);
    }
    auto q2 = Agg(taxi_specs::FareByPassengers(), o, passengers, fare);
    if (!q2.ok()) return q2.status().WithContext("Q2");
    for (uint32_t p = 0; p < 7; ++p) {
      r.trips_by_passengers[p] += static_cast<uint64_t>(q2->Int(p, 0));
      r.fare_by_passengers[p] += q2->Value(p, 1);
    }
    auto q3 = Agg(taxi_specs::SpeedByHour(), o, pickup, dropoff, distance);
    if (!q3.ok()) return q3.status().WithContext("Q3");
    for (uint32_t h = 0; h < 24; ++h) r.mph_by_hour[h] += q3->Value(h, 0);
    auto q4 = Agg(taxi_specs::DetourByWeekday(), o, pickup, distance, pickup_lon, pickup_lat, dropoff_lon, dropoff_lat);
    if (!q4.ok()) return q4.status().WithContext("Q4");
    for (uint32_t w = 0; w < 7; ++w) {
      r.trips_by_weekday[w] += static_cast<uint64_t>(q4->Int(w, 0));
      r.detour_by_weekday[w] += q4->Value(w, 1);
    }
    auto q5 = Agg(taxi_specs::TravelTimeModel(), o, pickup, dropoff, distance);
    if (!q5.ok()) return q5.status().WithContext("Q5");
    for (uint32_t h = 0; h < 24; ++h) {
      r.fit_x[h] += q5->Value(h, 0);
      r.fit_y[h] += q5->Value(h, 1);
      r.fit_xx[h] += q5->Value(h, 2);
      r.fit_xy[h] += q5->Value(h, 3);
    }
    r.rows_scanned += 5 * rows_;
    return Status::Ok();
  }

  // Q1..Q5, each one pass over the columns it needs, accumulated into `r`.
  Status RunQueries(TaxiResults& r) const {
    SHARRY_RETURN_IF_ERROR(DurationByHour(r));
    SHARRY_RETURN_IF_ERROR(FareByPassengers(r));
    SHARRY_RETURN_IF_ERROR(SpeedByHour(r));
    SHARRY_RETURN_IF_ERROR(DetourByWeekday(r));
    return TravelTimeModel(r);
  }

  // Q1: trip duration by hour of day.
  Status DurationByHour(TaxiResults& r) const {
    auto pu = pickup.Read();
    auto dr = dropoff.Read();
    return ForEachRow(r, [&r](int64_t a, int64_t b) {
      const int h = HourOf(a);
      r.trips_by_hour[h]++;
      r.duration_s_by_hour[h] += static_cast<double>(b - a);
    }, pu, dr);
  }
  // Q2: mean fare by passenger count.
  Status FareByPassengers(TaxiResults& r) const {
    auto pc = passengers.Read();
    auto fa = fare.Read();
    return ForEachRow(r, [&r](uint8_t n, float f) {
      r.trips_by_passengers[n]++;
      r.fare_by_passengers[n] += f;
    }, pc, fa);
  }
  // Q3: mean speed by hour of day.
  Status SpeedByHour(TaxiResults& r) const {
    auto pu = pickup.Read();
    auto dr = dropoff.Read();
    auto di = distance.Read();
    return ForEachRow(r, [&r](int64_t a, int64_t b, float d) {
      r.mph_by_hour[HourOf(a)] += d / (static_cast<double>(b - a) / 3600);
    }, pu, dr, di);
  }
  // Q4: how much longer the metered route is than the straight line, by weekday.
  Status DetourByWeekday(TaxiResults& r) const {
    auto pu = pickup.Read();
    auto di = distance.Read();
    auto plo = pickup_lon.Read(), pla = pickup_lat.Read(), dlo = dropoff_lon.Read(), dla = dropoff_lat.Read();
    return ForEachRow(r, [&r](int64_t a, float d, double x0, double y0, double x1, double y1) {
      const double dy = (y1 - y0) * 69.0, dx = (x1 - x0) * 52.4;
      const double straight = std::sqrt(dx * dx + dy * dy);
      const int w = WeekdayOf(a);
      r.trips_by_weekday[w]++;
      r.detour_by_weekday[w] += straight > 0.01 ? d / straight : 1.0;
    }, pu, di, plo, pla, dlo, dla);
  }
  // Q5: per hour, least squares of duration on distance (the travel-time model).
  Status TravelTimeModel(TaxiResults& r) const {
    auto pu = pickup.Read();
    auto dr = dropoff.Read();
    auto di = distance.Read();
    return ForEachRow(r, [&r](int64_t a, int64_t b, float d) {
      const int h = HourOf(a);
      const double x = d, y = static_cast<double>(b - a);
      r.fit_x[h] += x;
      r.fit_y[h] += y;
      r.fit_xx[h] += x * x;
      r.fit_xy[h] += x * y;
    }, pu, dr, di);
  }

  Column<int64_t> pickup, dropoff;
  Column<uint8_t> passengers;
  Column<float> distance, fare;
  Column<double> pickup_lon, pickup_lat, dropoff_lon, dropoff_lat;

 private:
  // A column ended early: the first error, or a short column.
  template <typename... S>
  static Status Short(const S&... s) {
    Status first;
    bool found = false;
    ((!found && !s.ok() ? (first = s, found = true) : false), ...);
    return found ? first : Status::Internal("a column is shorter than the frame");
  }
  // One pass of the query over the columns whose cursors are `cur`, in
  // step: fn(value of each column...) for each row, in row order. A column
  // that ends early (an error, or short) ends the pass with Short().
  template <typename Fn, typename... Cursor>
  Status ForEachRow(TaxiResults& r, Fn fn, Cursor&... cur) const {
    for (uint64_t i = 0; i < rows_; ++i) {
      const std::tuple<decltype(cur.Next())...> row{cur.Next()...};  // left to right
      if (std::apply([](auto*... p) { return ((p == nullptr) || ...); }, row)) return Short(cur.status()...);
      std::apply([&fn](auto*... p) { fn(*p...); }, row);
    }
    r.rows_scanned += rows_;
    return Status::Ok();
  }
  // One aggregate over the columns `cols`: the runtime's split for remote
  // columns, the same kernel on the vectors for local ones.
  template <typename... Cols>
  StatusOr<offload::Result> Agg(const offload::Spec& spec, const compute::AggregateOptions& o,
                                const Cols&... cols) const {
    if constexpr ((requires { cols.bytes(); } && ...)) {
      const std::span<const uint8_t> b[] = {cols.bytes()...};
      (void)o;
      return offload::AggregateLocal(spec, b, rows_, kTaxiUnitRows);
    } else {
      const compute::AggregateColumn c[] = {cols.column()...};
      compute::AggregateOptions opts = o;
      opts.unit_rows = kTaxiUnitRows;
      return compute::Aggregate(*rt_, spec, c, rows_, opts);
    }
  }

  uint64_t rows_ = 0;
  compute::Runtime* rt_ = nullptr;
};

}  // namespace sharry::bench
