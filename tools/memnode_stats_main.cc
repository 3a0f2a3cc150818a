// memnode_stats: asks a running memnode for its STATS and prints them.
//   memnode_stats --transport=tcp --addr=127.0.0.1 --port=7000
// Exit status: 0 printed, 1 the memnode could not be reached or answered
// with an error (printed on stderr), 2 a bad flag.
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <cstdio>

#include "base/flag_check.h"
#include "memnode/client.h"

DEFINE_string(transport, "tcp", "verbs or tcp");
DEFINE_string(addr, "127.0.0.1", "memnode address");
DEFINE_int32(port, 7000, "memnode port, 1..65535");

namespace {

int Main(int argc, char** argv) {
  gflags::SetUsageMessage("print a memnode's stats");
  // Warnings and errors reach the user on stderr, not only the log files
  // (set before parsing, so --stderrthreshold still overrides it).
  FLAGS_stderrthreshold = google::GLOG_WARNING;
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  google::InitGoogleLogging(argv[0]);
  namespace f = sharry::flags;
  f::ExitOnBadFlags("memnode_stats", {
      f::CheckOneOf("transport", FLAGS_transport, {"verbs", "rdma", "tcp"}),
      f::CheckRange("port", FLAGS_port, 1, 65535),
  });
  auto kind = sharry::ParseTransport(FLAGS_transport);
  if (!kind.ok()) f::ExitOnBadFlags("memnode_stats", kind.status());
  sharry::ClientOptions o;
  o.server_addr = FLAGS_addr;
  o.port = static_cast<uint16_t>(FLAGS_port);
  o.connect_attempts = 1;
  auto c = sharry::memnode::MemnodeClient::Connect(*kind, o);
  if (!c.ok()) {
    std::fprintf(stderr, "memnode_stats: %s\n", c.status().ToString().c_str());
    return 1;
  }
  auto s = (*c)->GetStats();
  if (!s.ok()) {
    std::fprintf(stderr, "memnode_stats: %s\n", s.status().ToString().c_str());
    return 1;
  }
  // This connection itself is one of the clients counted.
  std::printf("%s", sharry::memnode::FormatStats(*s).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return sharry::flags::RunMain("memnode_stats", Main, argc, argv); }
