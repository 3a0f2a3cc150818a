// Memnode RPC benchmark: ALLOC/FREE round trips per second from several
// client PROCESSES sharing one memnode, over tcp or verbs, beside a plain
// request/response server of the same message sizes measured in the same
// run (the transport's own round trip: the yardstick).
//
//   memnode_rpc_bench --transport=tcp --clients=3 --seconds=3
//
// Prints machine-readable lines (or csv/json with --format, tools/cli/output.h):
//   rpcbench transport=tcp clients=3 kind=plain batch=1 calls_per_s=...
//   rpcbench transport=tcp clients=3 kind=allocfree batch=1 calls_per_s=... objects_per_s=...
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "base/flag_check.h"
#include "bench/bench_stats.h"
#include "memnode/client.h"
#include "memnode/memnode.h"
#include "tools/cli/output.h"
#include "tools/cli/program.h"
#include "tools/cli/ranged_flag.h"

DEFINE_string(addr, "127.0.0.1", "address to serve on and connect to (verbs: the RDMA netdev's)");
SHARRY_FLAG(int32, clients, 3, 1, 256, "client processes");
SHARRY_FLAG(double, seconds, 3, 0, 86400, "measuring time per phase");
DEFINE_string(batches, "1,16", "objects per ALLOC/FREE RPC");
SHARRY_FLAG(uint64, object_bytes, 4096, 1, uint64_t{1} << 30, "object size");
SHARRY_FLAG(uint32, sections, 1, 1, 64, "memnode sections");
SHARRY_FLAG(uint64, uma_mb, 256, 1, std::min(sharry::flags::kMaxFlagMiB, sharry::flags::PhysicalMiB()), "memnode UMA size");
DEFINE_bool(confine, true,
            "verbs: each client session confined to its spans (a protection domain per session, a memory region per "
            "span, registered on grant: what the memnode does); false: one region key for all, to measure the cost");
DEFINE_string(child, "", "internal: run as a client process");
SHARRY_FLAG(int32, port, 0, 0, 65535, "internal");
SHARRY_FLAG(int32, batch, 1, 1, 4096, "internal");
DEFINE_int64(start_ms, 0, "internal");

extern char** environ;

namespace sharry {
namespace {

using Clock = std::chrono::steady_clock;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Answers with a reply the size of an ALLOC reply, doing nothing else.
class PlainHandler : public RequestHandler {
 public:
  size_t Handle(ClientId, std::span<const uint8_t> req, std::span<uint8_t> resp) override {
    size_t n = std::min(resp.size(), sizeof(memnode::ReplyHeader) + (req.size() - sizeof(memnode::RpcHeader)) * 2);
    std::memset(resp.data(), 0, n);
    return n;
  }
};

// A client process: from start_ms for `seconds`, round trips; prints its count.
int Child(TransportKind kind) {
  ClientOptions o;
  o.server_addr = FLAGS_addr;
  o.port = static_cast<uint16_t>(FLAGS_port);
  auto c = memnode::MemnodeClient::Connect(kind, o);
  if (!c.ok()) {
    std::fprintf(stderr, "child: %s\n", c.status().ToString().c_str());
    return 1;
  }
  while (NowMs() < FLAGS_start_ms) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const auto end = Clock::now() + std::chrono::duration<double>(FLAGS_seconds);
  std::vector<uint64_t> sizes(FLAGS_batch, FLAGS_object_bytes), offs;
  uint64_t calls = 0;
  auto t0 = Clock::now();
  if (FLAGS_child == "plain") {
    std::vector<uint8_t> req = memnode::EncodeAlloc(sizes), reply;
    while (Clock::now() < end) {
      CHECK((*c)->transport().Call(req, &reply).ok());
      calls++;
    }
  } else {
    while (Clock::now() < end) {
      Status s = (*c)->Alloc(sizes, &offs);
      CHECK(s.ok()) << s;
      s = (*c)->Free(offs);
      CHECK(s.ok()) << s;
      calls += 2;
    }
  }
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("%llu %.6f\n", static_cast<unsigned long long>(calls), secs);
  return 0;
}

// Runs `clients` child processes against port; returns total calls/s.
double RunPhase(const std::string& kind, uint16_t port, int batch) {
  std::vector<pid_t> pids;
  std::vector<int> fds;
  int64_t start = NowMs() + 300 + 100 * FLAGS_clients;
  for (int i = 0; i < FLAGS_clients; ++i) {
    std::vector<std::string> args = {"/proc/self/exe", "--child=" + kind, "--transport=" + FLAGS_transport,
                                     "--addr=" + FLAGS_addr, "--port=" + std::to_string(port),
                                     "--batch=" + std::to_string(batch), "--seconds=" + std::to_string(FLAGS_seconds),
                                     "--object_bytes=" + std::to_string(FLAGS_object_bytes),
                                     "--start_ms=" + std::to_string(start)};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int p[2];
    CHECK_EQ(0, pipe(p));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, p[0]);
    pid_t pid;
    CHECK_EQ(0, posix_spawn(&pid, "/proc/self/exe", &fa, nullptr, argv.data(), environ));
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    pids.push_back(pid);
    fds.push_back(p[0]);
  }
  double total = 0;
  for (size_t i = 0; i < pids.size(); ++i) {
    char buf[128] = {};
    size_t got = 0;
    ssize_t n;
    while ((n = read(fds[i], buf + got, sizeof buf - 1 - got)) > 0) got += n;
    close(fds[i]);
    int status = 0;
    waitpid(pids[i], &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "client process failed";
    unsigned long long calls = 0;
    double secs = 1;
    CHECK_EQ(2, std::sscanf(buf, "%llu %lf", &calls, &secs)) << buf;
    total += calls / secs;
  }
  return total;
}

int Main(TransportKind kind, cli::Emitter& out) {
  const std::vector<int> batches = bench::SplitNumbers<int>(FLAGS_batches);
  memnode::MemnodeOptions mo;
  mo.transport = kind;
  mo.server.listen_addr = FLAGS_addr;
  mo.uma_bytes = FLAGS_uma_mb << 20;
  mo.sections = FLAGS_sections;
  mo.stats_interval_s = 0;
  mo.confine = FLAGS_confine;
  auto node = memnode::Memnode::Start(mo);
  CHECK(node.ok()) << node.status();
  PlainHandler plain;
  ServerOptions so;
  so.listen_addr = FLAGS_addr;
  auto echo = TransportServer::Start(kind, so, &plain);
  CHECK(echo.ok()) << echo.status();
  for (int b : batches) {
    double p = RunPhase("plain", (*echo)->port(), b);
    double a = RunPhase("allocfree", (*node)->port(), b);
    auto result = [&](const char* what, double calls_per_s) {
      cli::Record r("rpcbench");
      r.Add("transport", FLAGS_transport).Add("clients", FLAGS_clients).Add("kind", what).Add("batch", b);
      return r.Add("calls_per_s", calls_per_s, "%.0f");
    };
    out.Emit(result("plain", p));
    out.Emit(result("allocfree", a).Add("objects_per_s", a / 2 * b, "%.0f").Add("ratio_to_plain", p > 0 ? a / p : 0, "%.2f"));
  }
  // The memnode's stats: a text report (on stderr with csv/json).
  auto st = (*node)->service().CollectStats();
  std::fprintf(out.text() ? stdout : stderr, "rpcbench memnode: %s", memnode::FormatStats(st).c_str());
  return 0;
}

}  // namespace
}  // namespace sharry

namespace {

int CheckedMain(int argc, char** argv) {
  sharry::cli::InitProgram(&argc, &argv, "");
  const sharry::TransportKind kind = sharry::cli::TransportFromFlags("memnode_rpc_bench");
  namespace f = sharry::flags;
  f::ExitOnBadFlags("memnode_rpc_bench", {
      f::ParseU64List("batches", FLAGS_batches, 1, 4096).status(),
      f::CheckOneOf("child", FLAGS_child, {"", "plain", "allocfree"}),
  });
  if (!FLAGS_child.empty()) return sharry::Child(kind);
  sharry::cli::Emitter out = sharry::cli::EmitterFromFlags("memnode_rpc_bench");
  return sharry::Main(kind, out);
}

}  // namespace

int main(int argc, char** argv) { return sharry::flags::RunMain("memnode_rpc_bench", CheckedMain, argc, argv); }
