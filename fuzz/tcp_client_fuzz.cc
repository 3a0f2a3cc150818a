// libFuzzer target: a hostile memnode. The TCP transport client and the
// memnode client library (MemnodeClient) talk to a fake server in this
// process that answers the hello with the input's bytes, then closes its
// write side. The client must turn whatever it gets into a Status: never
// crash, never read past a buffer, never allocate what the server says
// without bound, never hang past its own timeouts.
//
// Input layout:
//   byte 0   bit 0 clear  a correct kWelcome frame (1 MiB region, 8 KiB
//                         messages, 4 credits) goes first, so the input's
//                         bytes answer the requests below
//   rest     the server's bytes, sent as they are
// The client connects, then runs GetStats, Alloc of two blocks, Free of
// what it got, a READ of 64 bytes and a WRITE of 16, in that order (tags
// 1, 2, 3, 4, 5), stopping at nothing: each call after a dead connection
// must fail at once.
#include <glog/logging.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "base/mutex.h"
#include "memnode/client.h"
#include "verbs/transport.h"
#include "verbs/wire.h"

namespace {

using namespace sharry;
using Clock = std::chrono::steady_clock;

// One connection at a time: the fake server plays `script` to it.
struct FakeServer {
  int listen_fd = -1;
  uint16_t port = 0;
  Mutex mu;      // the only lock here
  CondVar cv;    // with mu: done was set
  std::vector<uint8_t> script GUARDED_BY(mu);
  bool done GUARDED_BY(mu) = true;  // the last connection is over

  void Serve() EXCLUDES(mu) {
    for (;;) {
      int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      std::vector<uint8_t> s;
      {
        MutexLock l(&mu);
        s = script;
      }
      Play(fd, s);
      ::close(fd);
      MutexLock l(&mu);
      done = true;
      cv.SignalAll();
    }
  }

  static void Play(int fd, const std::vector<uint8_t>& s) {
    // Reads the hello (or whatever the client sends first) with a bound.
    uint8_t buf[4096];
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 500) > 0) (void)!::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    size_t off = 0;
    while (off < s.size()) {
      ssize_t w = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (w <= 0) break;
      off += static_cast<size_t>(w);
    }
    ::shutdown(fd, SHUT_WR);
    // Until the client hangs up (bounded): it must not wait on us forever.
    auto deadline = Clock::now() + std::chrono::seconds(10);
    while (Clock::now() < deadline) {
      pollfd q{fd, POLLIN, 0};
      if (::poll(&q, 1, 100) <= 0) continue;
      if (::recv(fd, buf, sizeof buf, 0) <= 0) return;
    }
    LOG(FATAL) << "the client neither finished nor hung up within 10 s of the server's last byte";
  }
};

FakeServer& server() {
  static FakeServer* s = [] {
    auto* x = new FakeServer;
    x->listen_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK_GE(x->listen_fd, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_EQ(::bind(x->listen_fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    CHECK_EQ(::listen(x->listen_fd, 8), 0);
    socklen_t len = sizeof a;
    CHECK_EQ(::getsockname(x->listen_fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
    x->port = ntohs(a.sin_port);
    std::thread([x] { x->Serve(); }).detach();
    return x;
  }();
  return *s;
}

std::vector<uint8_t> Welcome() {
  wire::MsgHeader h{};
  h.kind = wire::Kind::kWelcome;
  h.length = sizeof(wire::WelcomePayload);
  wire::WelcomePayload w{};
  w.client_id = 1;
  w.max_message = 8192;
  w.region_size = 1u << 20;
  w.credits = 4;
  std::vector<uint8_t> b(sizeof h + sizeof w);
  std::memcpy(b.data(), &h, sizeof h);
  std::memcpy(b.data() + sizeof h, &w, sizeof w);
  return b;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  FLAGS_minloglevel = 2;
  server();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  FakeServer& s = server();
  {
    MutexLock l(&s.mu);
    while (!s.done) s.cv.Wait(&s.mu);
    s.script.clear();
    if (!(data[0] & 1)) s.script = Welcome();
    s.script.insert(s.script.end(), data + 1, data + size);
    s.done = false;
  }
  ClientOptions o;
  o.port = s.port;
  o.connect_timeout_ms = 1000;
  o.connect_attempts = 1;
  o.op_timeout_ms = 1000;
  auto t = TransportClient::Connect(TransportKind::kTcp, o);
  if (t.ok()) {
    memnode::MemnodeClient c(std::move(*t));
    auto st = c.GetStats();
    if (st.ok()) (void)memnode::FormatStats(*st);
    std::vector<uint64_t> sizes = {64, 128}, offs;
    std::vector<Status> each;
    Status a = c.Alloc(sizes, &offs, &each);
    CHECK_EQ(offs.size(), sizes.size());
    CHECK_EQ(each.size(), sizes.size());
    std::vector<uint64_t> got;
    for (uint64_t x : offs)
      if (x != memnode::kNoOffset) got.push_back(x);
    if (a.ok()) CHECK_EQ(got.size(), sizes.size()) << "ALLOC OK without every offset";
    (void)c.Free(got);
    uint8_t buf[64] = {};
    (void)c.transport().Read(0, buf, sizeof buf);
    (void)c.transport().Write(0, buf, 16);
    if (!c.transport().alive()) {
      // Dead stays dead, at once.
      CHECK(!c.transport().Read(0, buf, 8).ok());
    }
  }
  // The next input waits until the server has seen this connection end.
  return 0;
}
