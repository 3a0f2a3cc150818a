// The memnode's Prometheus endpoint over a real socket (memnode/metrics_http.h):
// a scrape sees an ALLOC; other paths, methods and request bodies are
// refused; a silent or slow peer is dropped after the timeout without
// holding up other scrapes; the connection limit; start errors name their
// flag. Plain sockets, no HTTP client library.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "memnode/client.h"
#include "memnode/memnode.h"
#include "verbs/socket_util.h"

namespace sharry::memnode {
namespace {

using Clock = std::chrono::steady_clock;

struct HttpReply {
  int status = 0;       // 0: no status line (closed without an answer)
  std::string headers;  // the header lines, each ending in \r\n
  std::string body;
};

// Reads from `fd` until the server closes it (or 5 s pass).
std::string ReadToClose(int fd) {
  std::string in;
  char buf[4096];
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  for (;;) {
    auto n = net::RecvSome(fd, buf, sizeof buf, deadline);
    if (!n.ok()) break;  // closed (kDisconnected), reset, or the deadline
    in.append(buf, *n);
  }
  return in;
}

HttpReply Parse(const std::string& in) {
  HttpReply r;
  const size_t line_end = in.find("\r\n");
  const size_t head_end = in.find("\r\n\r\n");
  if (in.rfind("HTTP/1.1 ", 0) != 0 || line_end == std::string::npos || head_end == std::string::npos) return r;
  r.status = std::stoi(in.substr(9, 3));
  r.headers = in.substr(line_end + 2, head_end + 2 - (line_end + 2));
  r.body = in.substr(head_end + 4);
  return r;
}

// Sends `request` on a new connection to the endpoint and reads the reply
// (none if the server closes the connection first).
HttpReply Exchange(uint16_t port, const std::string& request) {
  auto fd = net::ConnectTcp("127.0.0.1", port, 2000);
  EXPECT_TRUE(fd.ok()) << fd.status();
  if (!fd.ok()) return {};
  if (!net::SendAll(fd->get(), request.data(), request.size(), Clock::now() + std::chrono::seconds(5)).ok()) return {};
  return Parse(ReadToClose(fd->get()));
}

HttpReply Scrape(uint16_t port) {
  return Exchange(port, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
}

// The value of the unlabelled sample `name`, or -1 if there is none.
int64_t Sample(const std::string& body, const std::string& name) {
  std::istringstream in(body);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(name + " ", 0) == 0) return std::stoll(line.substr(name.size() + 1));
  return -1;
}

// True once the server has closed `fd` (EOF or reset), waiting at most `timeout`.
bool ClosedWithin(int fd, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    char c;
    const ssize_t n = ::recv(fd, &c, 1, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) return true;
  }
}

class MetricsHttpTest : public ::testing::Test {
 protected:
  static MetricsOptions Metrics() {
    MetricsOptions m;
    m.enabled = true;
    m.port = 0;
    m.timeout_s = 1;  // the shortest libmicrohttpd allows: the silent-peer tests wait for it
    return m;
  }
  static StatusOr<std::unique_ptr<Memnode>> StartNode(const MetricsOptions& metrics) {
    MemnodeOptions o;
    o.transport = TransportKind::kTcp;
    o.server.listen_addr = "127.0.0.1";
    o.uma_bytes = 16u << 20;
    o.metrics = metrics;
    return Memnode::Start(o);
  }
  void Start(const MetricsOptions& metrics = Metrics()) {
    auto m = StartNode(metrics);
    ASSERT_TRUE(m.ok()) << m.status();
    node_ = std::move(*m);
    ASSERT_NE(node_->metrics_port(), 0);
  }
  std::unique_ptr<Memnode> node_;
};

TEST_F(MetricsHttpTest, AScrapeSeesAnAlloc) {
  Start();
  HttpReply before = Scrape(node_->metrics_port());
  ASSERT_EQ(before.status, 200) << before.headers;
  EXPECT_NE(before.headers.find("Content-Type: text/plain; version=0.0.4"), std::string::npos) << before.headers;
  EXPECT_EQ(Sample(before.body, "sharry_memnode_uma_bytes"), 16 << 20);
  EXPECT_EQ(Sample(before.body, "sharry_memnode_used_bytes"), 0);
  EXPECT_EQ(Sample(before.body, "sharry_memnode_alloc_requests_total"), 0);
  EXPECT_EQ(Sample(before.body, "sharry_memnode_metrics_scrapes_total"), 1);

  ClientOptions co;
  co.server_addr = "127.0.0.1";
  co.port = node_->port();
  auto client = MemnodeClient::Connect(TransportKind::kTcp, co);
  ASSERT_TRUE(client.ok()) << client.status();
  auto block = (*client)->AllocOne(100000);
  ASSERT_TRUE(block.ok()) << block.status();

  HttpReply after = Scrape(node_->metrics_port());
  ASSERT_EQ(after.status, 200);
  EXPECT_GE(Sample(after.body, "sharry_memnode_used_bytes"), 100000);
  EXPECT_EQ(Sample(after.body, "sharry_memnode_live_blocks"), 1);
  EXPECT_EQ(Sample(after.body, "sharry_memnode_alloc_requests_total"), 1);
  EXPECT_EQ(Sample(after.body, "sharry_memnode_clients"), 1);
  EXPECT_EQ(Sample(after.body, "sharry_memnode_clients_holding"), 1);
  EXPECT_EQ(Sample(after.body, "sharry_memnode_metrics_scrapes_total"), 2);
}

TEST_F(MetricsHttpTest, RefusesOtherPathsMethodsAndBodies) {
  Start();
  const uint16_t port = node_->metrics_port();
  HttpReply r = Exchange(port, "GET /other HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(r.status, 404);
  r = Exchange(port, "GET /metrics/../x HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(r.status, 404);
  r = Exchange(port, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(r.status, 405);
  EXPECT_NE(r.headers.find("Allow: GET"), std::string::npos) << r.headers;
  r = Exchange(port, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(r.status, 405);
  r = Exchange(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
  EXPECT_EQ(r.status, 400);
  r = Exchange(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
  EXPECT_EQ(r.status, 400);
  // Not HTTP at all: no 200, and the connection is closed.
  r = Exchange(port, "\x16\x03\x01 hello?\r\n\r\n");
  EXPECT_NE(r.status, 200);
  HttpReply ok = Scrape(port);
  ASSERT_EQ(ok.status, 200);
  EXPECT_EQ(Sample(ok.body, "sharry_memnode_metrics_refused_requests_total"), 6);
  EXPECT_EQ(Sample(ok.body, "sharry_memnode_metrics_scrapes_total"), 1);
}

TEST_F(MetricsHttpTest, SilentAndSlowPeersAreDroppedWithoutHoldingUpScrapes) {
  Start();
  const uint16_t port = node_->metrics_port();
  auto silent = net::ConnectTcp("127.0.0.1", port, 2000);
  ASSERT_TRUE(silent.ok()) << silent.status();
  auto slow = net::ConnectTcp("127.0.0.1", port, 2000);
  ASSERT_TRUE(slow.ok()) << slow.status();
  const std::string half = "GET /metr";
  ASSERT_TRUE(net::SendAll(slow->get(), half.data(), half.size(), Clock::now() + std::chrono::seconds(2)).ok());
  // Meanwhile a scrape is answered at once.
  const auto t0 = Clock::now();
  EXPECT_EQ(Scrape(port).status, 200);
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(900));
  // Both are closed after the 1 s timeout (libmicrohttpd checks it with a
  // second's resolution).
  EXPECT_TRUE(ClosedWithin(silent->get(), std::chrono::seconds(5)));
  EXPECT_TRUE(ClosedWithin(slow->get(), std::chrono::seconds(5)));
  EXPECT_EQ(Scrape(port).status, 200);
}

TEST_F(MetricsHttpTest, ConnectionsBeyondTheLimitAreClosed) {
  MetricsOptions m = Metrics();
  m.max_connections = 4;
  m.max_connections_per_ip = 2;
  Start(m);
  const uint16_t port = node_->metrics_port();
  std::vector<net::Fd> held;
  for (int i = 0; i < 2; ++i) {
    auto fd = net::ConnectTcp("127.0.0.1", port, 2000);
    ASSERT_TRUE(fd.ok()) << fd.status();
    held.push_back(std::move(*fd));
  }
  // A third from the same address is accepted by the kernel, then closed
  // unanswered.
  EXPECT_EQ(Scrape(port).status, 0);
  held.clear();  // they go: scrapes are answered again
  bool answered = false;
  for (int i = 0; i < 100 && !answered; ++i) {
    answered = Scrape(port).status == 200;
    if (!answered) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(answered);
}

TEST_F(MetricsHttpTest, StartErrorsNameTheFlag) {
  // Off: no endpoint.
  auto off = StartNode(MetricsOptions{});
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_EQ((*off)->metrics_port(), 0);

  uint16_t taken = 0;
  auto other = net::ListenTcp("127.0.0.1", 0, 1, &taken);
  ASSERT_TRUE(other.ok()) << other.status();
  MetricsOptions m = Metrics();
  m.port = taken;
  auto in_use = StartNode(m);
  ASSERT_FALSE(in_use.ok());
  EXPECT_EQ(in_use.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(in_use.status().message().rfind("--metrics_port=" + std::to_string(taken) + ":", 0), 0u)
      << in_use.status();
  EXPECT_NE(in_use.status().message().find("in use"), std::string::npos) << in_use.status();

  m = Metrics();
  m.listen_addr = "no.such.host.invalid";
  auto bad = StartNode(m);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message().rfind("--metrics_listen=no.such.host.invalid:", 0), 0u) << bad.status();

  // Not loopback: refused unless allowed (the binary allows it when
  // --metrics_listen is given explicitly).
  m = Metrics();
  m.listen_addr = "0.0.0.0";
  auto open = StartNode(m);
  ASSERT_FALSE(open.ok());
  EXPECT_EQ(open.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(open.status().message().find("not a loopback address"), std::string::npos) << open.status();
  m.allow_non_loopback = true;
  auto allowed = StartNode(m);
  ASSERT_TRUE(allowed.ok()) << allowed.status();
  EXPECT_EQ(Scrape((*allowed)->metrics_port()).status, 200);
}

}  // namespace
}  // namespace sharry::memnode
