// End-to-end tests of the transport seam, run over BOTH backends: the same
// test body for tcp (label `tcp`, loopback) and verbs (label `rxe`, an RDMA
// device; in the SoftRoCE VM where the host has none).
#include "verbs/transport.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/test_util.h"

namespace sharry {
namespace {

using testing::Eventually;
using testing::ExpectedEcho;
using testing::Pattern;

constexpr size_t kRegion = 32u << 20;  // 32 MiB: room for the 8 MiB transfers

class TransportTest : public ::testing::TestWithParam<TransportKind> {
 protected:
  void SetUp() override {
    if (GetParam() == TransportKind::kVerbs && testing::RdmaAddr().empty())
      GTEST_SKIP() << "no RDMA device: SHARRY_RDMA_ADDR is unset (run through scripts/run-rxe.sh)";
    region_.assign(kRegion, 0);
    StartServer();
  }
  void StartServer(uint32_t lease_ms = 0, int max_clients = 256) {
    server_.reset();
    ServerOptions o;
    o.lease_ms = lease_ms;
    o.max_clients = max_clients;
    o.listen_addr = testing::ServerAddr(GetParam());
    o.region = region_.data();
    o.region_size = region_.size();
    o.num_pollers = 2;
    auto s = TransportServer::Start(GetParam(), o, &handler_);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }
  ClientOptions Options() const {
    ClientOptions o;
    o.server_addr = testing::ServerAddr(GetParam());
    o.port = server_->port();
    o.op_timeout_ms = 5000;
    return o;
  }
  std::unique_ptr<TransportClient> Connect() {
    auto c = TransportClient::Connect(GetParam(), Options());
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  std::vector<uint8_t> region_;
  testing::RecordingHandler handler_;
  std::unique_ptr<TransportServer> server_;
};

TEST_P(TransportTest, ConnectGivesRegionAndDistinctClientIds) {
  auto a = Connect();
  auto b = Connect();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->info().region_size, kRegion);
  EXPECT_NE(a->info().client_id, 0u);
  EXPECT_NE(a->info().client_id, b->info().client_id);
  EXPECT_TRUE(Eventually([&] { return server_->num_clients() == 2; }));
  EXPECT_EQ(handler_.connects.load(), 2);
  a.reset();
  EXPECT_TRUE(Eventually([&] { return server_->num_clients() == 1 && handler_.disconnects == 1; }));
}

TEST_P(TransportTest, WriteThenReadBackAllSizes) {
  auto c = Connect();
  ASSERT_TRUE(c);
  // A registered local buffer (zero copy) and plain unregistered memory
  // (staged): both must move the same bytes.
  std::vector<uint8_t> registered(9u << 20);
  ASSERT_TRUE(c->RegisterLocal(registered.data(), registered.size()).ok());
  uint64_t seed = 1;
  for (size_t size : {size_t{8}, size_t{4096}, size_t{1} << 20, size_t{8} << 20}) {
    for (bool use_registered : {false, true}) {
      SCOPED_TRACE("size " + std::to_string(size) + (use_registered ? " registered" : " staged"));
      const uint64_t off = (seed * 4096 + 24) % (kRegion - size);
      std::vector<uint8_t> src = Pattern(size, ++seed);
      uint8_t* out = registered.data();
      std::vector<uint8_t> plain(size);
      if (use_registered) std::memcpy(registered.data(), src.data(), size);
      const uint8_t* from = use_registered ? registered.data() : src.data();
      ASSERT_TRUE(c->Write(off, from, size).ok());
      // The server's region holds exactly the bytes.
      ASSERT_EQ(0, std::memcmp(region_.data() + off, src.data(), size));
      if (use_registered) std::memset(out, 0, size);
      uint8_t* dst = use_registered ? out : plain.data();
      Status s = c->Read(off, dst, size);
      ASSERT_TRUE(s.ok()) << s;
      ASSERT_EQ(0, std::memcmp(dst, src.data(), size));
    }
  }
}

TEST_P(TransportTest, OutOfRangeFailsClearlyAndConnectionSurvives) {
  auto c = Connect();
  ASSERT_TRUE(c);
  std::vector<uint8_t> buf(8192, 7);
  Status r = c->Read(kRegion - 4096, buf.data(), 8192);
  EXPECT_EQ(r.code(), StatusCode::kOutOfRange) << r;
  EXPECT_NE(r.message().find("past the end"), std::string::npos) << r;
  Status w = c->Write(kRegion - 1, buf.data(), 2);
  EXPECT_EQ(w.code(), StatusCode::kOutOfRange) << w;
  EXPECT_EQ(c->Read(~uint64_t{0} - 2, buf.data(), 16).code(), StatusCode::kOutOfRange);  // overflow
  EXPECT_TRUE(c->alive());
  // Nothing was written past the end, and the connection still works.
  ASSERT_TRUE(c->Write(kRegion - 8192, buf.data(), 8192).ok());
  std::vector<uint8_t> back(8192);
  ASSERT_TRUE(c->Read(kRegion - 8192, back.data(), 8192).ok());
  EXPECT_EQ(back, buf);
  // A fresh connection works too.
  auto d = Connect();
  ASSERT_TRUE(d);
  ASSERT_TRUE(d->Read(kRegion - 8192, back.data(), 8192).ok());
  EXPECT_EQ(back, buf);
}

TEST_P(TransportTest, BatchOf64WritesThenReads) {
  auto c = Connect();
  ASSERT_TRUE(c);
  constexpr int kOps = 64;
  std::vector<std::vector<uint8_t>> src;
  std::vector<RemoteOp> ops;
  for (int i = 0; i < kOps; ++i) {
    src.push_back(Pattern(64 + i * 8, 100 + i));
    ops.push_back({uint64_t(i) * 4096 + 8, src.back().data(), src.back().size()});
  }
  ASSERT_TRUE(c->WriteBatch(ops).ok());
  for (int i = 0; i < kOps; ++i)
    ASSERT_EQ(0, std::memcmp(region_.data() + ops[i].offset, src[i].data(), src[i].size())) << i;
  std::vector<std::vector<uint8_t>> dst(kOps);
  std::vector<RemoteOp> rops;
  for (int i = 0; i < kOps; ++i) {
    dst[i].resize(src[i].size());
    rops.push_back({ops[i].offset, dst[i].data(), dst[i].size()});
  }
  ASSERT_TRUE(c->ReadBatch(rops).ok());
  EXPECT_EQ(dst, src);
}

TEST_P(TransportTest, RequestResponseWithManyInFlight) {
  auto c = Connect();
  ASSERT_TRUE(c);
  std::vector<uint8_t> resp;
  auto one = Pattern(100, 5);
  ASSERT_TRUE(c->Call(one, &resp).ok());
  EXPECT_EQ(resp, ExpectedEcho(c->info().client_id, one));
  // 500 requests of varying sizes, pipelined up to the credits.
  std::vector<std::vector<uint8_t>> reqs;
  for (int i = 0; i < 500; ++i) reqs.push_back(Pattern(1 + (i * 37) % 4000, 1000 + i));
  std::vector<std::span<const uint8_t>> views(reqs.begin(), reqs.end());
  std::vector<std::vector<uint8_t>> resps;
  Status s = c->CallMany(views, &resps);
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_EQ(resps.size(), reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) ASSERT_EQ(resps[i], ExpectedEcho(c->info().client_id, reqs[i])) << i;
  EXPECT_EQ(handler_.requests.load(), 501u);
}

TEST_P(TransportTest, OversizedRequestIsRefusedBeforeSending) {
  auto c = Connect();
  ASSERT_TRUE(c);
  std::vector<uint8_t> big(c->info().max_message);  // header makes it too long
  std::vector<uint8_t> resp;
  Status s = c->Call(big, &resp);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  EXPECT_TRUE(c->alive());
  auto ok = Pattern(10, 1);
  ASSERT_TRUE(c->Call(ok, &resp).ok());
  EXPECT_EQ(resp, ExpectedEcho(c->info().client_id, ok));
}

TEST_P(TransportTest, ManyThreadsEachWithItsOwnClient) {
  constexpr int kThreads = 4;
  std::vector<std::thread> ts;
  std::atomic<int> good{0};
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      auto c = TransportClient::Connect(GetParam(), Options());
      if (!c.ok()) return;
      std::vector<uint8_t> resp;
      int ok = 0;
      for (int i = 0; i < 50; ++i) {
        auto req = Pattern(16 + i, t * 1000 + i);
        if ((*c)->Call(req, &resp).ok() && resp == ExpectedEcho((*c)->info().client_id, req)) ok++;
        auto data = Pattern(512, t * 7 + i);
        uint64_t off = (uint64_t(t) << 20) + uint64_t(i) * 512;
        std::vector<uint8_t> back(512);
        if ((*c)->Write(off, data.data(), 512).ok() && (*c)->Read(off, back.data(), 512).ok() && back == data) ok++;
      }
      if (ok == 100) good++;
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(good.load(), kThreads);
}

TEST_P(TransportTest, ServerGoneMakesClientDeadNotHung) {
  auto c = Connect();
  ASSERT_TRUE(c);
  std::vector<uint8_t> buf(4096);
  ASSERT_TRUE(c->Read(0, buf.data(), buf.size()).ok());
  EXPECT_TRUE(Eventually([&] { return server_->num_clients() == 1; }));
  server_.reset();
  // The first operation (or one shortly after) fails; none hangs past the op timeout.
  Status s;
  for (int i = 0; i < 5 && s.ok(); ++i) {
    std::vector<uint8_t> resp;
    s = c->Call(buf, &resp);
    if (s.ok()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(c->alive()) << s;
  EXPECT_EQ(c->Read(0, buf.data(), 8).code(), StatusCode::kDisconnected);
}

TEST_P(TransportTest, ConnectToNoServerFailsWithClearError) {
  ClientOptions o = Options();
  uint16_t port = server_->port();
  server_.reset();
  o.port = port;
  o.connect_attempts = 2;
  o.connect_timeout_ms = 1000;
  auto start = std::chrono::steady_clock::now();
  auto c = TransportClient::Connect(GetParam(), o);
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(c.status().code() == StatusCode::kUnavailable || c.status().code() == StatusCode::kTimeout)
      << c.status();
  EXPECT_NE(c.status().message().find(std::to_string(port)), std::string::npos) << c.status();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

// Several client PROCESSES at once against one server process: each child
// writes its own slice, reads it back and makes calls; the parent checks
// the region afterwards.
TEST_P(TransportTest, SeveralClientProcessesAtOnce) {
  constexpr int kChildren = 3;
  std::vector<pid_t> pids;
  for (int i = 0; i < kChildren; ++i) {
    pid_t pid = testing::SpawnSelf({"--child", std::string(TransportName(GetParam())),
                                    testing::ServerAddr(GetParam()), std::to_string(server_->port()),
                                    std::to_string(i)});
    ASSERT_GT(pid, 0);
    pids.push_back(pid);
  }
  testing::ExpectChildrenSucceed(pids);
  // Stopping the server joins its pollers: their writes into the region
  // happen-before the checks below (the children's own synchronisation is
  // invisible to ThreadSanitizer).
  const uint64_t requests = handler_.requests.load();
  server_.reset();
  for (int i = 0; i < kChildren; ++i) {
    auto want = Pattern(1 << 20, 77 + i);
    EXPECT_EQ(0, std::memcmp(region_.data() + (size_t(i) << 20), want.data(), want.size())) << "child " << i;
  }
  EXPECT_GE(requests, uint64_t{kChildren} * 100);
}

TEST_P(TransportTest, FullServerRefusesWithItsReason) {
  StartServer(0, /*max_clients=*/2);
  auto a = Connect();
  auto b = Connect();
  ASSERT_TRUE(a && b);
  ClientOptions o = Options();
  o.connect_attempts = 1;
  auto c = TransportClient::Connect(GetParam(), o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kUnavailable) << c.status();
  EXPECT_NE(c.status().message().find("memnode full: 2 of 2 clients"), std::string::npos) << c.status();
}

TEST_P(TransportTest, SessionMembersCloseBeforeTheRootIsReclaimed) {
  auto root = Connect();
  ASSERT_TRUE(root);
  const ClientId root_id = root->info().client_id;
  EXPECT_EQ(root->info().session, root_id);
  ClientOptions o = Options();
  o.session = root_id;
  o.session_token = root->info().session_token;
  auto m1 = TransportClient::Connect(GetParam(), o);
  auto m2 = TransportClient::Connect(GetParam(), o);
  ASSERT_TRUE(m1.ok() && m2.ok()) << m1.status() << m2.status();
  EXPECT_EQ((*m1)->info().session, root_id);
  EXPECT_TRUE(Eventually([&] { return server_->num_clients() == 3; }));
  root.reset();
  ASSERT_TRUE(Eventually([&] { return handler_.disconnects.load() == 3; }));
  EXPECT_EQ(handler_.Gone().back(), root_id) << "the root's OnDisconnect (reclamation) must come last";
  std::vector<uint8_t> b(64);
  EXPECT_FALSE((*m1)->Read(0, b.data(), b.size()).ok());
  o.connect_attempts = 1;
  auto late = TransportClient::Connect(GetParam(), o);
  ASSERT_FALSE(late.ok());
  EXPECT_NE(late.status().message().find("session " + std::to_string(root_id) + " is gone"), std::string::npos)
      << late.status();
}

TEST_P(TransportTest, QuietSessionLosesItsLeaseAndEveryConnection) {
  StartServer(/*lease_ms=*/1000);
  auto root = Connect();
  ASSERT_TRUE(root);
  EXPECT_EQ(root->info().lease_ms, 1000u);
  ClientOptions o = Options();
  o.session = root->info().client_id;
  o.session_token = root->info().session_token;
  auto member = TransportClient::Connect(GetParam(), o);
  ASSERT_TRUE(member.ok()) << member.status();
  // Requests on any connection of the session renew it.
  std::vector<uint8_t> req = {1, 2}, resp;
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE((*member)->Call(req, &resp).ok()) << i;
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  EXPECT_EQ(handler_.disconnects.load(), 0);
  // Then silence: both go, and their next operations fail.
  EXPECT_TRUE(Eventually([&] { return handler_.disconnects.load() == 2; }));
  EXPECT_TRUE(Eventually([&] { return !root->Call(req, &resp).ok(); }));
  std::vector<uint8_t> b(64);
  EXPECT_TRUE(Eventually([&] { return !(*member)->Read(0, b.data(), b.size()).ok(); }));
}

INSTANTIATE_TEST_SUITE_P(Backends, TransportTest,
                         ::testing::Values(TransportKind::kTcp, TransportKind::kVerbs),
                         [](const auto& info) { return info.param == TransportKind::kTcp ? "Tcp" : "Verbs"; });

// The child process of SeveralClientProcessesAtOnce. Exit code 0 = all good.
int ChildMain(const std::string& transport, const std::string& addr, int port, int index) {
  auto kind = ParseTransport(transport);
  if (!kind.ok()) return 2;
  ClientOptions o;
  o.server_addr = addr;
  o.port = static_cast<uint16_t>(port);
  auto c = TransportClient::Connect(*kind, o);
  if (!c.ok()) {
    fprintf(stderr, "child %d: %s\n", index, c.status().ToString().c_str());
    return 3;
  }
  auto data = Pattern(1 << 20, 77 + index);
  if (!(*c)->Write(uint64_t(index) << 20, data.data(), data.size()).ok()) return 4;
  std::vector<uint8_t> back(data.size());
  if (!(*c)->Read(uint64_t(index) << 20, back.data(), back.size()).ok() || back != data) return 5;
  std::vector<std::vector<uint8_t>> reqs;
  for (int i = 0; i < 100; ++i) reqs.push_back(Pattern(64, index * 1000 + i));
  std::vector<std::span<const uint8_t>> views(reqs.begin(), reqs.end());
  std::vector<std::vector<uint8_t>> resps;
  if (!(*c)->CallMany(views, &resps).ok()) return 6;
  for (int i = 0; i < 100; ++i)
    if (resps[i] != ExpectedEcho((*c)->info().client_id, reqs[i])) return 7;
  return 0;
}

}  // namespace
}  // namespace sharry

int main(int argc, char** argv) {
  // A child never runs the tests itself (that would spawn children forever).
  if (argc >= 2 && std::string(argv[1]) == "--child") {
    if (argc != 6) return 64;
    return sharry::ChildMain(argv[2], argv[3], std::atoi(argv[4]), std::atoi(argv[5]));
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
