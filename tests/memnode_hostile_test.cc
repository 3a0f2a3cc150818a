// The memnode process against hostile TCP peers. Each test starts the real
// `memnode` binary (argv[1], passed by ctest as $<TARGET_FILE:memnode>) as a
// child process on loopback, plays a hostile client with raw sockets built
// from verbs/wire.h, and asserts the FIXED behaviour of the hardened TCP
// transport:
//   - the memnode process survives (waitpid WNOHANG),
//   - a well-behaved client (MemnodeClient over TransportClient) is still
//     served afterwards (and, where it matters, meanwhile),
//   - the memnode's resources stay bounded: RSS (/proc/<pid>/status VmRSS),
//     descriptors (/proc/<pid>/fd), CPU (/proc/<pid>/stat utime+stime) and
//     the size of its stderr log.
// Every test prints one "[hostile] ..." summary line with what it measured.
//
//   memnode_hostile_test /path/to/memnode [gtest flags]
//   (or SHARRY_MEMNODE=/path/to/memnode, or ../tools/memnode next to it)
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "memnode/client.h"
#include "memnode/rpc.h"
#include "offload/kernel.h"
#include "offload/spec.h"
#include "tests/test_util.h"
#include "base/proc_stats.h"
#include "verbs/socket_util.h"
#include "verbs/wire.h"

namespace sharry::memnode {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;
using wire::Kind;
using wire::MsgHeader;

// ---------------------------------------------------------------- knobs
// The hardening's numbers, passed to the memnode as flags. The waits below
// are deadlines, not sleeps: every wait polls and returns as soon as the
// condition holds.

// Passed as --handshake_timeout_ms: a connection that has not said hello by
// then is closed.
constexpr int kHandshakeTimeoutMs = 2000;
// Passed as --stall_timeout_ms: a connection whose replies make no progress
// for this long is dropped.
constexpr int kStallTimeoutMs = 3000;
// Passed as --max_unsent_kb: replies queued for one connection before the
// memnode stops reading its requests.
constexpr int kMaxUnsentKb = 4096;

// How long a test waits for the memnode to close silent (pre-hello)
// connections: the handshake deadline plus ample slack.
constexpr auto kHandshakeCloseWait = seconds(15);
// How long a test waits for the memnode to drop a stalled (non-reading)
// connection: the stall deadline plus ample slack.
constexpr auto kStallCloseWait = seconds(30);
// The memnode's RSS may grow at most this much over its baseline under a flood.
constexpr long kMaxRssGrowthKb = 64 << 10;
// CPU of the memnode while it is idle-but-attacked: at most this % of one
// core. (The issue says < 50 %; on a shared 2-core host a spinning memnode
// measured 41-96 %, a non-spinning one 0 %, so the line sits lower, at 25 %.)
constexpr double kMaxCpuPct = 25.0;
// Its stderr log may hold at most this after a descriptor-exhaustion window.
constexpr off_t kMaxLogBytes = 1 << 20;
// Pending-handshake connections the memnode may hold on top of max_clients:
// passed as --max_handshakes.
constexpr int kPendingHandshakeSlack = 8;
// Safety valve: a flood stops once the memnode grew this much (the test has
// failed by then; this only protects the shared host).
constexpr long kSafetyValveKb = 768 << 10;
// The hostile flood of finding 2 lasts at most this long, or this many bytes sent.
constexpr auto kFloodDuration = seconds(3);
constexpr uint64_t kFloodMaxSentBytes = 1ull << 30;

std::string g_memnode_path;  // set by main()

void Summary(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void Summary(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  std::printf("[hostile] %s\n", buf);
  std::fflush(stdout);
}

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Polls pred every `every` until it holds or `timeout` passes.
bool PollUntil(const std::function<bool()>& pred, Clock::duration timeout, milliseconds every = milliseconds(20)) {
  auto end = Clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (Clock::now() >= end) return false;
    std::this_thread::sleep_for(every);
  }
}

// ------------------------------------------------------- the memnode process

struct MemnodeSpec {
  uint64_t uma_mb = 64;
  int max_clients = 256;
  rlim_t nofile = 0;  // RLIMIT_NOFILE of the child (0: inherited)
  std::vector<std::string> extra;
};

// The memnode as a child process; killed (SIGKILL) and reaped on destruction.
class MemnodeProcess {
 public:
  static std::unique_ptr<MemnodeProcess> Start(const MemnodeSpec& spec, std::string* err) {
    std::unique_ptr<MemnodeProcess> m(new MemnodeProcess);
    char tmpl[] = "/tmp/sharry_hostile_XXXXXX";
    if (!mkdtemp(tmpl)) {
      *err = std::string("mkdtemp: ") + std::strerror(errno);
      return nullptr;
    }
    m->dir_ = tmpl;
    m->log_path_ = m->dir_ + "/memnode.stderr";
    std::string port_file = m->dir_ + "/port";
    std::vector<std::string> args = {g_memnode_path,
                                     "--transport=tcp",
                                     "--listen=127.0.0.1",
                                     "--port=0",
                                     "--port_file=" + port_file,
                                     "--uma_mb=" + std::to_string(spec.uma_mb),
                                     "--max_clients=" + std::to_string(spec.max_clients),
                                     "--sections=1",
                                     "--pollers=1",
                                     "--stats_interval=0"};
    args.push_back("--handshake_timeout_ms=" + std::to_string(kHandshakeTimeoutMs));
    args.push_back("--stall_timeout_ms=" + std::to_string(kStallTimeoutMs));
    args.push_back("--max_unsent_kb=" + std::to_string(kMaxUnsentKb));
    args.push_back("--max_handshakes=" + std::to_string(kPendingHandshakeSlack));
    args.insert(args.end(), spec.extra.begin(), spec.extra.end());
    for (size_t i = 1; i < args.size(); ++i) m->cmdline_ += (i > 1 ? " " : "") + args[i];
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    // Everything the child needs is prepared before fork: after it, only
    // async-signal-safe calls.
    int logfd = open(m->log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int outfd = open((m->dir_ + "/memnode.stdout").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (logfd < 0 || outfd < 0) {
      *err = std::string("open log: ") + std::strerror(errno);
      return nullptr;
    }
    rlimit nofile{spec.nofile, spec.nofile};
    pid_t pid = fork();
    if (pid == 0) {
      // The test ignores SIGPIPE; the memnode must face the default, which an
      // ignored disposition would survive exec and hide.
      signal(SIGPIPE, SIG_DFL);
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      if (spec.nofile != 0 && setrlimit(RLIMIT_NOFILE, &nofile) != 0) _exit(126);
      dup2(outfd, STDOUT_FILENO);
      dup2(logfd, STDERR_FILENO);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(logfd);
    close(outfd);
    if (pid < 0) {
      *err = std::string("fork: ") + std::strerror(errno);
      return nullptr;
    }
    m->pid_ = pid;
    // Wait (bounded) for the port file, or for the child to die.
    bool up = PollUntil(
        [&] {
          if (!m->Alive()) return true;
          std::ifstream f(port_file);
          int port = 0;
          if (f >> port && port > 0) {
            m->port_ = static_cast<uint16_t>(port);
            return true;
          }
          return false;
        },
        seconds(30));
    if (!up || m->port_ == 0) {
      *err = "memnode did not start (" + m->cmdline_ + "): " + m->ExitDescription() + "\n" + m->LogTail();
      return nullptr;
    }
    return m;
  }

  ~MemnodeProcess() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      int st;
      while (waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
      }
    }
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }

  pid_t pid() const { return pid_; }
  uint16_t port() const { return port_; }
  const std::string& cmdline() const { return cmdline_; }

  // Still running? Reaps it (once) if not.
  bool Alive() {
    if (reaped_) return false;
    int st = 0;
    pid_t r = waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      status_ = st;
      return false;
    }
    return true;
  }
  std::string ExitDescription() {
    if (Alive()) return "running";
    if (WIFSIGNALED(status_))
      return "killed by signal " + std::to_string(WTERMSIG(status_)) + " (" + strsignal(WTERMSIG(status_)) + ")";
    if (WIFEXITED(status_)) return "exited with status " + std::to_string(WEXITSTATUS(status_));
    return "gone";
  }
  // For assertion messages: why it is dead, and its last log lines.
  std::string Why() { return ExitDescription() + "; log tail:\n" + LogTail(); }

  long RssKb() const { return proc::RssKb(pid_); }
  int FdCount() const { return proc::FdCount(pid_); }
  long CpuTicks() const { return proc::CpuTicks(pid_); }  // utime + stime, clock ticks
  // CPU use over a window of `window`, in % of one core.
  double CpuPercentOver(Clock::duration window) const {
    long t0 = CpuTicks();
    auto w0 = Clock::now();
    std::this_thread::sleep_for(window);  // the measurement window itself
    long t1 = CpuTicks();
    double wall = SecondsSince(w0);
    return 100.0 * static_cast<double>(t1 - t0) / static_cast<double>(sysconf(_SC_CLK_TCK)) / wall;
  }
  off_t LogBytes() const {
    struct stat st{};
    return stat(log_path_.c_str(), &st) == 0 ? st.st_size : -1;
  }
  std::string LogTail(size_t max = 2000) const {
    std::ifstream f(log_path_, std::ios::binary);
    std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    return s.size() > max ? "..." + s.substr(s.size() - max) : s;
  }
  // RSS sampled until two samples 100 ms apart agree (bounded).
  long SettledRssKb(Clock::duration timeout = seconds(2)) const {
    long last = RssKb();
    PollUntil(
        [&] {
          long now = RssKb();
          bool same = now == last;
          last = now;
          return same;
        },
        timeout, milliseconds(100));
    return last;
  }

 private:
  MemnodeProcess() = default;
  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
  uint16_t port_ = 0;
  std::string dir_, log_path_, cmdline_;
};

// --------------------------------------------------------- well-behaved client

ClientOptions WellBehavedOptions(uint16_t port) {
  ClientOptions o;
  o.server_addr = "127.0.0.1";
  o.port = port;
  o.connect_attempts = 1;
  o.connect_timeout_ms = 3000;
  o.op_timeout_ms = 5000;
  return o;
}

// Connects and asks for STATS once.
Status WellBehavedStats(uint16_t port) {
  auto c = MemnodeClient::Connect(TransportKind::kTcp, WellBehavedOptions(port));
  if (!c.ok()) return c.status();
  auto st = (*c)->GetStats();
  return st.ok() ? Status::Ok() : st.status();
}

// ALLOC + FREE once.
Status WellBehavedAllocFree(uint16_t port) {
  auto c = MemnodeClient::Connect(TransportKind::kTcp, WellBehavedOptions(port));
  if (!c.ok()) return c.status();
  auto off = (*c)->AllocOne(4096);
  if (!off.ok()) return off.status();
  uint64_t o = *off;
  return (*c)->Free({&o, 1});
}

// Retries WellBehavedStats until it succeeds or `timeout` passes (the memnode
// may still be tearing down what the hostile peer left). Returns the last status.
Status WellBehavedEventually(uint16_t port, Clock::duration timeout, double* took_s = nullptr) {
  auto t0 = Clock::now();
  Status last;
  PollUntil(
      [&] {
        last = WellBehavedStats(port);
        return last.ok();
      },
      timeout, milliseconds(100));
  if (took_s) *took_s = SecondsSince(t0);
  return last;
}

// A refusal that says the memnode is at its client limit.
bool SaysWhyFull(const std::string& msg) {
  for (const char* w : {"full", "clients", "capacity", "limit", "busy"})
    if (msg.find(w) != std::string::npos) return true;
  return false;
}

// ------------------------------------------------------------- raw sockets

// A raw socket to the memnode, closed on destruction.
class RawConn {
 public:
  RawConn() = default;
  explicit RawConn(int fd) : fd_(fd) {}
  RawConn(RawConn&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  RawConn& operator=(RawConn&& o) noexcept {
    if (this != &o) {
      Close();
      fd_ = o.fd_;
      o.fd_ = -1;
    }
    return *this;
  }
  ~RawConn() { Close(); }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  int fd() const { return fd_; }

  // Starts a non-blocking connect to 127.0.0.1:port; fd() < 0 on failure.
  static RawConn Open(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return RawConn();
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 && errno != EINPROGRESS) {
      close(fd);
      return RawConn();
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return RawConn(fd);
  }
  // Connect completed (established) by the deadline?
  bool WaitConnected(Clock::time_point deadline) const {
    for (;;) {
      pollfd p{fd_, POLLOUT, 0};
      int ms = static_cast<int>(std::max<long>(0, std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count()));
      int r = poll(&p, 1, ms);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
      return err == 0;
    }
  }

  enum class Io { kOk, kEof, kError, kTimeout };
  Io SendAll(const void* buf, size_t n, Clock::time_point deadline) const {
    auto* p = static_cast<const uint8_t*>(buf);
    while (n > 0) {
      ssize_t r = send(fd_, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (r > 0) {
        p += r;
        n -= static_cast<size_t>(r);
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return Io::kError;
      if (!WaitFor(POLLOUT, deadline)) return Io::kTimeout;
    }
    return Io::kOk;
  }
  Io RecvAll(void* buf, size_t n, Clock::time_point deadline) const {
    auto* p = static_cast<uint8_t*>(buf);
    while (n > 0) {
      ssize_t r = recv(fd_, p, n, MSG_DONTWAIT);
      if (r > 0) {
        p += r;
        n -= static_cast<size_t>(r);
        continue;
      }
      if (r == 0) return Io::kEof;
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return Io::kError;
      if (!WaitFor(POLLIN, deadline)) return Io::kTimeout;
    }
    return Io::kOk;
  }
  bool WaitFor(short events, Clock::time_point deadline) const {
    for (;;) {
      int ms = static_cast<int>(std::max<long>(0, std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count()));
      pollfd p{fd_, events, 0};
      int r = poll(&p, 1, ms);
      if (r < 0 && errno == EINTR) continue;
      return r > 0;
    }
  }

  // Did the memnode close (FIN or RST) this connection? Looks without reading.
  bool ClosedByPeer() const { return sharry::net::ClosedByPeer(fd_); }

  // Sends a hello (max_message as given).
  Io SendHello(uint32_t max_message, Clock::time_point deadline) const {
    struct {
      MsgHeader h;
      wire::HelloPayload p;
    } f{};
    f.h.kind = Kind::kHello;
    f.h.length = sizeof(wire::HelloPayload);
    f.p.max_message = max_message;
    return SendAll(&f, sizeof f, deadline);
  }

  // Reads one frame: header, then up to `max_payload` bytes of payload
  // (a longer payload is a failure: kError).
  Io ReadFrame(MsgHeader* h, std::vector<uint8_t>* payload, Clock::time_point deadline,
               size_t max_payload = 1 << 20) const {
    Io r = RecvAll(h, sizeof *h, deadline);
    if (r != Io::kOk) return r;
    if (h->length > max_payload) return Io::kError;
    payload->resize(h->length);
    return h->length ? RecvAll(payload->data(), h->length, deadline) : Io::kOk;
  }

  // Connect + hello + a welcome with status 0, all by the deadline.
  bool Greet(Clock::time_point deadline, std::string* why) const {
    if (!WaitConnected(deadline)) return *why = "connect failed", false;
    if (SendHello(8192, deadline) != Io::kOk) return *why = "hello not sent", false;
    MsgHeader h{};
    std::vector<uint8_t> p;
    Io r = ReadFrame(&h, &p, deadline);
    if (r != Io::kOk) return *why = "no welcome (io " + std::to_string(int(r)) + ")", false;
    if (h.magic != wire::kMagic || h.kind != Kind::kWelcome || p.size() < sizeof(wire::WelcomePayload))
      return *why = "bad welcome frame", false;
    wire::WelcomePayload w;
    std::memcpy(&w, p.data(), sizeof w);
    if (w.status != 0) return *why = "refused with status " + std::to_string(w.status), false;
    return true;
  }

 private:
  int fd_ = -1;
};

// A greeted raw connection (asserts on failure).
RawConn GreetedConn(uint16_t port) {
  RawConn c = RawConn::Open(port);
  EXPECT_GE(c.fd(), 0);
  std::string why;
  EXPECT_TRUE(c.Greet(Clock::now() + seconds(5), &why)) << why;
  return c;
}

std::vector<uint8_t> ReadFrameBytes(uint64_t tag, uint64_t offset, uint64_t len) {
  std::vector<uint8_t> f(sizeof(MsgHeader) + sizeof(wire::RangePayload));
  MsgHeader h{};
  h.kind = Kind::kRead;
  h.length = sizeof(wire::RangePayload);
  h.tag = tag;
  wire::RangePayload r{offset, len};
  std::memcpy(f.data(), &h, sizeof h);
  std::memcpy(f.data() + sizeof h, &r, sizeof r);
  return f;
}

std::vector<uint8_t> StatsFrameBytes(uint64_t tag) {
  std::vector<uint8_t> req = EncodeStats();
  std::vector<uint8_t> f(sizeof(MsgHeader) + req.size());
  MsgHeader h{};
  h.kind = Kind::kRequest;
  h.length = static_cast<uint32_t>(req.size());
  h.tag = tag;
  std::memcpy(f.data(), &h, sizeof h);
  std::memcpy(f.data() + sizeof h, req.data(), req.size());
  return f;
}

// Allocates one block of `bytes` on raw connection `c` (an ALLOC request
// frame, tag 0x5A11): the memnode confines READ/WRITE to a client's own
// blocks (issue #11), so a hostile client reads its own memory. Returns its
// offset, or UINT64_MAX.
uint64_t AllocOn(const RawConn& c, uint64_t bytes) {
  std::vector<uint8_t> req = EncodeAlloc({bytes});
  std::vector<uint8_t> f(sizeof(MsgHeader) + req.size());
  MsgHeader h{};
  h.kind = Kind::kRequest;
  h.length = static_cast<uint32_t>(req.size());
  h.tag = 0x5A11;
  std::memcpy(f.data(), &h, sizeof h);
  std::memcpy(f.data() + sizeof h, req.data(), req.size());
  const auto deadline = Clock::now() + seconds(5);
  if (c.SendAll(f.data(), f.size(), deadline) != RawConn::Io::kOk) return UINT64_MAX;
  MsgHeader rh{};
  std::vector<uint8_t> p;
  if (c.ReadFrame(&rh, &p, deadline) != RawConn::Io::kOk || rh.kind != Kind::kResponse) return UINT64_MAX;
  if (p.size() < sizeof(ReplyHeader) + sizeof(AllocEntry)) return UINT64_MAX;
  AllocEntry e;
  std::memcpy(&e, p.data() + sizeof(ReplyHeader), sizeof e);
  return e.code == ElementCode::kOk ? e.offset : UINT64_MAX;
}

// Opens n silent connections (never a byte sent); waits (bounded) for the
// connects to complete. Returns them; *established counts completed ones.
std::vector<RawConn> OpenSilent(uint16_t port, int n, Clock::duration wait, int* established) {
  std::vector<RawConn> v;
  v.reserve(n);
  for (int i = 0; i < n; ++i) {
    RawConn c = RawConn::Open(port);
    if (c.fd() >= 0) v.push_back(std::move(c));
  }
  auto deadline = Clock::now() + wait;
  *established = 0;
  for (auto& c : v)
    if (c.WaitConnected(deadline)) ++*established;
  return v;
}

int CountClosedByPeer(const std::vector<RawConn>& v) {
  int n = 0;
  for (auto& c : v)
    if (c.ClosedByPeer()) ++n;
  return n;
}

// Starts the memnode or fails the test.
#define START_MEMNODE(var, ...)                                          \
  std::string var##_err;                                                 \
  auto var = MemnodeProcess::Start(MemnodeSpec{__VA_ARGS__}, &var##_err); \
  ASSERT_TRUE(var) << var##_err

// ===================================================================== tests

// Finding 1. A client asks for a large READ, reads part of the reply and
// closes (FIN first, then the unread bytes turn it into a reset). The
// memnode's next writev used to raise SIGPIPE and kill it. Fixed: it survives
// every time.
TEST(MemnodeHostile, PartialReadThenCloseDoesNotKillTheMemnode) {
  START_MEMNODE(m, .uma_mb = 64);
  const int base_fds = m->FdCount();  // before any connection
  ASSERT_TRUE(WellBehavedStats(m->port()).ok());
  constexpr int kRounds = 20;
  constexpr uint64_t kReadBytes = 32u << 20;
  int survived = 0;
  for (int i = 0; i < kRounds; ++i) {
    if (!m->Alive()) break;
    // A failure to talk to the memnode is its death (the finding) or a bug here.
    auto dead = [&] { return PollUntil([&] { return !m->Alive(); }, milliseconds(500)); };
    RawConn c = RawConn::Open(m->port());
    std::string why;
    if (!c.Greet(Clock::now() + seconds(5), &why)) {
      if (dead()) break;
      FAIL() << "round " << i << ": " << why;
    }
    const uint64_t block = AllocOn(c, kReadBytes);
    if (block == UINT64_MAX) {
      if (dead()) break;
      FAIL() << "round " << i << ": no block of " << kReadBytes << " B to read";
    }
    auto frame = ReadFrameBytes(100 + i, block, kReadBytes);
    if (c.SendAll(frame.data(), frame.size(), Clock::now() + seconds(5)) != RawConn::Io::kOk) {
      if (dead()) break;
      FAIL() << "round " << i << ": read request not sent";
    }
    // Read the reply's header and 1 MiB of its 32 MiB, then leave.
    std::vector<uint8_t> part(sizeof(MsgHeader) + (1u << 20));
    if (c.RecvAll(part.data(), part.size(), Clock::now() + seconds(5)) != RawConn::Io::kOk) {
      if (dead()) break;
      FAIL() << "round " << i << ": no reply to the read";
    }
    shutdown(c.fd(), SHUT_WR);
    c.Close();
    // Sync point: the memnode has dealt with the closed socket (its fd is
    // gone) or it died doing so.
    PollUntil([&] { return !m->Alive() || m->FdCount() <= base_fds; }, seconds(3));
    if (!m->Alive()) break;
    ++survived;
  }
  PollUntil([&] { return !m->Alive(); }, milliseconds(500));
  bool alive = m->Alive();
  Summary("PartialReadThenClose: survived %d of %d partial 32 MiB reads; memnode %s", survived, kRounds,
          m->ExitDescription().c_str());
  ASSERT_TRUE(alive) << "memnode died after " << survived << " partial reads: " << m->Why();
  EXPECT_EQ(survived, kRounds);
  Status s = WellBehavedAllocFree(m->port());
  EXPECT_TRUE(s.ok()) << s;
}

// Finding 2. After hello, a client pipelines requests as fast as it can and
// never reads a reply. Fixed: the memnode's memory stays bounded (it stops
// reading a peer whose replies pile up), a well-behaved client is served
// meanwhile, the stalled connection is dropped within a deadline, and once
// it is gone the memnode does not keep growing.
void NonReadingFlood(const char* name, bool reads) {
  START_MEMNODE(m, .uma_mb = 64);
  ASSERT_TRUE(WellBehavedStats(m->port()).ok());
  RawConn c = GreetedConn(m->port());
  ASSERT_GE(c.fd(), 0);
  // The flood reads the client's own 32 MiB (the memnode confines READs to
  // a client's blocks). One well-behaved pass over it first, so that what
  // reading those pages costs the memnode once (nothing in a release build;
  // TSan's shadow of the bytes its sendmsg interceptor sees) is in the
  // baseline, not counted as growth.
  const uint64_t block = reads ? AllocOn(c, 32u << 20) : 0;
  ASSERT_NE(block, UINT64_MAX);
  for (uint64_t i = 0; reads && i < 32; ++i) {
    auto f = ReadFrameBytes(1000 + i, block + (i << 20), 1u << 20);
    ASSERT_EQ(c.SendAll(f.data(), f.size(), Clock::now() + seconds(5)), RawConn::Io::kOk);
    MsgHeader h{};
    std::vector<uint8_t> p;
    ASSERT_EQ(c.ReadFrame(&h, &p, Clock::now() + seconds(10)), RawConn::Io::kOk);
    ASSERT_EQ(h.kind, Kind::kReadData);
    ASSERT_EQ(p.size(), 1u << 20);
  }
  const long base_kb = m->SettledRssKb();

  // A 64 KiB batch of frames, resent with fresh tags.
  const size_t frame_bytes = reads ? ReadFrameBytes(0, 0, 0).size() : StatsFrameBytes(0).size();
  const size_t per_batch = (64u << 10) / frame_bytes;
  std::vector<uint8_t> batch(per_batch * frame_bytes);
  uint64_t tag = 1;
  auto fill = [&] {
    for (size_t i = 0; i < per_batch; ++i) {
      auto f = reads ? ReadFrameBytes(tag++, block + ((i % 31) << 20), 1u << 20) : StatsFrameBytes(tag++);
      std::memcpy(batch.data() + i * frame_bytes, f.data(), frame_bytes);
    }
  };
  const auto t0 = Clock::now();
  auto last_progress = t0;
  uint64_t sent = 0;
  long peak_kb = base_kb;
  bool valve = false, closed = false;
  double closed_at = -1;
  auto next_sample = t0;
  size_t off = batch.size();
  while (Clock::now() - t0 < kFloodDuration && sent < kFloodMaxSentBytes) {
    if (Clock::now() >= next_sample) {
      next_sample = Clock::now() + milliseconds(100);
      peak_kb = std::max(peak_kb, m->RssKb());
      if (peak_kb - base_kb > kSafetyValveKb) {
        valve = true;
        break;
      }
      if (!m->Alive()) break;
    }
    if (off == batch.size()) {
      fill();
      off = 0;
    }
    ssize_t r = send(c.fd(), batch.data() + off, batch.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (r > 0) {
      off += static_cast<size_t>(r);
      sent += static_cast<uint64_t>(r);
      last_progress = Clock::now();
      continue;
    }
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      c.WaitFor(POLLOUT, std::min(next_sample, t0 + kFloodDuration));
      continue;
    }
    closed = true;  // EPIPE / ECONNRESET: the memnode dropped us
    closed_at = SecondsSince(t0);
    break;
  }
  const double flood_s = SecondsSince(t0);
  peak_kb = std::max(peak_kb, m->RssKb());
  const uint64_t frames = sent / frame_bytes;
  ASSERT_TRUE(m->Alive()) << "memnode died under the flood: " << m->Why();

  // A well-behaved client is served while the hostile one is stuck.
  auto w0 = Clock::now();
  Status wb = WellBehavedStats(m->port());
  const double wb_s = SecondsSince(w0);

  // The stalled connection is dropped within the deadline.
  if (!closed) {
    closed = PollUntil([&] { return c.ClosedByPeer() || !m->Alive(); }, kStallCloseWait, milliseconds(50)) &&
             m->Alive();
    if (closed) closed_at = SecondsSince(t0);
  }
  const double after_stall = closed ? closed_at - std::chrono::duration<double>(last_progress - t0).count() : -1;
  peak_kb = std::max(peak_kb, m->RssKb());

  // Once the client is gone, the memnode does not keep growing.
  c.Close();
  const long at_close_kb = m->RssKb();
  long after_kb = at_close_kb;
  PollUntil(
      [&] {
        after_kb = std::max(after_kb, m->RssKb());
        return false;
      },
      seconds(1), milliseconds(100));
  const bool alive_after = m->Alive();

  Summary("%s: flood %.1f s, %llu frames (%.1f MiB sent%s%s); memnode RSS growth %.1f MiB (limit %ld), "
          "%+.1f MiB in the 1 s after close; well-behaved STATS %s in %.2f s; connection %s%s; memnode %s",
          name, flood_s, static_cast<unsigned long long>(frames), static_cast<double>(sent) / (1 << 20),
          reads ? ", 1 MiB reads: " : "", reads ? (std::to_string(frames >> 10) + " GiB requested").c_str() : "",
          static_cast<double>(peak_kb - base_kb) / 1024, kMaxRssGrowthKb >> 10,
          static_cast<double>(after_kb - at_close_kb) / 1024, wb.ok() ? "ok" : wb.ToString().c_str(), wb_s,
          closed ? ("dropped after " + std::to_string(closed_at) + " s (" + std::to_string(after_stall) +
                    " s after its last progress)").c_str()
                 : ("NOT dropped within " + std::to_string(kStallCloseWait.count()) + " s").c_str(),
          valve ? "; flood stopped by the safety valve" : "", m->ExitDescription().c_str());

  EXPECT_LE(peak_kb - base_kb, kMaxRssGrowthKb) << "RSS grew by " << (peak_kb - base_kb) / 1024 << " MiB";
  EXPECT_FALSE(valve) << "the flood was stopped by the safety valve at " << kSafetyValveKb / 1024 << " MiB";
  EXPECT_TRUE(wb.ok()) << wb;
  EXPECT_LT(wb_s, 5.0);
  EXPECT_TRUE(closed) << "the non-reading connection was not dropped within " << kStallCloseWait.count() << " s";
  EXPECT_LE(after_kb - at_close_kb, 8 << 10) << "RSS kept growing after the client closed";
  ASSERT_TRUE(alive_after) << "memnode died after the hostile client closed: " << m->Why();
  Status after = WellBehavedEventually(m->port(), seconds(5));
  EXPECT_TRUE(after.ok()) << after;
}

TEST(MemnodeHostile, NonReadingClientPipeliningReads) { NonReadingFlood("NonReadingReads", true); }
TEST(MemnodeHostile, NonReadingClientPipeliningStats) { NonReadingFlood("NonReadingStats", false); }

// Finding 3. Thousands of connections that never say hello, against
// --max_clients=16. Fixed: memory stays bounded, a well-behaved client is
// served or refused with a reason, the silent ones are closed after the
// handshake deadline, and afterwards a well-behaved client is served.
TEST(MemnodeHostile, PreHelloFlood) {
  START_MEMNODE(m, .uma_mb = 64, .max_clients = 16);
  ASSERT_TRUE(WellBehavedStats(m->port()).ok());
  const long base_kb = m->SettledRssKb();
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  const int n = static_cast<int>(std::min<rlim_t>(2000, rl.rlim_cur > 200 ? rl.rlim_cur - 200 : 0));
  ASSERT_GE(n, 500) << "RLIMIT_NOFILE of the test is too low: " << rl.rlim_cur;
  auto t0 = Clock::now();
  int established = 0;
  auto conns = OpenSilent(m->port(), n, seconds(5), &established);
  long grown_kb = m->SettledRssKb() - base_kb;
  ASSERT_TRUE(m->Alive()) << m->Why();

  // A well-behaved client: served, or refused with a reason.
  Status wb = WellBehavedStats(m->port());

  // The memnode closes the silent connections after its handshake deadline.
  int closed = 0;
  PollUntil(
      [&] {
        closed = CountClosedByPeer(conns);
        grown_kb = std::max(grown_kb, m->RssKb() - base_kb);
        return closed >= n * 9 / 10 || !m->Alive();
      },
      kHandshakeCloseWait, milliseconds(200));
  const double close_s = SecondsSince(t0);
  conns.clear();
  ASSERT_TRUE(m->Alive()) << m->Why();
  double took = 0;
  Status after = WellBehavedEventually(m->port(), seconds(10), &took);

  Summary("PreHelloFlood: %d silent connections (%d established) vs --max_clients=16; RSS growth %.1f MiB "
          "(limit %ld); well-behaved during: %s; %d/%d closed by the memnode within %.1f s; well-behaved after: %s",
          n, established, static_cast<double>(grown_kb) / 1024, kMaxRssGrowthKb >> 10,
          wb.ok() ? "served" : wb.ToString().c_str(), closed, n, close_s,
          after.ok() ? "served" : after.ToString().c_str());
  EXPECT_LE(grown_kb, kMaxRssGrowthKb) << "RSS grew by " << grown_kb / 1024 << " MiB";
  if (!wb.ok()) {
    EXPECT_TRUE(SaysWhyFull(wb.message())) << "refused without a reason: " << wb;
  }
  EXPECT_GE(closed, n * 9 / 10) << "the memnode closed only " << closed << " of " << n
                                << " silent connections within " << kHandshakeCloseWait.count() << " s";
  EXPECT_TRUE(after.ok()) << after;
}

// Finding 4. The memnode runs out of descriptors (RLIMIT_NOFILE 64, 200
// connections). Fixed: no accept spin (CPU < kMaxCpuPct of a core), no log flood
// (< 1 MiB), and it serves again once the connections are gone.
TEST(MemnodeHostile, DescriptorExhaustion) {
  START_MEMNODE(m, .uma_mb = 64, .nofile = 64);
  ASSERT_TRUE(WellBehavedStats(m->port()).ok());
  int established = 0;
  auto conns = OpenSilent(m->port(), 200, seconds(3), &established);
  // Let the memnode take what it can (its fd count settles), bounded.
  int last = -1;
  PollUntil(
      [&] {
        int now = m->FdCount();
        bool same = now == last;
        last = now;
        return same;
      },
      seconds(3), milliseconds(200));
  const int fds = m->FdCount();
  const off_t log0 = m->LogBytes();
  const double cpu = m->CpuPercentOver(seconds(2));
  const off_t log1 = m->LogBytes();
  ASSERT_TRUE(m->Alive()) << m->Why();
  conns.clear();
  double took = 0;
  Status after = WellBehavedEventually(m->port(), seconds(10), &took);
  Summary("DescriptorExhaustion: RLIMIT_NOFILE 64, 200 connections (%d established), memnode holds %d fds; "
          "CPU %.0f %% of a core over 2 s (limit %.0f); stderr log %lld B (%lld B in the window; limit %lld); "
          "well-behaved after close: %s in %.2f s",
          established, fds, cpu, kMaxCpuPct, static_cast<long long>(log1), static_cast<long long>(log1 - log0),
          static_cast<long long>(kMaxLogBytes), after.ok() ? "served" : after.ToString().c_str(), took);
  EXPECT_LT(cpu, kMaxCpuPct) << "the memnode spins while out of descriptors";
  EXPECT_LT(log1, kMaxLogBytes) << "the memnode's log explodes while out of descriptors";
  EXPECT_TRUE(m->Alive()) << m->Why();
  EXPECT_TRUE(after.ok()) << after;
  Status af = WellBehavedAllocFree(m->port());
  EXPECT_TRUE(af.ok()) << af;
}

// Finding 5. A connection that must close (bad magic) while its replies are
// backed up behind a client that does not read, and that keeps sending.
// Fixed: the memnode does not spin on it and closes it within a bound.
TEST(MemnodeHostile, ClosingConnectionWithBackedUpReplies) {
  START_MEMNODE(m, .uma_mb = 64);
  ASSERT_TRUE(WellBehavedStats(m->port()).ok());
  RawConn c = GreetedConn(m->port());
  ASSERT_GE(c.fd(), 0);
  std::vector<uint8_t> out;
  const uint64_t block = AllocOn(c, 32u << 20);
  ASSERT_NE(block, UINT64_MAX);
  for (int i = 0; i < 16; ++i) {  // 512 MiB of replies the client never reads
    auto f = ReadFrameBytes(1 + i, block, 32u << 20);
    out.insert(out.end(), f.begin(), f.end());
  }
  MsgHeader bad{};
  bad.magic = 0xBEEF;
  bad.tag = 99;
  const auto* b = reinterpret_cast<const uint8_t*>(&bad);
  out.insert(out.end(), b, b + sizeof bad);
  ASSERT_EQ(c.SendAll(out.data(), out.size(), Clock::now() + seconds(5)), RawConn::Io::kOk);
  // The peer keeps talking after the bad frame: more than the memnode reads
  // at once (64 KiB), so its socket stays readable while it wants to close.
  // (Best effort: a memnode that already closed may refuse it.)
  std::vector<uint8_t> junk(256u << 10, 0xA5);
  (void)c.SendAll(junk.data(), junk.size(), Clock::now() + seconds(2));
  const auto t0 = Clock::now();
  const double cpu = m->CpuPercentOver(seconds(2));
  bool closed = PollUntil([&] { return c.ClosedByPeer() || !m->Alive(); }, kStallCloseWait, milliseconds(50)) &&
                m->Alive();
  const double close_s = SecondsSince(t0);
  const bool alive = m->Alive();
  Summary("ClosingWithBackedUpReplies: memnode CPU %.0f %% of a core over 2 s (limit %.0f); connection %s "
          "%.1f s after the bad frame; memnode %s",
          cpu, kMaxCpuPct, closed ? "closed" : "NOT closed", close_s, m->ExitDescription().c_str());
  EXPECT_LT(cpu, kMaxCpuPct) << "the memnode spins on a closing connection";
  EXPECT_TRUE(closed) << "not closed within " << kStallCloseWait.count() << " s";
  c.Close();
  ASSERT_TRUE(alive) << m->Why();
  Status after = WellBehavedEventually(m->port(), seconds(5));
  EXPECT_TRUE(after.ok()) << after;
  EXPECT_TRUE(m->Alive()) << m->Why();
}

// Finding 6a. A kRead of 2^32 + 8 bytes (more than a frame's u32 length can
// say). The reply must be an error frame (or a clean close), never a
// desynchronised stream: a STATS request after it on the same connection
// gets a well-formed reply, or the connection is closed cleanly.
void HugeRead(MemnodeProcess* m, const char* name) {
  RawConn c = GreetedConn(m->port());
  ASSERT_GE(c.fd(), 0);
  constexpr uint64_t kHuge = (1ull << 32) + 8;
  auto f = ReadFrameBytes(1, 0, kHuge);
  auto s = StatsFrameBytes(2);
  f.insert(f.end(), s.begin(), s.end());
  ASSERT_EQ(c.SendAll(f.data(), f.size(), Clock::now() + seconds(5)), RawConn::Io::kOk);
  // Returns "" if the replies are well framed, else what went wrong;
  // *outcome says what came back.
  auto check = [&](std::string* outcome) -> std::string {
    auto deadline = Clock::now() + seconds(10);
    MsgHeader h{};
    std::vector<uint8_t> p;
    auto io = c.RecvAll(&h, sizeof h, deadline);
    if (io == RawConn::Io::kEof) return *outcome = "closed cleanly", "";
    if (io != RawConn::Io::kOk) return "no reply to the huge read (io " + std::to_string(int(io)) + ")";
    if (h.magic != wire::kMagic || h.tag != 1) return "a reply with a bad header or tag";
    if (h.kind != Kind::kError) {
      *outcome = "a kind " + std::to_string(int(h.kind)) + " reply of " + std::to_string(h.length) + " B";
      return *outcome + " to a read of " + std::to_string(kHuge) +
             " B: a u32 length cannot frame it, the stream is desynchronised";
    }
    p.resize(h.length);
    if (c.RecvAll(p.data(), p.size(), deadline) != RawConn::Io::kOk) return "truncated error frame";
    *outcome = "error frame \"" + std::string(p.begin() + (p.empty() ? 0 : 1), p.end()) + "\"";
    // Then the STATS reply, well formed, or a clean close.
    io = c.ReadFrame(&h, &p, deadline);
    if (io == RawConn::Io::kEof) return *outcome += ", then closed cleanly", "";
    if (io != RawConn::Io::kOk) return "no STATS reply after the error (io " + std::to_string(int(io)) + ")";
    if (h.magic != wire::kMagic || h.tag != 2 || h.kind != Kind::kResponse)
      return "the frame after the error is not the STATS reply: the stream is desynchronised";
    auto st = DecodeStats(p);
    if (!st.ok()) return "malformed STATS reply: " + st.status().ToString();
    *outcome += ", then a well-formed STATS reply";
    return "";
  };
  std::string outcome;
  std::string bad = check(&outcome);
  c.Close();
  Summary("%s: read of 2^32+8 B -> %s", name, bad.empty() ? outcome.c_str() : ("FAILED: " + bad).c_str());
  EXPECT_EQ(bad, "");
  ASSERT_TRUE(m->Alive()) << m->Why();
  Status after = WellBehavedEventually(m->port(), seconds(5));
  EXPECT_TRUE(after.ok()) << after;
}

TEST(MemnodeHostile, HugeReadSmallUma) {
  START_MEMNODE(m, .uma_mb = 64);
  HugeRead(m.get(), "HugeReadSmallUma");
}

// The same against a UMA the range fits in (4 GiB + 1 MiB): there the read
// passes the range check. The memnode populates its UMA (MAP_POPULATE: no
// sparse mapping), so this costs 4 GiB of host memory and ~12 s of start-up:
// it runs only where that memory is available.
TEST(MemnodeHostile, HugeReadLargeUma) {
  long avail_kb = 0;
  {
    std::ifstream f("/proc/meminfo");
    std::string line;
    while (std::getline(f, line))
      if (line.rfind("MemAvailable:", 0) == 0) avail_kb = std::strtol(line.c_str() + 13, nullptr, 10);
  }
  if (avail_kb < (8l << 20)) GTEST_SKIP() << "needs 8 GiB available for a 4 GiB populated UMA; have " << avail_kb / 1024 << " MiB";
  START_MEMNODE(m, .uma_mb = 4097);
  HugeRead(m.get(), "HugeReadLargeUma");
}

// Finding 6b. A hello whose max_message is 0, or 2^32-1. Fixed: a Welcome
// with a non-zero status and a reason (text after the WelcomePayload or a
// kError frame after the Welcome), then the connection closes.
TEST(MemnodeHostile, HelloWithAbsurdMaxMessageIsRefusedWithAReason) {
  START_MEMNODE(m, .uma_mb = 64);
  for (uint32_t mm : {0u, 0xFFFFFFFFu}) {
    SCOPED_TRACE("max_message " + std::to_string(mm));
    RawConn c = RawConn::Open(m->port());
    auto deadline = Clock::now() + seconds(5);
    ASSERT_TRUE(c.WaitConnected(deadline));
    ASSERT_EQ(c.SendHello(mm, deadline), RawConn::Io::kOk);
    MsgHeader h{};
    std::vector<uint8_t> p;
    ASSERT_EQ(c.ReadFrame(&h, &p, deadline), RawConn::Io::kOk);
    ASSERT_EQ(h.magic, wire::kMagic);
    ASSERT_EQ(h.kind, Kind::kWelcome);
    ASSERT_GE(p.size(), sizeof(wire::WelcomePayload));
    wire::WelcomePayload w;
    std::memcpy(&w, p.data(), sizeof w);
    std::string reason(p.begin() + sizeof w, p.end());
    // Whatever follows a refusal until the memnode closes: a kError frame's text.
    bool eof = false;
    while (w.status != 0) {
      auto io = c.ReadFrame(&h, &p, deadline);
      if (io == RawConn::Io::kEof) {
        eof = true;
        break;
      }
      if (io != RawConn::Io::kOk) break;
      if (h.kind == Kind::kError && !p.empty()) reason += std::string(p.begin() + 1, p.end());
    }
    Summary("HelloMaxMessage %u: welcome status %u, reason \"%s\", %s", mm, w.status, reason.c_str(),
            eof ? "then closed" : "connection left open");
    EXPECT_NE(w.status, 0) << "a hello with max_message " << mm << " was accepted";
    EXPECT_FALSE(reason.empty()) << "refused without a reason";
    EXPECT_TRUE(eof) << "the refused connection was not closed";
  }
  ASSERT_TRUE(m->Alive()) << m->Why();
  Status after = WellBehavedEventually(m->port(), seconds(5));
  EXPECT_TRUE(after.ok()) << after;
}

// Finding 7. A refusal says why. With --max_clients=2 and two clients
// connected, a third Connect fails with a message naming the limit.
TEST(MemnodeHostile, RefusalSaysWhy) {
  START_MEMNODE(m, .uma_mb = 64, .max_clients = 2);
  auto a = MemnodeClient::Connect(TransportKind::kTcp, WellBehavedOptions(m->port()));
  auto b = MemnodeClient::Connect(TransportKind::kTcp, WellBehavedOptions(m->port()));
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  auto c = MemnodeClient::Connect(TransportKind::kTcp, WellBehavedOptions(m->port()));
  ASSERT_FALSE(c.ok()) << "a third client was served with --max_clients=2";
  // The address ("127.0.0.1:<port>") is in the message anyway: look past it.
  std::string msg = c.status().message();
  std::string where = "127.0.0.1:" + std::to_string(m->port());
  for (auto pos = msg.find(where); pos != std::string::npos; pos = msg.find(where)) msg.erase(pos, where.size());
  Summary("RefusalSaysWhy: third client with --max_clients=2: %s", c.status().ToString().c_str());
  EXPECT_NE(msg.find('2'), std::string::npos) << "the refusal does not name the limit: " << c.status();
  // A slot freed is a slot served.
  a->reset();
  Status s = WellBehavedEventually(m->port(), seconds(5));
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_TRUE((*b)->GetStats().ok());
}

// --max_clients also bounds connections that have not said hello: with
// --max_clients=4 and 4 silent connections, a well-behaved client is served
// once the handshake deadline frees their slots, or refused with a reason;
// and however many silent connections arrive, the memnode never holds more
// than max_clients + kPendingHandshakeSlack of them (its descriptor count).
TEST(MemnodeHostile, MaxClientsCountsPreHelloConnections) {
  constexpr int kMax = 4;
  START_MEMNODE(m, .uma_mb = 64, .max_clients = kMax);
  const int base_fds = m->FdCount();  // before any connection
  ASSERT_TRUE(WellBehavedStats(m->port()).ok());
  int est = 0;
  auto silent = OpenSilent(m->port(), kMax, seconds(3), &est);
  ASSERT_EQ(est, kMax);

  // Served (after the handshake deadline at the latest) or refused with a reason.
  auto t0 = Clock::now();
  Status wb;
  bool served = false, refused_with_reason = false;
  PollUntil(
      [&] {
        wb = WellBehavedStats(m->port());
        served = wb.ok();
        refused_with_reason = !wb.ok() && SaysWhyFull(wb.message());
        return served || refused_with_reason || !m->Alive();
      },
      kHandshakeCloseWait, milliseconds(100));
  const double wb_s = SecondsSince(t0);

  // 100 more silent connections: the memnode's descriptors stay bounded.
  int max_fds = base_fds;
  std::vector<RawConn> more;
  for (int i = 0; i < 100; ++i) {
    RawConn c = RawConn::Open(m->port());
    if (c.fd() >= 0) more.push_back(std::move(c));
    if (i % 10 == 9) max_fds = std::max(max_fds, m->FdCount());
  }
  PollUntil(
      [&] {
        max_fds = std::max(max_fds, m->FdCount());
        return false;
      },
      seconds(1), milliseconds(50));
  const int extra = max_fds - base_fds;
  silent.clear();
  more.clear();
  ASSERT_TRUE(m->Alive()) << m->Why();
  Status after = WellBehavedEventually(m->port(), seconds(10));
  Summary("MaxClientsCountsPreHello: --max_clients=%d, 4 silent: well-behaved %s after %.1f s; with 100 more "
          "silent the memnode held up to %d connection fds over its %d (limit %d + %d); after: %s",
          kMax, served ? "served" : wb.ToString().c_str(), wb_s, extra, base_fds, kMax, kPendingHandshakeSlack,
          after.ok() ? "served" : after.ToString().c_str());
  EXPECT_TRUE(served || refused_with_reason) << "neither served nor refused with a reason: " << wb;
  EXPECT_LE(extra, kMax + kPendingHandshakeSlack) << "the memnode holds " << extra << " connections";
  EXPECT_TRUE(after.ok()) << after;
}

// Offloaded operators over tcp, against the real binary (issue #13): a job
// over the client's own blocks returns, bit for bit, the partials the kernel
// computes here on the same bytes; a flood of OFFLOADs from one client is
// refused past --offload_client_jobs (ResourceExhausted) while ALLOC is
// served; another client's blocks are refused; --offload_threads=0 refuses
// naming the flag.
TEST(MemnodeHostile, OffloadOverTcp) {
  START_MEMNODE(m, .uma_mb = 64, .extra = {"--offload_threads=1", "--offload_client_jobs=4"});
  auto a = MemnodeClient::Connect(TransportKind::kTcp, WellBehavedOptions(m->port()));
  auto b = MemnodeClient::Connect(TransportKind::kTcp, WellBehavedOptions(m->port()));
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  TransportClient& ta = (*a)->transport();
  constexpr uint32_t kRows = 4096, kUnitRows = 1024;
  std::vector<uint8_t> keys(kRows * 8), values(kRows * 8);
  for (uint32_t i = 0; i < kRows; ++i) {
    const int64_t k = i % 13;
    const double v = i * 0.37 - 100.0;
    std::memcpy(&keys[i * 8], &k, 8);
    std::memcpy(&values[i * 8], &v, 8);
  }
  offload::Spec spec;
  const uint8_t ck = spec.Column(offload::ElemType::kI64), cv = spec.Column(offload::ElemType::kF64);
  spec.key.column = ck;
  spec.groups = 13;
  const uint8_t ev = spec.ColumnExpr(cv);
  spec.Aggregate(offload::AggKind::kCount);
  spec.Aggregate(offload::AggKind::kSum, ev);
  spec.Aggregate(offload::AggKind::kMin, ev);
  spec.Aggregate(offload::AggKind::kSumSq, ev);
  ASSERT_TRUE(offload::Validate(spec).ok()) << offload::Validate(spec);
  const size_t pb = offload::PartialBytes(spec);
  auto kb = (*a)->AllocOne(keys.size());
  auto vb = (*a)->AllocOne(values.size());
  auto rb = (*a)->AllocOne(kRows / kUnitRows * pb);
  ASSERT_TRUE(kb.ok() && vb.ok() && rb.ok());
  ASSERT_TRUE(ta.Write(*kb, keys.data(), keys.size()).ok());
  ASSERT_TRUE(ta.Write(*vb, values.data(), values.size()).ok());
  OffloadRequestBuilder req(MaxRequestBytes(ta));
  req.Begin(offload::Encode(spec), *rb, static_cast<uint32_t>(kRows / kUnitRows * pb));
  for (uint32_t u = 0; u < kRows / kUnitRows; ++u) {
    OffloadUnitRef unit;
    unit.first_row = u * kUnitRows;
    unit.rows = kUnitRows;
    unit.columns = {{{*kb + u * kUnitRows * 8, kUnitRows * 8}}, {{*vb + u * kUnitRows * 8, kUnitRows * 8}}};
    ASSERT_TRUE(req.TryAdd(unit));
  }
  const std::vector<uint8_t> request(req.bytes().begin(), req.bytes().end());
  auto wait = [&](uint64_t job) {
    OffloadJobState last;
    EXPECT_TRUE(PollUntil(
        [&] {
          auto st = PollOffload(ta, std::vector<uint64_t>{job});
          if (!st.ok()) return true;
          last = (*st)[0];
          return last.done;
        },
        seconds(20), milliseconds(1)));
    return last;
  };
  auto job = SubmitOffload(ta, request);
  ASSERT_TRUE(job.ok()) << job.status();
  const OffloadJobState st = wait(*job);
  ASSERT_TRUE(st.status.ok()) << st.status;
  EXPECT_EQ(st.rows, kRows);
  std::vector<uint8_t> far(kRows / kUnitRows * pb);
  ASSERT_TRUE(ta.Read(*rb, far.data(), far.size()).ok());
  for (uint32_t u = 0; u < kRows / kUnitRows; ++u) {
    const std::span<const uint8_t> kp(&keys[u * kUnitRows * 8], kUnitRows * 8), vp(&values[u * kUnitRows * 8], kUnitRows * 8);
    const std::vector<offload::Pieces> cols = {offload::Pieces(&kp, 1), offload::Pieces(&vp, 1)};
    std::vector<uint8_t> partial(pb);
    ASSERT_TRUE(offload::RunUnit(spec, kUnitRows, cols, partial, u * kUnitRows).ok());
    EXPECT_EQ(0, std::memcmp(partial.data(), far.data() + u * pb, pb)) << "unit " << u;
  }
  // A flood of 10 OFFLOADs in flight at once: 4 are the client's bound
  // (jobs not yet collected, done or not), the rest refused; ALLOC served.
  std::vector<std::span<const uint8_t>> flood(10, std::span<const uint8_t>(request));
  std::vector<StatusOr<uint64_t>> jobs;
  ASSERT_TRUE(SubmitOffloads(ta, flood, &jobs).ok());
  std::vector<uint64_t> accepted;
  size_t refused = 0;
  for (auto& j : jobs) {
    if (j.ok()) {
      accepted.push_back(*j);
    } else {
      EXPECT_EQ(j.status().code(), StatusCode::kResourceExhausted) << j.status();
      EXPECT_NE(j.status().message().find("--offload_client_jobs"), std::string::npos) << j.status();
      ++refused;
    }
  }
  EXPECT_EQ(accepted.size(), 4u);
  EXPECT_EQ(refused, 6u);
  EXPECT_TRUE((*a)->AllocOne(4096).ok()) << "ALLOC not served during an offload flood";
  // B names A's blocks: refused, nothing queued.
  auto foreign = SubmitOffload((*b)->transport(), request);
  EXPECT_EQ(foreign.status().code(), StatusCode::kPermissionDenied) << foreign.status();
  for (uint64_t j : accepted) EXPECT_TRUE(wait(j).status.ok()) << "job " << j;
  EXPECT_TRUE(m->Alive()) << m->Why();
  Summary("OffloadOverTcp: %u rows in %u units bit for bit, worker CPU %.3f ms; flood of 10: %zu accepted, %zu refused",
          kRows, kRows / kUnitRows, st.cpu_ns / 1e6, accepted.size(), refused);

  START_MEMNODE(off, .uma_mb = 16, .extra = {"--offload_threads=0"});
  auto c = MemnodeClient::Connect(TransportKind::kTcp, WellBehavedOptions(off->port()));
  ASSERT_TRUE(c.ok()) << c.status();
  auto none = SubmitOffload((*c)->transport(), request);
  EXPECT_EQ(none.status().code(), StatusCode::kFailedPrecondition) << none.status();
  EXPECT_NE(none.status().message().find("--offload_threads=0"), std::string::npos) << none.status();
}

}  // namespace
}  // namespace sharry::memnode

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // The test's own sockets use MSG_NOSIGNAL; the transport client library is
  // shared code: never let a write to a closed socket kill the test.
  signal(SIGPIPE, SIG_IGN);
  if (argc > 1) {
    sharry::memnode::g_memnode_path = argv[1];
  } else if (const char* e = std::getenv("SHARRY_MEMNODE")) {
    sharry::memnode::g_memnode_path = e;
  } else {
    std::error_code ec;
    auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    sharry::memnode::g_memnode_path = (self.parent_path().parent_path() / "tools" / "memnode").string();
  }
  if (access(sharry::memnode::g_memnode_path.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "memnode_hostile_test: no memnode binary at %s (pass its path as the first argument)\n",
                 sharry::memnode::g_memnode_path.c_str());
    return 2;
  }
  // Finding 3 opens 2000 connections: raise the soft descriptor limit.
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4096) {
    rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, 4096);
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  return RUN_ALL_TESTS();
}
