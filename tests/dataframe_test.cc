// The data-frame workload of the experiments (workloads/taxi.h) and the pieces of
// remote_ds/ it rests on (RemoteArray::MakeWith, RemoteArray::Cursor): the
// generator is deterministic and shaped like the 2016 taxi records; the
// queries give bit-identical results on far memory (both copy modes, small
// budgets) and on plain local memory; cursors walk ranges across chunk
// boundaries in step and report a lost memnode as an error.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "compute/runtime.h"
#include "memnode/memnode.h"
#include "remote_ds/remote_array.h"
#include "tests/test_util.h"
#include "workloads/taxi.h"

namespace sharry::bench {
namespace {

using compute::CopyMode;
using compute::Runtime;
using remote_ds::RemoteArray;

// ---------------------------------------------------------------- generator (unit)

TEST(TaxiTrip, SameSeedAndRowSameTrip) {
  for (uint64_t row : {0ull, 1ull, 12345ull, 1ull << 40}) {
    Trip a = TaxiTrip(7, row), b = TaxiTrip(7, row);
    EXPECT_EQ(0, std::memcmp(&a, &b, sizeof(Trip))) << row;
  }
  int same = 0;
  for (uint64_t row = 0; row < 100; ++row) same += TaxiTrip(7, row).pickup == TaxiTrip(8, row).pickup;
  EXPECT_LT(same, 5) << "another seed must make another data set";
}

TEST(TaxiTrip, ShapedLikeTheTaxiRecords) {
  const int n = 200000;
  int one = 0, by_hour[24] = {};
  std::vector<float> dist;
  for (int i = 0; i < n; ++i) {
    Trip t = TaxiTrip(2016, i);
    ASSERT_GT(t.dropoff, t.pickup);
    ASSERT_GE(t.pickup, k2016);
    ASSERT_LT(t.pickup, k2016 + 366 * 86400);
    ASSERT_LE(t.passengers, 6);
    ASSERT_GE(t.fare, 2.5f);
    ASSERT_GT(t.distance, 0.f);
    ASSERT_NEAR(t.pickup_lat, 40.76, 0.3);
    ASSERT_NEAR(t.pickup_lon, -73.98, 0.3);
    one += t.passengers == 1;
    by_hour[HourOf(t.pickup)]++;
    dist.push_back(t.distance);
  }
  EXPECT_NEAR(static_cast<double>(one) / n, 0.71, 0.02);
  EXPECT_GT(by_hour[19], 4 * by_hour[5]) << "the evening peak against the early-morning trough";
  std::nth_element(dist.begin(), dist.begin() + n / 2, dist.end());
  EXPECT_NEAR(dist[n / 2], 1.7, 0.15) << "median trip distance";
}

TEST(TaxiFrame, LocalQueriesSeeRushHours) {
  auto f = TaxiFrame<LocalColumn>::Load(nullptr, 100000, 2016);
  ASSERT_TRUE(f.ok()) << f.status();
  TaxiResults r;
  ASSERT_TRUE(f->RunQueries(r).ok());
  EXPECT_EQ(r.rows_scanned, 5u * 100000);
  uint64_t trips = 0;
  for (uint64_t t : r.trips_by_hour) trips += t;
  EXPECT_EQ(trips, 100000u);
  auto mean_min = [&](int h) { return r.duration_s_by_hour[h] / r.trips_by_hour[h] / 60; };
  EXPECT_GT(mean_min(9), 1.4 * mean_min(3)) << "9 am trips are slower than 3 am trips";
  EXPECT_GT(r.PredictMinutes(17, 5), r.PredictMinutes(17, 1));
  EXPECT_GT(r.PredictMinutes(17, 5), r.PredictMinutes(3, 5));
  TaxiResults again;
  ASSERT_TRUE(f->RunQueries(again).ok());
  EXPECT_EQ(r.Checksum(), again.Checksum());
}

// ---------------------------------------------------------------- far memory (tcp, rxe)

struct Param {
  TransportKind transport;
  CopyMode mode;
};

class RemoteFrameTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    if (GetParam().transport == TransportKind::kVerbs && sharry::testing::RdmaAddr().empty())
      GTEST_SKIP() << "no RDMA device: SHARRY_RDMA_ADDR is unset (run through scripts/run-rxe.sh)";
    memnode::MemnodeOptions o;
    o.transport = GetParam().transport;
    o.server.listen_addr = sharry::testing::ServerAddr(GetParam().transport);
    o.uma_bytes = 64u << 20;
    o.sections = 2;
    auto m = memnode::Memnode::Start(o);
    ASSERT_TRUE(m.ok()) << m.status();
    node_ = std::move(*m);
  }
  std::unique_ptr<Runtime> Make(uint64_t budget) {
    compute::RuntimeOptions o;
    o.transport = GetParam().transport;
    o.memnode_addr = sharry::testing::ServerAddr(GetParam().transport);
    o.memnode_port = node_->port();
    o.local_budget_bytes = budget;
    o.mode = GetParam().mode;
    auto rt = Runtime::Create(o);
    EXPECT_TRUE(rt.ok()) << rt.status();
    return rt.ok() ? std::move(*rt) : nullptr;
  }
  std::unique_ptr<memnode::Memnode> node_;
};

TEST_P(RemoteFrameTest, QueriesOnFarMemoryEqualLocalMemory) {
  const uint64_t rows = 40000;  // 2.2 MiB of columns
  auto local = TaxiFrame<LocalColumn>::Load(nullptr, rows, 99);
  ASSERT_TRUE(local.ok());
  TaxiResults want;
  ASSERT_TRUE(local->RunQueries(want).ok());
  for (uint64_t budget : {rows * kTripBytes / 10, rows * kTripBytes / 2}) {
    auto rt = Make(budget);
    ASSERT_TRUE(rt);
    auto far = TaxiFrame<RemoteColumn>::Load(rt.get(), rows, 99);
    ASSERT_TRUE(far.ok()) << far.status();
    EXPECT_EQ(rt->Stats().swap_ins, 0u) << "loading must not bring anything back";
    for (int pass = 0; pass < 2; ++pass) {
      TaxiResults got;
      ASSERT_TRUE(far->RunQueries(got).ok());
      EXPECT_EQ(got.Checksum(), want.Checksum()) << "budget " << budget << " pass " << pass;
      EXPECT_EQ(0, std::memcmp(got.trips_by_hour, want.trips_by_hour, sizeof(want.trips_by_hour)));
      EXPECT_EQ(got.fit_xy[8], want.fit_xy[8]);
    }
    auto st = rt->Stats();
    EXPECT_GT(st.swap_ins, 0u) << "the frame did not fit: it must have been swapped";
    EXPECT_LE(st.local_bytes, budget * 9 / 8 + 2 * 4096);  // the runtime's bound: budget/8 of slack + one object per thread
  }
}

TEST_P(RemoteFrameTest, CursorsWalkRangesInStep) {
  auto rt = Make(8 * 4096);  // 8 chunks for 3 arrays of 40 chunks each
  ASSERT_TRUE(rt);
  const size_t n = 20000;  // uint64: 512 a chunk; uint8: 4096; uint32: 1024
  auto a = RemoteArray<uint64_t>::MakeWith(*rt, n, [](size_t i, uint64_t& v) { v = i * 3; });
  auto b = RemoteArray<uint8_t>::MakeWith(*rt, n, [](size_t i, uint8_t& v) { v = static_cast<uint8_t>(i); });
  auto c = RemoteArray<uint32_t>::MakeWith(*rt, n, [](size_t i, uint32_t& v) { v = static_cast<uint32_t>(n - i); });
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(rt->Stats().swap_ins, 0u);
  for (auto [begin, end] : {std::pair<size_t, size_t>{0, n}, {511, 513}, {1000, 9999}, {n - 1, n}, {5, 5}, {n, n + 9}}) {
    auto ca = a->Read(begin, end);
    auto cb = b->Read(begin, end);
    auto cc = c->Read(begin, end);
    size_t i = begin;
    for (const uint64_t* x = ca.Next(); x != nullptr; x = ca.Next(), ++i) {
      const uint8_t* y = cb.Next();
      const uint32_t* z = cc.Next();
      ASSERT_TRUE(y != nullptr && z != nullptr) << i;
      ASSERT_EQ(*x, i * 3);
      ASSERT_EQ(*y, static_cast<uint8_t>(i));
      ASSERT_EQ(*z, n - i);
    }
    EXPECT_EQ(i, std::min(end, n)) << begin << ".." << end;
    EXPECT_EQ(cb.Next(), nullptr);
    EXPECT_EQ(cc.Next(), nullptr);
    EXPECT_TRUE(ca.status().ok() && cb.status().ok() && cc.status().ok());
  }
  EXPECT_GT(rt->Stats().swap_ins, 0u);
  EXPECT_EQ(rt->Stats().pinned_objects, 0u) << "finished cursors hold no pins";
}

TEST_P(RemoteFrameTest, CursorReportsALostMemnode) {
  auto rt = Make(4 * 4096);
  ASSERT_TRUE(rt);
  auto a = RemoteArray<uint64_t>::MakeWith(*rt, 64 * 512, [](size_t i, uint64_t& v) { v = i; });
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(rt->EvictToBudget().ok());
  node_.reset();
  auto cur = a->Read();
  size_t seen = 0;
  while (const uint64_t* x = cur.Next()) {
    ASSERT_EQ(*x, seen);
    ++seen;
  }
  EXPECT_LT(seen, 64u * 512) << "most chunks were far; they cannot have been read";
  EXPECT_FALSE(cur.status().ok());
  EXPECT_EQ(cur.Next(), nullptr) << "a failed cursor stays at its end";
}

INSTANTIATE_TEST_SUITE_P(All, RemoteFrameTest,
                         ::testing::Values(Param{TransportKind::kTcp, CopyMode::kUniqueCopy},
                                           Param{TransportKind::kTcp, CopyMode::kMultiCopy},
                                           Param{TransportKind::kVerbs, CopyMode::kUniqueCopy},
                                           Param{TransportKind::kVerbs, CopyMode::kMultiCopy}),
                         [](const auto& info) {
                           return std::string(info.param.transport == TransportKind::kTcp ? "Tcp" : "Verbs") +
                                  (info.param.mode == CopyMode::kUniqueCopy ? "Unique" : "Multi");
                         });

}  // namespace
}  // namespace sharry::bench
