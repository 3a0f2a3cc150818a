// libFuzzer target: raw bytes into the real TCP transport server. The server
// (TransportServer::Start(kTcp), one poller) runs in-process for the whole
// run with a MemnodeService over a 1 MiB region as its handler; each input
// is played over a fresh loopback connection, then the socket is closed.
//
// Input layout:
//   byte 0   bit 0 clear  a correct kHello frame goes first (past the handshake)
//            bit 1        keep the write side open at the end (the server sees
//                         no EOF; the harness reads until its deadline)
//            bit 2        close right after writing, without reading: the
//                         server's replies meet a closed peer
//   chunks   [ctl] [len] [bytes]: ctl bit 4 makes the length len * 64;
//            bit 5 prefixes the bytes with a correct kRequest header (their
//            length, a fresh tag) so RPC payloads reach the handler;
//            after the chunk: bit 0 pause 1 ms, bit 1 read what has arrived,
//            bit 2 shutdown(SHUT_WR) and write nothing more, bit 3 abort the
//            connection (RST) at the end instead of closing it.
//
// Checks: the process (server included) never crashes; every 64 inputs (and
// on the first) a well-behaved client connects and a STATS Call works, the
// server's client count drains back to zero and the fd count stays bounded.
#include <fcntl.h>
#include <glog/logging.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <dirent.h>
#include <memory>
#include <thread>
#include <vector>

#include "fuzz/service_env.h"
#include "memnode/rpc.h"
#include "verbs/transport.h"
#include "verbs/wire.h"

namespace {

using namespace sharry;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kRegion = 1u << 20;
constexpr int kReadDeadlineMs = 30;
constexpr uint64_t kCheckEvery = 64;

struct Env : fuzz::ServiceEnv {
  Env() : ServiceEnv(kRegion, alloc::SharryAllocatorOptions{}.free_batch_threshold) {}
  std::vector<uint8_t> region = std::vector<uint8_t>(kRegion);
  std::unique_ptr<TransportServer> server;
  uint64_t inputs = 0;
};

Env& env() {
  static Env* e = [] {
    auto* x = new Env;
    ServerOptions so;
    so.listen_addr = "127.0.0.1";
    so.region = x->region.data();
    so.region_size = kRegion;
    so.num_pollers = 1;
    // A tenant too, so a hello with credentials gets a challenge (and a
    // fuzzed answer the refusal); anonymous clients are served as before.
    auto creds = std::make_shared<auth::ServerCredentials>();
    creds->tenants.emplace("tenant-a", auth::Secret(std::vector<uint8_t>(32, 0x42)));
    creds->anonymous = true;
    so.credentials = creds;
    // One hostile peer at 127.0.0.1 by construction: failures are counted,
    // not rate-limited (else the well-behaved health check is locked out,
    // as intended for a real memnode: isolation_test).
    so.auth_max_failures = 0;
    auto s = TransportServer::Start(TransportKind::kTcp, so, x->service.get());
    CHECK(s.ok()) << s.status();
    x->server = std::move(*s);
    return x;
  }();
  return *e;
}

int OpenFds() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (readdir(d)) ++n;
    closedir(d);
  }
  return n;
}

// A well-behaved client still gets served.
void HealthCheck(Env& e) {
  ClientOptions o;
  o.port = e.server->port();
  o.connect_timeout_ms = 3000;
  o.connect_attempts = 2;
  o.op_timeout_ms = 5000;
  auto c = TransportClient::Connect(TransportKind::kTcp, o);
  CHECK(c.ok()) << "a well-behaved client cannot connect: " << c.status();
  std::vector<uint8_t> reply;
  Status s = (*c)->Call(memnode::EncodeStats(), &reply);
  CHECK(s.ok()) << "STATS after the fuzz inputs: " << s;
  auto st = memnode::DecodeStats(reply);
  CHECK(st.ok()) << st.status();
  CHECK_EQ(st->head.uma_bytes, kRegion);
  c->reset();
  // Every connection the inputs opened is closed: the server must notice.
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (e.server->num_clients() != 0 && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  CHECK_EQ(e.server->num_clients(), 0u) << "connections closed by their peer are still counted";
  CHECK_LT(OpenFds(), 256) << "file descriptors leak";
}

// Sends what it can without blocking; false once the peer stops taking bytes.
bool SendSome(int fd, const void* p, size_t n) {
  auto* b = static_cast<const uint8_t*>(p);
  while (n > 0) {
    ssize_t w = ::send(fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    b += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Reads until EOF, an error, or the deadline.
void Drain(int fd, Clock::time_point deadline, bool wait) {
  uint8_t buf[16 << 10];
  for (;;) {
    int ms = 0;
    if (wait) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return;
      ms = static_cast<int>(left);
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, ms) <= 0) return;
    ssize_t r = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (r <= 0) return;
  }
}

int Connect(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CHECK_GE(fd, 0) << "socket: " << std::strerror(errno);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    LOG(ERROR) << "connect: " << std::strerror(errno);
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // A peer that closes mid-reply must not kill the process through SIGPIPE
  // (the server's writev to a closed socket), whatever the server does.
  signal(SIGPIPE, SIG_IGN);
  FLAGS_minloglevel = 2;
  env();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Env& e = env();
  if (e.inputs++ % kCheckEvery == 0) HealthCheck(e);

  const int fd = Connect(e.server->port());
  CHECK_GE(fd, 0) << "the server stopped accepting connections";
  const uint8_t mode = data[0];
  bool writing = true, abort_at_end = false;
  if (!(mode & 1)) {
    wire::MsgHeader h{};
    h.kind = wire::Kind::kHello;
    h.length = sizeof(wire::HelloPayload);
    wire::HelloPayload hello{};
    hello.max_message = 8192;
    uint8_t frame[sizeof h + sizeof hello];
    std::memcpy(frame, &h, sizeof h);
    std::memcpy(frame + sizeof h, &hello, sizeof hello);
    writing = SendSome(fd, frame, sizeof frame);
  }
  uint64_t tag = 1;
  size_t pos = 1;
  while (writing && pos + 2 <= size) {
    const uint8_t ctl = data[pos];
    size_t len = data[pos + 1];
    pos += 2;
    if (ctl & 0x10) len *= 64;
    len = std::min(len, size - pos);
    if (ctl & 0x20) {
      wire::MsgHeader h{};
      h.kind = wire::Kind::kRequest;
      h.length = static_cast<uint32_t>(len);
      h.tag = tag++;
      writing = SendSome(fd, &h, sizeof h);
    }
    if (writing) writing = SendSome(fd, data + pos, len);
    pos += len;
    if (ctl & 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (ctl & 2) Drain(fd, Clock::now(), false);
    if (ctl & 8) abort_at_end = true;
    if (ctl & 4) {
      ::shutdown(fd, SHUT_WR);
      writing = false;
    }
  }
  if (!(mode & 2)) ::shutdown(fd, SHUT_WR);
  if (!(mode & 4)) Drain(fd, Clock::now() + std::chrono::milliseconds(kReadDeadlineMs), true);
  if (abort_at_end) {
    linger l{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  ::close(fd);
  return 0;
}
