// The compute runtime's error paths (docs/compute.md, "When the memnode
// fails") as fast unit tests: the real Memnode and MemnodeService in this
// process over the loopback transport, with faults injected at the seam
// (verbs/fault_injection.h). No sockets and no timing: each test takes the
// same path on every run. Background threads that would add operations at
// their own pace are off (no prefetch thread, no evictor, no lease), so the
// plan's counts are exactly the test's own operations.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "compute/runtime.h"
#include "memnode/memnode.h"
#include "tests/compute_test_util.h"
#include "tests/test_util.h"
#include "verbs/fault_injection.h"

namespace sharry::compute {
namespace {

constexpr uint32_t kSize = 512;

class ComputeFaultTest : public ::testing::Test {
 protected:
  void SetUp() override { StartMemnode(16u << 20); }
  void StartMemnode(uint64_t uma, uint16_t port = 0, uint64_t client_quota = 0) {
    node_.reset();
    memnode::MemnodeOptions o;
    o.transport = TransportKind::kLoopback;
    o.server.port = port;
    o.uma_bytes = uma;
    o.client_quota_bytes = client_quota;
    o.sections = 1;
    o.server.lease_ms = 0;  // no RENEWs: the requests counted are the test's
    o.free_batch = 1;       // FREEs are applied at once: live blocks are exact
    auto m = memnode::Memnode::Start(o);
    ASSERT_TRUE(m.ok()) << m.status();
    node_ = std::move(*m);
    port_ = node_->port();
  }
  RuntimeOptions Options(uint64_t budget) const {
    RuntimeOptions o;
    o.transport = TransportKind::kLoopback;
    o.memnode_addr = "loopback";
    o.memnode_port = port_;
    o.local_budget_bytes = budget;
    o.evict_batch = 8;
    o.free_batch = 8;
    o.prefetch_thread = false;
    o.evict_thread = false;
    o.reconnect_attempts = 2;
    o.reconnect_timeout_ms = 100;
    o.reconnect_pause_ms = 1;
    return o;
  }
  std::unique_ptr<Runtime> Make(const RuntimeOptions& o) {
    auto rt = Runtime::Create(o);
    EXPECT_TRUE(rt.ok()) << rt.status();
    return rt.ok() ? std::move(*rt) : nullptr;
  }
  std::shared_ptr<FaultPlan> Arm() {
    auto p = std::make_shared<FaultPlan>();
    EXPECT_TRUE(SetLoopbackFaults(port_, p).ok());
    return p;
  }
  // Objects of kSize bytes filled with pattern i.
  std::vector<RemoteObject> MakeObjects(Runtime& rt, int n, int first = 0) {
    std::vector<RemoteObject> v;
    for (int i = first; i < first + n; ++i) {
      auto data = sharry::testing::Pattern(kSize, i);
      auto o = rt.New(kSize, data.data());
      EXPECT_TRUE(o.ok()) << o.status();
      if (o.ok()) v.push_back(std::move(*o));
    }
    return v;
  }
  static bool Holds(Runtime& rt, const RemoteObject& o, int i) {
    DerefScope s(rt);
    auto p = o.Deref(s, false);
    if (!p.ok()) return false;
    return std::memcmp(*p, sharry::testing::Pattern(kSize, i).data(), kSize) == 0;
  }
  // Blocks the memnode says client `id` holds.
  uint64_t BlocksHeld(ClientId id) {
    auto s = node_->service().CollectStats(1000);
    for (auto& c : s.clients)
      if (c.client_id == id) return c.blocks_held;
    return 0;
  }
  uint64_t LiveBlocks() { return node_->service().CollectStats(0).head.live_blocks; }
  // Far copies the runtime believes it has (all objects have one size).
  static uint64_t FarObjects(const std::vector<RemoteObject>& objs) {
    uint64_t n = 0;
    for (const auto& o : objs) n += o.has_far_copy();
    return n;
  }
  // New objects of `size` bytes (object i filled with byte i) until New
  // fails (at most 200); returns why.
  static Status NewUntilRefused(Runtime& rt, uint32_t size, std::vector<RemoteObject>* objs) {
    for (int i = 0; i < 200; ++i) {
      std::vector<uint8_t> v(size, static_cast<uint8_t>(i));
      auto o = rt.New(size, v.data());
      if (!o.ok()) return o.status();
      objs->push_back(std::move(*o));
    }
    return Status::Ok();
  }
  // Every object of NewUntilRefused still reads back.
  static void ExpectReadable(Runtime& rt, const std::vector<RemoteObject>& objs, uint32_t size) {
    for (size_t i = 0; i < objs.size(); ++i) {
      DerefScope s(rt);
      auto p = objs[i].Deref(s, false);
      ASSERT_TRUE(p.ok()) << i << ": " << p.status();
      EXPECT_EQ(static_cast<uint8_t*>(*p)[size - 1], static_cast<uint8_t>(i));
    }
  }
  static bool WaitHealthy(Runtime& rt) {
    return sharry::testing::Eventually([&] { return rt.health().ok(); });
  }
  // rt_: a runtime with a 1 MiB budget; objs_: `objects` objects of kSize
  // (object i filled with pattern i), the first `far` of them swapped out.
  // Call through ASSERT_NO_FATAL_FAILURE.
  void StartRuntime(int objects, int far) {
    rt_ = Make(Options(1 << 20));
    ASSERT_TRUE(rt_);
    objs_ = MakeObjects(*rt_, objects);
    ASSERT_EQ(objs_.size(), static_cast<size_t>(objects));
    for (int i = 0; i < far; ++i) ASSERT_TRUE(rt_->SwapOut(objs_[i]).ok()) << i;
  }

  // Destroyed in reverse: the objects, then the runtime, then the memnode.
  std::unique_ptr<memnode::Memnode> node_;
  uint16_t port_ = 0;
  std::unique_ptr<Runtime> rt_;
  std::vector<RemoteObject> objs_;
};

// Row "only a data connection dropped", on the swap-in path: the READ's
// connection dies; the Deref fails kUnavailable with the object unchanged;
// while the reconnector is in flight (its STATS probe held) health() says
// so and further misses fail at once without an operation; then the probe
// finds the control connection alive, the data connections are replaced,
// nothing is lost and the swap-in succeeds.
TEST_F(ComputeFaultTest, SwapInReadDisconnectRecoversThroughTheControlConnection) {
  ASSERT_NO_FATAL_FAILURE(StartRuntime(4, 4));
  const ClientId control = rt_->control_client_id();
  auto plan = Arm();
  plan->DisconnectAt(FaultOp::kRead, 1).HoldNth(FaultOp::kRequest, 1);
  {
    DerefScope s(*rt_);
    auto p = objs_[0].Deref(s, false);
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(p.status().code(), StatusCode::kUnavailable) << p.status();
  }
  EXPECT_FALSE(objs_[0].is_local());
  EXPECT_TRUE(objs_[0].has_far_copy());
  EXPECT_FALSE(objs_[0].lost());
  ASSERT_TRUE(plan->WaitHeld());  // the reconnector's STATS probe
  Status h = rt_->health();
  EXPECT_EQ(h.code(), StatusCode::kUnavailable);
  EXPECT_NE(h.message().find("reconnecting"), std::string::npos) << h;
  {
    DerefScope s(*rt_);
    EXPECT_EQ(objs_[1].Deref(s, false).status().code(), StatusCode::kUnavailable);
  }
  EXPECT_EQ(plan->count(FaultOp::kRead), 1u);  // failed at once: no READ went out
  plan->Release();
  ASSERT_TRUE(WaitHealthy(*rt_)) << rt_->health();
  auto st = rt_->Stats();
  EXPECT_EQ(st.connection_failures, 1u);
  EXPECT_EQ(st.reconnects, 1u);
  EXPECT_EQ(st.failed_far_accesses, 2u);
  EXPECT_EQ(st.lost_objects, 0u);
  EXPECT_EQ(rt_->control_client_id(), control);  // the same owner of the far blocks
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(Holds(*rt_, objs_[i], i)) << i;
}

// A READ that fails while its connection stays up (an injected error): the
// Deref returns that error, the object is unchanged, health stays OK and the
// next Deref succeeds.
TEST_F(ComputeFaultTest, SwapInReadErrorLeavesTheObjectFar) {
  ASSERT_NO_FATAL_FAILURE(StartRuntime(1, 1));
  auto plan = Arm();
  plan->FailNth(FaultOp::kRead, 1, StatusCode::kRemoteAccess);
  {
    DerefScope s(*rt_);
    EXPECT_EQ(objs_[0].Deref(s, false).status().code(), StatusCode::kRemoteAccess);
  }
  EXPECT_TRUE(objs_[0].has_far_copy());
  EXPECT_FALSE(objs_[0].is_local());
  EXPECT_TRUE(rt_->health().ok()) << rt_->health();
  EXPECT_EQ(rt_->Stats().failed_far_accesses, 1u);
  EXPECT_EQ(rt_->Stats().connection_failures, 0u);
  EXPECT_TRUE(Holds(*rt_, objs_[0], 0));
}

// Swap-out fails mid-batch (the 3rd WRITE of an eviction round): every
// victim stays local and readable, the error is in eviction_status(), the
// blocks ALLOCated for the round are queued, not leaked: after FlushFrees
// the memnode's live blocks are exactly the objects with a far copy. The
// next round succeeds.
TEST_F(ComputeFaultTest, SwapOutWriteFailsMidBatch) {
  // A round frees budget/16 (4 KiB = 8 objects, the evict_batch) below the
  // budget: the first round, at object 129, writes 8.
  auto opts = Options(128 * kSize);
  auto rt = Make(opts);
  ASSERT_TRUE(rt);
  auto plan = Arm();
  plan->FailNth(FaultOp::kWrite, 3, StatusCode::kUnavailable);
  std::vector<RemoteObject> objs;
  int failed_at = -1;
  for (int i = 0; i < 200; ++i) {
    auto more = MakeObjects(*rt, 1, i);
    ASSERT_EQ(more.size(), 1u);
    objs.push_back(std::move(more[0]));
    if (failed_at < 0 && plan->fired() == 1) {
      failed_at = i;
      auto st = rt->Stats();
      EXPECT_EQ(st.swap_outs, 0u);
      EXPECT_EQ(st.local_objects, objs.size());  // the whole round stayed local
      EXPECT_EQ(rt->eviction_status().code(), StatusCode::kUnavailable) << rt->eviction_status();
      EXPECT_EQ(plan->count(FaultOp::kWrite), 3u);
      EXPECT_EQ(st.alloc_rpcs, 1u);
      EXPECT_EQ(st.pending_free_blocks, 8u);  // the round's blocks, given back
    }
  }
  ASSERT_EQ(failed_at, 128) << "the first eviction round did not write 3 objects";
  auto st = rt->Stats();
  EXPECT_GT(st.swap_outs, 0u);  // later rounds went through
  EXPECT_TRUE(rt->health().ok()) << rt->health();
  EXPECT_LE(st.peak_local_bytes, rt->local_limit_bytes() + kSize);
  ASSERT_TRUE(rt->FlushFrees().ok());
  EXPECT_EQ(BlocksHeld(rt->control_client_id()), FarObjects(objs));
  EXPECT_EQ(LiveBlocks(), FarObjects(objs));
  for (size_t i = 0; i < objs.size(); ++i) EXPECT_TRUE(Holds(*rt, objs[i], static_cast<int>(i))) << i;
}

// Row "memnode lost while evicting" / "memnode killed": the memnode drops our
// whole session (control connection and data connections) at the WRITE of a
// swap-out. The swap-out fails kUnavailable and its object stays local; the
// reconnector finds the control connection dead: far-only objects are lost
// (kDataLoss, lost()), health() reports the loss for good; it reconnects
// (the server is still there) as a new client, which holds no block, and
// the survivors use far memory again.
TEST_F(ComputeFaultTest, MemnodeLostDuringEviction) {
  ASSERT_NO_FATAL_FAILURE(StartRuntime(6, 3));
  const ClientId old_id = rt_->control_client_id();
  EXPECT_EQ(BlocksHeld(old_id), 3u);
  auto plan = Arm();
  plan->DisconnectAt(FaultOp::kWrite, 1, FaultScope::kSession);
  Status s = rt_->SwapOut(objs_[3]);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
  EXPECT_TRUE(objs_[3].is_local());
  ASSERT_TRUE(sharry::testing::Eventually([&] { return rt_->Stats().reconnects == 1; })) << rt_->health();
  EXPECT_NE(rt_->control_client_id(), old_id);
  EXPECT_EQ(BlocksHeld(old_id), 0u);  // reclaimed with the session
  EXPECT_EQ(LiveBlocks(), 0u);
  EXPECT_EQ(rt_->Stats().connection_failures, 1u);
  sharry::testing::ExpectFarMemoryLost(*rt_, objs_, 3, kSize);
  for (int i = 3; i < 6; ++i) EXPECT_TRUE(Holds(*rt_, objs_[i], i)) << i;
  // The survivors swap out and back again over the new connections.
  ASSERT_TRUE(rt_->SwapOut(objs_[4]).ok());
  EXPECT_EQ(BlocksHeld(rt_->control_client_id()), 1u);
  EXPECT_TRUE(Holds(*rt_, objs_[4], 4));
}

// Row "memnode stopped (SIGSTOP), partitioned", without the wait: the ALLOC's
// reply is dropped, so the control connection times out (kTimeout inside
// kUnavailable) at once. The memnode did allocate; those blocks go with the
// session. Objects stay local.
TEST_F(ComputeFaultTest, AllocReplyLostTimesOut) {
  ASSERT_NO_FATAL_FAILURE(StartRuntime(2, 1));
  auto plan = Arm();
  plan->DropReplyNth(FaultOp::kRequest, 1);
  Status s = rt_->SwapOut(objs_[1]);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find("Timeout"), std::string::npos) << s;
  EXPECT_TRUE(objs_[1].is_local());
  ASSERT_TRUE(sharry::testing::Eventually([&] { return rt_->Stats().reconnects == 1; })) << rt_->health();
  EXPECT_TRUE(objs_[0].lost());
  EXPECT_EQ(LiveBlocks(), 0u);
  EXPECT_TRUE(Holds(*rt_, objs_[1], 1));
}

// Row "far memory exhausted or refused (ALLOC fails)", a tiny UMA: objects
// stay local; local usage is bound by budget + budget/8 (+ one object);
// New past it fails kResourceExhausted; the values stay readable.
TEST_F(ComputeFaultTest, AllocRefusedTinyUmaBoundsLocalUsage) {
  StartMemnode(1 << 20);
  auto opts = Options(64 << 10);
  auto rt = Make(opts);
  ASSERT_TRUE(rt);
  const uint32_t size = 16 << 10;  // 64 of them fill the UMA
  std::vector<RemoteObject> objs;
  const Status refused = NewUntilRefused(*rt, size, &objs);
  EXPECT_EQ(refused.code(), StatusCode::kResourceExhausted) << refused;
  auto st = rt->Stats();
  EXPECT_EQ(st.far_exhausted, 1u);
  EXPECT_GE(st.refused_local, 1u);
  EXPECT_LE(st.peak_local_bytes, rt->local_limit_bytes() + size);
  EXPECT_EQ(rt->local_limit_bytes(), opts.local_budget_bytes + opts.local_budget_bytes / 8);
  EXPECT_TRUE(rt->health().ok()) << rt->health();  // exhaustion is not a failure of the memnode
  EXPECT_GT(FarObjects(objs), 0u);
  ExpectReadable(*rt, objs, size);
}

// The same row for a quota (issue #11): the memnode refuses ALLOCs past our
// client's quota (kQuotaExceeded) with plenty of far memory free. Handled as
// far memory exhausted: objects stay local within budget + budget/8, New()
// past it fails ResourceExhausted; the error, the eviction status and the
// counters say "quota exceeded" and carry the memnode's note.
TEST_F(ComputeFaultTest, QuotaExceededKeepsObjectsLocalAndSaysSo) {
  StartMemnode(16u << 20, 0, 256 << 10);
  auto opts = Options(64 << 10);
  auto rt = Make(opts);
  ASSERT_TRUE(rt);
  const uint32_t size = 16 << 10;  // 16 of them fill the quota
  std::vector<RemoteObject> objs;
  const Status refused = NewUntilRefused(*rt, size, &objs);
  EXPECT_EQ(refused.code(), StatusCode::kResourceExhausted) << refused;
  EXPECT_NE(refused.message().find("far-memory quota exceeded"), std::string::npos) << refused;
  EXPECT_NE(refused.message().find("client quota 256.0 KiB"), std::string::npos) << refused;
  const Status ev = rt->eviction_status();
  EXPECT_TRUE(memnode::IsQuotaExceeded(ev)) << ev;
  EXPECT_NE(ev.message().find("client quota 256.0 KiB: holds 256.0 KiB"), std::string::npos) << ev;
  auto st = rt->Stats();
  EXPECT_EQ(st.far_exhausted, 1u);
  EXPECT_EQ(st.quota_exceeded, 1u);
  EXPECT_GE(st.refused_local, 1u);
  EXPECT_LE(st.peak_local_bytes, rt->local_limit_bytes() + size);
  EXPECT_TRUE(rt->health().ok()) << rt->health();  // a quota is not a failure of the memnode
  EXPECT_EQ(FarObjects(objs), 16u);
  EXPECT_EQ(node_->service().QuotaHeldBy(rt->control_client_id()), 256u << 10);
  EXPECT_LT(node_->service().CollectStats().head.used_bytes, 1u << 20);  // far memory was not the limit
  ExpectReadable(*rt, objs, size);
}

// The same row with the refusal injected at the request level: one ALLOC
// fails kOutOfMemory. SwapOut reports it (kOutOfMemory, the object stays
// local, far_exhausted counts it once); the next ALLOC succeeds.
TEST_F(ComputeFaultTest, AllocRefusedOnce) {
  ASSERT_NO_FATAL_FAILURE(StartRuntime(2, 0));
  auto plan = Arm();
  plan->FailNth(FaultOp::kRequest, 1, StatusCode::kOutOfMemory);
  Status s = rt_->SwapOut(objs_[0]);
  EXPECT_EQ(s.code(), StatusCode::kOutOfMemory) << s;
  EXPECT_TRUE(objs_[0].is_local());
  EXPECT_EQ(rt_->Stats().far_exhausted, 1u);
  EXPECT_TRUE(rt_->health().ok()) << rt_->health();
  ASSERT_TRUE(rt_->SwapOut(objs_[0]).ok());
  ASSERT_TRUE(rt_->SwapOut(objs_[1]).ok());
  EXPECT_EQ(LiveBlocks(), 2u);
  EXPECT_TRUE(Holds(*rt_, objs_[0], 0));
  EXPECT_TRUE(Holds(*rt_, objs_[1], 1));
}

// A FREE the memnode does not answer (the request fails, the connection
// stays up). Today the runtime logs it and drops the queued blocks: they stay
// allocated at the memnode (a leak bounded by the session: they are
// reclaimed when the runtime's control connection closes). Far data of
// other objects is intact and health stays OK.
TEST_F(ComputeFaultTest, FreeRefusedLeaksOnlyUntilTheSessionEnds) {
  ASSERT_NO_FATAL_FAILURE(StartRuntime(4, 4));
  EXPECT_TRUE(Holds(*rt_, objs_[0], 0));  // swap-in: its far block is queued for FREE
  EXPECT_TRUE(Holds(*rt_, objs_[1], 1));
  EXPECT_EQ(rt_->Stats().pending_free_blocks, 2u);
  auto plan = Arm();
  plan->FailNth(FaultOp::kRequest, 1, StatusCode::kUnavailable);
  EXPECT_TRUE(rt_->FlushFrees().ok());
  EXPECT_EQ(plan->fired(), 1u);
  EXPECT_EQ(rt_->Stats().pending_free_blocks, 0u);
  EXPECT_EQ(FarObjects(objs_), 2u);
  EXPECT_EQ(LiveBlocks(), 4u);  // 2 far objects + the 2 blocks whose FREE failed
  EXPECT_TRUE(rt_->health().ok()) << rt_->health();
  EXPECT_TRUE(Holds(*rt_, objs_[2], 2));
  EXPECT_TRUE(Holds(*rt_, objs_[3], 3));
  objs_.clear();
  rt_.reset();
  EXPECT_EQ(LiveBlocks(), 0u);  // reclaimed with the control connection
}

// A FREE whose control connection dies: FlushFrees fails kUnavailable, the
// control connection is lost, so far-only objects are lost and every block
// is reclaimed; the queued FREEs are dropped (nothing is freed twice).
TEST_F(ComputeFaultTest, FreeOnADeadControlConnection) {
  ASSERT_NO_FATAL_FAILURE(StartRuntime(3, 3));
  EXPECT_TRUE(Holds(*rt_, objs_[0], 0));
  auto plan = Arm();
  plan->DisconnectAt(FaultOp::kRequest, 1);
  EXPECT_EQ(rt_->FlushFrees().code(), StatusCode::kUnavailable);
  ASSERT_TRUE(sharry::testing::Eventually([&] { return rt_->Stats().reconnects == 1; })) << rt_->health();
  auto st = rt_->Stats();
  EXPECT_EQ(st.lost_objects, 2u);
  EXPECT_EQ(st.pending_free_blocks, 0u);
  EXPECT_EQ(LiveBlocks(), 0u);
  EXPECT_TRUE(Holds(*rt_, objs_[0], 0));
  EXPECT_TRUE(objs_[1].lost());
}

// Row "only a data connection dropped", on the swap-out path: the WRITE's
// connection dies; the object stays local; the control connection answers,
// so the data connections are replaced and nothing is lost; the block the
// round ALLOCated is reused, not leaked.
TEST_F(ComputeFaultTest, DataConnectionDiesControlConnectionLives) {
  ASSERT_NO_FATAL_FAILURE(StartRuntime(3, 1));
  auto plan = Arm();
  plan->DisconnectAt(FaultOp::kWrite, 1);
  EXPECT_EQ(rt_->SwapOut(objs_[1]).code(), StatusCode::kUnavailable);
  EXPECT_TRUE(objs_[1].is_local());
  ASSERT_TRUE(WaitHealthy(*rt_)) << rt_->health();
  auto st = rt_->Stats();
  EXPECT_EQ(st.reconnects, 1u);
  EXPECT_EQ(st.lost_objects, 0u);
  EXPECT_FALSE(objs_[0].lost());
  ASSERT_TRUE(rt_->SwapOut(objs_[1]).ok());
  ASSERT_TRUE(rt_->SwapOut(objs_[2]).ok());
  ASSERT_TRUE(rt_->FlushFrees().ok());
  EXPECT_EQ(LiveBlocks(), 3u);
  EXPECT_EQ(rt_->Stats().recycled_blocks, 1u);  // the failed round's block
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(Holds(*rt_, objs_[i], i)) << i;
}

// Row "memnode restarted on the same address": the memnode goes away and a
// new one takes its port. The next miss fails kUnavailable; the reconnector
// connects to the new memnode: local objects survive and swap again,
// far-only ones are lost, health() reports the loss.
TEST_F(ComputeFaultTest, MemnodeRestartedOnTheSamePort) {
  ASSERT_NO_FATAL_FAILURE(StartRuntime(4, 2));
  const uint16_t port = port_;
  StartMemnode(16u << 20, port);
  ASSERT_EQ(node_->port(), port);
  {
    DerefScope s(*rt_);
    EXPECT_EQ(objs_[0].Deref(s, false).status().code(), StatusCode::kUnavailable);
  }
  ASSERT_TRUE(sharry::testing::Eventually([&] { return rt_->Stats().reconnects == 1; })) << rt_->health();
  EXPECT_EQ(rt_->health().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(objs_[0].lost());
  EXPECT_TRUE(objs_[1].lost());
  EXPECT_TRUE(Holds(*rt_, objs_[2], 2));
  ASSERT_TRUE(rt_->SwapOut(objs_[3]).ok());
  EXPECT_EQ(LiveBlocks(), 1u);
  EXPECT_TRUE(Holds(*rt_, objs_[3], 3));
}

// Rows "memnode gone for good" and "~Runtime while unhealthy": nobody takes
// the port; after the last reconnect attempt health() says "gave up
// reconnecting", accesses keep failing at once, local hits go on, and the
// runtime is destroyed without hanging.
TEST_F(ComputeFaultTest, MemnodeGoneForGood) {
  ASSERT_NO_FATAL_FAILURE(StartRuntime(2, 1));
  node_.reset();
  EXPECT_EQ(rt_->SwapOut(objs_[1]).code(), StatusCode::kUnavailable);
  ASSERT_TRUE(sharry::testing::Eventually(
      [&] { return rt_->health().message().find("gave up reconnecting") != std::string::npos; }))
      << rt_->health();
  EXPECT_EQ(rt_->Stats().reconnects, 0u);
  EXPECT_TRUE(objs_[0].lost());
  EXPECT_TRUE(Holds(*rt_, objs_[1], 1));  // local hit
  EXPECT_EQ(rt_->SwapOut(objs_[1]).code(), StatusCode::kUnavailable);
  EXPECT_EQ(rt_->FlushFrees().code(), StatusCode::kUnavailable);
  EXPECT_EQ(rt_->MemnodeStats().status().code(), StatusCode::kUnavailable);
  objs_.clear();
  rt_.reset();
}

// The same loss in Multi-Copy: an object that is local AND has a far copy
// survives (it drops its far copy and is written to a new block next time);
// a far-only one is lost.
TEST_F(ComputeFaultTest, MultiCopyLocalObjectsSurviveALostSession) {
  auto opts = Options(1 << 20);
  opts.mode = CopyMode::kMultiCopy;
  auto rt = Make(opts);
  ASSERT_TRUE(rt);
  auto objs = MakeObjects(*rt, 3);
  for (auto& o : objs) ASSERT_TRUE(rt->SwapOut(o).ok());
  EXPECT_TRUE(Holds(*rt, objs[0], 0));  // local again, its far copy kept
  EXPECT_TRUE(objs[0].has_far_copy());
  auto plan = Arm();
  plan->DisconnectAt(FaultOp::kRead, 1, FaultScope::kSession);
  {
    DerefScope s(*rt);
    EXPECT_EQ(objs[1].Deref(s, false).status().code(), StatusCode::kUnavailable);
  }
  ASSERT_TRUE(sharry::testing::Eventually([&] { return rt->Stats().reconnects == 1; })) << rt->health();
  EXPECT_FALSE(objs[0].has_far_copy());
  EXPECT_FALSE(objs[0].lost());
  EXPECT_TRUE(objs[1].lost());
  EXPECT_TRUE(objs[2].lost());
  EXPECT_EQ(rt->Stats().lost_objects, 2u);
  EXPECT_EQ(LiveBlocks(), 0u);
  ASSERT_TRUE(rt->SwapOut(objs[0]).ok());  // dirty now: written to a new block
  EXPECT_EQ(LiveBlocks(), 1u);
  EXPECT_TRUE(Holds(*rt, objs[0], 0));
}

// Errors table, "memnode unreachable at start": no server on the port.
TEST_F(ComputeFaultTest, MemnodeUnreachableAtStart) {
  auto opts = Options(1 << 20);
  node_.reset();
  auto rt = Runtime::Create(opts);
  ASSERT_FALSE(rt.ok());
  EXPECT_EQ(rt.status().code(), StatusCode::kUnavailable) << rt.status();
  EXPECT_NE(rt.status().message().find("memnode loopback:" + std::to_string(port_) + " is unreachable"), std::string::npos) << rt.status();
}

}  // namespace
}  // namespace sharry::compute
