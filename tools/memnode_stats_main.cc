// memnode_stats: asks a running memnode for its STATS and prints them.
//   memnode_stats --transport=tcp --addr=127.0.0.1 --port=7000
// Exit status: 0 printed, 1 the memnode could not be reached or answered
// with an error (printed on stderr), 2 a bad flag.
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <cstdio>

#include "memnode/client.h"
#include "tools/cli/output.h"
#include "tools/cli/program.h"
#include "tools/cli/ranged_flag.h"

DEFINE_string(addr, "127.0.0.1", "memnode address");
SHARRY_FLAG(int32, port, 7000, 1, 65535, "memnode port");
DEFINE_bool(admin, false,
            "authenticate as the tenants file's admin (with --secret_file holding the admin secret): see every "
            "client's usage; without it a client sees its own and its tenant's");

namespace {

int Main(int argc, char** argv) {
  sharry::cli::InitProgram(&argc, &argv, "print a memnode's stats", sharry::cli::Log::kWarnings);
  const sharry::TransportKind kind = sharry::cli::TransportFromFlags("memnode_stats");
  sharry::cli::Emitter out = sharry::cli::EmitterFromFlags("memnode_stats");
  sharry::ClientOptions o;
  o.server_addr = FLAGS_addr;
  o.port = static_cast<uint16_t>(FLAGS_port);
  o.connect_attempts = 1;
  sharry::cli::CredentialsFromFlags("memnode_stats", FLAGS_admin ? sharry::auth::kAdminName : "", &o.tenant,
                                    &o.secret);
  auto c = sharry::memnode::MemnodeClient::Connect(kind, o);
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
  if (out.text()) {
    std::printf("%s", sharry::memnode::FormatStats(*s).c_str());
    return 0;
  }
  // csv/json: the totals (the sections and clients stay in the text form).
  const auto& h = s->head;
  sharry::cli::Record r("memnode_stats");
  r.Add("uma_bytes", h.uma_bytes).Add("used_bytes", h.used_bytes).Add("free_bytes", h.free_bytes);
  r.Add("live_blocks", h.live_blocks).Add("pending_blocks", h.pending_blocks).Add("pending_bytes", h.pending_bytes);
  r.Add("clients", h.clients).Add("alloc_requests", h.alloc_requests).Add("free_requests", h.free_requests);
  out.Emit(r.Add("reclaimed_blocks", h.reclaimed_blocks));
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return sharry::flags::RunMain("memnode_stats", Main, argc, argv); }
