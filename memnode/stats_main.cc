// memnode_stats: asks a running memnode for its STATS and prints them.
//   memnode_stats --transport=tcp --addr=127.0.0.1 --port=7000
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <cstdio>

#include "memnode/client.h"

DEFINE_string(transport, "tcp", "verbs or tcp");
DEFINE_string(addr, "127.0.0.1", "memnode address");
DEFINE_int32(port, 7000, "memnode port");

int main(int argc, char** argv) {
  gflags::SetUsageMessage("print a memnode's stats");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  google::InitGoogleLogging(argv[0]);
  auto kind = sharry::ParseTransport(FLAGS_transport);
  if (!kind.ok()) {
    std::fprintf(stderr, "%s\n", kind.status().ToString().c_str());
    return 2;
  }
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
