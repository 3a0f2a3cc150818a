// Aggregates split between the runtime and the memnodes (compute/aggregate.h,
// docs/offload.md), against plain local memory, over the loopback transport
// (label unit), tcp and verbs (rxe):
//   - every aggregate kind, filters and group keys over arrays of several
//     element types spanning many chunks, at 0/10/50/100 % local, in each
//     offload mode: bit-identical to offload::AggregateLocal on the same
//     bytes, and always/auto really offload (units counted at the memnode)
//   - the five taxi queries as aggregates (workloads/taxi.h) equal the local
//     reference in both copy modes
//   - other threads swapping the same chunks in and out during offloaded
//     aggregates: every result still exact, every object still intact
//   - bad calls: wrong column type or count, unit_rows not a multiple of a
//     chunk, group key out of range at the memnode (the kernel's error)
//   - a memnode lost mid-offload: with replicate:2 the result is still
//     exact (the units are read from the other copy); with none a clear
//     error, and the runtime goes on with what is local
//   - a chunk whose swap-out is in flight is waited for, not skipped
//   - scratch (staging, result) blocks are freed: the memnode holds exactly
//     our far chunks afterwards
//   - malformed OFFLOADs from a raw client over each transport: refused with
//     their errors, nothing run (the full list: offload_service_test)
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "compute/aggregate.h"
#include "compute/runtime.h"
#include "memnode/memnode.h"
#include "memnode/offload_workers.h"
#include "offload/local.h"
#include "remote_ds/remote_array.h"
#include "tests/test_util.h"
#include "verbs/fault_injection.h"
#include "workloads/taxi.h"

namespace sharry::compute {
namespace {

using offload::AggKind;
using offload::ElemType;
using offload::ExprOp;
using remote_ds::RemoteArray;

struct Param {
  TransportKind transport;
  CopyMode mode;
};

std::string ParamName(const ::testing::TestParamInfo<Param>& p) {
  return std::string(TransportName(p.param.transport)) + "_" + std::string(CopyModeName(p.param.mode));
}

// Swaps every chunk of `a` out: all of it far.
template <typename T>
void AllFar(Runtime& rt, const RemoteArray<T>& a) {
  for (size_t c = 0; c < a.chunks(); ++c) ASSERT_TRUE(rt.SwapOut(a.chunk(c)).ok()) << c;
}

// 20 000 int64 elements holding their index, every chunk far; *sum gets
// the spec of their sum.
StatusOr<RemoteArray<int64_t>> FarIota(Runtime& rt, offload::Spec* sum) {
  auto a = RemoteArray<int64_t>::MakeWith(rt, 20000, [](size_t i, int64_t& v) { v = static_cast<int64_t>(i); });
  if (a.ok()) AllFar(rt, *a);
  sum->Column(ElemType::kI64);
  sum->Aggregate(AggKind::kSum, sum->ColumnExpr(0));
  return a;
}

template <typename T>
std::span<const uint8_t> Bytes(const std::vector<T>& v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(T)};
}

bool SameResult(const offload::Result& a, const offload::Result& b) {
  return a.bytes().size() == b.bytes().size() && std::memcmp(a.bytes().data(), b.bytes().data(), a.bytes().size()) == 0;
}

class AggregateTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    if (GetParam().transport == TransportKind::kVerbs && sharry::testing::RdmaAddr().empty())
      GTEST_SKIP() << "no RDMA device: SHARRY_RDMA_ADDR is unset (run through scripts/run-rxe.sh)";
  }
  void StartMemnodes(int n) {
    for (int i = 0; i < n; ++i) {
      memnode::MemnodeOptions o;
      o.transport = GetParam().transport;
      o.server.listen_addr = sharry::testing::ServerAddr(GetParam().transport);
      o.uma_bytes = 64u << 20;
      o.sections = 1;
      o.server.lease_ms = 0;
      o.free_batch = 1;  // FREEs are applied at once: live blocks are exact
      auto m = memnode::Memnode::Start(o);
      ASSERT_TRUE(m.ok()) << m.status();
      nodes_.push_back(std::move(*m));
    }
  }
  std::unique_ptr<Runtime> Make(uint64_t budget, const std::string& redundancy = "none", bool prefetch = true,
                                int op_timeout_ms = 2000) {
    RuntimeOptions o;
    o.transport = GetParam().transport;
    for (const auto& n : nodes_) o.memnodes.push_back({sharry::testing::ServerAddr(GetParam().transport), n->port()});
    if (GetParam().transport == TransportKind::kLoopback)
      for (auto& m : o.memnodes) m.host = "loopback";
    o.redundancy = *ParseRedundancy(redundancy);
    o.local_budget_bytes = budget;
    o.mode = GetParam().mode;
    o.evict_batch = 16;
    o.reconnect_attempts = 1;
    o.reconnect_timeout_ms = 100;
    o.reconnect_pause_ms = 1;
    o.placement_refresh_ms = 0;
    o.prefetch_thread = prefetch;
    o.op_timeout_ms = op_timeout_ms;
    auto rt = Runtime::Create(o);
    EXPECT_TRUE(rt.ok()) << rt.status();
    return rt.ok() ? std::move(*rt) : nullptr;
  }
  uint64_t MemnodeOffloadRows() {
    uint64_t rows = 0;
    for (const auto& n : nodes_)
      if (n) rows += n->service().offload_stats().rows_total;
    return rows;
  }

  std::vector<std::unique_ptr<memnode::Memnode>> nodes_;
};

// Columns of four types, and a spec of every aggregate kind over them.
struct Columns {
  static constexpr size_t kRows = 50000;  // i64: 98 chunks, u8: 13, f32: 49, f64: 98
  std::vector<int64_t> a;
  std::vector<uint8_t> k;
  std::vector<float> f;
  std::vector<double> d;
  Columns() {
    std::mt19937_64 rng(13);
    for (size_t i = 0; i < kRows; ++i) {
      a.push_back(static_cast<int64_t>(rng() % 2000000) - 1000000);
      k.push_back(static_cast<uint8_t>(rng() % 50));
      f.push_back(static_cast<float>(rng() % 100000) / 7.0f);
      d.push_back(static_cast<double>(rng() % 1000000) / 3.0 - 50000);
    }
  }
};

std::vector<offload::Spec> Specs() {
  std::vector<offload::Spec> specs;
  auto base = [] {
    offload::Spec s;
    s.Column(ElemType::kI64);
    s.Column(ElemType::kU8);
    s.Column(ElemType::kF32);
    s.Column(ElemType::kF64);
    return s;
  };
  for (uint8_t col : {0, 2, 3}) {  // every kind over an integer, a float and a double column, one group
    offload::Spec s = base();
    const uint8_t e = s.ColumnExpr(col);
    s.Aggregate(AggKind::kCount);
    for (AggKind kind : {AggKind::kSum, AggKind::kMin, AggKind::kMax, AggKind::kSumSq}) s.Aggregate(kind, e);
    s.Aggregate(AggKind::kSumProd, e, s.ColumnExpr(3));
    specs.push_back(s);
  }
  {  // group by the u8 column (50 groups), a filter, products and an expression
    offload::Spec s = base();
    s.key = {1, 0, 1, 0};
    s.groups = 50;
    s.filters.push_back({3, offload::Cmp::kGt, 0, 0.0});
    s.filters.push_back({0, offload::Cmp::kLe, 500000, 0});
    const uint8_t f = s.ColumnExpr(2), d = s.ColumnExpr(3);
    const uint8_t x = s.AddExpr({{ExprOp::kColumn, 3, 0}, {ExprOp::kColumn, 2, 0}, {ExprOp::kMul, 0, 0},
                                 {ExprOp::kSqrt, 0, 0}});
    s.Aggregate(AggKind::kCount);
    s.Aggregate(AggKind::kSumProd, f, d);
    s.Aggregate(AggKind::kSum, x);
    s.Aggregate(AggKind::kMax, x);
    s.Aggregate(AggKind::kSumSq, s.ColumnExpr(0));
    specs.push_back(s);
  }
  {  // a key from an i64 with add/div/mod (1000 groups) and an integer sum
    offload::Spec s = base();
    s.key = {0, 1000000, 997, 1000};
    s.groups = 1000;
    s.Aggregate(AggKind::kSum, s.ColumnExpr(0));
    s.Aggregate(AggKind::kCount);
    specs.push_back(s);
  }
  return specs;
}

TEST_P(AggregateTest, EveryOperatorEqualsLocalAtEveryLocalShare) {
  StartMemnodes(1);
  const Columns cols;
  const uint64_t data_bytes = Columns::kRows * (8 + 1 + 4 + 8);
  for (double share : {0.0, 0.1, 0.5, 1.0}) {
    // No prefetch thread: a never-mode call's prefetches, landing during
    // the next call, would be swap-ins that call did not make.
    auto rt = Make(std::max<uint64_t>(64 << 10, static_cast<uint64_t>(data_bytes * share * 1.1)), "none", false);
    ASSERT_TRUE(rt);
    auto a = RemoteArray<int64_t>::MakeWith(*rt, Columns::kRows, [&](size_t i, int64_t& v) { v = cols.a[i]; });
    auto k = RemoteArray<uint8_t>::MakeWith(*rt, Columns::kRows, [&](size_t i, uint8_t& v) { v = cols.k[i]; });
    auto f = RemoteArray<float>::MakeWith(*rt, Columns::kRows, [&](size_t i, float& v) { v = cols.f[i]; });
    auto d = RemoteArray<double>::MakeWith(*rt, Columns::kRows, [&](size_t i, double& v) { v = cols.d[i]; });
    ASSERT_TRUE(a.ok() && k.ok() && f.ok() && d.ok());
    if (share == 0.0) {
      ASSERT_TRUE(rt->EvictToBudget().ok());
    }
    const AggregateColumn c[] = {a->column(), k->column(), f->column(), d->column()};
    const std::span<const uint8_t> local[] = {Bytes(cols.a), Bytes(cols.k), Bytes(cols.f), Bytes(cols.d)};
    for (const offload::Spec& spec : Specs()) {
      auto want = offload::AggregateLocal(spec, local, Columns::kRows, kDefaultUnitRows);
      ASSERT_TRUE(want.ok()) << want.status();
      for (OffloadMode mode : {OffloadMode::kNever, OffloadMode::kAuto, OffloadMode::kAlways}) {
        AggregateOptions o;
        o.offload = mode;
        o.unit_rows = kDefaultUnitRows;
        const uint64_t at_memnode = MemnodeOffloadRows();
        const RuntimeStats before = rt->Stats();
        auto got = Aggregate(*rt, spec, c, Columns::kRows, o);
        ASSERT_TRUE(got.ok()) << got.status() << " share " << share << " mode " << OffloadModeName(mode);
        EXPECT_TRUE(SameResult(*got, *want)) << "share " << share << " mode " << OffloadModeName(mode);
        EXPECT_EQ(got->rows, Columns::kRows);
        const RuntimeStats st = rt->Stats().Since(before);
        EXPECT_EQ(st.agg_offloaded_rows, MemnodeOffloadRows() - at_memnode) << "the memnode counts what it ran";
        if (mode == OffloadMode::kNever) {
          EXPECT_EQ(st.agg_offloaded_units, 0u);
        } else {
          EXPECT_EQ(st.swap_ins, 0u) << "offloading brings nothing local";
        }
        const uint64_t units = (Columns::kRows + kDefaultUnitRows - 1) / kDefaultUnitRows;
        EXPECT_EQ(st.agg_local_units + st.agg_pulled_units + st.agg_offloaded_units, units);
        if (mode == OffloadMode::kAlways && share <= 0.1) {
          EXPECT_GT(st.agg_offloaded_units, 0u) << "share " << share;
        }
        if (share == 1.0) {
          EXPECT_EQ(st.agg_offloaded_units, 0u) << "nothing is far";
        }
      }
    }
  }
}

TEST_P(AggregateTest, TaxiQueriesAsAggregatesEqualLocalMemory) {
  StartMemnodes(1);
  const uint64_t rows = 40000;
  auto local = bench::TaxiFrame<bench::LocalColumn>::Load(nullptr, rows, 99);
  ASSERT_TRUE(local.ok());
  bench::TaxiResults want;
  ASSERT_TRUE(local->RunAggregates(want).ok());
  uint64_t trips = 0;
  for (uint64_t t : want.trips_by_hour) trips += t;
  EXPECT_EQ(trips, rows);
  for (uint64_t budget : {rows * bench::kTripBytes / 10, rows * bench::kTripBytes * 2}) {
    auto rt = Make(budget);
    ASSERT_TRUE(rt);
    auto far = bench::TaxiFrame<bench::RemoteColumn>::Load(rt.get(), rows, 99);
    ASSERT_TRUE(far.ok()) << far.status();
    for (OffloadMode mode : {OffloadMode::kNever, OffloadMode::kAuto, OffloadMode::kAlways}) {
      AggregateOptions o;
      o.offload = mode;
      bench::TaxiResults got;
      ASSERT_TRUE(far->RunAggregates(got, o).ok()) << OffloadModeName(mode);
      EXPECT_EQ(got.Checksum(), want.Checksum()) << "budget " << budget << " " << OffloadModeName(mode);
    }
  }
}

TEST_P(AggregateTest, ConcurrentSwapsKeepResultsExact) {
  StartMemnodes(1);
  const Columns cols;
  auto rt = Make(256 << 10);  // ~15 % of the columns
  ASSERT_TRUE(rt);
  auto a = RemoteArray<int64_t>::MakeWith(*rt, Columns::kRows, [&](size_t i, int64_t& v) { v = cols.a[i]; });
  auto d = RemoteArray<double>::MakeWith(*rt, Columns::kRows, [&](size_t i, double& v) { v = cols.d[i]; });
  ASSERT_TRUE(a.ok() && d.ok());
  offload::Spec spec;
  spec.Column(ElemType::kI64);
  spec.Column(ElemType::kF64);
  spec.Aggregate(AggKind::kSum, spec.ColumnExpr(0));
  spec.Aggregate(AggKind::kSum, spec.ColumnExpr(1));
  spec.Aggregate(AggKind::kSumProd, spec.ColumnExpr(0), spec.ColumnExpr(1));
  const std::span<const uint8_t> local[] = {Bytes(cols.a), Bytes(cols.d)};
  auto want = offload::AggregateLocal(spec, local, Columns::kRows, kDefaultUnitRows);
  ASSERT_TRUE(want.ok());
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> checked{0};
  // Two threads read random elements (swap-ins, evictions) and swap chunks out.
  auto churn = [&](uint64_t seed) {
    std::mt19937_64 rng(seed);
    while (!stop.load()) {
      const size_t i = rng() % Columns::kRows;
      auto x = a->Get(i);
      auto y = d->Get(i);
      ASSERT_TRUE(x.ok() && y.ok());
      ASSERT_EQ(*x, cols.a[i]);
      ASSERT_EQ(*y, cols.d[i]);
      if (rng() % 4 == 0) (void)rt->SwapOut(a->chunk(rng() % a->chunks()));
      checked++;
    }
  };
  std::thread t1(churn, 1), t2(churn, 2);
  // And a second aggregator over the same chunks with its columns the other
  // way round (the takes are in address order: no cycle between the two).
  const AggregateColumn c[] = {a->column(), d->column()};
  const AggregateColumn swapped[] = {d->column(), a->column()};
  offload::Spec spec2;
  spec2.Column(ElemType::kF64);
  spec2.Column(ElemType::kI64);
  spec2.Aggregate(AggKind::kSum, spec2.ColumnExpr(1));
  spec2.Aggregate(AggKind::kSum, spec2.ColumnExpr(0));
  spec2.Aggregate(AggKind::kSumProd, spec2.ColumnExpr(1), spec2.ColumnExpr(0));
  std::thread other([&] {
    for (int i = 0; i < 20; ++i) {
      AggregateOptions o;
      o.offload = OffloadMode::kAlways;
      auto got = Aggregate(*rt, spec2, swapped, Columns::kRows, o);
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_TRUE(SameResult(*got, *want)) << "other round " << i;  // the same slots, the same bits
    }
  });
  for (int i = 0; i < 20; ++i) {
    AggregateOptions o;
    o.offload = i % 2 ? OffloadMode::kAlways : OffloadMode::kAuto;
    o.window_units = 1 + i % 3;
    auto got = Aggregate(*rt, spec, c, Columns::kRows, o);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE(SameResult(*got, *want)) << "round " << i;
  }
  other.join();
  stop = true;
  t1.join();
  t2.join();
  EXPECT_GT(checked.load(), 0u);
  EXPECT_GT(rt->Stats().agg_offloaded_units, 0u);
}

TEST_P(AggregateTest, BadCallsAreRefused) {
  StartMemnodes(1);
  auto rt = Make(64 << 10);
  ASSERT_TRUE(rt);
  auto a = RemoteArray<int64_t>::MakeWith(*rt, 5000, [](size_t i, int64_t& v) { v = static_cast<int64_t>(i); });
  ASSERT_TRUE(a.ok());
  AllFar(*rt, *a);
  offload::Spec spec;
  spec.Column(ElemType::kI32);
  spec.Aggregate(AggKind::kCount);
  auto r = a->Aggregate(spec);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("i64"), std::string::npos) << r.status();
  spec.columns[0] = ElemType::kI64;
  AggregateOptions o;
  o.unit_rows = 700;  // not a multiple of 512 rows per chunk
  r = a->Aggregate(spec, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("unit_rows 700"), std::string::npos) << r.status();
  const AggregateColumn two[] = {a->column(), a->column()};
  r = Aggregate(*rt, spec, two, 5000);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("2 columns"), std::string::npos) << r.status();
  // A key out of range, found by the kernel at the memnode (far units) and here.
  spec.key = {0, 0, 1, 0};
  spec.groups = 100;
  for (OffloadMode mode : {OffloadMode::kAlways, OffloadMode::kNever}) {
    o = {};
    o.offload = mode;
    r = a->Aggregate(spec, o);
    ASSERT_FALSE(r.ok()) << OffloadModeName(mode);
    EXPECT_EQ(r.status().code(), StatusCode::kOutOfRange) << r.status();
    EXPECT_NE(r.status().message().find("outside [0, 100)"), std::string::npos) << r.status();
  }
  // The same column twice is read once per unit (no self-deadlock), far or local.
  offload::Spec twice;
  twice.Column(ElemType::kI64);
  twice.Column(ElemType::kI64);
  twice.Aggregate(AggKind::kSumProd, twice.ColumnExpr(0), twice.ColumnExpr(1));
  std::vector<int64_t> v(5000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int64_t>(i);
  const std::span<const uint8_t> local[] = {Bytes(v), Bytes(v)};
  auto want = offload::AggregateLocal(twice, local, 5000, kDefaultUnitRows);
  ASSERT_TRUE(want.ok());
  o = {};
  o.offload = OffloadMode::kAlways;
  r = Aggregate(*rt, twice, two, 5000, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(SameResult(*r, *want));
  // And the objects are intact afterwards.
  for (size_t i = 0; i < 5000; i += 499) EXPECT_EQ(*a->Get(i), static_cast<int64_t>(i));
}

// Staging and result blocks are freed with the window: afterwards the
// memnode holds exactly our far chunks, and the staged chunks stay local.
TEST_P(AggregateTest, ScratchBlocksAreFreed) {
  StartMemnodes(1);
  auto rt = Make(1 << 20);
  ASSERT_TRUE(rt);
  auto a = RemoteArray<int64_t>::MakeWith(*rt, 40000, [](size_t i, int64_t& v) { v = static_cast<int64_t>(i); });
  ASSERT_TRUE(a.ok());
  AllFar(*rt, *a);
  // Every other chunk local again: every unit is mixed, its local chunks staged.
  for (size_t c = 0; c < a->chunks(); c += 2) ASSERT_TRUE(a->Get(c * a->elements_per_chunk()).ok());
  offload::Spec spec;
  spec.Column(ElemType::kI64);
  spec.Aggregate(AggKind::kSum, spec.ColumnExpr(0));
  AggregateOptions o;
  o.offload = OffloadMode::kAlways;
  const RuntimeStats before = rt->Stats();
  auto r = a->Aggregate(spec, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->Int(0, 0), int64_t{40000} * 39999 / 2);
  const RuntimeStats st = rt->Stats().Since(before);
  EXPECT_GT(st.agg_offloaded_units, 0u);
  if (GetParam().mode == CopyMode::kUniqueCopy) {
    EXPECT_GT(st.far_write_bytes, 0u) << "the local chunks were staged";
  } else {
    EXPECT_EQ(st.far_write_bytes, 0u) << "Multi-Copy: the clean local chunks' far copies are read in place";
  }
  EXPECT_EQ(st.swap_ins, 0u);
  ASSERT_TRUE(rt->FlushFrees().ok());
  uint64_t far = 0;
  for (size_t c = 0; c < a->chunks(); ++c) far += a->chunk(c).has_far_copy() && !a->chunk(c).is_local();
  if (GetParam().mode == CopyMode::kMultiCopy) {
    far = 0;
    for (size_t c = 0; c < a->chunks(); ++c) far += a->chunk(c).has_far_copy();
  }
  const memnode::Stats ms = nodes_[0]->service().CollectStats(0);
  EXPECT_EQ(ms.head.live_blocks - ms.head.pending_blocks, far) << "scratch blocks left at the memnode";
  EXPECT_EQ(st.offload_abandoned_blocks, 0u);
}

// A chunk whose swap-out is in flight (busy, its WRITE held at the memnode)
// is waited for, then aggregated as the far chunk it became — not skipped,
// not read half-moved.
TEST_P(AggregateTest, ChunkBeingSwappedOutIsWaitedFor) {
  if (GetParam().transport != TransportKind::kLoopback) GTEST_SKIP() << "fault injection: loopback only";
  StartMemnodes(1);
  auto rt = Make(1 << 20);
  ASSERT_TRUE(rt);
  auto a = RemoteArray<int64_t>::MakeWith(*rt, 5000, [](size_t i, int64_t& v) { v = static_cast<int64_t>(i) * 3; });
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(a->chunk(0).is_local());
  auto plan = std::make_shared<FaultPlan>();
  plan->Add({FaultOp::kWrite, 1, FaultAction::kHold});
  ASSERT_TRUE(SetLoopbackFaults(nodes_[0]->port(), plan).ok());
  std::thread swapper([&] { EXPECT_TRUE(rt->SwapOut(a->chunk(0)).ok()); });
  ASSERT_TRUE(plan->WaitHeld());
  offload::Spec spec;
  spec.Column(ElemType::kI64);
  spec.Aggregate(AggKind::kSum, spec.ColumnExpr(0));
  AggregateOptions o;
  o.offload = OffloadMode::kAlways;
  std::atomic<bool> done{false};
  StatusOr<offload::Result> r = Status::Internal("not run");
  std::thread aggregator([&] {
    r = a->Aggregate(spec, o);
    done = true;
  });
  for (int i = 0; i < 100; ++i) std::this_thread::yield();
  EXPECT_FALSE(done.load()) << "the aggregate must wait for the chunk in flight";
  plan->Release();
  swapper.join();
  aggregator.join();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->Int(0, 0), int64_t{3} * 5000 * 4999 / 2);
  EXPECT_FALSE(a->chunk(0).is_local());
  EXPECT_EQ(rt->Stats().agg_offloaded_units, 1u) << "the unit had a far chunk: offloaded (local ones staged)";
  ASSERT_TRUE(SetLoopbackFaults(nodes_[0]->port(), nullptr).ok());
}

// Malformed OFFLOADs over this transport (loopback, tcp, verbs), from a raw
// client: each answered with its error, nothing run, and the same client's
// well-formed OFFLOAD still works after them. (Every case, one by one, is in
// offload_service_test; this is the transport's share.)
TEST_P(AggregateTest, MalformedOffloadsAreRefusedOverTheTransport) {
  StartMemnodes(1);
  ClientOptions co;
  co.server_addr = GetParam().transport == TransportKind::kLoopback ? "loopback"
                                                                     : sharry::testing::ServerAddr(GetParam().transport);
  co.port = nodes_[0]->port();
  auto a = memnode::MemnodeClient::Connect(GetParam().transport, co);
  auto b = memnode::MemnodeClient::Connect(GetParam().transport, co);
  ASSERT_TRUE(a.ok() && b.ok());
  auto data = (*a)->AllocOne(4096);
  auto result = (*a)->AllocOne(4096);
  auto foreign = (*b)->AllocOne(4096);
  ASSERT_TRUE(data.ok() && result.ok() && foreign.ok());
  std::vector<int64_t> v(512);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int64_t>(i) * 7;
  ASSERT_TRUE((*a)->transport().Write(*data, v.data(), 4096).ok());
  const std::vector<uint8_t> marker(4096, 0xA5);
  ASSERT_TRUE((*a)->transport().Write(*result, marker.data(), 4096).ok());

  offload::Spec spec;
  spec.Column(ElemType::kI64);
  spec.Aggregate(AggKind::kSum, spec.ColumnExpr(0));
  auto request = [&](const offload::Spec& s, uint64_t piece, uint32_t len, uint32_t rows, uint32_t result_bytes) {
    memnode::OffloadRequestBuilder rb(memnode::MaxRequestBytes((*a)->transport()));
    rb.Begin(offload::Encode(s), *result, result_bytes);
    memnode::OffloadUnitRef u;
    u.rows = rows;
    u.columns = {{{piece, len}}};
    EXPECT_TRUE(rb.TryAdd(u));
    return std::vector<uint8_t>(rb.bytes().begin(), rb.bytes().end());
  };
  auto refused = [&](std::vector<uint8_t> req, StatusCode code, const std::string& says) {
    auto id = memnode::SubmitOffload((*a)->transport(), req);
    ASSERT_FALSE(id.ok()) << says;
    EXPECT_EQ(id.status().code(), code) << id.status();
    EXPECT_NE(id.status().message().find(says), std::string::npos) << id.status();
  };
  auto run = [&](std::vector<uint8_t> req) -> Status {
    auto id = memnode::SubmitOffload((*a)->transport(), req);
    if (!id.ok()) return id.status();
    const uint64_t ids[1] = {*id};
    for (int i = 0; i < 100000; ++i) {
      auto st = memnode::PollOffload((*a)->transport(), ids);
      if (!st.ok()) return st.status();
      if ((*st)[0].done) return (*st)[0].status;
      std::this_thread::yield();
    }
    return Status::Timeout("job never done");
  };
  // Unknown operator: an aggregate kind byte no kernel knows.
  std::vector<uint8_t> bad_op = request(spec, *data, 4096, 512, 8);
  const std::vector<uint8_t> enc = offload::Encode(spec);
  // RpcHeader (8) + OffloadHead (24), then the spec, whose last 4 bytes are its one Agg.
  const size_t agg_at = 8 + 24 + enc.size() - 4;
  ASSERT_EQ(bad_op[agg_at], static_cast<uint8_t>(AggKind::kSum));
  bad_op[agg_at] = 99;
  refused(bad_op, StatusCode::kInvalidArgument, "kind 99");
  refused(request(spec, *foreign, 4096, 512, 8), StatusCode::kPermissionDenied, "");   // another client's block
  refused(request(spec, uint64_t{1} << 39, 4096, 512, 8), StatusCode::kOutOfRange, "outside the UMA");
  refused(request(spec, *data, 4092, 511, 8), StatusCode::kInvalidArgument, "");      // not whole i64s / rows
  refused(request(spec, *data, 4096, 500, 8), StatusCode::kInvalidArgument, "");      // pieces != rows
  refused(request(spec, *data, 4096, 512, 4), StatusCode::kInvalidArgument, "does not fit");  // oversized result
  std::vector<uint8_t> cut = request(spec, *data, 4096, 512, 8);
  cut.pop_back();
  refused(cut, StatusCode::kInvalidArgument, "");  // truncated
  // A group key out of range fails the job, and leaves the result block as it was.
  offload::Spec keyed = spec;
  keyed.key = {0, 0, 1, 0};
  keyed.groups = 100;
  const Status key = run(request(keyed, *data, 4096, 512, 800));
  EXPECT_EQ(key.code(), StatusCode::kOutOfRange) << key;
  std::vector<uint8_t> back(4096);
  ASSERT_TRUE((*a)->transport().Read(*result, back.data(), 4096).ok());
  EXPECT_EQ(back, marker) << "a failed job wrote its result block";
  // And a well-formed one still works, with the kernel's answer.
  ASSERT_TRUE(run(request(spec, *data, 4096, 512, 8)).ok());
  int64_t sum = 0;
  ASSERT_TRUE((*a)->transport().Read(*result, &sum, 8).ok());
  EXPECT_EQ(sum, int64_t{7} * 512 * 511 / 2);
}

// A memnode whose offload workers freeze (held by the test hook) while its
// connection stays up: the jobs go unanswered for op_timeout_ms, their units
// are read here instead (the result still exact), and the result block the
// frozen job may still write is left allocated (counted), never reused.
TEST_P(AggregateTest, FrozenOffloadWorkerIsGivenUpOn) {
  StartMemnodes(1);
  auto rt = Make(64 << 10, "none", true, /*op_timeout_ms=*/300);
  ASSERT_TRUE(rt);
  offload::Spec spec;
  auto a = FarIota(*rt, &spec);
  ASSERT_TRUE(a.ok());
  nodes_[0]->service().offload_workers()->PauseForTest(true);
  AggregateOptions o;
  o.offload = OffloadMode::kAlways;
  const RuntimeStats before = rt->Stats();
  auto r = a->Aggregate(spec, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->Int(0, 0), int64_t{20000} * 19999 / 2);
  const RuntimeStats st = rt->Stats().Since(before);
  EXPECT_EQ(st.agg_offloaded_units, 0u);
  EXPECT_GT(st.agg_pulled_units, 0u) << "the frozen jobs' units were read here";
  EXPECT_EQ(st.offload_abandoned_blocks, 1u) << "the block the frozen job may write is not freed";
  EXPECT_EQ(st.swap_ins, 0u);
  EXPECT_TRUE(rt->health().ok()) << rt->health() << ": a slow worker is not a dead memnode";
  nodes_[0]->service().offload_workers()->PauseForTest(false);
}

TEST_P(AggregateTest, MemnodeLostMidOffload) {
  if (GetParam().mode == CopyMode::kMultiCopy) GTEST_SKIP() << "redundancy is tested in Unique-Copy";
  const Columns cols;
  // replicate:2: every chunk on both memnodes; the one running the job dies
  // while its workers are held: the units are read from the other copy.
  StartMemnodes(2);
  auto rt = Make(64 << 10, "replicate:2");
  ASSERT_TRUE(rt);
  auto a = RemoteArray<int64_t>::MakeWith(*rt, Columns::kRows, [&](size_t i, int64_t& v) { v = cols.a[i]; });
  ASSERT_TRUE(a.ok());
  AllFar(*rt, *a);
  offload::Spec spec;
  spec.Column(ElemType::kI64);
  spec.Aggregate(AggKind::kSum, spec.ColumnExpr(0));
  spec.Aggregate(AggKind::kMax, spec.ColumnExpr(0));
  const std::span<const uint8_t> local[] = {Bytes(cols.a)};
  auto want = offload::AggregateLocal(spec, local, Columns::kRows, kDefaultUnitRows);
  ASSERT_TRUE(want.ok());
  for (auto& n : nodes_) n->service().offload_workers()->PauseForTest(true);
  std::thread killer([&] {
    // Kill whichever memnode received the first job, once it has one.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      for (auto& n : nodes_)
        if (n->service().offload_stats().queue_depth > 0) {
          n.reset();
          return;
        }
      std::this_thread::yield();
    }
    ADD_FAILURE() << "no memnode received an OFFLOAD";
  });
  AggregateOptions o;
  o.offload = OffloadMode::kAlways;
  auto got = a->Aggregate(spec, o);
  killer.join();
  for (auto& n : nodes_)
    if (n) n->service().offload_workers()->PauseForTest(false);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(SameResult(*got, *want));
  for (size_t i = 0; i < Columns::kRows; i += 997) EXPECT_EQ(*a->Get(i), cols.a[i]);
  EXPECT_GE(rt->Stats().dead_memnodes, 1u);
}

TEST_P(AggregateTest, MemnodeLostMidOffloadWithoutRedundancyIsAClearError) {
  if (GetParam().mode == CopyMode::kMultiCopy) GTEST_SKIP() << "one copy mode is enough";
  StartMemnodes(1);
  auto rt = Make(64 << 10);
  ASSERT_TRUE(rt);
  offload::Spec spec;
  auto a = FarIota(*rt, &spec);
  ASSERT_TRUE(a.ok());
  nodes_[0]->service().offload_workers()->PauseForTest(true);
  std::thread killer([&] {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (nodes_[0]->service().offload_stats().queue_depth == 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::yield();
    nodes_[0].reset();
  });
  AggregateOptions o;
  o.offload = OffloadMode::kAlways;
  auto got = a->Aggregate(spec, o);
  killer.join();
  ASSERT_FALSE(got.ok()) << "offloaded units " << rt->Stats().agg_offloaded_units << ", pulled "
                         << rt->Stats().agg_pulled_units << ", jobs " << rt->Stats().offload_jobs;
  EXPECT_TRUE(got.status().code() == StatusCode::kUnavailable || got.status().code() == StatusCode::kDataLoss)
      << got.status();
  EXPECT_NE(got.status().ToString().find("memnode"), std::string::npos) << got.status();
  // The runtime goes on: a new, local array aggregates (nothing far to read).
  { RemoteArray<int64_t> gone = std::move(*a); }
  auto b = RemoteArray<int64_t>::MakeWith(*rt, 100, [](size_t i, int64_t& v) { v = static_cast<int64_t>(i); });
  ASSERT_TRUE(b.ok()) << b.status();
  auto r = b->Aggregate(spec);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->Int(0, 0), 4950);
}

INSTANTIATE_TEST_SUITE_P(Loopback, AggregateTest,
                         ::testing::Values(Param{TransportKind::kLoopback, CopyMode::kUniqueCopy},
                                           Param{TransportKind::kLoopback, CopyMode::kMultiCopy}),
                         ParamName);
INSTANTIATE_TEST_SUITE_P(Tcp, AggregateTest,
                         ::testing::Values(Param{TransportKind::kTcp, CopyMode::kUniqueCopy},
                                           Param{TransportKind::kTcp, CopyMode::kMultiCopy}),
                         ParamName);
INSTANTIATE_TEST_SUITE_P(Verbs, AggregateTest,
                         ::testing::Values(Param{TransportKind::kVerbs, CopyMode::kUniqueCopy}), ParamName);

}  // namespace
}  // namespace sharry::compute
