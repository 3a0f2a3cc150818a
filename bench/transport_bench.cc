// Transport benchmark: one-sided READ/WRITE latency (p50, p99) and
// bandwidth for 64 B .. 1 MiB, and request/response round trips, over the
// verbs or the tcp backend. With --baseline_tcp it also measures a plain TCP
// ping-pong of the same sizes in the same run (the yardstick for tcp).
//
// Every measurement is printed as one machine-readable line (or csv/json
// with --format, tools/cli/output.h):
//   bench transport=verbs op=read size=4096 iters=2000 p50_us=.. p99_us=.. MBps=..
// scripts/bench-transport.sh puts these beside perftest's numbers.
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <thread>
#include <vector>

#include "base/flag_check.h"
#include "bench/bench_stats.h"
#include "memnode/page_owners.h"
#include "tools/cli/output.h"
#include "tools/cli/program.h"
#include "tools/cli/ranged_flag.h"
#include "verbs/remote_keys.h"
#include "verbs/socket_util.h"
#include "verbs/transport.h"
#include "verbs/wire.h"

DEFINE_string(addr, "127.0.0.1", "server address (verbs: an address of the RDMA netdev)");
SHARRY_FLAG(int32, port, 0, 0, 65535, "server port (0: an in-process server on a free port)");
DEFINE_string(sizes, "64,256,1024,4096,16384,65536,262144,1048576", "message sizes in bytes");
SHARRY_FLAG(int32, lat_iters, 1000, 1, 1 << 24, "latency samples per size");
SHARRY_FLAG(int32, bw_ops, 512, 1, 1 << 24, "operations per size for bandwidth");
SHARRY_FLAG(int32, bw_batch, 32, 1, 1024, "operations per batch (one chain, one doorbell) for bandwidth");
SHARRY_FLAG(int32, rpc_iters, 2000, 1, 1 << 24, "request/response round trips");
SHARRY_FLAG(int32, rpc_size, 64, 0, 1 << 20, "request and response payload bytes");
SHARRY_FLAG(int32, pollers, 1, 1, 64, "server poller threads (in-process server)");
DEFINE_bool(baseline_tcp, false, "also measure a plain TCP ping-pong of the same sizes");
DEFINE_bool(busy_poll, false, "server pollers never sleep");
DEFINE_string(ops, "lat,bw,rpc", "what to measure: lat (READ/WRITE latency), bw (bandwidth), rpc, connect (setup "
                                 "time: bare tcp, anonymous, authenticated)");
DEFINE_bool(confine, false,
            "in-process server: one-sided access confined as in the memnode, the whole region granted to the "
            "client — tcp: by the page-owner map; verbs: by the client session's protection domain and a memory "
            "region of the span, its key looked up per op — to measure what confinement costs");
SHARRY_FLAG(int32, connect_iters, 200, 1, 1 << 20, "connect: rounds (each: a bare, an anonymous, an authenticated connect)");

namespace sharry {
namespace {

using bench::Clock;

struct Lat {
  double p50_us, p99_us, avg_us;
};
Lat Summarize(const std::vector<double>& ns) {
  return {bench::Percentile(ns, 0.5) / 1000, bench::Percentile(ns, 0.99) / 1000, bench::Mean(ns) / 1000};
}

std::vector<size_t> ParseSizes() { return bench::SplitNumbers<size_t>(FLAGS_sizes); }

// One result line: "bench transport=.. op=.. size=..", then the measurement's values.
cli::Record Result(const char* transport, const std::string& op, size_t size) {
  cli::Record r("bench");
  r.Add("transport", transport).Add("op", op).Add("size", size);
  return r;
}

void PrintLat(cli::Emitter& out, const char* transport, const char* op, size_t size, int iters, const Lat& l) {
  out.Emit(Result(transport, op, size)
               .Add("iters", iters)
               .Add("p50_us", l.p50_us, "%.2f")
               .Add("p99_us", l.p99_us, "%.2f")
               .Add("avg_us", l.avg_us, "%.2f"));
}

class ReplyHandler : public RequestHandler {
 public:
  size_t Handle(ClientId, std::span<const uint8_t> req, std::span<uint8_t> resp) override {
    size_t n = std::min<size_t>(FLAGS_rpc_size, resp.size());
    std::memcpy(resp.data(), req.data(), std::min(n, req.size()));
    return n;
  }
};

int Run(TransportKind kind, cli::Emitter& out) {
  const char* tname = FLAGS_transport.c_str();
  std::vector<size_t> sizes = ParseSizes();
  size_t max_size = *std::max_element(sizes.begin(), sizes.end());
  const size_t region_size = std::max<size_t>(64u << 20, max_size * FLAGS_bw_batch * 2);
  std::vector<uint8_t> region(region_size, 1);
  ReplyHandler handler;
  PageOwnerMap pages(region.data(), region_size);
  const auth::Secret bench_secret = *auth::ParseSecret(auth::NewSecretHex());
  std::unique_ptr<TransportServer> server;
  uint16_t port = static_cast<uint16_t>(FLAGS_port);
  if (port == 0) {
    ServerOptions so;
    so.listen_addr = FLAGS_addr;
    so.region = region.data();
    so.region_size = region.size();
    so.num_pollers = FLAGS_pollers;
    so.backoff.busy_poll = FLAGS_busy_poll;
    // Tenant "bench" for the connect measurement; anonymous clients too.
    auto creds = std::make_shared<auth::ServerCredentials>();
    creds->tenants.emplace("bench", bench_secret);
    creds->anonymous = true;
    so.credentials = creds;
    if (FLAGS_confine) {
      so.region_access = &pages;
      so.confine = true;
    }
    auto s = TransportServer::Start(kind, so, &handler);
    if (!s.ok()) {
      std::fprintf(stderr, "server: %s\n", s.status().ToString().c_str());
      return 1;
    }
    server = std::move(*s);
    port = server->port();
  }
  ClientOptions co;
  co.server_addr = FLAGS_addr;
  co.port = port;
  auto cr = TransportClient::Connect(kind, co);
  if (!cr.ok()) {
    std::fprintf(stderr, "client: %s\n", cr.status().ToString().c_str());
    return 1;
  }
  auto& c = *cr;
  // --confine: the client's session owns every page (as if it had
  // allocated the whole region), so every access passes the check and
  // pays for it (a CAS per page to pin, one to unpin, again around each send).
  if (FLAGS_confine) {
    const uint64_t granted = region_size / 8192 * 8192;
    pages.OnGrant(c->info().session, 0, granted);
    if (RegionKeys* keys = server ? server->region_keys() : nullptr) {
      keys->Grant(c->info().session, 0, granted);
      CHECK(c->keys() != nullptr) << "a confining verbs server gives no region key";
      c->keys()->Learn(0, granted, keys->RemoteKey(0));
    }
  }
  const size_t local_size = max_size * FLAGS_bw_batch;
  std::vector<uint8_t> local(local_size, 2);
  CHECK(c->RegisterLocal(local.data(), local.size()).ok());
  const uint64_t remote_span = std::min<uint64_t>(c->info().region_size, region_size);

  auto want = [](const char* what) { return ("," + FLAGS_ops + ",").find(std::string(",") + what + ",") != std::string::npos; };
  for (size_t size : sizes) {
    for (bool write : {false, true}) {
      if (!want("lat")) break;
      std::vector<double> ns;
      ns.reserve(FLAGS_lat_iters);
      for (int i = 0; i < FLAGS_lat_iters + 10; ++i) {
        uint64_t off = (uint64_t(i) * size) % (remote_span - size);
        auto t0 = Clock::now();
        Status s = write ? c->Write(off, local.data(), size) : c->Read(off, local.data(), size);
        auto t1 = Clock::now();
        CHECK(s.ok()) << s;
        if (i >= 10) ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
      }
      Lat l = Summarize(ns);
      PrintLat(out, tname, write ? "write" : "read", size, FLAGS_lat_iters, l);
    }
    for (bool write : {false, true}) {
      if (!want("bw")) break;
      const int batch = FLAGS_bw_batch;
      std::vector<RemoteOp> ops(batch);
      for (int j = 0; j < batch; ++j)
        ops[j] = {(uint64_t(j) * size) % (remote_span - size), local.data() + j * size, size};
      int done = 0;
      auto t0 = Clock::now();
      while (done < FLAGS_bw_ops) {
        Status s = write ? c->WriteBatch(ops) : c->ReadBatch(ops);
        CHECK(s.ok()) << s;
        done += batch;
      }
      double secs = bench::SecondsSince(t0);
      out.Emit(Result(tname, write ? "write_bw" : "read_bw", size)
                   .Add("ops", done)
                   .Add("batch", batch)
                   .Add("MBps", double(done) * size / secs / 1e6, "%.2f"));
    }
  }
  // Request/response round trips.
  if (want("rpc")) {
    std::vector<uint8_t> req(FLAGS_rpc_size, 3), resp;
    std::vector<double> ns;
    for (int i = 0; i < FLAGS_rpc_iters + 10; ++i) {
      auto t0 = Clock::now();
      Status s = c->Call(req, &resp);
      auto t1 = Clock::now();
      CHECK(s.ok()) << s;
      if (i >= 10) ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
    }
    PrintLat(out, tname, "rpc", FLAGS_rpc_size, FLAGS_rpc_iters, Summarize(ns));
    // Throughput with many requests in flight.
    std::vector<std::vector<uint8_t>> reqs(256, req);
    std::vector<std::span<const uint8_t>> views(reqs.begin(), reqs.end());
    std::vector<std::vector<uint8_t>> resps;
    auto t0 = Clock::now();
    int calls = 0;
    while (calls < FLAGS_rpc_iters * 4) {
      CHECK(c->CallMany(views, &resps).ok());
      calls += 256;
    }
    double secs = bench::SecondsSince(t0);
    out.Emit(Result(tname, "rpc_pipelined", FLAGS_rpc_size).Add("calls", calls).Add("Mops", calls / secs / 1e6, "%.4f"));
  }
  c.reset();
  if (want("connect")) {
    // Connection setup, interleaved round by round: a bare TCP connect (the
    // floor), an anonymous client, and an authenticated one (tcp: hello,
    // challenge, answer, welcome: two round trips and four HMACs; verbs: the
    // rdma_cm connect, then the same exchange as SENDs on the new QP).
    std::vector<double> raw, anon, authed;
    ClientOptions ao = co;
    ao.tenant = "bench";
    ao.secret = bench_secret;
    const bool auth_too = server != nullptr;
    for (int i = 0; i < FLAGS_connect_iters + 3; ++i) {
      auto t0 = Clock::now();
      if (kind == TransportKind::kTcp) {
        auto fd = net::ConnectTcp(FLAGS_addr, port, 2000);
        CHECK(fd.ok()) << fd.status();
      }
      auto t1 = Clock::now();
      {
        auto a = TransportClient::Connect(kind, co);
        CHECK(a.ok()) << a.status();
      }
      auto t2 = Clock::now();
      if (auth_too) {
        auto b = TransportClient::Connect(kind, ao);
        CHECK(b.ok()) << b.status();
      }
      auto t3 = Clock::now();
      if (i < 3) continue;  // warm-up
      auto us = [](auto d) { return std::chrono::duration<double, std::nano>(d).count(); };
      raw.push_back(us(t1 - t0));
      anon.push_back(us(t2 - t1));
      authed.push_back(us(t3 - t2));
    }
    if (kind == TransportKind::kTcp) PrintLat(out, "rawtcp", "connect", 0, FLAGS_connect_iters, Summarize(raw));
    PrintLat(out, tname, "connect_anonymous", 0, FLAGS_connect_iters, Summarize(anon));
    if (auth_too) PrintLat(out, tname, "connect_authenticated", 0, FLAGS_connect_iters, Summarize(authed));
  }
  server.reset();

  if (FLAGS_baseline_tcp) {
    // A plain TCP ping-pong: the client sends a 16-byte request, the server
    // answers with `size` bytes (the shape of a one-sided read over tcp).
    uint16_t bport = 0;
    auto lfd = net::ListenTcp("127.0.0.1", 0, 4, &bport);
    CHECK(lfd.ok()) << lfd.status();
    std::thread srv([&] {
      int fd = ::accept(lfd->get(), nullptr, nullptr);
      CHECK_GE(fd, 0);
      net::Fd conn(fd);
      CHECK(net::SetNoDelay(fd).ok());
      std::vector<uint8_t> data(max_size, 4);
      uint64_t req[2];
      auto far = [] { return Clock::now() + std::chrono::hours(1); };
      // Like the transport's pollers, the baseline server spins before it
      // blocks, so the comparison is between equals.
      auto spin_recv = [&](void* buf, size_t n) {
        auto* p = static_cast<uint8_t*>(buf);
        for (int spins = 0; n > 0 && spins < 200000; ++spins) {
          ssize_t got = ::recv(fd, p, n, MSG_DONTWAIT);
          if (got == 0) return false;
          if (got > 0) {
            p += got;
            n -= static_cast<size_t>(got);
          }
        }
        return n == 0 || net::RecvAll(fd, p, n, far()).ok();
      };
      while (spin_recv(req, sizeof req)) {
        if (!net::SendAll(fd, data.data(), req[1], far()).ok()) break;
      }
    });
    auto cfd = net::ConnectTcp("127.0.0.1", bport, 2000);
    CHECK(cfd.ok()) << cfd.status();
    auto far = [] { return Clock::now() + std::chrono::seconds(10); };
    for (size_t size : sizes) {
      std::vector<double> ns;
      for (int i = 0; i < FLAGS_lat_iters + 10; ++i) {
        uint64_t req[2] = {0, size};
        auto t0 = Clock::now();
        CHECK(net::SendAll(cfd->get(), req, sizeof req, far()).ok());
        CHECK(net::RecvAll(cfd->get(), local.data(), size, far()).ok());
        auto t1 = Clock::now();
        if (i >= 10) ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
      }
      PrintLat(out, "rawtcp", "pingpong", size, FLAGS_lat_iters, Summarize(ns));
    }
    cfd->Close();
    srv.join();
  }
  return 0;
}

}  // namespace
}  // namespace sharry

namespace {

int Main(int argc, char** argv) {
  sharry::cli::InitProgram(&argc, &argv, "transport benchmark: --transport=verbs|tcp [--addr=...] [--baseline_tcp]");
  const sharry::TransportKind kind = sharry::cli::TransportFromFlags("transport_bench");
  namespace f = sharry::flags;
  f::ExitOnBadFlags("transport_bench", {
      f::ParseU64List("sizes", FLAGS_sizes, 1, 1u << 26).status(),
      f::CheckListOf("ops", FLAGS_ops, {"lat", "bw", "rpc", "connect"}),
  });
  sharry::cli::Emitter out = sharry::cli::EmitterFromFlags("transport_bench");
  return sharry::Run(kind, out);
}

}  // namespace

int main(int argc, char** argv) { return sharry::flags::RunMain("transport_bench", Main, argc, argv); }
