// memnode: the Sharry memory node.
//
//   memnode --transport=verbs --listen=192.0.2.1 --port=7000 --uma_mb=4096
//           --sections=4 --section_cores=2,3,4,5 --pollers=2 --poller_cores=0,1
//
// Maps the UMA once, registers it once, serves ALLOC/FREE/STATS (and
// OFFLOAD, on its offload workers) until SIGINT/SIGTERM. See docs/memnode.md.
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "alloc/scheduler.h"
#include "base/flag_check.h"
#include "discovery/memnode_registry.h"
#include "memnode/memnode.h"
#include "memnode/tenants.h"
#include "tools/cli/program.h"
#include "verbs/socket_util.h"
#include "tools/cli/ranged_flag.h"

DEFINE_string(listen, "127.0.0.1",
              "address to listen on (verbs: an address of the RDMA netdev); a non-loopback address needs "
              "--tenants_file or --insecure_anonymous");
// Tenants (docs/security.md).
DEFINE_string(tenants_file, "",
              "who may connect: tenants with their secrets and quotas, and the admin (mode 0600 or stricter; "
              "format in docs/security.md); empty: anonymous clients only, on loopback");
DEFINE_bool(insecure_anonymous, false,
            "also serve clients that do not authenticate, on any --listen address: anyone who reaches the port "
            "may use far memory (each client is still confined to its own blocks)");
SHARRY_FLAG(int32, port, 7000, 0, 65535, "port to listen on (0: pick a free one; see --port_file)");
DEFINE_string(port_file, "", "write the port here once serving (for scripts and tests)");
// The UMA is mapped and populated at once: it must fit in this machine.
SHARRY_FLAG(uint64, uma_mb, 1024, 1, std::min(sharry::flags::kMaxFlagMiB, sharry::flags::PhysicalMiB()),
            "size of the UMA (far memory) in MiB, at most this machine's physical memory");
SHARRY_FLAG(uint32, sections, 1, 1, sharry::alloc::RequestScheduler::kMaxSections,
            "memory sections (one allocator thread each)");
DEFINE_string(section_cores, "", "comma-separated cores for the section threads (empty: unpinned; -1: this one unpinned)");
SHARRY_FLAG(int32, pollers, 1, 1, 64, "RPC poller threads");
DEFINE_string(poller_cores, "", "comma-separated cores for the pollers (empty: unpinned; -1: this one unpinned)");
DEFINE_bool(hugepages, false, "back the UMA with hugepages when available");
SHARRY_FLAG(uint32, free_batch, 64, 1, 1u << 20, "pending frees applied per batch (delayed reclamation)");
DEFINE_bool(busy_poll, false, "section threads and pollers never sleep (dedicated cores)");
SHARRY_FLAG(int32, stats_interval, 10, 0, 86400, "seconds between stats lines in the log (0: never)");
SHARRY_FLAG(int32, max_clients, 256, 1, 65536, "connections served at once");
DEFINE_uint64(max_object_kb, 0, "largest object in KiB, 0..the UMA's size (0: one section)");
SHARRY_FLAG(uint64, client_quota_mb, 0, 0, sharry::flags::kMaxFlagMiB,
            "far memory one client may hold, in MiB of allocated blocks (0: no cap); "
            "an ALLOC past it is refused with QUOTA_EXCEEDED");
// Hostile and failing peers (docs/security.md).
SHARRY_FLAG(int32, client_lease_s, 30, 0, 86400,
            "a client that sends nothing for this long (a frozen or vanished process) has its connections "
            "closed and its far memory reclaimed (0: no lease)");
SHARRY_FLAG(int32, max_handshakes, 64, 1, 65536, "connections accepted but not yet greeted (beyond max_clients)");
SHARRY_FLAG(int32, handshake_timeout_ms, 5000, 1, 3600000,
            "a connection that has not said hello (verbs: finished authenticating) by then is closed");
SHARRY_FLAG(uint64, max_unsent_kb, 4096, 64, 4194304,
            "tcp: unsent replies per connection before its requests are no longer read");
SHARRY_FLAG(int32, stall_timeout_ms, 10000, 1, 3600000,
            "tcp: a connection over --max_unsent_kb that takes nothing for this long is dropped");
SHARRY_FLAG(int32, keepalive_s, 10, 0, 3600, "tcp keepalive idle seconds before probing a silent peer (0: off)");
// Offloaded operators (docs/offload.md, docs/security.md).
SHARRY_FLAG(uint32, offload_threads, 1, 0, 64,
            "offload worker threads, apart from the section threads and the pollers (0: OFFLOAD is refused)");
DEFINE_string(offload_cores, "",
              "comma-separated cores for the offload workers (empty: unpinned; -1: this one unpinned)");
SHARRY_FLAG(uint32, offload_queue, 64, 1, 65536,
            "OFFLOAD jobs waiting for a worker, all clients together; past it OFFLOAD is refused "
            "(ResourceExhausted)");
SHARRY_FLAG(uint32, offload_client_jobs, 32, 1, 4096,
            "OFFLOAD jobs of one client not yet collected (queued, running or done); past it OFFLOAD is refused");
SHARRY_FLAG(uint64, offload_max_rows, 4194304, 1, uint64_t{1} << 32,
            "rows of one OFFLOAD request (all its units); a larger one is refused");
// The Prometheus endpoint (docs/memnode.md, docs/security.md).
SHARRY_FLAG(int32, metrics_port, 0, 0, 65535, "serve Prometheus metrics (GET /metrics) on this port (0: off)");
DEFINE_string(metrics_listen, "127.0.0.1",
              "address of the metrics endpoint; it has no authentication, so a non-loopback one is logged");
// Discovery through etcd (docs/discovery.md).
DEFINE_string(etcd, "",
              "register this memnode in etcd (host:port of its client URL, served over HTTP) under --etcd_prefix "
              "while it serves, so runtimes find it; empty: no registration");
DEFINE_string(etcd_prefix, sharry::discovery::kDefaultPrefix,
              "etcd key prefix of the registry: the key is <prefix><advertised host:port>");
SHARRY_FLAG(int32, etcd_ttl_s, 5, 1, 3600,
            "TTL of the registration's etcd lease in seconds (renewed every third of it): how long a memnode "
            "that died or froze stays registered");
DEFINE_string(advertise, "",
              "host:port clients connect to, as registered in etcd (empty: --listen and the port served; needed "
              "when --listen is a wildcard address)");

namespace {

volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

// --etcd, --etcd_prefix and --advertise (--etcd_ttl_s is a SHARRY_FLAG).
sharry::Status CheckDiscoveryFlags() {
  auto host_port = [](const char* name, const std::string& value) {
    sharry::Status s = sharry::discovery::CheckHostPort(value);
    if (s.ok()) return s;
    return sharry::Status::InvalidArgument("--" + std::string(name) + "=" + value + " is not allowed: " + s.message());
  };
  if (!FLAGS_etcd.empty()) SHARRY_RETURN_IF_ERROR(host_port("etcd", FLAGS_etcd));
  if (!FLAGS_advertise.empty()) SHARRY_RETURN_IF_ERROR(host_port("advertise", FLAGS_advertise));
  const bool printable = std::all_of(FLAGS_etcd_prefix.begin(), FLAGS_etcd_prefix.end(),
                                     [](char c) { return c > 0x20 && c < 0x7f; });
  if (FLAGS_etcd_prefix.empty() || !printable) {
    return sharry::Status::InvalidArgument("--etcd_prefix=" + FLAGS_etcd_prefix +
                                           " is not allowed: a non-empty key prefix of printable ASCII, no spaces");
  }
  if (!FLAGS_etcd.empty() && FLAGS_advertise.empty() &&
      (FLAGS_listen == "0.0.0.0" || FLAGS_listen == "::" || FLAGS_listen.empty())) {
    return sharry::Status::InvalidArgument("--advertise is needed with --etcd when --listen=" + FLAGS_listen +
                                           " (a wildcard address clients cannot connect to)");
  }
  return sharry::Status::Ok();
}

// What this memnode registers in etcd (--etcd), or null without --etcd.
sharry::StatusOr<std::unique_ptr<sharry::discovery::MemnodeRegistration>> RegisterInEtcd(
    const sharry::memnode::MemnodeOptions& o, uint16_t port, int64_t started_ms) {
  if (FLAGS_etcd.empty()) return std::unique_ptr<sharry::discovery::MemnodeRegistration>();
  sharry::discovery::RegistrationOptions r;
  r.etcd.endpoint = FLAGS_etcd;
  r.prefix = FLAGS_etcd_prefix;
  r.ttl_s = FLAGS_etcd_ttl_s;
  r.info.addr = FLAGS_advertise;
  if (r.info.addr.empty()) {
    const bool v6 = FLAGS_listen.find(':') != std::string::npos;
    r.info.addr = (v6 ? "[" + FLAGS_listen + "]" : FLAGS_listen) + ":" + std::to_string(port);
  }
  r.info.transport = std::string(sharry::TransportName(o.transport));
  r.info.uma_bytes = o.uma_bytes;
  r.info.started_ms = started_ms;
  return sharry::discovery::MemnodeRegistration::Start(std::move(r));
}

int Main(int argc, char** argv) {
  const int64_t started_ms = sharry::discovery::UnixMillisNow();
  sharry::cli::InitProgram(&argc, &argv, "Sharry memory node: serves far memory to compute processes",
                           sharry::cli::Log::kStderr);
  namespace f = sharry::flags;
  const sharry::TransportKind kind = sharry::cli::TransportFromFlags("memnode");
  auto section_cores = f::ParseCoreList("section_cores", FLAGS_section_cores);
  auto poller_cores = f::ParseCoreList("poller_cores", FLAGS_poller_cores);
  auto offload_cores = f::ParseCoreList("offload_cores", FLAGS_offload_cores);
  // The ranged flags are checked (InitProgram); --uma_mb is in range, so the
  // bound of --max_object_kb (and the shift below) cannot wrap.
  f::ExitOnBadFlags("memnode", {
      section_cores.status(),
      poller_cores.status(),
      offload_cores.status(),
      f::CheckRangeU("max_object_kb", FLAGS_max_object_kb, 0, FLAGS_uma_mb << 10),
      CheckDiscoveryFlags(),
  });
  sharry::memnode::MemnodeOptions o;
  o.transport = kind;
  o.server.listen_addr = FLAGS_listen;
  o.server.port = static_cast<uint16_t>(FLAGS_port);
  o.uma_bytes = FLAGS_uma_mb << 20;
  o.sections = FLAGS_sections;
  o.section_cores = std::move(*section_cores);
  o.server.num_pollers = FLAGS_pollers;
  o.server.poller_cores = std::move(*poller_cores);
  o.hugepages = FLAGS_hugepages;
  o.free_batch = FLAGS_free_batch;
  o.busy_poll = FLAGS_busy_poll;
  o.stats_interval_s = FLAGS_stats_interval;
  o.server.max_clients = FLAGS_max_clients;
  o.max_object_bytes = FLAGS_max_object_kb << 10;
  o.client_quota_bytes = FLAGS_client_quota_mb << 20;
  o.server.lease_ms = static_cast<uint32_t>(FLAGS_client_lease_s) * 1000;
  o.server.max_handshakes = FLAGS_max_handshakes;
  o.server.handshake_timeout_ms = FLAGS_handshake_timeout_ms;
  o.server.max_unsent_bytes = FLAGS_max_unsent_kb << 10;
  o.server.stall_timeout_ms = FLAGS_stall_timeout_ms;
  o.server.keepalive_s = FLAGS_keepalive_s;
  o.offload.threads = FLAGS_offload_threads;
  o.offload.cores = std::move(*offload_cores);
  o.offload.queue = FLAGS_offload_queue;
  o.offload.jobs_per_client = FLAGS_offload_client_jobs;
  o.offload.max_rows = FLAGS_offload_max_rows;
  // Protected mode: without tenants, anonymous clients on loopback only.
  if (!FLAGS_tenants_file.empty()) {
    auto tenants = sharry::LoadTenantsFile(FLAGS_tenants_file);
    if (!tenants.ok()) f::ExitOnBadFlags("memnode", tenants.status());
    o.server.credentials = sharry::CredentialsOf(*tenants, FLAGS_insecure_anonymous);
    LOG(INFO) << "memnode: " << tenants->tenants.size() << " tenant(s) from " << FLAGS_tenants_file
              << (tenants->admin.empty() ? ", no admin" : ", an admin")
              << (FLAGS_insecure_anonymous ? "; anonymous clients served too (--insecure_anonymous)" : "");
    o.tenants = std::make_shared<const sharry::TenantsConfig>(std::move(*tenants));  // their quotas
  } else if (auto lo = sharry::net::IsLoopbackHost(FLAGS_listen);
             lo.ok() && !*lo && !FLAGS_insecure_anonymous) {  // (an unresolvable one fails at start)
    f::ExitOnBadFlags("memnode", sharry::Status::InvalidArgument(
                                     "--listen=" + FLAGS_listen +
                                     " would serve the network without authentication: give --tenants_file "
                                     "(docs/security.md), or --insecure_anonymous to serve anyone who reaches it"));
  }
  if (FLAGS_insecure_anonymous) {
    std::fprintf(stderr, "memnode: WARNING: --insecure_anonymous: anyone who reaches %s:%d may use far memory "
                         "without authenticating\n", FLAGS_listen.c_str(), FLAGS_port);
    LOG(WARNING) << "memnode: --insecure_anonymous: clients that do not authenticate are served on " << FLAGS_listen;
  }
  o.metrics.enabled = FLAGS_metrics_port != 0;
  o.metrics.port = static_cast<uint16_t>(FLAGS_metrics_port);
  o.metrics.listen_addr = FLAGS_metrics_listen;
  o.metrics.allow_non_loopback = !gflags::GetCommandLineFlagInfoOrDie("metrics_listen").is_default;
  auto m = sharry::memnode::Memnode::Start(o);
  if (!m.ok()) {
    // The metrics endpoint's address or port cannot be served: its errors
    // name the flag (MetricsHttpServer::Start), a bad flag's exit status 2.
    if (m.status().message().starts_with("--metrics_")) f::ExitOnBadFlags("memnode", m.status());
    std::fprintf(stderr, "memnode: cannot start: %s\n", m.status().ToString().c_str());
    return 1;
  }
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  // Registered once serving: a runtime that finds the key can connect.
  auto registration = RegisterInEtcd(o, (*m)->port(), started_ms);
  if (!registration.ok()) {
    std::fprintf(stderr, "memnode: cannot register in etcd (--etcd): %s\n", registration.status().ToString().c_str());
    return 1;
  }
  if (*registration) {
    LOG(INFO) << "memnode: registered in etcd " << FLAGS_etcd << " as " << (*registration)->key() << " (lease "
              << (*registration)->lease_id() << ", ttl " << FLAGS_etcd_ttl_s << " s)";
  }
  if (!FLAGS_port_file.empty()) {
    // Written whole, then renamed: a reader sees no file or the whole port.
    // A port file that cannot be written is fatal: whoever waits for it would
    // wait forever.
    std::string tmp = FLAGS_port_file + ".tmp";
    std::ofstream out(tmp);
    out << (*m)->port() << "\n";
    out.close();
    if (!out || std::rename(tmp.c_str(), FLAGS_port_file.c_str()) != 0) {
      std::fprintf(stderr, "memnode: --port_file=%s cannot be written: %s\n", FLAGS_port_file.c_str(),
                   std::strerror(errno));
      std::remove(tmp.c_str());
      return 1;
    }
  }
  std::printf("memnode serving on port %u\n", (*m)->port());
  std::fflush(stdout);
  while (!g_stop) pause();
  // Gone from the registry first (the lease revoked: watchers see it leave
  // at once), then stop serving.
  if (*registration) {
    if (sharry::Status s = (*registration)->Stop(); !s.ok()) {
      LOG(WARNING) << "memnode: could not deregister from etcd (the key expires in " << FLAGS_etcd_ttl_s
                   << " s): " << s;
    }
  }
  LOG(INFO) << "memnode: stopping; final stats: " << sharry::memnode::FormatStats((*m)->service().CollectStats())
            << sharry::memnode::FormatOffloadStats((*m)->service().offload_stats());
  m->reset();
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return sharry::flags::RunMain("memnode", Main, argc, argv); }
