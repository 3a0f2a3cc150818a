// The TCP server against hostile and failing peers (docs/security.md):
// closed readers (no SIGPIPE), non-reading clients (backpressure, stall
// deadline), silent connections (handshake deadline, max_handshakes), bad
// hellos, oversized ranges, sessions and leases. Deterministic: every
// deadline is an option set small here, and the waits poll for the outcome
// with a generous bound.
//
// SIGPIPE is NOT ignored in this binary: a server that wrote to a closed
// socket without MSG_NOSIGNAL would kill the test.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdio>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/tcp_frames.h"
#include "tests/test_util.h"
#include "verbs/socket_util.h"
#include "verbs/transport.h"
#include "verbs/wire.h"

namespace sharry {
namespace {

using wire::Kind;
using wire::MsgHeader;
using namespace std::chrono_literals;

class TcpHardeningTest : public ::testing::Test {
 protected:
  void Start(ServerOptions o) {
    region_.assign(8 << 20, 0x5C);
    o.listen_addr = "127.0.0.1";
    o.region = region_.data();
    o.region_size = region_.size();
    auto s = TransportServer::Start(TransportKind::kTcp, o, &handler_);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }
  net::Fd Dial() { return testing::DialLoopback(server_->port()); }
  static auto Deadline() { return testing::FrameDeadline(); }
  static Status Send(int fd, Kind k, uint64_t tag, const void* payload, size_t n) {
    return testing::SendFrame(fd, k, tag, payload, n);
  }
  static MsgHeader Recv(int fd, std::vector<uint8_t>* payload) { return testing::RecvFrame(fd, payload); }
  // Says hello with `max_message`; returns the welcome and its reason.
  wire::WelcomePayload Hello(int fd, uint32_t max_message = 4096, std::string* reason = nullptr,
                             ClientId session = 0) {
    return testing::SayHello(fd, max_message, reason, session);
  }
  // True once the server closed fd (EOF), reading and dropping what comes first.
  static bool ClosedWithin(int fd, std::chrono::milliseconds limit) {
    auto end = net::Clock::now() + limit;
    std::vector<uint8_t> buf(1 << 16);
    while (net::Clock::now() < end) {
      auto n = net::RecvSome(fd, buf.data(), buf.size(), end);
      if (!n.ok()) return n.status().code() == StatusCode::kDisconnected;
    }
    return false;
  }
  template <typename Pred>
  static bool WaitFor(Pred p, std::chrono::milliseconds limit = 5000ms) {
    auto end = net::Clock::now() + limit;
    while (!p()) {
      if (net::Clock::now() > end) return false;
      std::this_thread::sleep_for(5ms);
    }
    return true;
  }
  // A well-behaved client still gets served.
  void ExpectServed() {
    ClientOptions o;
    o.port = server_->port();
    o.connect_attempts = 1;
    auto c = TransportClient::Connect(TransportKind::kTcp, o);
    ASSERT_TRUE(c.ok()) << c.status();
    std::vector<uint8_t> req = {1, 2, 3}, resp;
    ASSERT_TRUE((*c)->Call(req, &resp).ok());
    EXPECT_EQ(resp, testing::ExpectedEcho((*c)->info().client_id, req));
    std::vector<uint8_t> back(4096);
    ASSERT_TRUE((*c)->Read(4096, back.data(), back.size()).ok());
    for (uint8_t b : back) ASSERT_EQ(b, 0x5C);
  }

  std::vector<uint8_t> region_;
  testing::RecordingHandler handler_;
  std::unique_ptr<TransportServer> server_;
};

TEST_F(TcpHardeningTest, ReaderThatClosesMidReplyDoesNotKillTheServer) {
  Start({});
  for (int i = 0; i < 20; ++i) {
    net::Fd fd = Dial();
    Hello(fd.get());
    wire::RangePayload r{0, 8 << 20};
    ASSERT_TRUE(Send(fd.get(), Kind::kRead, 1, &r, sizeof r).ok());
    std::vector<uint8_t> part(1000);
    ASSERT_TRUE(net::RecvAll(fd.get(), part.data(), part.size(), Deadline()).ok());
  }  // each closes with most of the reply unread: the server's sends fail with EPIPE
  EXPECT_TRUE(WaitFor([&] { return server_->num_clients() == 0; }));
  ExpectServed();
}

TEST_F(TcpHardeningTest, NonReadingClientIsThrottledThenDropped) {
  ServerOptions o;
  o.max_unsent_bytes = 256 << 10;
  o.stall_timeout_ms = 300;
  Start(o);
  net::Fd fd = Dial();
  Hello(fd.get());
  // Pipeline requests with 1 KiB replies and never read a byte back. The
  // server must stop reading our requests once max_unsent_bytes of replies
  // wait (the socket buffers then fill and our sends stall) instead of
  // answering, and queueing, without bound.
  std::vector<uint8_t> req(1020, 7);
  MsgHeader h{};
  h.kind = Kind::kRequest;
  h.length = static_cast<uint32_t>(req.size());
  std::vector<uint8_t> frame(sizeof h + req.size());
  size_t sent = 0;
  auto end = net::Clock::now() + 3s;
  while (net::Clock::now() < end) {
    h.tag = sent + 1;
    std::memcpy(frame.data(), &h, sizeof h);
    std::memcpy(frame.data() + sizeof h, req.data(), req.size());
    // Stalled for 300 ms: the buffers are full, backpressure reached us.
    if (!net::SendAll(fd.get(), frame.data(), frame.size(), net::Clock::now() + 300ms).ok()) break;
    ++sent;
  }
  const uint64_t answered = handler_.requests.load();
  // Replies held: the bound plus what the kernel's socket buffers took.
  EXPECT_LT(answered, sent) << "the server answered everything: no backpressure";
  EXPECT_LT(answered * 1040, uint64_t{32} << 20) << "answered " << answered << " of " << sent;
  std::printf("non-reading client: sent %zu requests, server answered %llu before backpressure\n", sent,
              static_cast<unsigned long long>(answered));
  // Meanwhile others are served.
  ExpectServed();
  // Nothing is taken for stall_timeout_ms: the connection is dropped.
  EXPECT_TRUE(WaitFor([&] { return handler_.disconnects.load() >= 1; }, 5000ms));
  ExpectServed();
}

TEST_F(TcpHardeningTest, SlowReaderIsServedInFull) {
  ServerOptions o;
  o.max_unsent_bytes = 64 << 10;
  Start(o);
  ClientOptions co;
  co.port = server_->port();
  auto c = TransportClient::Connect(TransportKind::kTcp, co);
  ASSERT_TRUE(c.ok()) << c.status();
  // Many more replies than the bound in one pipelined batch: all arrive, in order.
  std::vector<std::vector<uint8_t>> bufs(64, std::vector<uint8_t>(64 << 10));
  std::vector<RemoteOp> ops;
  for (size_t i = 0; i < bufs.size(); ++i) ops.push_back({i * 4096, bufs[i].data(), bufs[i].size()});
  ASSERT_TRUE((*c)->ReadBatch(ops).ok());
  for (auto& b : bufs)
    for (uint8_t x : b) ASSERT_EQ(x, 0x5C);
}

TEST_F(TcpHardeningTest, SilentConnectionsAreClosedAfterTheHandshakeDeadline) {
  ServerOptions o;
  o.handshake_timeout_ms = 200;
  Start(o);
  net::Fd fd = Dial();
  EXPECT_TRUE(ClosedWithin(fd.get(), 3000ms));
  EXPECT_EQ(handler_.connects.load(), 0);
  ExpectServed();
}

TEST_F(TcpHardeningTest, PreHelloFloodIsBoundedAndRefusedWithAReason) {
  ServerOptions o;
  o.max_handshakes = 4;
  o.handshake_timeout_ms = 60000;
  Start(o);
  std::vector<net::Fd> silent;
  for (int i = 0; i < 4; ++i) silent.push_back(Dial());
  // Let the acceptor count them.
  std::this_thread::sleep_for(100ms);
  ClientOptions co;
  co.port = server_->port();
  co.connect_attempts = 1;
  auto c = TransportClient::Connect(TransportKind::kTcp, co);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kUnavailable) << c.status();
  EXPECT_NE(c.status().message().find("waiting for their hello"), std::string::npos) << c.status();
  silent.clear();  // they leave: room again
  EXPECT_TRUE(WaitFor([&] {
    ClientOptions again = co;
    return TransportClient::Connect(TransportKind::kTcp, again).ok();
  }));
}

TEST_F(TcpHardeningTest, HelloFieldsAreValidated) {
  Start({});
  for (uint32_t bad : {0u, 79u, wire::kMaxMessage + 1, ~0u}) {
    net::Fd fd = Dial();
    std::string reason;
    auto w = Hello(fd.get(), bad, &reason);
    EXPECT_EQ(w.status, static_cast<uint16_t>(StatusCode::kInvalidArgument)) << bad;
    EXPECT_NE(reason.find("max_message"), std::string::npos) << reason;
    EXPECT_TRUE(ClosedWithin(fd.get(), 3000ms));
  }
  EXPECT_EQ(handler_.connects.load(), 0);
  // A join without its session's token (isolation_test has the wrong and
  // the stale token).
  net::Fd fd = Dial();
  std::string reason;
  auto w = Hello(fd.get(), 4096, &reason, /*session=*/777);
  EXPECT_EQ(w.status, static_cast<uint16_t>(StatusCode::kPermissionDenied));
  EXPECT_NE(reason.find("joining session 777 needs its token"), std::string::npos) << reason;
}

TEST_F(TcpHardeningTest, RangesAboveTheFrameLimitAreRefusedInSync) {
  Start({});
  net::Fd fd = Dial();
  auto w = Hello(fd.get());
  // 4 GiB + 8: the reply header's 32-bit length could not say it.
  wire::RangePayload r{0, (uint64_t{1} << 32) + 8};
  ASSERT_TRUE(Send(fd.get(), Kind::kRead, 5, &r, sizeof r).ok());
  std::vector<uint8_t> p;
  MsgHeader h = Recv(fd.get(), &p);
  EXPECT_EQ(h.kind, Kind::kError);
  EXPECT_EQ(h.tag, 5u);
  ASSERT_FALSE(p.empty());
  EXPECT_EQ(static_cast<StatusCode>(p[0]), StatusCode::kInvalidArgument);
  // Just above the limit, inside a region it would fit: refused too.
  r = {0, wire::kMaxTcpChunk + 1};
  ASSERT_TRUE(Send(fd.get(), Kind::kRead, 6, &r, sizeof r).ok());
  h = Recv(fd.get(), &p);
  EXPECT_EQ(h.kind, Kind::kError);
  EXPECT_EQ(h.tag, 6u);
  // The stream is still in sync.
  std::vector<uint8_t> req = {9, 8, 7};
  ASSERT_TRUE(Send(fd.get(), Kind::kRequest, 7, req.data(), req.size()).ok());
  h = Recv(fd.get(), &p);
  EXPECT_EQ(h.kind, Kind::kResponse);
  EXPECT_EQ(h.tag, 7u);
  EXPECT_EQ(p, testing::ExpectedEcho(w.client_id, req));
}

TEST_F(TcpHardeningTest, MembersCloseBeforeTheRootIsReclaimed) {
  Start({});
  ClientOptions co;
  co.port = server_->port();
  auto root = TransportClient::Connect(TransportKind::kTcp, co);
  ASSERT_TRUE(root.ok()) << root.status();
  const ClientId root_id = (*root)->info().client_id;
  EXPECT_EQ((*root)->info().session, root_id);
  co.session = root_id;
  co.session_token = (*root)->info().session_token;
  auto m1 = TransportClient::Connect(TransportKind::kTcp, co);
  auto m2 = TransportClient::Connect(TransportKind::kTcp, co);
  ASSERT_TRUE(m1.ok() && m2.ok());
  EXPECT_EQ((*m1)->info().session, root_id);
  root->reset();  // the root goes: its members are closed by the server, then the root is reclaimed
  ASSERT_TRUE(WaitFor([&] { return handler_.disconnects.load() == 3; }));
  auto gone = handler_.Gone();
  EXPECT_EQ(gone.back(), root_id) << "the root's OnDisconnect (reclamation) must come last";
  std::vector<uint8_t> b(64);
  EXPECT_FALSE((*m1)->Read(0, b.data(), b.size()).ok());
  // And nobody can join the session any more.
  auto late = TransportClient::Connect(TransportKind::kTcp, co);
  ASSERT_FALSE(late.ok());
  EXPECT_NE(late.status().message().find("is gone"), std::string::npos) << late.status();
}

TEST_F(TcpHardeningTest, SilentSessionLosesItsLease) {
  ServerOptions o;
  o.lease_ms = 300;
  Start(o);
  ClientOptions co;
  co.port = server_->port();
  auto root = TransportClient::Connect(TransportKind::kTcp, co);
  ASSERT_TRUE(root.ok()) << root.status();
  EXPECT_EQ((*root)->info().lease_ms, 300u);
  co.session = (*root)->info().client_id;
  co.session_token = (*root)->info().session_token;
  auto member = TransportClient::Connect(TransportKind::kTcp, co);
  ASSERT_TRUE(member.ok());
  // Renewing through the member keeps the whole session alive.
  std::vector<uint8_t> req = {1}, resp;
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE((*member)->Call(req, &resp).ok()) << i;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(handler_.disconnects.load(), 0);
  // Silence past the lease: both are closed, and their calls fail.
  EXPECT_TRUE(WaitFor([&] { return handler_.disconnects.load() == 2; }, 5000ms));
  EXPECT_FALSE((*root)->Call(req, &resp).ok());
  EXPECT_FALSE((*member)->Call(req, &resp).ok());
}

}  // namespace
}  // namespace sharry
