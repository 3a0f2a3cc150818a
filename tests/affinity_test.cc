// Placement affinity (docs/redundancy.md, "Affinity"; docs/offload-affinity.md)
// as fast unit tests: real Memnodes in this process over the loopback
// transport, as tests/multi_memnode_test.cc.
//   - objects with the same affinity key have their first copy on the same
//     memnode (none, replicate:2); the keys spread over every memnode; the
//     other copies of replicate:2 are on other memnodes
//   - a dead memnode: its keys go to the survivors (each key to one), the
//     keys of the survivors stay where they were
//   - end to end: compute::Aggregate over two RemoteArrays (i64, f64) on 4
//     memnodes at a small local budget, OffloadMode::kAlways: the result is
//     bit-identical to offload::AggregateLocal, and more than 80 % of the
//     units run at a memnode (without affinity almost none do: the chunks of
//     a unit are spread over all four)
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "compute/aggregate.h"
#include "compute/runtime.h"
#include "memnode/memnode.h"
#include "offload/local.h"
#include "remote_ds/remote_array.h"
#include "tests/loopback_memnodes.h"
#include "tests/test_util.h"

namespace sharry::compute {
namespace {

using offload::AggKind;
using offload::ElemType;
using remote_ds::ChunkPlacement;
using remote_ds::RemoteArray;

class AffinityTest : public ::testing::TestWithParam<const char*>, protected sharry::testing::LoopbackMemnodes {
 protected:
  AffinityTest() {  // FREE batching as the defaults have it
    memnode_free_batch_ = memnode::MemnodeOptions().free_batch;
    runtime_free_batch_ = RuntimeOptions().free_batch;
  }

  // Destroyed in reverse: the runtime, then (the base's) memnodes.
  std::unique_ptr<Runtime> rt_;
};

// Objects with keys 1..keys, `per_key` of each, made round-robin over the
// keys (so an eviction round holds many keys); all but the last few far.
std::vector<RemoteObject> MakeKeyed(Runtime& rt, uint32_t keys, int per_key) {
  std::vector<RemoteObject> objs;
  const std::vector<uint8_t> data(1024, 7);
  for (int r = 0; r < per_key; ++r)
    for (uint32_t k = 1; k <= keys; ++k) {
      auto o = rt.New(1024, data.data(), k);
      EXPECT_TRUE(o.ok()) << o.status();
      if (!o.ok()) return objs;
      EXPECT_EQ(o->affinity(), k);
      objs.push_back(std::move(*o));
    }
  EXPECT_TRUE(rt.EvictToBudget().ok());
  return objs;
}

// The memnode of each key's first copies; fails if the far objects of a key
// are on two memnodes.
std::map<uint32_t, int> HomesOf(const std::vector<RemoteObject>& objs) {
  std::map<uint32_t, int> home;
  size_t far = 0;
  for (const RemoteObject& o : objs) {
    const int n = o.far_memnode();
    if (n < 0) continue;  // still local
    far++;
    auto [it, fresh] = home.emplace(o.affinity(), n);
    EXPECT_EQ(it->second, n) << "key " << o.affinity() << " on memnodes " << it->second << " and " << n;
  }
  EXPECT_GT(far, objs.size() * 3 / 4) << "most objects are far";
  return home;
}

TEST_P(AffinityTest, SameKeySameMemnodeAndKeysSpreadOverAll) {
  StartMemnodes(4);
  rt_ = Make(Options(GetParam(), 64u << 10));
  ASSERT_TRUE(rt_);
  constexpr uint32_t kKeys = 256;
  std::vector<RemoteObject> objs = MakeKeyed(*rt_, kKeys, 4);
  const std::map<uint32_t, int> home = HomesOf(objs);
  EXPECT_EQ(home.size(), kKeys);
  std::vector<int> keys_at(4, 0);
  for (auto [key, n] : home) keys_at[n]++;
  for (int n = 0; n < 4; ++n) {
    std::printf("memnode %d: home of %d keys\n", n, keys_at[n]);
    EXPECT_GE(keys_at[n], 64 / 2) << n;  // an even share is 64
    EXPECT_LE(keys_at[n], 64 * 3 / 2) << n;
  }
  // Every copy is counted where it is, and under replicate:2 the second
  // copies are on other memnodes (the memnodes hold 2 blocks per object).
  const RuntimeStats st = rt_->Stats();
  const uint32_t copies = ParseRedundancy(GetParam())->nodes_needed();
  uint64_t at_nodes = 0, far = 0;
  for (size_t n = 0; n < 4; ++n) at_nodes += st.memnodes[n].copies;
  for (const RemoteObject& o : objs) far += o.has_far_copy();
  EXPECT_EQ(at_nodes, far * copies);
  EXPECT_EQ(st.far_copy_bytes, st.far_bytes * copies);
  // The same keys in a second runtime over the same memnodes: the same homes.
  objs.clear();
  rt_.reset();
  rt_ = Make(Options(GetParam(), 64u << 10));
  ASSERT_TRUE(rt_);
  objs = MakeKeyed(*rt_, kKeys, 2);
  EXPECT_EQ(HomesOf(objs), home);
}

TEST_P(AffinityTest, DeadMemnodesKeysGoToTheSurvivors) {
  StartMemnodes(4);
  rt_ = Make(Options(GetParam(), 64u << 10));
  ASSERT_TRUE(rt_);
  constexpr uint32_t kKeys = 128;
  std::vector<RemoteObject> before = MakeKeyed(*rt_, kKeys, 2);
  const std::map<uint32_t, int> home = HomesOf(before);
  ASSERT_EQ(home.size(), kKeys);
  Kill(1);
  EXPECT_FALSE(rt_->MemnodeStats(1).ok());
  ASSERT_TRUE(sharry::testing::Eventually([&] { return rt_->Stats().memnodes[1].state != "healthy"; }));
  std::vector<RemoteObject> after = MakeKeyed(*rt_, kKeys, 2);
  const std::map<uint32_t, int> now = HomesOf(after);
  ASSERT_EQ(now.size(), kKeys);
  std::set<int> took;  // the survivors that took memnode 1's keys
  for (auto [key, n] : home) {
    if (n != 1) {
      EXPECT_EQ(now.at(key), n) << "key " << key << ": a survivor's keys stay";
    } else {
      EXPECT_NE(now.at(key), 1) << "key " << key;
      took.insert(now.at(key));
    }
  }
  EXPECT_GE(took.size(), 2u) << "memnode 1's keys spread over the survivors";
}

template <typename T>
std::span<const uint8_t> Bytes(const std::vector<T>& v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(T)};
}

// Two columns of 40 units, built at a 256 KiB budget (nearly all far), summed
// and multiplied at the memnodes; returns the share of units offloaded.
double OffloadedShare(Runtime& rt, ChunkPlacement placement) {
  constexpr size_t kUnits = 40, kRows = kUnits * kDefaultUnitRows;
  std::vector<int64_t> a(kRows);
  std::vector<double> d(kRows);
  std::mt19937_64 rng(17);
  for (size_t i = 0; i < kRows; ++i) {
    a[i] = static_cast<int64_t>(rng() % 2000000) - 1000000;
    d[i] = static_cast<double>(rng() % 1000000) / 3.0 - 50000;
  }
  auto ca = RemoteArray<int64_t>::MakeWith(rt, kRows, [&](size_t i, int64_t& v) { v = a[i]; }, 4096, placement);
  auto cd = RemoteArray<double>::MakeWith(rt, kRows, [&](size_t i, double& v) { v = d[i]; }, 4096, placement);
  EXPECT_TRUE(ca.ok() && cd.ok());
  if (!ca.ok() || !cd.ok()) return -1;
  offload::Spec spec;
  spec.Column(ElemType::kI64);
  spec.Column(ElemType::kF64);
  const uint8_t ea = spec.ColumnExpr(0), ed = spec.ColumnExpr(1);
  spec.Aggregate(AggKind::kCount);
  spec.Aggregate(AggKind::kSum, ea);
  spec.Aggregate(AggKind::kMax, ea);
  spec.Aggregate(AggKind::kSum, ed);
  spec.Aggregate(AggKind::kSumProd, ea, ed);
  const std::span<const uint8_t> local[] = {Bytes(a), Bytes(d)};
  auto want = offload::AggregateLocal(spec, local, kRows, kDefaultUnitRows);
  EXPECT_TRUE(want.ok()) << want.status();
  const AggregateColumn cols[] = {ca->column(), cd->column()};
  AggregateOptions o;
  o.offload = OffloadMode::kAlways;
  const RuntimeStats before = rt.Stats();
  auto got = Aggregate(rt, spec, cols, kRows, o);
  EXPECT_TRUE(got.ok()) << got.status();
  if (!got.ok() || !want.ok()) return -1;
  EXPECT_EQ(got->bytes().size(), want->bytes().size());
  EXPECT_EQ(std::memcmp(got->bytes().data(), want->bytes().data(), want->bytes().size()), 0)
      << "the result must be bit-identical to the local reference";
  const RuntimeStats st = rt.Stats().Since(before);
  EXPECT_EQ(st.agg_local_units + st.agg_pulled_units + st.agg_offloaded_units, kUnits);
  std::printf("affinity %s: %llu of %zu units offloaded, %llu pulled, %llu local\n",
              placement == ChunkPlacement::kRowAffinity ? "on " : "off", (unsigned long long)st.agg_offloaded_units,
              kUnits, (unsigned long long)st.agg_pulled_units, (unsigned long long)st.agg_local_units);
  return static_cast<double>(st.agg_offloaded_units) / kUnits;
}

TEST_P(AffinityTest, AggregateOverFourMemnodesOffloadsNearlyEveryUnit) {
  StartMemnodes(4);
  rt_ = Make(Options(GetParam()));
  ASSERT_TRUE(rt_);
  EXPECT_GT(OffloadedShare(*rt_, ChunkPlacement::kRowAffinity), 0.8);
}

// The same without affinity (least used first for every chunk): few units
// have all their chunks on one memnode. (The "before" of the test above.)
TEST_P(AffinityTest, WithoutAffinityFewUnitsAreOnOneMemnode) {
  StartMemnodes(4);
  rt_ = Make(Options(GetParam()));
  ASSERT_TRUE(rt_);
  EXPECT_LT(OffloadedShare(*rt_, ChunkPlacement::kAnywhere), 0.5);
}

INSTANTIATE_TEST_SUITE_P(Modes, AffinityTest, ::testing::Values("none", "replicate:2"));

}  // namespace
}  // namespace sharry::compute
