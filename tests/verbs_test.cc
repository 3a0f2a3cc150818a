// Tests of the verbs/ layer itself, under the transport: raw rdma_cm
// connections, work-request chains, and the typed errors of failed work
// completions. Label `rxe`: they need an RDMA device (SHARRY_RDMA_ADDR).
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/test_util.h"
#include "verbs/cm.h"
#include "verbs/error.h"
#include "verbs/queue_pair.h"
#include "verbs/resources.h"
#include "verbs/transport.h"
#include "verbs/transport_internal.h"
#include "verbs/wire.h"

namespace sharry::verbs {
namespace {

using sharry::testing::Pattern;

constexpr size_t kRegion = 4u << 20;

// A client built from the verbs/ primitives only, speaking the transport's
// connect protocol (Hello/Welcome private data).
struct RawConn {
  std::optional<CmEventChannel> ch;
  CmId id;
  std::optional<ProtectionDomain> pd;
  std::optional<CompletionQueue> cq;
  std::vector<uint8_t> buf = std::vector<uint8_t>(1 << 20);
  std::optional<MemoryRegion> mr;
  wire::WelcomePayload welcome{};
  QpCaps caps;

  ~RawConn() {
    if (id && id->qp) {
      rdma_disconnect(id.get());
      rdma_destroy_qp(id.get());
    }
    mr.reset();
    cq.reset();
    pd.reset();
    id.Reset();
  }

  // `flags`: the hello's (wire::kHelloAuthOnQp: authenticate on the QP).
  Status Connect(const std::string& addr, uint16_t port, uint16_t flags = 0) {
    SHARRY_RETURN_IF_ERROR(OpenAndResolve(&ch, &id, addr, port, 2000));
    auto p = ProtectionDomain::Create(id->verbs);
    if (!p.ok()) return p.status();
    pd.emplace(std::move(*p));
    auto q = CompletionQueue::Create(id->verbs, 512);
    if (!q.ok()) return q.status();
    cq.emplace(std::move(*q));
    QpSizes sizes;
    sizes.max_send_wr = 128;
    auto qp = CreateRcQp(id, pd->get(), cq->get(), cq->get(), nullptr, sizes);
    if (!qp.ok()) return qp.status();
    caps = *qp;
    auto m = MemoryRegion::Register(pd->get(), buf.data(), buf.size(), MemoryRegion::kLocalOnly);
    if (!m.ok()) return m.status();
    mr.emplace(std::move(*m));
    // Receive buffers for replies.
    for (int r = 0; r < 8; ++r)
      SHARRY_RETURN_IF_ERROR(PostRecv(id.qp(), 1000 + r, buf.data() + (512 << 10) + r * 8192, 8192, mr->lkey()));
    wire::HelloPayload hello{};
    hello.max_message = 8192;
    hello.flags = flags;
    rdma_conn_param param{};
    param.private_data = &hello;
    param.private_data_len = sizeof hello;
    param.initiator_depth = param.responder_resources = 4;
    param.retry_count = 3;
    param.rnr_retry_count = 3;
    if (rdma_connect(id.get(), &param) != 0) return VerbFailed("rdma_connect", errno);
    auto ev = ch->Expect(RDMA_CM_EVENT_ESTABLISHED, 5000, "connect");
    if (!ev.ok()) return ev.status();
    if (ev->private_data().size() < sizeof welcome) return Status::Protocol("no welcome");
    std::memcpy(&welcome, ev->private_data().data(), sizeof welcome);
    return Status::Ok();
  }

  // Waits for `n` completions (5 s at most); returns them.
  std::vector<ibv_wc> Poll(size_t n, int timeout_ms = 5000) {
    std::vector<ibv_wc> out;
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (out.size() < n && std::chrono::steady_clock::now() < end) {
      ibv_wc wc[16];
      auto got = cq->Poll(wc, 16);
      if (!got.ok()) break;
      out.insert(out.end(), wc, wc + *got);
      if (*got == 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    return out;
  }
  // Send-queue completions only (receives have wr_id >= 1000). After an
  // error the posted receives are flushed too; those are checked apart.
  std::vector<ibv_wc> PollSendSide(size_t n, int timeout_ms = 5000) {
    std::vector<ibv_wc> out;
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (out.size() < n && std::chrono::steady_clock::now() < end) {
      for (const ibv_wc& wc : Poll(1, 50)) {
        if (wc.wr_id < 1000) out.push_back(wc);
        else flushed_recvs += wc.status == IBV_WC_WR_FLUSH_ERR;
      }
    }
    return out;
  }
  int flushed_recvs = 0;
  // SENDs header `h` and `payload` bytes from buf (after the header).
  void Send(const wire::MsgHeader& h, size_t payload) {
    std::memcpy(buf.data(), &h, sizeof h);
    ibv_sge sge{reinterpret_cast<uintptr_t>(buf.data()), uint32_t(sizeof h + payload), mr->lkey()};
    SendChain chain;
    chain.Send(50, {&sge, 1});
    ASSERT_TRUE(chain.Post(id.qp()).ok());
  }
  // The SEND's completion and the reply (its header into *h, its payload
  // into *payload when not null), in any order; reposts the receive.
  void Reply(wire::MsgHeader* h, std::vector<uint8_t>* payload = nullptr) {
    auto wcs = Poll(2);
    ASSERT_EQ(wcs.size(), 2u);
    for (auto& wc : wcs) {
      ASSERT_EQ(wc.status, IBV_WC_SUCCESS);
      if (wc.opcode == IBV_WC_RECV) {
        uint8_t* p = buf.data() + (512 << 10) + (wc.wr_id - 1000) * 8192;
        std::memcpy(h, p, sizeof *h);
        if (payload != nullptr) payload->assign(p + sizeof *h, p + wc.byte_len);
        ASSERT_TRUE(PostRecv(id.qp(), wc.wr_id, p, 8192, mr->lkey()).ok());
      }
    }
  }
  uint64_t remote(uint64_t off) const { return welcome.region_addr + off; }
  // Posts one RDMA READ (or WRITE) of buf[0, len) at region offset `off`
  // with `rkey` (0: the welcome's) and returns its send-side completion
  // (none if the post failed or nothing came within 5 s).
  std::vector<ibv_wc> OneSided(bool write, uint32_t len, uint64_t off, uint32_t rkey = 0) {
    ibv_sge sge{reinterpret_cast<uintptr_t>(buf.data()), len, mr->lkey()};
    SendChain chain;
    if (write) chain.Write(7, {&sge, 1}, remote(off), rkey ? rkey : welcome.rkey);
    else chain.Read(7, {&sge, 1}, remote(off), rkey ? rkey : welcome.rkey);
    if (!chain.Post(id.qp()).ok()) return {};
    return PollSendSide(1);
  }
};

class VerbsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    addr_ = sharry::testing::RdmaAddr();
    if (addr_.empty()) GTEST_SKIP() << "no RDMA device: SHARRY_RDMA_ADDR is unset (run through scripts/run-rxe.sh)";
    region_.assign(kRegion, 0xAB);
    ServerOptions o;
    o.listen_addr = addr_;
    o.region = region_.data();
    o.region_size = region_.size();
    auto s = TransportServer::Start(TransportKind::kVerbs, o, &handler_);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }
  // The server still serves a fresh transport client correctly.
  void ExpectServerHealthy() {
    ClientOptions o;
    o.server_addr = addr_;
    o.port = server_->port();
    auto c = TransportClient::Connect(TransportKind::kVerbs, o);
    ASSERT_TRUE(c.ok()) << c.status();
    auto data = Pattern(4096, 9);
    ASSERT_TRUE((*c)->Write(8192, data.data(), data.size()).ok());
    std::vector<uint8_t> back(4096);
    ASSERT_TRUE((*c)->Read(8192, back.data(), back.size()).ok());
    EXPECT_EQ(back, data);
    std::vector<uint8_t> resp;
    ASSERT_TRUE((*c)->Call(data, &resp).ok());
    EXPECT_EQ(resp, sharry::testing::ExpectedEcho((*c)->info().client_id, data));
  }

  std::string addr_;
  std::vector<uint8_t> region_;
  sharry::testing::EchoHandler handler_;
  std::unique_ptr<TransportServer> server_;
};

TEST_F(VerbsTest, DeviceCapsAreQueried) {
  RawConn c;
  ASSERT_TRUE(c.Connect(addr_, server_->port()).ok());
  auto caps = QueryDeviceCaps(c.id->verbs);
  ASSERT_TRUE(caps.ok()) << caps.status();
  EXPECT_GT(caps->max_msg_sz, 0u);
  EXPECT_GT(caps->max_qp_wr, 0u);
  EXPECT_GE(caps->active_mtu, 256u);
  EXPECT_EQ(c.welcome.region_size, kRegion);
  EXPECT_NE(c.welcome.rkey, 0u);
  RecordProperty("max_inline_data", static_cast<int>(c.caps.max_inline_data));
  std::printf("device: max_msg_sz %u, max_qp_wr %u, mtu %u, inline granted %u\n", caps->max_msg_sz,
              caps->max_qp_wr, caps->active_mtu, c.caps.max_inline_data);
}

TEST_F(VerbsTest, ChainOf64WritesCostsOneCompletion) {
  RawConn c;
  ASSERT_TRUE(c.Connect(addr_, server_->port()).ok());
  auto data = Pattern(64 * 64, 3);
  std::memcpy(c.buf.data(), data.data(), data.size());
  SendChain chain;
  for (int i = 0; i < 64; ++i) {
    ibv_sge sge{reinterpret_cast<uintptr_t>(c.buf.data() + i * 64), 64, c.mr->lkey()};
    chain.Write(i, {&sge, 1}, c.remote(uint64_t(i) * 128), c.welcome.rkey);
  }
  ASSERT_EQ(chain.size(), 64u);
  ASSERT_TRUE(chain.Post(c.id.qp()).ok());
  auto wcs = c.Poll(1);
  ASSERT_EQ(wcs.size(), 1u);
  EXPECT_EQ(wcs[0].status, IBV_WC_SUCCESS);
  EXPECT_EQ(wcs[0].wr_id, 63u);  // the last, the only signalled one
  EXPECT_TRUE(c.Poll(1, 200).empty()) << "unsignalled work requests produced completions";
  for (int i = 0; i < 64; ++i)
    ASSERT_EQ(0, std::memcmp(region_.data() + i * 128, data.data() + i * 64, 64)) << i;
  // And 64 READs back, in one chain.
  SendChain reads;
  for (int i = 0; i < 64; ++i) {
    ibv_sge sge{reinterpret_cast<uintptr_t>(c.buf.data() + 65536 + i * 64), 64, c.mr->lkey()};
    reads.Read(100 + i, {&sge, 1}, c.remote(uint64_t(i) * 128), c.welcome.rkey);
  }
  ASSERT_TRUE(reads.Post(c.id.qp()).ok());
  wcs = c.Poll(1);
  ASSERT_EQ(wcs.size(), 1u);
  EXPECT_EQ(wcs[0].wr_id, 163u);
  EXPECT_EQ(0, std::memcmp(c.buf.data() + 65536, data.data(), data.size()));
}

TEST_F(VerbsTest, ScatterGatherWrite) {
  RawConn c;
  ASSERT_TRUE(c.Connect(addr_, server_->port()).ok());
  auto a = Pattern(100, 1), b = Pattern(200, 2);
  std::memcpy(c.buf.data(), a.data(), a.size());
  std::memcpy(c.buf.data() + 4096, b.data(), b.size());
  ibv_sge sges[2] = {{reinterpret_cast<uintptr_t>(c.buf.data()), 100, c.mr->lkey()},
                     {reinterpret_cast<uintptr_t>(c.buf.data() + 4096), 200, c.mr->lkey()}};
  SendChain chain;
  chain.Write(1, sges, c.remote(1000), c.welcome.rkey);
  ASSERT_TRUE(chain.Post(c.id.qp()).ok());
  auto wcs = c.Poll(1);
  ASSERT_EQ(wcs.size(), 1u);
  ASSERT_EQ(wcs[0].status, IBV_WC_SUCCESS);
  EXPECT_EQ(0, std::memcmp(region_.data() + 1000, a.data(), 100));
  EXPECT_EQ(0, std::memcmp(region_.data() + 1100, b.data(), 200));
}

TEST_F(VerbsTest, ReadPastEndOfRegionIsRemoteAccessErrorAndServerSurvives) {
  {
    RawConn c;
    ASSERT_TRUE(c.Connect(addr_, server_->port()).ok());
    auto wcs = c.OneSided(/*write=*/false, 4096, kRegion - 8);
    ASSERT_EQ(wcs.size(), 1u);
    ASSERT_NE(wcs[0].status, IBV_WC_SUCCESS);
    Status s = WcFailed(wcs[0], "RDMA READ past the end");
    EXPECT_EQ(s.code(), StatusCode::kRemoteAccess) << s;
    EXPECT_NE(s.message().find("outside its registered region"), std::string::npos) << s;
    // The QP went to the error state: its posted receives were flushed.
    c.PollSendSide(0, 200);
    EXPECT_EQ(c.flushed_recvs, 8);
    // The QP is dead now: the next work request is flushed, never hangs.
    SendChain again;
    ibv_sge ok{reinterpret_cast<uintptr_t>(c.buf.data()), 8, c.mr->lkey()};
    again.Read(8, {&ok, 1}, c.remote(0), c.welcome.rkey);
    if (again.Post(c.id.qp()).ok()) {
      auto flushed = c.PollSendSide(1);
      ASSERT_EQ(flushed.size(), 1u);
      EXPECT_EQ(WcFailed(flushed[0], "after error").code(), StatusCode::kDisconnected);
    }
  }
  ExpectServerHealthy();
}

TEST_F(VerbsTest, WritePastEndOfRegionIsRemoteAccessErrorAndCorruptsNothing) {
  {
    RawConn c;
    ASSERT_TRUE(c.Connect(addr_, server_->port()).ok());
    std::memset(c.buf.data(), 0x11, 4096);
    auto wcs = c.OneSided(/*write=*/true, 4096, kRegion - 16);
    ASSERT_EQ(wcs.size(), 1u);
    EXPECT_EQ(WcFailed(wcs[0], "RDMA WRITE past the end").code(), StatusCode::kRemoteAccess);
    for (size_t i = kRegion - 16; i < kRegion; ++i) ASSERT_EQ(region_[i], 0xAB) << "byte " << i << " was written";
  }
  ExpectServerHealthy();
}

TEST_F(VerbsTest, WrongRkeyIsRemoteAccessError) {
  RawConn c;
  ASSERT_TRUE(c.Connect(addr_, server_->port()).ok());
  auto wcs = c.OneSided(/*write=*/false, 64, 0, c.welcome.rkey ^ 0x5a5a00);
  ASSERT_EQ(wcs.size(), 1u);
  EXPECT_EQ(WcFailed(wcs[0], "READ with a wrong rkey").code(), StatusCode::kRemoteAccess);
}

TEST_F(VerbsTest, MalformedRequestGetsErrorReplyAndConnectionGoesOn) {
  RawConn c;
  ASSERT_TRUE(c.Connect(addr_, server_->port()).ok());
  auto send = [&](const wire::MsgHeader& h, size_t payload) { c.Send(h, payload); };
  auto reply = [&](wire::MsgHeader* h) { c.Reply(h); };
  wire::MsgHeader bad{};
  bad.magic = 0xBEEF;
  bad.tag = 41;
  send(bad, 0);
  wire::MsgHeader r{};
  reply(&r);
  EXPECT_EQ(r.kind, wire::Kind::kError);
  EXPECT_EQ(r.tag, 41u);
  wire::MsgHeader wrong_len{};
  wrong_len.length = 999;  // but 10 bytes follow
  wrong_len.tag = 42;
  send(wrong_len, 10);
  reply(&r);
  EXPECT_EQ(r.kind, wire::Kind::kError);
  wire::MsgHeader unknown{};
  unknown.kind = static_cast<wire::Kind>(77);
  unknown.tag = 43;
  send(unknown, 0);
  reply(&r);
  EXPECT_EQ(r.kind, wire::Kind::kError);
  wire::MsgHeader good{};
  good.length = 10;
  good.tag = 44;
  send(good, 10);
  reply(&r);
  EXPECT_EQ(r.kind, wire::Kind::kResponse);
  EXPECT_EQ(r.tag, 44u);
  EXPECT_EQ(r.length, 14u);
  EXPECT_EQ(handler_.requests.load(), 1u);  // only the good one reached the handler
}

TEST_F(VerbsTest, OversizedSendKillsOnlyThatConnection) {
  {
    RawConn c;
    ASSERT_TRUE(c.Connect(addr_, server_->port()).ok());
    wire::MsgHeader h{};
    h.length = 20000;
    std::memcpy(c.buf.data(), &h, sizeof h);
    ibv_sge sge{reinterpret_cast<uintptr_t>(c.buf.data()), uint32_t(sizeof h + 20000), c.mr->lkey()};
    SendChain chain;
    chain.Send(5, {&sge, 1});
    ASSERT_TRUE(chain.Post(c.id.qp()).ok());
    auto wcs = c.PollSendSide(1, 20000);
    ASSERT_EQ(wcs.size(), 1u);
    EXPECT_NE(wcs[0].status, IBV_WC_SUCCESS);
    std::printf("oversized SEND completed with: %s\n", WcFailed(wcs[0], "oversized SEND").ToString().c_str());
  }
  ExpectServerHealthy();
  EXPECT_EQ(handler_.requests.load(), 1u);
}

// Authentication on the QP (kHelloAuthOnQp, wire.h), by a raw client that
// does not follow it: its accept gives no key and no session; a request
// before authenticating is refused ("authenticate first") and the
// connection closed; so is one that never authenticates, after the
// handshake timeout. (The honest client's cases are in isolation_test.)
class VerbsAuthTest : public VerbsTest {
 protected:
  void SetUp() override {
    VerbsTest::SetUp();
    if (IsSkipped()) return;
    auto creds = std::make_shared<sharry::auth::ServerCredentials>();
    creds->tenants.emplace("alice", *sharry::auth::ParseSecret(sharry::auth::NewSecretHex()));
    ServerOptions o;
    o.listen_addr = addr_;
    o.region = region_.data();
    o.region_size = region_.size();
    o.credentials = creds;
    o.handshake_timeout_ms = 300;
    auto s = TransportServer::Start(TransportKind::kVerbs, o, &auth_handler_);
    ASSERT_TRUE(s.ok()) << s.status();
    auth_server_ = std::move(*s);
  }
  sharry::testing::EchoHandler auth_handler_;
  std::unique_ptr<TransportServer> auth_server_;
};

TEST_F(VerbsAuthTest, ARequestBeforeAuthenticatingIsRefused) {
  RawConn c;
  ASSERT_TRUE(c.Connect(addr_, auth_server_->port(), wire::kHelloAuthOnQp).ok());
  EXPECT_NE(c.welcome.client_id, 0u);
  EXPECT_EQ(c.welcome.rkey, 0u) << "a key to memory before authentication";
  EXPECT_EQ(c.welcome.session, 0u);
  wire::MsgHeader req{};
  req.length = 10;
  req.tag = 7;
  c.Send(req, 10);
  wire::MsgHeader r{};
  std::vector<uint8_t> payload;
  c.Reply(&r, &payload);
  EXPECT_EQ(r.kind, wire::Kind::kError);
  EXPECT_EQ(r.tag, 7u);
  Status refused = sharry::internal::DecodeError(payload);
  EXPECT_EQ(refused.code(), StatusCode::kPermissionDenied) << refused;
  EXPECT_NE(refused.message().find("authenticate first"), std::string::npos) << refused;
  EXPECT_EQ(auth_handler_.requests.load(), 0u);
  EXPECT_EQ(auth_handler_.connects.load(), 0);
  EXPECT_TRUE(c.ch->Expect(RDMA_CM_EVENT_DISCONNECTED, 5000, "the server closes the connection").ok());
}

TEST_F(VerbsAuthTest, AConnectionThatNeverAuthenticatesIsClosed) {
  RawConn c;
  ASSERT_TRUE(c.Connect(addr_, auth_server_->port(), wire::kHelloAuthOnQp).ok());
  EXPECT_TRUE(c.ch->Expect(RDMA_CM_EVENT_DISCONNECTED, 5000, "the server closes the connection").ok());
  EXPECT_EQ(auth_handler_.connects.load(), 0);
  EXPECT_TRUE(sharry::testing::Eventually([&] { return auth_server_->num_clients() == 0; }));
}

// A memnode of tenants refuses an anonymous connect at once, and counts it.
TEST_F(VerbsAuthTest, AnAnonymousConnectIsRefusedAndCounted) {
  RawConn anonymous;
  Status s = anonymous.Connect(addr_, auth_server_->port());
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(sharry::testing::Eventually([&] { return auth_server_->auth_counters().failures == 1; }));
  EXPECT_EQ(auth_server_->auth_counters().failures_by_tenant[""], 1u);
}

TEST_F(VerbsTest, ManyConnectionsComeAndGo) {
  for (int round = 0; round < 3; ++round) {
    std::vector<std::unique_ptr<RawConn>> conns;
    for (int i = 0; i < 8; ++i) {
      conns.push_back(std::make_unique<RawConn>());
      ASSERT_TRUE(conns.back()->Connect(addr_, server_->port()).ok());
    }
    EXPECT_TRUE(sharry::testing::Eventually([&] { return server_->num_clients() == 8; }));
    conns.clear();
    EXPECT_TRUE(sharry::testing::Eventually([&] { return server_->num_clients() == 0; }));
  }
  ExpectServerHealthy();
}

}  // namespace
}  // namespace sharry::verbs
