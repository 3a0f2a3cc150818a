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

#include <cstdio>
#include <fstream>
#include <sstream>

#include "memnode/memnode.h"

DEFINE_string(transport, "tcp", "verbs or tcp");
DEFINE_string(listen, "0.0.0.0", "address to listen on (verbs: an address of the RDMA netdev)");
DEFINE_int32(port, 7000, "port to listen on (0: pick a free one; see --port_file)");
DEFINE_string(port_file, "", "write the port here once serving (for scripts and tests)");
DEFINE_uint64(uma_mb, 1024, "size of the UMA (far memory) in MiB");
DEFINE_uint32(sections, 1, "memory sections (one allocator thread each)");
DEFINE_string(section_cores, "", "comma-separated cores for the section threads (empty: unpinned)");
DEFINE_int32(pollers, 1, "RPC poller threads");
DEFINE_string(poller_cores, "", "comma-separated cores for the pollers (empty: unpinned)");
DEFINE_bool(hugepages, false, "back the UMA with hugepages when available");
DEFINE_uint32(free_batch, 64, "pending frees applied per batch (delayed reclamation)");
DEFINE_bool(busy_poll, false, "section threads and pollers never sleep (dedicated cores)");
DEFINE_int32(stats_interval, 10, "seconds between stats lines in the log (0: never)");
DEFINE_int32(max_clients, 256, "connections served at once");
DEFINE_uint64(max_object_kb, 0, "largest object in KiB (0: one section)");

namespace {

std::vector<int> ParseCores(const std::string& s) {
  std::vector<int> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) v.push_back(std::stoi(item));
  return v;
}

volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage("Sharry memory node: serves far memory to compute processes");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  auto kind = sharry::ParseTransport(FLAGS_transport);
  if (!kind.ok()) {
    LOG(ERROR) << kind.status();
    return 2;
  }
  sharry::memnode::MemnodeOptions o;
  o.transport = *kind;
  o.listen_addr = FLAGS_listen;
  o.port = static_cast<uint16_t>(FLAGS_port);
  o.uma_bytes = FLAGS_uma_mb << 20;
  o.sections = FLAGS_sections;
  o.section_cores = ParseCores(FLAGS_section_cores);
  o.pollers = FLAGS_pollers;
  o.poller_cores = ParseCores(FLAGS_poller_cores);
  o.hugepages = FLAGS_hugepages;
  o.free_batch = FLAGS_free_batch;
  o.busy_poll = FLAGS_busy_poll;
  o.stats_interval_s = FLAGS_stats_interval;
  o.max_clients = FLAGS_max_clients;
  o.max_object_bytes = FLAGS_max_object_kb << 10;
  auto m = sharry::memnode::Memnode::Start(o);
  if (!m.ok()) {
    LOG(ERROR) << "memnode cannot start: " << m.status();
    return 1;
  }
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  if (!FLAGS_port_file.empty()) {
    std::string tmp = FLAGS_port_file + ".tmp";
    std::ofstream(tmp) << (*m)->port() << "\n";
    std::rename(tmp.c_str(), FLAGS_port_file.c_str());
  }
  std::printf("memnode serving on port %u\n", (*m)->port());
  std::fflush(stdout);
  while (!g_stop) pause();
  LOG(INFO) << "memnode: stopping; final stats: " << sharry::memnode::FormatStats((*m)->service().CollectStats());
  m->reset();
  return 0;
}
