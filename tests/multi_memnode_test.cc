// Many memnodes per runtime (docs/redundancy.md), as fast unit tests: real
// Memnodes in this process over the loopback transport. A memnode "dies" by
// being destroyed (every connection to it drops at once), which is what a
// SIGKILL looks like to the runtime; the tcp-level kill (SIGKILL/SIGSTOP of
// memnode processes) is in tests/redundancy_test.sh.
//   - placement: blocks spread over the memnodes, least used first
//   - none / replicate:2 / replicate:3 round-trip random objects, and the
//     memnodes' live blocks reconcile with copies x far objects
//   - a memnode dies: under none exactly its objects are lost (kDataLoss,
//     naming it); under replicate:2 nothing is lost, and repair restores two
//     copies of every far object on the survivors (counted)
//   - two dead memnodes under replicate:2: the objects with both copies there
//     are reported lost, the rest read back
//   - the flags' parsers and Create's refusals
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "compute/runtime.h"
#include "memnode/memnode.h"
#include "tests/loopback_memnodes.h"
#include "tests/test_util.h"
#include "verbs/fault_injection.h"

namespace sharry::compute {
namespace {

class MultiMemnodeTest : public ::testing::Test, protected sharry::testing::LoopbackMemnodes {
 protected:
  // n objects of random sizes (64 B .. 4 KiB) filled with pattern i; all
  // but the last few are swapped out by the budget.
  void MakeObjects(Runtime& rt, int n) {
    std::mt19937 rng(7);
    for (int i = 0; i < n; ++i) {
      const uint32_t size = 64 + rng() % 4033;
      auto data = sharry::testing::Pattern(size, objs_.size());
      auto o = rt.New(size, data.data());
      ASSERT_TRUE(o.ok()) << o.status();
      objs_.push_back(std::move(*o));
      sizes_.push_back(size);
    }
  }
  bool Holds(Runtime& rt, int i, Status* why = nullptr) {
    DerefScope s(rt);
    auto p = objs_[i].Deref(s, false);
    if (!p.ok()) {
      if (why) *why = p.status();
      return false;
    }
    const auto want = sharry::testing::Pattern(sizes_[i], i);
    if (std::memcmp(*p, want.data(), sizes_[i]) == 0) return true;
    size_t at = 0;
    while (static_cast<uint8_t*>(*p)[at] == want[at]) ++at;
    ADD_FAILURE() << "object " << i << " (" << sizes_[i] << " B) differs at byte " << at << "; memnode "
                  << objs_[i].far_memnode();
    return false;
  }
  uint64_t LiveBlocks(size_t node) { return nodes_[node]->service().CollectStats(0).head.live_blocks; }
  uint64_t FarObjects() const {
    uint64_t n = 0;
    for (const auto& o : objs_) n += o.has_far_copy();
    return n;
  }
  // Destroyed in reverse: the objects, the runtime, then (the base's) memnodes.
  std::unique_ptr<Runtime> rt_;
  std::vector<RemoteObject> objs_;
  std::vector<uint32_t> sizes_;
};

TEST(MultiMemnodeParse, MemnodeListAndRedundancy) {
  auto l = ParseMemnodeList("a:1,b:2,c", 7000);
  ASSERT_TRUE(l.ok()) << l.status();
  ASSERT_EQ(l->size(), 3u);
  EXPECT_EQ((*l)[1].ToString(), "b:2");
  EXPECT_EQ((*l)[2].port, 7000);
  for (const char* bad : {"", "a:1,", "a:1,a:1", ":5", "a:0", "a:65536", "a:x"})
    EXPECT_FALSE(ParseMemnodeList(bad, 7000).ok()) << bad;
  EXPECT_EQ(RedundancyName(*ParseRedundancy("replicate:3")), "replicate:3");
  EXPECT_EQ(RedundancyName(*ParseRedundancy("ec:3+1")), "ec:3+1");
  EXPECT_EQ(RedundancyName(*ParseRedundancy("none")), "none");
  for (const char* bad : {"replicate:1", "replicate:5", "replicate:", "ec:0+1", "ec:2+0", "ec:30+3", "ec:2", "raid"})
    EXPECT_FALSE(ParseRedundancy(bad).ok()) << bad;
}

TEST_F(MultiMemnodeTest, CreateRefusesTooFewMemnodes) {
  StartMemnodes(1);
  auto rt = Runtime::Create(Options("replicate:2"));
  ASSERT_FALSE(rt.ok());
  EXPECT_EQ(rt.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(rt.status().message().find("needs at least 2 memnodes; 1 given"), std::string::npos) << rt.status();
}

// Least used first: with one size, every memnode gets its share.
TEST_F(MultiMemnodeTest, PlacementSpreadsBlocks) {
  StartMemnodes(4);
  rt_ = Make(Options("none"));
  ASSERT_TRUE(rt_);
  std::vector<uint8_t> data(1024, 1);
  for (int i = 0; i < 400; ++i) {
    auto o = rt_->New(1024, data.data());
    ASSERT_TRUE(o.ok()) << o.status();
    objs_.push_back(std::move(*o));
  }
  ASSERT_TRUE(rt_->EvictToBudget().ok());
  const RuntimeStats st = rt_->Stats();
  ASSERT_EQ(st.memnodes.size(), 4u);
  uint64_t total = 0;
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(st.memnodes[i].state, "healthy");
    EXPECT_EQ(st.memnodes[i].copies, LiveBlocks(i)) << i;
    total += st.memnodes[i].copies;
  }
  EXPECT_EQ(total, FarObjects());
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_GE(st.memnodes[i].copies * 4 + 16, total) << i;  // within one batch of an even share
    EXPECT_LE(st.memnodes[i].copies * 4, total + 64) << i;
  }
}

class RedundancyModes : public MultiMemnodeTest, public ::testing::WithParamInterface<const char*> {};

// Random objects round-trip; each far object has exactly its copies at the
// memnodes (live blocks reconcile), on different memnodes.
TEST_P(RedundancyModes, RoundTripAndCopiesReconcile) {
  StartMemnodes(4);
  rt_ = Make(Options(GetParam()));
  ASSERT_TRUE(rt_);
  ASSERT_NO_FATAL_FAILURE(MakeObjects(*rt_, 300));
  const uint32_t copies = ParseRedundancy(GetParam())->nodes_needed();
  for (int pass = 0; pass < 2; ++pass) {
    for (int i = 0; i < 300; i += 1 + pass) ASSERT_TRUE(Holds(*rt_, i)) << i;
    ASSERT_TRUE(rt_->FlushFrees().ok());
    const RuntimeStats st = rt_->Stats();
    uint64_t blocks = 0, copy_bytes = 0;
    for (size_t n = 0; n < 4; ++n) {
      blocks += LiveBlocks(n);
      copy_bytes += st.memnodes[n].copy_bytes;
    }
    EXPECT_GT(FarObjects(), 100u);
    EXPECT_EQ(blocks, FarObjects() * copies);
    EXPECT_EQ(st.far_copy_bytes, st.far_bytes * copies);
    EXPECT_EQ(copy_bytes, st.far_copy_bytes);
  }
  objs_.clear();
  ASSERT_TRUE(rt_->FlushFrees().ok());
  for (size_t n = 0; n < 4; ++n) EXPECT_EQ(LiveBlocks(n), 0u) << n;
}

INSTANTIATE_TEST_SUITE_P(Modes, RedundancyModes, ::testing::Values("none", "replicate:2", "replicate:3"));

// ec:K+M: random objects round-trip through stripes and restriping; the
// blocks at the memnodes reconcile with the runtime's count; the far memory
// used stays within (K+M)/K of the data plus the holes awaiting restriping.
class ErasureModes : public MultiMemnodeTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(ErasureModes, RoundTripAndBlocksReconcile) {
  StartMemnodes(4);
  auto o = Options(GetParam());
  o.ec_hole_budget = 0;  // compact every hole: restriping is exercised, and it ends
  rt_ = Make(o);
  ASSERT_TRUE(rt_);
  ASSERT_NO_FATAL_FAILURE(MakeObjects(*rt_, 300));
  std::mt19937 rng(5);
  for (int step = 0; step < 1500; ++step) {
    const int i = static_cast<int>(rng() % 300);
    Status why;
    ASSERT_TRUE(Holds(*rt_, i, &why)) << step << ": " << why;
  }
  ASSERT_TRUE(sharry::testing::Eventually(
      [&] { return rt_->Stats().repair_pending == 0 && rt_->Stats().restripe_pending == 0; }));
  ASSERT_TRUE(rt_->FlushFrees().ok());
  const RuntimeStats st = rt_->Stats();
  uint64_t blocks = 0, counted = 0;
  for (size_t n = 0; n < 4; ++n) {
    blocks += LiveBlocks(n);
    counted += st.memnodes[n].copies + st.memnodes[n].pending_free_blocks;
  }
  EXPECT_EQ(blocks, counted);
  EXPECT_GT(st.stripes, 0u);
  EXPECT_GT(st.restriped_objects, 0u);
  const Redundancy r = *ParseRedundancy(GetParam());
  // No holes left: the code's (K+M)/K of the data, but for padding and the
  // stripes of fewer than K members (a round's or a batch's remainder).
  EXPECT_LE(st.far_copy_bytes * r.k, st.far_bytes * (r.k + r.m) * 2) << st.far_copy_bytes;
  std::printf("%s: far copies %.3f x the data\n", GetParam(), double(st.far_copy_bytes) / double(st.far_bytes));
  for (int i = 0; i < 300; ++i) ASSERT_TRUE(Holds(*rt_, i)) << i;
  objs_.clear();
  ASSERT_TRUE(sharry::testing::Eventually([&] { return rt_->Stats().stripes == 0; })) << rt_->Stats().stripes;
  ASSERT_TRUE(rt_->FlushFrees().ok());
  for (size_t n = 0; n < 4; ++n) EXPECT_EQ(LiveBlocks(n), 0u) << n;
}

// ec:K+1: a memnode dies during a random mix: nothing is lost (degraded
// reads rebuild the blocks it held), the stripes it touched are rewritten on
// the survivors, and every object reads back.
TEST_P(ErasureModes, SurvivesADeadMemnode) {
  StartMemnodes(4);
  rt_ = Make(Options(GetParam()));
  ASSERT_TRUE(rt_);
  ASSERT_NO_FATAL_FAILURE(MakeObjects(*rt_, 300));
  std::mt19937 rng(13);
  for (int step = 0; step < 900; ++step) {
    if (step == 300) Kill(3);
    const int i = static_cast<int>(rng() % 300);
    DerefScope s(*rt_);
    auto p = objs_[i].Deref(s, (step & 3) == 0);
    ASSERT_TRUE(p.ok()) << step << ": " << p.status();
    ASSERT_EQ(std::memcmp(*p, sharry::testing::Pattern(sizes_[i], i).data(), sizes_[i]), 0) << i;
  }
  ASSERT_TRUE(sharry::testing::Eventually([&] { return rt_->Stats().dead_memnodes == 1; }));
  ASSERT_TRUE(sharry::testing::Eventually([&] { return rt_->Stats().repair_pending == 0; }));
  for (int i = 0; i < 300; ++i) {
    Status why;
    ASSERT_TRUE(Holds(*rt_, i, &why)) << i << ": " << why;
  }
  const RuntimeStats st = rt_->Stats();
  EXPECT_EQ(st.lost_objects, 0u);
  EXPECT_GT(st.degraded_reads + st.repaired_objects, 0u);
  EXPECT_EQ(st.memnodes[3].copies, 0u);
}

// Refills (docs/redundancy.md, "Refills"): objects of one size (1 KiB),
// swapped in and out by a seeded mix in which half the accesses rewrite the
// object (so a refill's victim differs from the hole's old bytes).
class RefillTest : public MultiMemnodeTest {
 protected:
  static constexpr int kObjects = 2000;  // 2 MiB: the far data ~8x the budget
  static constexpr uint32_t kSize = 1024;
  // `memnodes` memnodes, a runtime over them, and the objects: of kSize
  // each, or (mixed) of random sizes 1..4 KiB.
  void Start(int memnodes, const char* redundancy, double hole_budget, int64_t refill_bytes = -1,
             bool mixed = false) {
    StartMemnodes(memnodes);
    auto o = Options(redundancy);
    o.ec_hole_budget = hole_budget;
    o.ec_refill_bytes = refill_bytes;
    rt_ = Make(o);
    ASSERT_TRUE(rt_);
    std::mt19937 rng(31);
    for (int i = 0; i < kObjects; ++i) {
      size_.push_back(mixed ? 1024 + static_cast<uint32_t>(rng() % 3073) : kSize);
      seed_.push_back(i);
      auto data = sharry::testing::Pattern(size_[i], i);
      auto obj = rt_->New(size_[i], data.data());
      ASSERT_TRUE(obj.ok()) << obj.status();
      objs_.push_back(std::move(*obj));
    }
  }
  ::testing::AssertionResult Check(int i) {
    DerefScope s(*rt_);
    auto p = objs_[i].Deref(s, false);
    if (!p.ok()) return ::testing::AssertionFailure() << "object " << i << ": " << p.status();
    if (std::memcmp(*p, sharry::testing::Pattern(size_[i], seed_[i]).data(), size_[i]) != 0)
      return ::testing::AssertionFailure() << "object " << i << " (seed " << seed_[i] << ") differs";
    return ::testing::AssertionSuccess();
  }
  void Mix(int steps, uint32_t rng_seed) {
    std::mt19937 rng(rng_seed);
    for (int step = 0; step < steps; ++step) {
      const int i = static_cast<int>(rng() % kObjects);
      if (rng() % 2 == 0) {
        DerefScope s(*rt_);
        auto p = objs_[i].Deref(s, true);
        ASSERT_TRUE(p.ok()) << step << ": " << p.status();
        seed_[i] = kObjects + static_cast<int>(rng_seed) * 100000 + step;
        std::memcpy(*p, sharry::testing::Pattern(size_[i], seed_[i]).data(), size_[i]);
      } else {
        ASSERT_TRUE(Check(i)) << "step " << step;
      }
    }
  }
  // The blocks at memnodes `which` reconcile with the runtime's count.
  void ExpectBlocksReconcile(std::initializer_list<size_t> which) {
    ASSERT_TRUE(rt_->FlushFrees().ok());
    const RuntimeStats st = rt_->Stats();
    uint64_t blocks = 0, counted = 0;
    for (size_t n : which) {
      blocks += LiveBlocks(n);
      counted += st.memnodes[n].copies + st.memnodes[n].pending_free_blocks;
    }
    EXPECT_EQ(blocks, counted);
  }
  // Memnodes 0..m-1 die: every object reads back (degraded reads rebuild
  // from the parity), before and after the repair; nothing is lost.
  void KillAndRebuildAll(uint32_t m) {
    for (uint32_t d = 0; d < m; ++d) Kill(d);
    for (int i = 0; i < kObjects; ++i) ASSERT_TRUE(Check(i));
    ASSERT_TRUE(sharry::testing::Eventually([&] { return rt_->Stats().repair_pending == 0; }));
    for (int i = 0; i < kObjects; ++i) ASSERT_TRUE(Check(i));
    const RuntimeStats st = rt_->Stats();
    EXPECT_EQ(st.lost_objects, 0u);
    EXPECT_GT(st.degraded_reads, 0u);
  }
  std::vector<uint32_t> size_;
  std::vector<int> seed_;
};
class RefillModes : public RefillTest, public ::testing::WithParamInterface<const char*> {};

// With compaction off, the swap-ins' holes are refilled in place by later
// rounds (parity updated by the delta), so the stripes stay full: far memory
// within 10 % of the code's (K+M)/K. Then M memnodes die: every object still
// reads back — rebuilt from parity blocks that took thousands of deltas.
TEST_P(RefillModes, KeepStripesFullAndParityRight) {
  const Redundancy r = *ParseRedundancy(GetParam());
  // No compaction (hole budget 10): the refills alone keep the stripes full.
  ASSERT_NO_FATAL_FAILURE(Start(5, GetParam(), 10));
  ASSERT_NO_FATAL_FAILURE(Mix(6000, 11));
  RuntimeStats st = rt_->Stats();
  EXPECT_GT(st.ec_refills, 1000u) << "swap-outs " << st.swap_outs;
  EXPECT_EQ(st.restriped_objects, 0u);
  EXPECT_LE(st.ec_kept_bytes, uint64_t{2} * rt_->options().evict_batch * 4096);
  // Far memory: the code's (K+M)/K, the holes kept for the next round, and
  // the remainders of short stripes.
  const double ratio = double(st.far_copy_bytes) / double(st.far_bytes);
  std::printf("%s: far copies %.3f x the data after %llu refills\n", GetParam(), ratio,
              static_cast<unsigned long long>(st.ec_refills));
  EXPECT_LE(ratio, (double(r.k) + r.m) / r.k * 1.10);
  ASSERT_NO_FATAL_FAILURE(ExpectBlocksReconcile({0, 1, 2, 3, 4}));
  // M memnodes die: degraded reads rebuild from the updated parity.
  ASSERT_NO_FATAL_FAILURE(KillAndRebuildAll(r.m));
}
INSTANTIATE_TEST_SUITE_P(Modes, RefillModes, ::testing::Values("ec:2+1", "ec:3+1", "ec:2+2"));

// Objects of many sizes (1..4 KiB), compaction off: a victim refills a hole
// whose block it fills to at least 3/4, so old and new bytes differ in
// length and the parity delta is taken over both zero-padded; the member's
// size becomes the victim's, its block keeps its own. Most swap-outs still
// refill, the blocks reconcile, and with M memnodes killed every object is
// rebuilt byte-exact.
TEST_P(RefillModes, MixedSizesRefillLargerHoles) {
  const Redundancy r = *ParseRedundancy(GetParam());
  // Kept bytes for ~100 holes of 2.5 KiB (the auto bound is budget/16, 16 KiB here).
  ASSERT_NO_FATAL_FAILURE(Start(5, GetParam(), 10, 256 << 10, /*mixed=*/true));
  ASSERT_NO_FATAL_FAILURE(Mix(6000, 12));
  RuntimeStats st = rt_->Stats();
  const double ratio = double(st.far_copy_bytes) / double(st.far_bytes);
  std::printf("%s mixed: %llu refills of %llu swap-outs, %llu compacted; far copies %.3f x the data\n", GetParam(),
              static_cast<unsigned long long>(st.ec_refills), static_cast<unsigned long long>(st.swap_outs),
              static_cast<unsigned long long>(st.restriped_objects), ratio);
  EXPECT_GT(st.ec_refills * 2, st.swap_outs);
  ASSERT_NO_FATAL_FAILURE(ExpectBlocksReconcile({0, 1, 2, 3, 4}));
  ASSERT_NO_FATAL_FAILURE(KillAndRebuildAll(r.m));
}

// Mixed sizes with compaction on (the 5 % hole budget): refills and the
// restriper work on the same stripes. Every object reads back; once all
// are destroyed no stripe is left and the memnodes hold no block of ours.
TEST_F(RefillTest, MixedSizesWithCompactionLeaveNothingBehind) {
  ASSERT_NO_FATAL_FAILURE(Start(4, "ec:2+1", 0.05, 256 << 10, /*mixed=*/true));
  ASSERT_NO_FATAL_FAILURE(Mix(6000, 13));
  const RuntimeStats st = rt_->Stats();
  EXPECT_GT(st.ec_refills, 0u);
  EXPECT_GT(st.restriped_objects, 0u);
  for (int i = 0; i < kObjects; ++i) ASSERT_TRUE(Check(i));
  objs_.clear();
  ASSERT_TRUE(sharry::testing::Eventually([&] { return rt_->Stats().stripes == 0; })) << rt_->Stats().stripes;
  EXPECT_EQ(rt_->Stats().ec_kept_bytes, 0u);
  ASSERT_TRUE(rt_->FlushFrees().ok());
  for (size_t n = 0; n < 4; ++n) EXPECT_EQ(LiveBlocks(n), 0u) << n;
}

// Refill off (ec_refill_bytes 0): holes are only compacted, as before.
TEST_F(RefillTest, OffMeansCompactionOnly) {
  ASSERT_NO_FATAL_FAILURE(Start(4, "ec:2+1", 0.05, 0));
  ASSERT_NO_FATAL_FAILURE(Mix(3000, 3));
  const RuntimeStats st = rt_->Stats();
  EXPECT_EQ(st.ec_refills, 0u);
  EXPECT_EQ(st.ec_kept_bytes, 0u);
  EXPECT_GT(st.restriped_objects, 0u);
}

// Refill WRITE chains that fail (the memnode answers an error, the
// connection stays up) leave their blocks' contents unknown: those blocks
// leave their stripes, which are repaired; a victim whose own block failed
// goes to a new stripe. Then a session lost mid-run (a parity READ cut
// cancels its refills). Nothing is lost, every object reads back, the
// blocks reconcile.
TEST_F(RefillTest, FailedRefillWritesDropTheirBlocksAndNothingIsLost) {
  ASSERT_NO_FATAL_FAILURE(Start(5, "ec:2+1", 10));
  ASSERT_NO_FATAL_FAILURE(Mix(2000, 21));
  const RuntimeStats st0 = rt_->Stats();
  ASSERT_GT(st0.ec_refills, 0u);
  auto plan = std::make_shared<FaultPlan>();
  for (uint64_t n : {5, 40, 90, 160, 250}) plan->FailNth(FaultOp::kWrite, n, StatusCode::kInternal);
  ASSERT_TRUE(SetLoopbackFaults(nodes_[1]->port(), plan).ok());
  ASSERT_NO_FATAL_FAILURE(Mix(3000, 22));
  ASSERT_TRUE(sharry::testing::Eventually([&] { return rt_->Stats().repair_pending == 0; }));
  for (int i = 0; i < kObjects; ++i) ASSERT_TRUE(Check(i));
  RuntimeStats st = rt_->Stats();
  EXPECT_GT(st.failed_far_accesses, st0.failed_far_accesses);
  EXPECT_GT(st.repaired_objects, st0.repaired_objects);
  // Then (repaired: one failure at a time) a session lost mid-run.
  auto cut = std::make_shared<FaultPlan>();
  cut->DisconnectAt(FaultOp::kRead, 300, FaultScope::kSession);
  ASSERT_TRUE(SetLoopbackFaults(nodes_[3]->port(), cut).ok());
  ASSERT_NO_FATAL_FAILURE(Mix(3000, 23));
  ASSERT_TRUE(sharry::testing::Eventually([&] { return rt_->Stats().repair_pending == 0; }));
  for (int i = 0; i < kObjects; ++i) ASSERT_TRUE(Check(i));
  st = rt_->Stats();
  EXPECT_EQ(st.lost_objects, 0u);
  EXPECT_GT(st.ec_refills, st0.ec_refills);
  EXPECT_EQ(st.dead_memnodes, 1u);
  ASSERT_TRUE(SetLoopbackFaults(nodes_[1]->port(), nullptr).ok());
  // (Memnode 3 lost our session: what it held is gone with it.)
  ASSERT_NO_FATAL_FAILURE(ExpectBlocksReconcile({0, 1, 2, 4}));
}

// Two dead memnodes under ec:K+1: the objects whose own block and one more
// of their stripe were there are lost, reported with kDataLoss; the rest
// read back (directly or rebuilt).
TEST_F(MultiMemnodeTest, TwoFailuresUnderErasureReportTheLoss) {
  StartMemnodes(4);
  rt_ = Make(Options("ec:2+1"));
  ASSERT_TRUE(rt_);
  ASSERT_NO_FATAL_FAILURE(MakeObjects(*rt_, 300));
  Kill(0);
  Kill(1);
  ASSERT_TRUE(sharry::testing::Eventually([&] {
    for (int i = 0; i < 300; ++i) (void)Holds(*rt_, i);  // accesses find the dead memnodes
    return rt_->Stats().dead_memnodes == 2;
  }));
  size_t lost = 0;
  for (int i = 0; i < 300; ++i) {
    Status why;
    if (Holds(*rt_, i, &why)) continue;
    EXPECT_EQ(why.code(), StatusCode::kDataLoss) << i << ": " << why;
    lost++;
  }
  EXPECT_GT(lost, 0u);
  EXPECT_EQ(rt_->Stats().lost_objects, lost);
  EXPECT_EQ(rt_->health().code(), StatusCode::kDataLoss);
}

INSTANTIATE_TEST_SUITE_P(Modes, ErasureModes, ::testing::Values("ec:2+1", "ec:3+1", "ec:2+2"));

// none: exactly the objects whose block was at the dead memnode are lost,
// with an error naming it; the others read back; new objects go to the
// survivors.
TEST_F(MultiMemnodeTest, NoneLosesExactlyTheDeadMemnodesObjects) {
  StartMemnodes(3);
  rt_ = Make(Options("none"));
  ASSERT_TRUE(rt_);
  ASSERT_NO_FATAL_FAILURE(MakeObjects(*rt_, 200));
  std::vector<int> on_dead;
  for (int i = 0; i < 200; ++i)
    if (objs_[i].far_memnode() == 1 && !objs_[i].is_local()) on_dead.push_back(i);
  ASSERT_GT(on_dead.size(), 10u);
  const std::string dead = "loopback:" + std::to_string(nodes_[1]->port());
  Kill(1);
  size_t lost = 0;
  for (int i = 0; i < 200; ++i) {
    Status why;
    const bool ok = Holds(*rt_, i, &why);
    const bool expected_lost = std::find(on_dead.begin(), on_dead.end(), i) != on_dead.end();
    if (expected_lost) {
      ASSERT_FALSE(ok) << i;
      // The first access may see the memnode reconnecting (kUnavailable);
      // once the reconnector declared it gone, the loss is for good.
      if (why.code() == StatusCode::kUnavailable) {
        ASSERT_TRUE(sharry::testing::Eventually([&] { return objs_[i].lost(); })) << why;
        ASSERT_FALSE(Holds(*rt_, i, &why));
      }
      EXPECT_EQ(why.code(), StatusCode::kDataLoss) << why;
      EXPECT_NE(why.message().find(dead), std::string::npos) << why;
      lost++;
    } else {
      ASSERT_TRUE(ok) << i << ": " << why;
    }
  }
  EXPECT_EQ(lost, on_dead.size());
  EXPECT_EQ(rt_->Stats().lost_objects, on_dead.size());
  EXPECT_EQ(rt_->health().code(), StatusCode::kDataLoss);
  // New objects still swap out, to the survivors.
  ASSERT_NO_FATAL_FAILURE(MakeObjects(*rt_, 100));
  for (int i = 200; i < 300; ++i) {
    Status why;
    ASSERT_TRUE(Holds(*rt_, i, &why)) << i << ": " << why;
    EXPECT_NE(objs_[i].far_memnode(), 1) << i;
  }
}

// replicate:2: a memnode dies with a random mix going on; nothing is lost,
// and repair gives every far object its two copies on the survivors.
TEST_F(MultiMemnodeTest, ReplicateSurvivesADeadMemnodeAndRepairs) {
  StartMemnodes(4);
  rt_ = Make(Options("replicate:2"));
  ASSERT_TRUE(rt_);
  ASSERT_NO_FATAL_FAILURE(MakeObjects(*rt_, 300));
  std::mt19937 rng(11);
  for (int step = 0; step < 600; ++step) {
    if (step == 200) {
      Kill(2);
      // Found dead at once (a STATS to it fails), then repaired while the
      // far objects with a copy there are still far.
      EXPECT_FALSE(rt_->MemnodeStats(2).ok());
      // (Dead after its loss is marked and the reconnect failed.)
      ASSERT_TRUE(sharry::testing::Eventually([&] { return rt_->Stats().memnodes[2].state == "dead"; }));
      ASSERT_TRUE(sharry::testing::Eventually([&] { return rt_->Stats().repair_pending == 0; }));
      EXPECT_GT(rt_->Stats().repaired_objects, 0u);
    }
    const int i = static_cast<int>(rng() % 300);
    DerefScope s(*rt_);
    auto p = objs_[i].Deref(s, (step & 3) == 0);
    ASSERT_TRUE(p.ok()) << step << ": " << p.status();
    ASSERT_EQ(std::memcmp(*p, sharry::testing::Pattern(sizes_[i], i).data(), sizes_[i]), 0) << i;
  }
  for (int i = 0; i < 300; ++i) ASSERT_TRUE(Holds(*rt_, i)) << i;
  ASSERT_TRUE(sharry::testing::Eventually([&] { return rt_->Stats().dead_memnodes == 1; }));
  ASSERT_TRUE(sharry::testing::Eventually([&] { return rt_->Stats().repair_pending == 0; }))
      << rt_->Stats().repair_pending;
  EXPECT_EQ(rt_->FlushFrees().code(), StatusCode::kUnavailable);  // the dead one's; the others' go
  const RuntimeStats st = rt_->Stats();
  EXPECT_EQ(st.lost_objects, 0u);
  EXPECT_EQ(st.dead_memnodes, 1u);
  EXPECT_EQ(st.memnodes[2].state, "dead");
  uint64_t blocks = 0;
  for (size_t n : {0, 1, 3}) {
    blocks += LiveBlocks(n);
    EXPECT_EQ(st.memnodes[n].copies + st.memnodes[n].pending_free_blocks, LiveBlocks(n)) << n;
  }
  // Every far object has its two copies on the survivors again (pending FREEs aside).
  EXPECT_EQ(st.memnodes[2].pending_free_blocks, 0u);
  EXPECT_EQ(blocks - st.pending_free_blocks, FarObjects() * 2);
  EXPECT_EQ(st.far_copy_bytes, st.far_bytes * 2);
}

// Two dead memnodes under replicate:2: only objects with both copies there
// are lost, and reported; the rest read back.
TEST_F(MultiMemnodeTest, TwoFailuresUnderReplicateTwoReportTheLoss) {
  StartMemnodes(4);
  auto o = Options("replicate:2");
  rt_ = Make(o);
  ASSERT_TRUE(rt_);
  ASSERT_NO_FATAL_FAILURE(MakeObjects(*rt_, 300));
  Kill(0);
  Kill(1);
  size_t lost = 0;
  for (int i = 0; i < 300; ++i) {
    Status why;
    if (Holds(*rt_, i, &why)) continue;
    if (why.code() == StatusCode::kUnavailable) {
      ASSERT_TRUE(sharry::testing::Eventually([&] { return rt_->Stats().dead_memnodes == 2; }));
      if (Holds(*rt_, i, &why)) continue;
    }
    EXPECT_EQ(why.code(), StatusCode::kDataLoss) << i << ": " << why;
    lost++;
  }
  EXPECT_GT(lost, 0u);  // placement puts some pairs on {0, 1}
  EXPECT_EQ(rt_->Stats().lost_objects, lost);
  EXPECT_EQ(rt_->health().code(), StatusCode::kDataLoss);
}

}  // namespace
}  // namespace sharry::compute
