// Tenants (issue #11, docs/security.md): authentication in the handshake
// and the session tokens that keep one client's connections its own, over
// the loopback transport (in process), tcp (real sockets, raw frames for
// what no honest client sends) and verbs (label rxe: authentication on the
// QP after the connect; its raw cases are in verbs_test). Confinement of READ/WRITE to a client's own
// blocks and zeroing before reuse are in memnode_test; the tenants file's
// errors in tenants_test; the memnode's protected mode in cli_test.
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "base/mutex.h"
#include "tests/tcp_frames.h"
#include "tests/test_util.h"
#include "verbs/auth.h"
#include "verbs/auth_guard.h"
#include "verbs/handshake.h"
#include "verbs/transport.h"

namespace sharry {
namespace {

using testing::Eventually;

// An echo handler that records who each connection is.
class PeerHandler : public testing::EchoHandler {
 public:
  void OnConnect(ClientId id, const Peer& p) override EXCLUDES(mu) {
    MutexLock l(&mu);
    peers.emplace_back(id, p);
    connects++;
  }
  std::vector<std::pair<ClientId, Peer>> Peers() EXCLUDES(mu) {
    MutexLock l(&mu);
    return peers;
  }
  Mutex mu;
  std::vector<std::pair<ClientId, Peer>> peers GUARDED_BY(mu);
};

auth::Secret NewSecret() { return *auth::ParseSecret(auth::NewSecretHex()); }

class IsolationTest : public ::testing::TestWithParam<TransportKind> {
 protected:
  void SetUp() override {
    if (GetParam() == TransportKind::kVerbs && testing::RdmaAddr().empty())
      GTEST_SKIP() << "no RDMA device: SHARRY_RDMA_ADDR is unset (run through scripts/run-rxe.sh)";
    alice_ = NewSecret();
    admin_ = NewSecret();
    auto creds = std::make_shared<auth::ServerCredentials>();
    creds->tenants.emplace("alice", alice_);
    creds->tenants.emplace("bob", NewSecret());
    creds->admin = admin_;
    creds_ = creds;
    Start(creds_);
  }
  void Start(std::shared_ptr<const auth::ServerCredentials> creds) {
    server_.reset();
    ServerOptions o;
    o.listen_addr = testing::ServerAddr(GetParam());
    o.region = region_.data();
    o.region_size = region_.size();
    o.credentials = std::move(creds);
    auto s = TransportServer::Start(GetParam(), o, &handler_);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }
  ClientOptions Options() {
    ClientOptions o;
    o.server_addr = testing::ServerAddr(GetParam());
    o.port = server_->port();
    o.connect_attempts = 1;
    return o;
  }
  StatusOr<std::unique_ptr<TransportClient>> Connect(const std::string& tenant, const auth::Secret& secret) {
    ClientOptions o = Options();
    o.tenant = tenant;
    o.secret = secret;
    return TransportClient::Connect(GetParam(), o);
  }
  uint64_t Failures() { return server_->auth_counters().failures; }

  std::vector<uint8_t> region_ = std::vector<uint8_t>(1 << 20);
  PeerHandler handler_;
  auth::Secret alice_, admin_;
  std::shared_ptr<const auth::ServerCredentials> creds_;
  std::unique_ptr<TransportServer> server_;
};

TEST_P(IsolationTest, TheRightSecretConnectsAndTheServerKnowsTheTenant) {
  auto c = Connect("alice", alice_);
  ASSERT_TRUE(c.ok()) << c.status();
  std::vector<uint8_t> req = {1, 2, 3}, resp;
  ASSERT_TRUE((*c)->Call(req, &resp).ok());
  EXPECT_EQ(resp, testing::ExpectedEcho((*c)->info().client_id, req));
  auto peers = handler_.Peers();
  ASSERT_EQ(peers.size(), 1u);
  EXPECT_EQ(peers[0].second.tenant, "alice");
  EXPECT_FALSE(peers[0].second.admin);
  EXPECT_EQ(peers[0].second.session, (*c)->info().client_id);
  EXPECT_EQ(Failures(), 0u);
}

TEST_P(IsolationTest, TheAdminIsNoTenant) {
  auto c = Connect("admin", admin_);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(Eventually([&] { return handler_.connects.load() == 1; }));
  auto peers = handler_.Peers();
  EXPECT_TRUE(peers[0].second.admin);
  EXPECT_EQ(peers[0].second.tenant, "");
}

TEST_P(IsolationTest, MissingCredentialsAreRefusedAndCounted) {
  auto c = Connect("", auth::Secret());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kPermissionDenied) << c.status();
  EXPECT_NE(c.status().message().find("serves tenants only"), std::string::npos) << c.status();
  EXPECT_EQ(handler_.connects.load(), 0);
  EXPECT_TRUE(Eventually([&] { return Failures() == 1; }));
  EXPECT_EQ(server_->auth_counters().failures_by_tenant[""], 1u);
}

// The client checks the server's proof first: with a wrong secret it cannot
// verify it, says so, and sends no proof the server could use.
TEST_P(IsolationTest, AWrongSecretIsCaughtByTheClientAndCountedByTheServer) {
  auto c = Connect("alice", NewSecret());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kPermissionDenied) << c.status();
  EXPECT_NE(c.status().message().find("could not prove it knows tenant 'alice''s secret"), std::string::npos)
      << c.status();
  EXPECT_EQ(handler_.connects.load(), 0);
  EXPECT_TRUE(Eventually([&] { return Failures() == 1; }));
  EXPECT_EQ(server_->auth_counters().failures_by_tenant["alice"], 1u);
}

// A name the server does not have is challenged like any other (no probing
// which tenants exist), and counted as "(unknown)", not by the name given.
TEST_P(IsolationTest, AnUnknownTenantLooksLikeAWrongSecret) {
  auto c = Connect("mallory", NewSecret());
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("could not prove it knows tenant 'mallory''s secret"), std::string::npos)
      << c.status();
  EXPECT_TRUE(Eventually([&] { return Failures() == 1; }));
  auto counters = server_->auth_counters();
  EXPECT_EQ(counters.failures_by_tenant.count("mallory"), 0u);
  EXPECT_EQ(counters.failures_by_tenant["(unknown)"], 1u);
}

// An impostor memnode (it does not know alice's secret) learns nothing the
// client would accept: the client refuses it before sending its proof.
TEST_P(IsolationTest, AnImpostorMemnodeIsDetected) {
  auto impostor = std::make_shared<auth::ServerCredentials>();
  impostor->tenants.emplace("alice", NewSecret());
  Start(impostor);
  auto c = Connect("alice", alice_);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("could not prove it knows tenant 'alice''s secret"), std::string::npos)
      << c.status();
  EXPECT_NE(c.status().message().find("not the memnode you meant"), std::string::npos) << c.status();
}

TEST_P(IsolationTest, CredentialsToAMemnodeWithoutTenantsAreRefused) {
  Start(nullptr);  // anonymous clients only
  auto c = Connect("alice", alice_);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("has no tenants"), std::string::npos) << c.status();
  auto anon = Connect("", auth::Secret());
  ASSERT_TRUE(anon.ok()) << anon.status();
  // (Over verbs an anonymous root's OnConnect comes with the server's
  // ESTABLISHED event, which may follow the client's.)
  ASSERT_TRUE(Eventually([&] { return handler_.connects.load() == 1; }));
  EXPECT_EQ(handler_.Peers().back().second.tenant, "");
}

// A session is joined with its token only; a member is its root's tenant.
TEST_P(IsolationTest, ASessionIsJoinedOnlyWithItsToken) {
  auto root = Connect("alice", alice_);
  ASSERT_TRUE(root.ok()) << root.status();
  ClientOptions o = Options();
  o.session = (*root)->info().client_id;
  o.session_token = (*root)->info().session_token;
  o.session_token[5] ^= 1;
  auto wrong = TransportClient::Connect(GetParam(), o);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), StatusCode::kPermissionDenied) << wrong.status();
  EXPECT_NE(wrong.status().message().find("wrong token for session"), std::string::npos) << wrong.status();
  EXPECT_TRUE(Eventually([&] { return Failures() == 1; }));
  o.session_token[5] ^= 1;
  auto member = TransportClient::Connect(GetParam(), o);
  ASSERT_TRUE(member.ok()) << member.status();
  ASSERT_TRUE(Eventually([&] { return handler_.connects.load() == 2; }));
  auto peers = handler_.Peers();
  EXPECT_EQ(peers[1].first, (*member)->info().client_id);
  EXPECT_EQ(peers[1].second.tenant, "alice");
  EXPECT_EQ(peers[1].second.session, (*root)->info().client_id);
  // Once the session is over its token opens nothing.
  root->reset();
  ASSERT_TRUE(Eventually([&] { return handler_.disconnects.load() == 2; }));
  auto late = TransportClient::Connect(GetParam(), o);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.status().code(), StatusCode::kUnavailable) << late.status();
}

// A tenant's max_clients bounds its sessions (client processes) at once;
// their data connections do not count, other tenants are not affected.
TEST_P(IsolationTest, ATenantHasAtMostItsMaxClients) {
  auto creds = std::make_shared<auth::ServerCredentials>(*creds_);
  creds->max_sessions["alice"] = 2;
  Start(creds);
  auto a1 = Connect("alice", alice_);
  auto a2 = Connect("alice", alice_);
  ASSERT_TRUE(a1.ok() && a2.ok()) << a1.status() << a2.status();
  ClientOptions member = Options();
  member.connect_attempts = 3;
  member.session = (*a1)->info().client_id;
  member.session_token = (*a1)->info().session_token;
  auto m = TransportClient::Connect(GetParam(), member);
  ASSERT_TRUE(m.ok()) << m.status();
  auto a3 = Connect("alice", alice_);
  ASSERT_FALSE(a3.ok());
  EXPECT_EQ(a3.status().code(), StatusCode::kResourceExhausted) << a3.status();
  EXPECT_NE(a3.status().message().find("tenant 'alice' has 2 of 2 clients connected"), std::string::npos)
      << a3.status();
  EXPECT_TRUE(Connect("admin", admin_).ok());
  m->reset();
  a2->reset();
  ASSERT_TRUE(Eventually([&] { return Connect("alice", alice_).ok(); }));
}

// The key to memory and the session token come with the welcome that ends
// authentication (over verbs: after the exchange on the QP, not at accept);
// with them the client reads and writes.
TEST_P(IsolationTest, AnAuthenticatedConnectionGetsItsKeyOnlyThen) {
  auto c = Connect("alice", alice_);
  ASSERT_TRUE(c.ok()) << c.status();
  const ConnectionInfo& info = (*c)->info();
  EXPECT_EQ(info.session, info.client_id);
  EXPECT_NE(info.session_token, (std::array<uint8_t, 32>{}));
  std::vector<uint8_t> data(4096, 0x5A), back(4096);
  ASSERT_TRUE((*c)->Write(8192, data.data(), data.size()).ok());
  ASSERT_TRUE((*c)->Read(8192, back.data(), back.size()).ok());
  EXPECT_EQ(back, data);
  c->reset();
  ASSERT_TRUE(Eventually([&] { return handler_.disconnects.load() == 1; }));
  EXPECT_EQ(Failures(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Transports, IsolationTest,
                         ::testing::Values(TransportKind::kLoopback, TransportKind::kTcp, TransportKind::kVerbs),
                         [](const auto& info) { return std::string(TransportName(info.param)); });

// Raw tcp: a recorded answer does not open a second connection (the server
// draws a fresh nonce each time), and after max_failures failures from one
// address its new connections are refused at accept, with the reason.
class TcpAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    secret_ = NewSecret();
    auto creds = std::make_shared<auth::ServerCredentials>();
    creds->tenants.emplace("alice", secret_);
    ServerOptions o;
    o.listen_addr = "127.0.0.1";
    o.region = region_.data();
    o.region_size = region_.size();
    o.credentials = creds;
    auto s = TransportServer::Start(TransportKind::kTcp, o, &handler_);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }
  // Sends an authenticating hello with client nonce `cn`; returns the
  // server's challenge (nonce + proof).
  std::vector<uint8_t> Hello(int fd, const auth::Nonce& cn) {
    wire::HelloPayload base{};
    base.max_message = 4096;
    const std::vector<uint8_t> hello = internal::EncodeHello(base, "alice", cn, nullptr);
    EXPECT_TRUE(testing::SendFrame(fd, wire::Kind::kHello, 1, hello.data(), hello.size()).ok());
    std::vector<uint8_t> challenge;
    EXPECT_EQ(testing::RecvFrame(fd, &challenge).kind, wire::Kind::kChallenge);
    EXPECT_EQ(challenge.size(), wire::kChallengeBytes);
    return challenge;
  }
  // Answers with `proof`; returns the welcome's status and its reason.
  uint16_t Answer(int fd, const auth::Proof& proof, std::string* reason) {
    EXPECT_TRUE(testing::SendFrame(fd, wire::Kind::kAuth, 2, proof.data(), proof.size()).ok());
    std::vector<uint8_t> p;
    EXPECT_EQ(testing::RecvFrame(fd, &p).kind, wire::Kind::kWelcome);
    wire::WelcomePayload w{};
    EXPECT_GE(p.size(), sizeof w);
    std::memcpy(&w, p.data(), std::min(p.size(), sizeof w));
    reason->assign(p.begin() + std::min(p.size(), sizeof w), p.end());
    return w.status;
  }

  std::vector<uint8_t> region_ = std::vector<uint8_t>(1 << 20);
  testing::EchoHandler handler_;
  auth::Secret secret_;
  std::unique_ptr<TransportServer> server_;
};

TEST_F(TcpAuthTest, AReplayedAnswerIsRefused) {
  const auth::Nonce cn = auth::NewNonce();
  net::Fd first = testing::DialLoopback(server_->port());
  std::vector<uint8_t> ch = Hello(first.get(), cn);
  auth::Nonce sn;
  std::memcpy(sn.data(), ch.data(), sn.size());
  const auth::Proof proof = auth::ComputeProof(secret_, auth::Role::kClient, "alice", cn, sn);
  std::string reason;
  ASSERT_EQ(Answer(first.get(), proof, &reason), 0u) << reason;
  // The same hello and the same (recorded) answer on a new connection.
  net::Fd second = testing::DialLoopback(server_->port());
  std::vector<uint8_t> ch2 = Hello(second.get(), cn);
  EXPECT_NE(std::vector<uint8_t>(ch.begin(), ch.begin() + 32), std::vector<uint8_t>(ch2.begin(), ch2.begin() + 32))
      << "the server's nonce must be fresh";
  EXPECT_EQ(Answer(second.get(), proof, &reason), static_cast<uint16_t>(StatusCode::kPermissionDenied));
  EXPECT_EQ(reason, "authentication failed for tenant 'alice'");
  EXPECT_EQ(handler_.connects.load(), 1);
  EXPECT_TRUE(Eventually([&] { return server_->auth_counters().failures == 1; }));
}

TEST_F(TcpAuthTest, RepeatedFailuresFromOneAddressAreRateLimited) {
  const int max_failures = internal::AuthGuard::Options{}.max_failures;
  for (int i = 0; i < max_failures; ++i) {
    net::Fd fd = testing::DialLoopback(server_->port());
    Hello(fd.get(), auth::NewNonce());
    std::string reason;
    EXPECT_EQ(Answer(fd.get(), auth::Proof{}, &reason), static_cast<uint16_t>(StatusCode::kPermissionDenied));
  }
  ASSERT_TRUE(Eventually([&] { return server_->auth_counters().failures == static_cast<uint64_t>(max_failures); }));
  // Even the right secret is turned away now, with the reason.
  ClientOptions o;
  o.port = server_->port();
  o.connect_attempts = 1;
  o.tenant = "alice";
  o.secret = secret_;
  auto c = TransportClient::Connect(TransportKind::kTcp, o);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("too many failed authentications from 127.0.0.1"), std::string::npos)
      << c.status();
  EXPECT_EQ(server_->auth_counters().rate_limited, 1u);
}

// The guard itself, on a clock the test moves.
TEST(AuthGuardTest, FailuresInAWindowBlockAnAddressForTheCooldown) {
  internal::AuthGuard::Options o;
  o.max_failures = 3;
  o.window_s = 10;
  o.cooldown_s = 30;
  o.max_addresses = 2;
  internal::AuthGuard g(o);
  using std::chrono::seconds;
  const auto t0 = internal::AuthGuard::Clock::time_point{} + seconds(1000);
  g.Failed("10.0.0.1", "alice", true, t0);
  g.Failed("10.0.0.1", "alice", true, t0 + seconds(20));  // a new window: the first one expired
  g.Failed("10.0.0.1", "alice", true, t0 + seconds(21));
  EXPECT_TRUE(g.Admit("10.0.0.1", t0 + seconds(21)).ok());
  g.Failed("10.0.0.1", "eve", false, t0 + seconds(22));  // the third in the window
  Status s = g.Admit("10.0.0.1", t0 + seconds(23));
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_EQ(s.message(), "too many failed authentications from 10.0.0.1: retry in 29 s");
  EXPECT_TRUE(g.Admit("10.0.0.2", t0 + seconds(23)).ok());  // other addresses are not affected
  EXPECT_TRUE(g.Admit("10.0.0.1", t0 + seconds(52)).ok());  // the cooldown is over
  // At most max_addresses are remembered: the least recent is forgotten.
  g.Failed("10.0.0.2", "", false, t0 + seconds(24));
  g.Failed("10.0.0.3", "", false, t0 + seconds(25));
  g.Failed("10.0.0.3", "", false, t0 + seconds(25));
  g.Failed("10.0.0.3", "", false, t0 + seconds(25));
  EXPECT_FALSE(g.Admit("10.0.0.3", t0 + seconds(26)).ok());
  EXPECT_TRUE(g.Admit("10.0.0.1", t0 + seconds(26)).ok());  // forgotten (was blocked until t0+52 otherwise)
  auto c = g.counters();
  EXPECT_EQ(c.failures, 8u);
  EXPECT_EQ(c.failures_by_tenant["alice"], 3u);
  EXPECT_EQ(c.failures_by_tenant["(unknown)"], 1u);
  EXPECT_EQ(c.failures_by_tenant[""], 4u);
  EXPECT_EQ(c.rate_limited, 2u);
}

}  // namespace
}  // namespace sharry
