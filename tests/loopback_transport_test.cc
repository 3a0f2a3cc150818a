// The loopback transport (TransportKind::kLoopback) and its fault injection
// (verbs/fault_injection.h): in-process, no sockets, every path the same on
// every run.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "tests/test_util.h"
#include "verbs/fault_injection.h"
#include "verbs/transport.h"

namespace sharry {
namespace {

using sharry::testing::ExpectedEcho;
using sharry::testing::RecordingHandler;

class LoopbackTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(ServerOptions{}); }
  void Start(ServerOptions o) {
    server_.reset();
    region_.assign(64 << 10, 0);
    o.region = region_.data();
    o.region_size = region_.size();
    auto s = TransportServer::Start(TransportKind::kLoopback, o, &handler_);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }
  // A root connection (session 0), or a member of `session`, which shows
  // the token its root's welcome gave.
  std::unique_ptr<TransportClient> Connect(ClientId session = 0) {
    ClientOptions o;
    o.port = server_->port();
    o.session = session;
    if (session != 0) o.session_token = tokens_[session];
    auto c = TransportClient::Connect(TransportKind::kLoopback, o);
    EXPECT_TRUE(c.ok()) << c.status();
    if (!c.ok()) return nullptr;
    if (session == 0) tokens_[(*c)->info().client_id] = (*c)->info().session_token;
    return std::move(*c);
  }
  std::map<ClientId, std::array<uint8_t, 32>> tokens_;
  std::shared_ptr<FaultPlan> Arm() {
    auto p = std::make_shared<FaultPlan>();
    EXPECT_TRUE(SetLoopbackFaults(server_->port(), p).ok());
    return p;
  }
  static std::vector<uint8_t> Req(uint8_t b) { return {b, static_cast<uint8_t>(b + 1), static_cast<uint8_t>(b + 2)}; }

  RecordingHandler handler_;
  std::vector<uint8_t> region_;
  std::unique_ptr<TransportServer> server_;
};

TEST_F(LoopbackTest, NameAndParse) {
  EXPECT_EQ(TransportName(TransportKind::kLoopback), "loopback");
  auto k = ParseTransport("loopback");
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(*k, TransportKind::kLoopback);
  EXPECT_EQ(server_->kind(), TransportKind::kLoopback);
  EXPECT_NE(server_->port(), 0);
}

TEST_F(LoopbackTest, ReadWriteCallAndRanges) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  EXPECT_NE(c->info().client_id, 0u);
  EXPECT_EQ(c->info().region_size, region_.size());
  EXPECT_EQ(c->info().session, c->info().client_id);
  EXPECT_EQ(server_->num_clients(), 1u);
  EXPECT_EQ(handler_.connects.load(), 1);

  std::vector<uint8_t> out(100), in(100);
  sharry::testing::FillPattern(out.data(), out.size(), 7);
  ASSERT_TRUE(c->Write(1000, out.data(), out.size()).ok());
  EXPECT_EQ(std::memcmp(region_.data() + 1000, out.data(), out.size()), 0);
  ASSERT_TRUE(c->Read(1000, in.data(), in.size()).ok());
  EXPECT_EQ(in, out);

  // Out of range: kOutOfRange, the connection stays usable.
  EXPECT_EQ(c->Read(region_.size() - 10, in.data(), 11).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(c->Write(~uint64_t{0}, out.data(), 2).code(), StatusCode::kOutOfRange);
  EXPECT_TRUE(c->alive());

  auto r = Req(5);
  std::vector<uint8_t> resp;
  ASSERT_TRUE(c->Call(r, &resp).ok());
  EXPECT_EQ(resp, ExpectedEcho(c->info().client_id, r));
  std::vector<uint8_t> big(c->info().max_message, 1);
  EXPECT_EQ(c->Call(big, &resp).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(c->alive());

  const ClientId id = c->info().client_id;
  c.reset();
  EXPECT_EQ(server_->num_clients(), 0u);
  EXPECT_EQ(handler_.Gone(), std::vector<ClientId>{id});
}

TEST_F(LoopbackTest, NoServerOnThePort) {
  ClientOptions o;
  o.port = 65000;
  auto c = TransportClient::Connect(TransportKind::kLoopback, o);
  EXPECT_EQ(c.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(SetLoopbackFaults(65000, std::make_shared<FaultPlan>()).code(), StatusCode::kNotFound);
}

TEST_F(LoopbackTest, MaxClientsRefusedWithAReason) {
  ServerOptions o;
  o.max_clients = 2;
  Start(o);
  auto a = Connect(), b = Connect();
  ClientOptions co;
  co.port = server_->port();
  auto c = TransportClient::Connect(TransportKind::kLoopback, co);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(c.status().message().find("memnode full: 2 of 2 clients"), std::string::npos) << c.status();
  b.reset();
  EXPECT_NE(Connect(), nullptr);
}

TEST_F(LoopbackTest, ClosingTheRootClosesItsMembersFirst) {
  auto root = Connect();
  const ClientId r = root->info().client_id;
  auto m1 = Connect(r), m2 = Connect(r);
  EXPECT_EQ(m1->info().session, r);
  root.reset();
  EXPECT_FALSE(m1->alive());
  EXPECT_FALSE(m2->alive());
  EXPECT_EQ(m1->dead_reason().code(), StatusCode::kDisconnected);
  std::vector<uint8_t> buf(8);
  EXPECT_EQ(m1->Read(0, buf.data(), buf.size()).code(), StatusCode::kDisconnected);
  auto gone = handler_.Gone();
  ASSERT_EQ(gone.size(), 3u);
  EXPECT_EQ(gone.back(), r);  // the root's OnDisconnect comes last
  // Joining a session that is over is refused.
  ClientOptions co;
  co.port = server_->port();
  co.session = r;
  EXPECT_EQ(TransportClient::Connect(TransportKind::kLoopback, co).status().code(), StatusCode::kUnavailable);
  m1.reset();
  m2.reset();
  EXPECT_EQ(handler_.Gone().size(), 3u);  // once each
}

TEST_F(LoopbackTest, FailNthReadAndMidBatchWrite) {
  auto c = Connect();
  auto plan = Arm();
  plan->FailNth(FaultOp::kRead, 2, StatusCode::kIoError).FailNth(FaultOp::kWrite, 3);
  std::vector<uint8_t> buf(16, 0xAB);
  EXPECT_TRUE(c->Read(0, buf.data(), 16).ok());
  EXPECT_EQ(c->Read(0, buf.data(), 16).code(), StatusCode::kIoError);
  EXPECT_TRUE(c->Read(0, buf.data(), 16).ok());
  EXPECT_TRUE(c->alive());
  std::vector<uint8_t> src(4 * 16, 0x5A);
  std::vector<RemoteOp> ops;
  for (int i = 0; i < 4; ++i) ops.push_back({uint64_t(i) * 100, src.data() + 16 * i, 16});
  EXPECT_EQ(c->WriteBatch(ops).code(), StatusCode::kUnavailable);
  EXPECT_EQ(region_[0], 0x5A);    // 1st and 2nd written
  EXPECT_EQ(region_[100], 0x5A);
  EXPECT_EQ(region_[200], 0);     // the 3rd failed, the 4th never went
  EXPECT_EQ(region_[300], 0);
  EXPECT_EQ(plan->count(FaultOp::kWrite), 3u);
  EXPECT_EQ(plan->count(FaultOp::kRead), 3u);
  EXPECT_EQ(plan->count(FaultOp::kAny), 6u);
  EXPECT_EQ(plan->fired(), 2u);
  EXPECT_TRUE(c->WriteBatch(ops).ok());
}

TEST_F(LoopbackTest, FailNthRequestOfMany) {
  auto c = Connect();
  auto plan = Arm();
  plan->FailNth(FaultOp::kRequest, 2, StatusCode::kPermissionDenied);
  auto a = Req(1), b = Req(2), d = Req(3);
  std::vector<std::span<const uint8_t>> reqs = {a, b, d};
  std::vector<std::vector<uint8_t>> resp;
  EXPECT_EQ(c->CallMany(reqs, &resp).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(resp[0], ExpectedEcho(c->info().client_id, a));
  EXPECT_TRUE(resp[1].empty());
  EXPECT_EQ(resp[2], ExpectedEcho(c->info().client_id, d));
  EXPECT_TRUE(c->alive());
}

TEST_F(LoopbackTest, DisconnectAtNthOperation) {
  auto root = Connect();
  auto member = Connect(root->info().client_id);
  auto other = Connect();
  auto plan = Arm();
  plan->DisconnectAt(FaultOp::kAny, 2);  // this connection only
  std::vector<uint8_t> buf(8);
  EXPECT_TRUE(member->Read(0, buf.data(), 8).ok());
  EXPECT_EQ(member->Read(0, buf.data(), 8).code(), StatusCode::kDisconnected);
  EXPECT_FALSE(member->alive());
  EXPECT_EQ(member->Read(0, buf.data(), 8).code(), StatusCode::kDisconnected);
  EXPECT_TRUE(root->alive());
  EXPECT_EQ(handler_.Gone(), std::vector<ClientId>{member->info().client_id});

  // The session scope: a member's operation takes its whole session down.
  auto m2 = Connect(root->info().client_id);
  plan->DisconnectAt(FaultOp::kWrite, 1, FaultScope::kSession);
  EXPECT_EQ(m2->Write(0, buf.data(), 8).code(), StatusCode::kDisconnected);
  EXPECT_FALSE(root->alive());
  EXPECT_FALSE(m2->alive());
  EXPECT_TRUE(other->alive());
  EXPECT_EQ(handler_.Gone().back(), root->info().client_id);

  // The server scope: everybody; the server stays registered.
  plan->DisconnectAt(FaultOp::kRequest, 1, FaultScope::kServer);
  std::vector<uint8_t> resp;
  EXPECT_EQ(other->Call(Req(1), &resp).code(), StatusCode::kDisconnected);
  EXPECT_FALSE(other->alive());
  EXPECT_EQ(server_->num_clients(), 0u);
  auto again = Connect();
  ASSERT_NE(again, nullptr);
  EXPECT_GT(again->info().client_id, other->info().client_id);
}

TEST_F(LoopbackTest, DropReplyTimesOutAtOnce) {
  auto c = Connect();
  auto plan = Arm();
  plan->DropReplyNth(FaultOp::kRequest, 1);
  std::vector<uint8_t> resp;
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(c->Call(Req(1), &resp).code(), StatusCode::kTimeout);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
  EXPECT_FALSE(c->alive());
  EXPECT_EQ(c->dead_reason().code(), StatusCode::kTimeout);
  EXPECT_EQ(handler_.requests.load(), 1u);  // the server did the work
  EXPECT_EQ(handler_.Gone(), std::vector<ClientId>{c->info().client_id});
}

TEST_F(LoopbackTest, DelayAndHold) {
  auto c = Connect();
  auto plan = Arm();
  plan->DelayNth(FaultOp::kRead, 1, 30).HoldNth(FaultOp::kWrite, 1);
  std::vector<uint8_t> buf(8, 3);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(c->Read(0, buf.data(), 8).ok());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(30));
  std::fill(buf.begin(), buf.end(), 3);  // the READ brought the region's zeros
  std::thread t([&] { EXPECT_TRUE(c->Write(0, buf.data(), 8).ok()); });
  ASSERT_TRUE(plan->WaitHeld());
  EXPECT_EQ(region_[0], 0);  // held: not done yet
  plan->Release();
  t.join();
  EXPECT_EQ(region_[0], 3);
}

TEST_F(LoopbackTest, StoppingTheServerKillsItsClients) {
  auto c = Connect();
  auto m = Connect(c->info().client_id);
  server_.reset();
  EXPECT_FALSE(c->alive());
  EXPECT_FALSE(m->alive());
  EXPECT_EQ(handler_.Gone().size(), 2u);
  std::vector<uint8_t> resp;
  EXPECT_EQ(c->Call(Req(1), &resp).code(), StatusCode::kDisconnected);
}

}  // namespace
}  // namespace sharry
