// Bad input on the TCP transport's wire (frames hand-made on a raw socket):
// every malformed frame gets a clear error and the server keeps serving.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <chrono>
#include <cstring>
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

class TcpWireTest : public ::testing::Test {
 protected:
  void SetUp() override {
    region_.assign(1 << 20, 0x5C);
    ServerOptions o;
    o.listen_addr = "127.0.0.1";
    o.region = region_.data();
    o.region_size = region_.size();
    o.max_message = 4096;
    o.max_clients = 4;
    auto s = TransportServer::Start(TransportKind::kTcp, o, &handler_);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }
  net::Fd Dial() { return testing::DialLoopback(server_->port()); }
  static auto Deadline() { return testing::FrameDeadline(); }
  static void Send(int fd, Kind k, uint64_t tag, const void* payload, size_t n, uint32_t claimed_len = ~0u) {
    ASSERT_TRUE(testing::SendFrame(fd, k, tag, payload, n, claimed_len).ok());
  }
  static MsgHeader Recv(int fd, std::vector<uint8_t>* payload) { return testing::RecvFrame(fd, payload); }
  // Says hello; returns the welcome.
  wire::WelcomePayload Hello(int fd) { return testing::SayHello(fd, 4096, &last_reason_); }
  static StatusCode ErrorCode(const std::vector<uint8_t>& p) {
    return p.empty() ? StatusCode::kOk : static_cast<StatusCode>(p[0]);
  }
  static bool PeerClosed(int fd) {
    char c;
    auto s = net::RecvAll(fd, &c, 1, net::Clock::now() + std::chrono::seconds(5));
    return s.code() == StatusCode::kDisconnected;
  }
  // The next frame is a kError with `code`: a frame was refused.
  void ExpectError(int fd, StatusCode code) {
    std::vector<uint8_t> p;
    EXPECT_EQ(Recv(fd, &p).kind, Kind::kError);
    EXPECT_EQ(ErrorCode(p), code);
  }
  // A well-formed request still gets its echo on this socket.
  void ExpectEchoWorks(int fd, ClientId id, uint64_t tag) {
    auto req = testing::Pattern(33, tag);
    Send(fd, Kind::kRequest, tag, req.data(), req.size());
    std::vector<uint8_t> p;
    MsgHeader h = Recv(fd, &p);
    EXPECT_EQ(h.kind, Kind::kResponse);
    EXPECT_EQ(h.tag, tag);
    EXPECT_EQ(p, testing::ExpectedEcho(id, req));
  }

  std::string last_reason_;  // of the last welcome
  std::vector<uint8_t> region_;
  testing::EchoHandler handler_;
  std::unique_ptr<TransportServer> server_;
};

TEST_F(TcpWireTest, BadMagicIsAnErrorThenClose) {
  net::Fd fd = Dial();
  MsgHeader h{};
  h.magic = 0x1234;
  ASSERT_TRUE(net::SendAll(fd.get(), &h, sizeof h, Deadline()).ok());
  std::vector<uint8_t> p;
  MsgHeader r = Recv(fd.get(), &p);
  EXPECT_EQ(r.kind, Kind::kError);
  EXPECT_EQ(ErrorCode(p), StatusCode::kProtocol);
  EXPECT_TRUE(PeerClosed(fd.get()));
}

TEST_F(TcpWireTest, RequestBeforeHelloIsRefused) {
  net::Fd fd = Dial();
  Send(fd.get(), Kind::kRequest, 3, "abc", 3);
  std::vector<uint8_t> p;
  EXPECT_EQ(Recv(fd.get(), &p).kind, Kind::kWelcome);  // a refusal, with the reason
  ASSERT_GE(p.size(), sizeof(wire::WelcomePayload));
  wire::WelcomePayload w{};
  std::memcpy(&w, p.data(), sizeof w);
  EXPECT_EQ(w.status, static_cast<uint16_t>(StatusCode::kProtocol));
  EXPECT_NE(std::string(p.begin() + sizeof w, p.end()).find("hello"), std::string::npos);
  EXPECT_TRUE(PeerClosed(fd.get()));
  EXPECT_EQ(handler_.requests.load(), 0u);
}

TEST_F(TcpWireTest, OversizedRequestIsRefusedAndStreamContinues) {
  net::Fd fd = Dial();
  auto w = Hello(fd.get());
  std::vector<uint8_t> big(10000, 1);
  Send(fd.get(), Kind::kRequest, 7, big.data(), big.size());
  std::vector<uint8_t> p;
  MsgHeader r = Recv(fd.get(), &p);
  EXPECT_EQ(r.kind, Kind::kError);
  EXPECT_EQ(r.tag, 7u);
  EXPECT_EQ(ErrorCode(p), StatusCode::kInvalidArgument);
  ExpectEchoWorks(fd.get(), w.client_id, 8);
  EXPECT_EQ(handler_.requests.load(), 1u);
}

TEST_F(TcpWireTest, UnknownKindIsRefusedAndStreamContinues) {
  net::Fd fd = Dial();
  auto w = Hello(fd.get());
  Send(fd.get(), static_cast<Kind>(99), 5, "xyz", 3);
  ExpectError(fd.get(), StatusCode::kProtocol);
  ExpectEchoWorks(fd.get(), w.client_id, 6);
}

TEST_F(TcpWireTest, ReadOutOfRangeIsRefused) {
  net::Fd fd = Dial();
  auto w = Hello(fd.get());
  wire::RangePayload r{(1 << 20) - 10, 100};
  Send(fd.get(), Kind::kRead, 9, &r, sizeof r);
  ExpectError(fd.get(), StatusCode::kOutOfRange);
  ExpectEchoWorks(fd.get(), w.client_id, 10);
}

TEST_F(TcpWireTest, WriteWithWrongLengthOrRangeIsRefusedAndWritesNothing) {
  net::Fd fd = Dial();
  auto w = Hello(fd.get());
  // Range says 100 bytes, frame carries 50.
  std::vector<uint8_t> frame(sizeof(wire::RangePayload) + 50, 0xEE);
  wire::RangePayload r{0, 100};
  std::memcpy(frame.data(), &r, sizeof r);
  Send(fd.get(), Kind::kWrite, 11, frame.data(), frame.size());
  ExpectError(fd.get(), StatusCode::kProtocol);
  // Past the end of the region.
  r = {(1 << 20) - 20, 50};
  std::memcpy(frame.data(), &r, sizeof r);
  Send(fd.get(), Kind::kWrite, 12, frame.data(), frame.size());
  ExpectError(fd.get(), StatusCode::kOutOfRange);
  for (uint8_t b : region_) ASSERT_EQ(b, 0x5C);
  ExpectEchoWorks(fd.get(), w.client_id, 13);
}

TEST_F(TcpWireTest, TruncatedFrameThenCloseLeavesServerServing) {
  {
    net::Fd fd = Dial();
    Hello(fd.get());
    MsgHeader h{};
    h.length = 1000;
    ASSERT_TRUE(net::SendAll(fd.get(), &h, sizeof h, Deadline()).ok());
    ASSERT_TRUE(net::SendAll(fd.get(), "only-a-bit", 10, Deadline()).ok());
  }  // closed mid-frame
  EXPECT_TRUE(testing::Eventually([&] { return handler_.disconnects == 1; }));
  net::Fd fd = Dial();
  auto w = Hello(fd.get());
  ExpectEchoWorks(fd.get(), w.client_id, 1);
  EXPECT_EQ(handler_.requests.load(), 1u);
}

TEST_F(TcpWireTest, TooManyClientsAreRefusedAtHello) {
  std::vector<net::Fd> fds;
  for (int i = 0; i < 4; ++i) {
    fds.push_back(Dial());
    EXPECT_EQ(Hello(fds.back().get()).status, 0);
  }
  net::Fd extra = Dial();
  auto w = Hello(extra.get());
  EXPECT_EQ(w.status, static_cast<uint16_t>(StatusCode::kUnavailable));
  EXPECT_EQ(last_reason_, "memnode full: 4 of 4 clients");
  EXPECT_TRUE(PeerClosed(extra.get()));
  // The transport client reports it clearly, with the reason.
  ClientOptions o;
  o.port = server_->port();
  o.connect_attempts = 1;
  auto c = TransportClient::Connect(TransportKind::kTcp, o);
  EXPECT_EQ(c.status().code(), StatusCode::kUnavailable) << c.status();
  EXPECT_NE(c.status().message().find("memnode full: 4 of 4 clients"), std::string::npos) << c.status();
}

}  // namespace
}  // namespace sharry
