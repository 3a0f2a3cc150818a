// Hostile-peer bench: plays one hostile TCP client against a RUNNING memnode
// and prints, every --sample_ms, what the memnode's process looks like
// (RSS, descriptors, CPU) and whether the memnode has dropped the hostile
// connections: the time series behind the numbers tests/memnode_hostile_test
// asserts (its max_unsent / stall / handshake deadlines can be tuned with it).
//
//   memnode --transport=tcp --port=7000 --uma_mb=64 &
//   hostile_bench --port=7000 --pid=$! --scenario=nonreading_reads --seconds=3 --wait_s=30
//   hostile_bench --port=7000 --pid=$! --scenario=prehello --connections=2000 --wait_s=15
//
// Scenarios:
//   nonreading_reads  after hello, pipelines kRead frames of --read_kb as fast
//                     as it can for --seconds, never reads a reply
//   nonreading_stats  the same with STATS requests
//   prehello          opens --connections connections that never say hello
// Then it holds the connections for up to --wait_s, until the memnode closes
// them all. Lines (machine-readable):
//   hostilebench t=0.25 phase=flood sent_mb=12.0 rss_mb=80.1 fds=12 cpu_pct=97 closed=0/1
//   hostilebench done scenario=... rss_growth_mb=... closed=.../... last_close_s=...
#include <arpa/inet.h>
#include <gflags/gflags.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_stats.h"
#include "memnode/rpc.h"
#include "tools/cli/program.h"
#include "tools/cli/ranged_flag.h"
#include "base/flag_check.h"
#include "base/proc_stats.h"
#include "verbs/socket_util.h"
#include "verbs/wire.h"

SHARRY_FLAG(int32, port, 7000, 1, 65535, "the memnode's port on --addr");
DEFINE_string(addr, "127.0.0.1", "the memnode's address");
SHARRY_FLAG(int32, pid, 0, 0, 4194304, "the memnode's pid, to sample its RSS, fds and CPU (0: not sampled)");
DEFINE_string(scenario, "nonreading_reads", "nonreading_reads, nonreading_stats or prehello");
SHARRY_FLAG(double, seconds, 3, 0, 86400, "flood time (nonreading_*)");
SHARRY_FLAG(uint64, read_kb, 1024, 1, 1 << 20, "bytes asked by each kRead frame (nonreading_reads)");
SHARRY_FLAG(int32, connections, 2000, 1, 65536, "silent connections (prehello)");
SHARRY_FLAG(double, wait_s, 30, 0, 86400, "then wait at most this long for the memnode to close them");
SHARRY_FLAG(int32, sample_ms, 250, 1, 60000, "sampling period");

namespace {

using sharry::bench::Clock;
using sharry::bench::SecondsSince;
using sharry::wire::Kind;
using sharry::wire::MsgHeader;

long RssKb() { return sharry::proc::RssKb(FLAGS_pid); }
int Fds() { return sharry::proc::FdCount(FLAGS_pid); }
long CpuTicks() { return sharry::proc::CpuTicks(FLAGS_pid); }

int Open() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(FLAGS_port));
  inet_pton(AF_INET, FLAGS_addr.c_str(), &a.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 && errno != EINPROGRESS) {
    close(fd);
    return -1;
  }
  return fd;
}

// Blocking-with-deadline exchange of hello/welcome on a non-blocking fd.
bool Greet(int fd) {
  auto deadline = Clock::now() + std::chrono::seconds(5);
  auto wait = [&](short ev) {
    pollfd p{fd, ev, 0};
    return poll(&p, 1, static_cast<int>(std::max(0.0, -SecondsSince(deadline)) * 1000)) > 0;
  };
  if (!wait(POLLOUT)) return false;
  struct {
    MsgHeader h;
    sharry::wire::HelloPayload p;
  } hello{};
  hello.h.kind = Kind::kHello;
  hello.h.length = sizeof hello.p;
  hello.p.max_message = 8192;
  if (send(fd, &hello, sizeof hello, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof hello)) return false;
  uint8_t buf[sizeof(MsgHeader) + sizeof(sharry::wire::WelcomePayload)];
  size_t got = 0;
  while (got < sizeof buf) {
    if (!wait(POLLIN)) return false;
    ssize_t r = recv(fd, buf + got, sizeof buf - got, 0);
    if (r <= 0) return false;
    got += static_cast<size_t>(r);
  }
  sharry::wire::WelcomePayload w;
  std::memcpy(&w, buf + sizeof(MsgHeader), sizeof w);
  return w.status == 0;
}

// ALLOCs one block of `bytes` (the memnode confines READs to the client's
// own blocks: the flood reads its own memory). Returns its offset or
// UINT64_MAX.
uint64_t AllocBlock(int fd, uint64_t bytes) {
  const std::vector<uint8_t> req = sharry::memnode::EncodeAlloc({bytes});
  MsgHeader h{};
  h.kind = Kind::kRequest;
  h.length = static_cast<uint32_t>(req.size());
  h.tag = 1u << 30;
  std::vector<uint8_t> f(reinterpret_cast<uint8_t*>(&h), reinterpret_cast<uint8_t*>(&h) + sizeof h);
  f.insert(f.end(), req.begin(), req.end());
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  if (!sharry::net::SendAll(fd, f.data(), f.size(), deadline).ok()) return UINT64_MAX;
  MsgHeader rh{};
  if (!sharry::net::RecvAll(fd, &rh, sizeof rh, deadline).ok() || rh.kind != Kind::kResponse) return UINT64_MAX;
  std::vector<uint8_t> p(rh.length);
  if (!sharry::net::RecvAll(fd, p.data(), p.size(), deadline).ok()) return UINT64_MAX;
  if (p.size() < sizeof(sharry::memnode::ReplyHeader) + sizeof(sharry::memnode::AllocEntry)) return UINT64_MAX;
  sharry::memnode::AllocEntry e;
  std::memcpy(&e, p.data() + sizeof(sharry::memnode::ReplyHeader), sizeof e);
  return e.code == sharry::memnode::ElementCode::kOk ? e.offset : UINT64_MAX;
}

std::vector<uint8_t> Frame(bool read, uint64_t tag, uint64_t offset) {
  MsgHeader h{};
  h.tag = tag;
  std::vector<uint8_t> body;
  if (read) {
    h.kind = Kind::kRead;
    sharry::wire::RangePayload r{offset, FLAGS_read_kb << 10};
    body.assign(reinterpret_cast<uint8_t*>(&r), reinterpret_cast<uint8_t*>(&r) + sizeof r);
  } else {
    h.kind = Kind::kRequest;
    body = sharry::memnode::EncodeStats();
  }
  h.length = static_cast<uint32_t>(body.size());
  std::vector<uint8_t> f(reinterpret_cast<uint8_t*>(&h), reinterpret_cast<uint8_t*>(&h) + sizeof h);
  f.insert(f.end(), body.begin(), body.end());
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  sharry::cli::InitProgram(&argc, &argv, "plays a hostile TCP client against a running memnode (see the file's header)");
  sharry::flags::ExitOnBadFlags(
      "hostile_bench", sharry::flags::CheckOneOf("scenario", FLAGS_scenario,
                                                 {"nonreading_reads", "nonreading_stats", "prehello"}));
  const bool flood = FLAGS_scenario != "prehello";
  const long base_kb = FLAGS_pid ? RssKb() : -1;
  long peak_kb = base_kb;
  std::vector<int> fds;
  const auto t0 = Clock::now();
  auto last_sample = t0;
  long last_ticks = FLAGS_pid ? CpuTicks() : 0;
  uint64_t sent = 0;
  double last_close_s = -1;
  auto sample = [&](const char* phase, bool force) {
    if (!force && Clock::now() - last_sample < std::chrono::milliseconds(FLAGS_sample_ms)) return;
    double dt = SecondsSince(last_sample);
    last_sample = Clock::now();
    int closed = 0;
    for (int fd : fds) closed += sharry::net::ClosedByPeer(fd) ? 1 : 0;
    if (closed == static_cast<int>(fds.size()) && last_close_s < 0 && !fds.empty()) last_close_s = SecondsSince(t0);
    long rss = FLAGS_pid ? RssKb() : -1;
    long ticks = FLAGS_pid ? CpuTicks() : 0;
    peak_kb = std::max(peak_kb, rss);
    std::printf("hostilebench t=%.2f phase=%s sent_mb=%.1f rss_mb=%.1f fds=%d cpu_pct=%.0f closed=%d/%zu\n", SecondsSince(t0),
                phase, static_cast<double>(sent) / (1 << 20), static_cast<double>(rss) / 1024,
                FLAGS_pid ? Fds() : -1,
                100.0 * static_cast<double>(ticks - last_ticks) / static_cast<double>(sysconf(_SC_CLK_TCK)) / dt,
                closed, fds.size());
    std::fflush(stdout);
    last_ticks = ticks;
  };
  if (flood) {
    int fd = Open();
    if (fd < 0 || !Greet(fd)) {
      std::fprintf(stderr, "hostile_bench: cannot connect and greet %s:%d\n", FLAGS_addr.c_str(), FLAGS_port);
      return 1;
    }
    fds.push_back(fd);
    const bool reads = FLAGS_scenario == "nonreading_reads";
    const uint64_t block = reads ? AllocBlock(fd, FLAGS_read_kb << 10) : 0;
    if (block == UINT64_MAX) {
      std::fprintf(stderr, "hostile_bench: ALLOC of %llu KiB to read refused\n",
                   static_cast<unsigned long long>(FLAGS_read_kb));
      return 1;
    }
    std::vector<uint8_t> batch;
    uint64_t tag = 1;
    size_t off = 0;
    while (SecondsSince(t0) < FLAGS_seconds) {
      sample("flood", false);
      if (off == batch.size()) {
        batch.clear();
        for (int i = 0; i < 2048; ++i) {
          auto f = Frame(reads, tag++, block);
          batch.insert(batch.end(), f.begin(), f.end());
        }
        off = 0;
      }
      ssize_t r = send(fd, batch.data() + off, batch.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (r > 0) {
        off += static_cast<size_t>(r);
        sent += static_cast<uint64_t>(r);
      } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        pollfd p{fd, POLLOUT, 0};
        poll(&p, 1, FLAGS_sample_ms);
      } else {
        break;  // dropped by the memnode
      }
    }
  } else {
    for (int i = 0; i < FLAGS_connections; ++i) {
      int fd = Open();
      if (fd >= 0) fds.push_back(fd);
      sample("open", false);
    }
  }
  const auto wait_end = Clock::now() + std::chrono::duration<double>(FLAGS_wait_s);
  while (Clock::now() < wait_end && last_close_s < 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(FLAGS_sample_ms, 50)));
    sample("hold", false);
  }
  sample("hold", true);
  int closed = 0;
  for (int fd : fds) closed += sharry::net::ClosedByPeer(fd) ? 1 : 0;
  for (int fd : fds) close(fd);
  std::printf("hostilebench done scenario=%s sent_mb=%.1f rss_growth_mb=%.1f closed=%d/%zu last_close_s=%.2f\n",
              FLAGS_scenario.c_str(), static_cast<double>(sent) / (1 << 20),
              FLAGS_pid ? static_cast<double>(peak_kb - base_kb) / 1024 : -1.0, closed, fds.size(), last_close_s);
  return 0;
}
