// Many memnodes over a real transport (docs/redundancy.md): tcp on loopback,
// and verbs (label rxe: SoftRoCE in the VM). Memnodes run in this process;
// one "dies" by being destroyed mid-run (its connections drop, as with a
// SIGKILL), while two threads run a random read/write mix; every object's
// bytes are checked at the end and none may be lost.
//
// EtcdMembership (tcp only: the VM has no etcd) starts a real etcd
// (tests/etcd_process.h): memnodes register with a lease; the runtime finds
// them there, sees one leave the moment its lease expires (no access, no
// timeout), and puts new blocks and repairs on one that joins later.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "compute/runtime.h"
#include "discovery/memnode_registry.h"
#include "memnode/memnode.h"
#include "tests/etcd_process.h"
#include "tests/test_util.h"

namespace sharry::compute {
namespace {

struct Param {
  TransportKind transport;
  const char* redundancy;
};

std::string Name(const ::testing::TestParamInfo<Param>& p) {
  std::string r = p.param.redundancy;
  for (char& c : r)
    if (c == ':' || c == '+') c = '_';
  return std::string(p.param.transport == TransportKind::kTcp ? "Tcp" : "Verbs") + "_" + r;
}

class MemnodeSet {
 public:
  void Start(TransportKind t, int n) {
    for (int i = 0; i < n; ++i) {
      memnode::MemnodeOptions o;
      o.transport = t;
      o.server.listen_addr = sharry::testing::ServerAddr(t);
      o.server.port = 0;
      o.server.lease_ms = 0;
      o.uma_bytes = 32u << 20;
      o.sections = 1;
      auto m = memnode::Memnode::Start(o);
      ASSERT_TRUE(m.ok()) << m.status();
      nodes.push_back(std::move(*m));
    }
  }
  std::vector<MemnodeAddress> Addresses(TransportKind t) const {
    std::vector<MemnodeAddress> v;
    for (const auto& n : nodes) v.push_back({sharry::testing::ServerAddr(t), n->port()});
    return v;
  }
  std::vector<std::unique_ptr<memnode::Memnode>> nodes;
};

class RedundancyNetTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    if (GetParam().transport == TransportKind::kVerbs && sharry::testing::RdmaAddr().empty())
      GTEST_SKIP() << "no RDMA device: SHARRY_RDMA_ADDR is unset (run through scripts/run-rxe.sh)";
  }
};

TEST_P(RedundancyNetTest, OneMemnodeDiesMidRunNothingLost) {
  const TransportKind t = GetParam().transport;
  MemnodeSet set;
  ASSERT_NO_FATAL_FAILURE(set.Start(t, 3));
  RuntimeOptions o;
  o.transport = t;
  o.memnodes = set.Addresses(t);
  o.redundancy = *ParseRedundancy(GetParam().redundancy);
  o.local_budget_bytes = 512u << 10;  // a quarter of the data
  o.evict_batch = 32;
  o.free_batch = 32;
  o.op_timeout_ms = 1000;
  o.reconnect_attempts = 1;
  o.reconnect_timeout_ms = 200;
  auto rt = Runtime::Create(o);
  ASSERT_TRUE(rt.ok()) << rt.status();
  constexpr int kObjects = 512;
  constexpr uint32_t kSize = 4096;
  std::vector<RemoteObject> objs;
  std::vector<uint64_t> version(kObjects, 0);  // each object's contents: Pattern(kSize, i * 1000 + version)
  for (int i = 0; i < kObjects; ++i) {
    auto data = sharry::testing::Pattern(kSize, uint64_t(i) * 1000);
    auto obj = (*rt)->New(kSize, data.data());
    ASSERT_TRUE(obj.ok()) << obj.status();
    objs.push_back(std::move(*obj));
  }
  // Two threads, each on its own half (so versions need no lock).
  std::atomic<int> steps{0};
  std::atomic<bool> failed{false};
  std::string why[2];
  auto worker = [&](int half) {
    std::mt19937 rng(half + 1);
    for (int step = 0; step < 1500 && !failed; ++step) {
      const int i = half * (kObjects / 2) + static_cast<int>(rng() % (kObjects / 2));
      const bool write = rng() % 4 == 0;
      DerefScope s(**rt);
      auto p = objs[i].Deref(s, write);
      if (!p.ok()) {
        why[half] = "object " + std::to_string(i) + ": " + p.status().ToString();
        failed = true;
        return;
      }
      if (std::memcmp(*p, sharry::testing::Pattern(kSize, uint64_t(i) * 1000 + version[i]).data(), kSize) != 0) {
        why[half] = "object " + std::to_string(i) + ": wrong bytes";
        failed = true;
        return;
      }
      if (write) {
        version[i]++;
        sharry::testing::FillPattern(static_cast<uint8_t*>(*p), kSize, uint64_t(i) * 1000 + version[i]);
      }
      steps++;
    }
  };
  std::thread a(worker, 0), b(worker, 1);
  while (steps.load() < 800 && !failed) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  set.nodes[1].reset();  // dies mid-run
  a.join();
  b.join();
  ASSERT_FALSE(failed) << why[0] << " " << why[1];
  ASSERT_TRUE(sharry::testing::Eventually([&] { return (*rt)->Stats().memnodes[1].state == "dead"; }))
      << (*rt)->health();
  ASSERT_TRUE(sharry::testing::Eventually([&] { return (*rt)->Stats().repair_pending == 0; }));
  for (int i = 0; i < kObjects; ++i) {
    DerefScope s(**rt);
    auto p = objs[i].Deref(s, false);
    ASSERT_TRUE(p.ok()) << i << ": " << p.status();
    ASSERT_EQ(std::memcmp(*p, sharry::testing::Pattern(kSize, uint64_t(i) * 1000 + version[i]).data(), kSize), 0)
        << i;
  }
  const RuntimeStats st = (*rt)->Stats();
  EXPECT_EQ(st.lost_objects, 0u);
  EXPECT_GT(st.degraded_reads + st.repaired_objects, 0u);
  EXPECT_EQ(st.memnodes[1].state, "dead");
  // ec: holes were refilled in place (parity deltas over this transport),
  // concurrently with the other thread's swaps and the repair's degraded reads.
  if (o.redundancy.kind == Redundancy::Kind::kErasure) {
    EXPECT_GT(st.ec_refills, 0u);
  }
  objs.clear();
}

INSTANTIATE_TEST_SUITE_P(Net, RedundancyNetTest,
                         ::testing::Values(Param{TransportKind::kTcp, "replicate:2"},
                                           Param{TransportKind::kTcp, "ec:2+1"},
                                           Param{TransportKind::kVerbs, "replicate:2"},
                                           Param{TransportKind::kVerbs, "ec:2+1"}),
                         Name);

// ---------------------------------------------------------------- etcd

class EtcdMembershipTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string err;
    etcd_ = discovery::EtcdProcess::Start(&err);
    ASSERT_TRUE(etcd_) << err;
  }
  // A memnode, registered in etcd with a lease of ttl_s.
  void AddMemnode(int ttl_s = 1) {
    ASSERT_NO_FATAL_FAILURE(set_.Start(TransportKind::kTcp, 1));
    discovery::RegistrationOptions r;
    r.etcd = etcd_->options();
    r.prefix = "/test/memnodes/";
    r.ttl_s = ttl_s;
    r.info.addr = "127.0.0.1:" + std::to_string(set_.nodes.back()->port());
    r.info.transport = "tcp";
    r.info.uma_bytes = 32u << 20;
    r.info.started_ms = discovery::UnixMillisNow();
    auto reg = discovery::MemnodeRegistration::Start(r);
    ASSERT_TRUE(reg.ok()) << reg.status();
    regs_.push_back(std::move(*reg));
  }
  std::unique_ptr<discovery::EtcdProcess> etcd_;
  MemnodeSet set_;
  std::vector<std::unique_ptr<discovery::MemnodeRegistration>> regs_;
};

TEST_F(EtcdMembershipTest, LeaseExpiryIsDeathAndANewMemnodeJoins) {
  for (int i = 0; i < 3; ++i) ASSERT_NO_FATAL_FAILURE(AddMemnode());
  RuntimeOptions o;
  o.transport = TransportKind::kTcp;
  o.etcd = etcd_->endpoint();
  o.etcd_prefix = "/test/memnodes/";
  o.redundancy = *ParseRedundancy("replicate:2");
  o.local_budget_bytes = 256u << 10;
  o.evict_batch = 16;
  o.reconnect_attempts = 1;
  o.reconnect_timeout_ms = 200;
  o.op_timeout_ms = 60000;  // a frozen memnode must be found dead by etcd, not by a timeout
  auto rt = Runtime::Create(o);
  ASSERT_TRUE(rt.ok()) << rt.status();
  ASSERT_EQ((*rt)->memnode_count(), 3u);
  std::vector<RemoteObject> objs;
  for (int i = 0; i < 300; ++i) {
    auto data = sharry::testing::Pattern(2048, i);
    auto obj = (*rt)->New(2048, data.data());
    ASSERT_TRUE(obj.ok()) << obj.status();
    objs.push_back(std::move(*obj));
  }
  // Memnode 2 "freezes": its keepalives stop; its lease expires in ~1 s and
  // the runtime declares it dead without touching it.
  // (The runtime numbers memnodes in etcd's key order.)
  auto state_of = [&](size_t node) {
    const std::string name = "127.0.0.1:" + std::to_string(set_.nodes[node]->port());
    for (const auto& m : (*rt)->Stats().memnodes)
      if (m.name == name) return m;
    return RuntimeStats::Memnode{};
  };
  const auto t0 = std::chrono::steady_clock::now();
  regs_[2]->PauseKeepAliveForTest();
  ASSERT_TRUE(
      sharry::testing::Eventually([&] { return state_of(2).state == "dead"; }, std::chrono::seconds(10)));
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::printf("dead %.0f ms after the keepalives stopped (lease 1 s)\n", ms);
  EXPECT_EQ((*rt)->Stats().dead_memnodes, 1u);
  // A new memnode joins: the repairs (and new blocks) go there.
  ASSERT_NO_FATAL_FAILURE(AddMemnode(5));
  ASSERT_TRUE(sharry::testing::Eventually([&] { return (*rt)->memnode_count() == 4; }));
  ASSERT_TRUE(sharry::testing::Eventually([&] { return (*rt)->Stats().repair_pending == 0; }));
  for (int i = 0; i < 300; ++i) {
    DerefScope s(**rt);
    auto p = objs[i].Deref(s, false);
    ASSERT_TRUE(p.ok()) << i << ": " << p.status();
    ASSERT_EQ(std::memcmp(*p, sharry::testing::Pattern(2048, i).data(), 2048), 0) << i;
  }
  const RuntimeStats st = (*rt)->Stats();
  EXPECT_EQ(st.lost_objects, 0u);
  EXPECT_GT(st.repaired_objects, 0u);
  EXPECT_EQ(st.memnodes[3].name, "127.0.0.1:" + std::to_string(set_.nodes[3]->port()));  // the one that joined
  EXPECT_GT(st.memnodes[3].copies, 0u);
  EXPECT_EQ(st.memnodes[3].state, "healthy");
  objs.clear();
}

TEST_F(EtcdMembershipTest, NoMemnodeRegisteredIsAClearError) {
  RuntimeOptions o;
  o.transport = TransportKind::kTcp;
  o.etcd = etcd_->endpoint();
  o.etcd_prefix = "/nobody/";
  auto rt = Runtime::Create(o);
  ASSERT_FALSE(rt.ok());
  EXPECT_NE(rt.status().message().find("no memnode"), std::string::npos) << rt.status();
  o.etcd = "127.0.0.1:1";  // no etcd there
  rt = Runtime::Create(o);
  ASSERT_FALSE(rt.ok());
  EXPECT_NE(rt.status().message().find("127.0.0.1:1"), std::string::npos) << rt.status();
}

}  // namespace
}  // namespace sharry::compute
