// memnode: the Sharry memory node.
//
//   memnode --transport=verbs --listen=192.0.2.1 --port=7000 --uma_mb=4096
//           --sections=4 --section_cores=2,3,4,5 --pollers=2 --poller_cores=0,1
//
// Maps the UMA once, registers it once, serves ALLOC/FREE/STATS until
// SIGINT/SIGTERM. See docs/memnode.md.
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
#include "memnode/memnode.h"
#include "tools/cli/program.h"

DEFINE_string(listen, "0.0.0.0", "address to listen on (verbs: an address of the RDMA netdev)");
DEFINE_int32(port, 7000, "port to listen on, 0..65535 (0: pick a free one; see --port_file)");
DEFINE_string(port_file, "", "write the port here once serving (for scripts and tests)");
DEFINE_uint64(uma_mb, 1024, "size of the UMA (far memory) in MiB, 1..this machine's physical memory");
DEFINE_uint32(sections, 1, "memory sections (one allocator thread each), 1..64");
DEFINE_string(section_cores, "", "comma-separated cores for the section threads (empty: unpinned; -1: this one unpinned)");
DEFINE_int32(pollers, 1, "RPC poller threads, 1..64");
DEFINE_string(poller_cores, "", "comma-separated cores for the pollers (empty: unpinned; -1: this one unpinned)");
DEFINE_bool(hugepages, false, "back the UMA with hugepages when available");
DEFINE_uint32(free_batch, 64, "pending frees applied per batch (delayed reclamation), 1..1048576");
DEFINE_bool(busy_poll, false, "section threads and pollers never sleep (dedicated cores)");
DEFINE_int32(stats_interval, 10, "seconds between stats lines in the log, 0..86400 (0: never)");
DEFINE_int32(max_clients, 256, "connections served at once, 1..65536");
DEFINE_uint64(max_object_kb, 0, "largest object in KiB, 0..the UMA's size (0: one section)");
// Hostile and failing peers (docs/security.md).
DEFINE_int32(client_lease_s, 30,
             "a client that sends nothing for this long (a frozen or vanished process) has its connections "
             "closed and its far memory reclaimed; 0..86400 (0: no lease)");
DEFINE_int32(max_handshakes, 64, "connections accepted but not yet greeted, 1..65536 (beyond max_clients)");
DEFINE_int32(handshake_timeout_ms, 5000, "a connection that has not said hello by then is closed, 1..3600000");
DEFINE_uint64(max_unsent_kb, 4096,
              "tcp: unsent replies per connection before its requests are no longer read, 64..4194304");
DEFINE_int32(stall_timeout_ms, 10000,
             "tcp: a connection over --max_unsent_kb that takes nothing for this long is dropped, 1..3600000");
DEFINE_int32(keepalive_s, 10, "tcp keepalive idle seconds before probing a silent peer, 0..3600 (0: off)");

namespace {

volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

int Main(int argc, char** argv) {
  sharry::cli::InitProgram(&argc, &argv, "Sharry memory node: serves far memory to compute processes",
                           sharry::cli::Log::kStderr);
  namespace f = sharry::flags;
  const sharry::TransportKind kind = sharry::cli::TransportFromFlags("memnode");
  auto section_cores = f::ParseCoreList("section_cores", FLAGS_section_cores);
  auto poller_cores = f::ParseCoreList("poller_cores", FLAGS_poller_cores);
  // The UMA is mapped and populated at once: it must fit in this machine.
  const uint64_t max_uma_mb = std::min(f::kMaxFlagMiB, f::PhysicalMiB());
  f::ExitOnBadFlags("memnode", {
      f::CheckRange("port", FLAGS_port, 0, 65535),
      f::CheckRangeU("uma_mb", FLAGS_uma_mb, 1, max_uma_mb),
      f::CheckRangeU("sections", FLAGS_sections, 1, sharry::alloc::RequestScheduler::kMaxSections),
      section_cores.status(),
      f::CheckRange("pollers", FLAGS_pollers, 1, 64),
      poller_cores.status(),
      f::CheckRangeU("free_batch", FLAGS_free_batch, 1, 1u << 20),
      f::CheckRange("stats_interval", FLAGS_stats_interval, 0, 86400),
      f::CheckRange("max_clients", FLAGS_max_clients, 1, 65536),
      // Checked after --uma_mb, so the bound (and the shift below) cannot wrap.
      f::CheckRangeU("max_object_kb", FLAGS_max_object_kb, 0, FLAGS_uma_mb << 10),
      f::CheckRange("client_lease_s", FLAGS_client_lease_s, 0, 86400),
      f::CheckRange("max_handshakes", FLAGS_max_handshakes, 1, 65536),
      f::CheckRange("handshake_timeout_ms", FLAGS_handshake_timeout_ms, 1, 3600000),
      f::CheckRangeU("max_unsent_kb", FLAGS_max_unsent_kb, 64, 4194304),
      f::CheckRange("stall_timeout_ms", FLAGS_stall_timeout_ms, 1, 3600000),
      f::CheckRange("keepalive_s", FLAGS_keepalive_s, 0, 3600),
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
  o.server.lease_ms = static_cast<uint32_t>(FLAGS_client_lease_s) * 1000;
  o.server.max_handshakes = FLAGS_max_handshakes;
  o.server.handshake_timeout_ms = FLAGS_handshake_timeout_ms;
  o.server.max_unsent_bytes = FLAGS_max_unsent_kb << 10;
  o.server.stall_timeout_ms = FLAGS_stall_timeout_ms;
  o.server.keepalive_s = FLAGS_keepalive_s;
  auto m = sharry::memnode::Memnode::Start(o);
  if (!m.ok()) {
    std::fprintf(stderr, "memnode: cannot start: %s\n", m.status().ToString().c_str());
    return 1;
  }
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
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
  LOG(INFO) << "memnode: stopping; final stats: " << sharry::memnode::FormatStats((*m)->service().CollectStats());
  m->reset();
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return sharry::flags::RunMain("memnode", Main, argc, argv); }
