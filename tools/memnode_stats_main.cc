// memnode_stats: asks running memnodes for their STATS and prints them.
//   memnode_stats --transport=tcp --addr=127.0.0.1 --port=7000
//   memnode_stats --memnode=10.0.0.1:7000,10.0.0.2:7000      (one block each, then the total)
// One memnode (--addr/--port, or a --memnode list of one) prints what it
// always has. Several are asked one after another; each gets a block
// ("memnode HOST:PORT: UMA ...", or one record with a "memnode" field in
// csv/json), then a total over those that answered ("total of K/N
// memnodes: UMA ...", or a record with memnode=total).
// Exit status: 0 printed, 1 a memnode could not be reached or answered
// with an error (printed on stderr; the others are still printed), 2 a bad
// flag.
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "memnode/client.h"
#include "tools/cli/output.h"
#include "tools/cli/program.h"
#include "tools/cli/ranged_flag.h"

DEFINE_string(addr, "127.0.0.1", "memnode address");
SHARRY_FLAG(int32, port, 7000, 1, 65535, "memnode port");
DEFINE_string(memnode, "",
              "memnodes HOST:PORT[,HOST:PORT...] (a bare HOST takes --port; at most 254, no duplicates): each "
              "one's stats, then the total; instead of --addr");
DEFINE_bool(admin, false,
            "authenticate as the tenants file's admin (with --secret_file holding the admin secret): see every "
            "client's usage; without it a client sees its own and its tenant's");

namespace {

using Target = sharry::memnode::MemnodeAddress;

// --memnode as the client binaries take it (memnode::ParseMemnodeList).
sharry::StatusOr<std::vector<Target>> ParseTargets(std::string_view list, uint16_t default_port) {
  auto t = sharry::memnode::ParseMemnodeList(list, default_port, 254);
  if (!t.ok())
    return sharry::Status::InvalidArgument("--memnode=" + std::string(list) + " is not allowed: " +
                                           t.status().message() +
                                           " (want HOST:PORT[,HOST:PORT...], PORT in 1..65535, at most 254, "
                                           "no duplicates)");
  return t;
}

// The totals of several memnodes' heads (sections and records are per memnode).
void AddTo(const sharry::memnode::StatsHead& h, sharry::memnode::StatsHead* sum) {
  sum->uma_bytes += h.uma_bytes;
  sum->used_bytes += h.used_bytes;
  sum->free_bytes += h.free_bytes;
  sum->live_blocks += h.live_blocks;
  sum->pending_blocks += h.pending_blocks;
  sum->pending_bytes += h.pending_bytes;
  sum->alloc_requests += h.alloc_requests;
  sum->free_requests += h.free_requests;
  sum->reclaimed_blocks += h.reclaimed_blocks;
  sum->clients += h.clients;
}

// csv/json: the totals of one head (the sections and clients stay in the text form).
sharry::cli::Record HeadRecord(const sharry::memnode::StatsHead& h) {
  sharry::cli::Record r("memnode_stats");
  r.Add("uma_bytes", h.uma_bytes).Add("used_bytes", h.used_bytes).Add("free_bytes", h.free_bytes);
  r.Add("live_blocks", h.live_blocks).Add("pending_blocks", h.pending_blocks).Add("pending_bytes", h.pending_bytes);
  r.Add("clients", h.clients).Add("alloc_requests", h.alloc_requests).Add("free_requests", h.free_requests);
  r.Add("reclaimed_blocks", h.reclaimed_blocks);
  return r;
}

int Main(int argc, char** argv) {
  sharry::cli::InitProgram(&argc, &argv, "print memnodes' stats", sharry::cli::Log::kWarnings);
  const sharry::TransportKind kind = sharry::cli::TransportFromFlags("memnode_stats");
  sharry::cli::Emitter out = sharry::cli::EmitterFromFlags("memnode_stats");
  std::vector<Target> targets{{FLAGS_addr, static_cast<uint16_t>(FLAGS_port)}};
  if (!FLAGS_memnode.empty()) {
    auto t = ParseTargets(FLAGS_memnode, static_cast<uint16_t>(FLAGS_port));
    sharry::flags::ExitOnBadFlags("memnode_stats", t.status());
    targets = std::move(*t);
  }
  sharry::ClientOptions o;
  o.connect_attempts = 1;
  sharry::cli::CredentialsFromFlags("memnode_stats", FLAGS_admin ? sharry::auth::kAdminName : "", &o.tenant,
                                    &o.secret);
  const bool several = targets.size() > 1;
  sharry::memnode::StatsHead total;
  size_t answered = 0;
  for (const Target& t : targets) {
    o.server_addr = t.host;
    o.port = t.port;
    const std::string who = several ? t.ToString() + ": " : "";
    auto c = sharry::memnode::MemnodeClient::Connect(kind, o);
    if (!c.ok()) {
      std::fprintf(stderr, "memnode_stats: %s%s\n", who.c_str(), c.status().ToString().c_str());
      continue;
    }
    auto s = (*c)->GetStats();
    if (!s.ok()) {
      std::fprintf(stderr, "memnode_stats: %s%s\n", who.c_str(), s.status().ToString().c_str());
      continue;
    }
    // This connection itself is one of the clients counted.
    answered++;
    AddTo(s->head, &total);
    if (out.text()) {
      std::printf("%s%s", several ? ("memnode " + who).c_str() : "", sharry::memnode::FormatStats(*s).c_str());
    } else if (several) {
      out.Emit(sharry::cli::Record("memnode_stats").Add("memnode", t.ToString()).Append(HeadRecord(s->head)));
    } else {
      out.Emit(HeadRecord(s->head));
    }
  }
  if (several) {
    const std::string counted = std::to_string(answered) + "/" + std::to_string(targets.size());
    if (out.text()) {
      sharry::memnode::Stats sum;
      sum.head = total;
      std::printf("total of %s memnodes: %s", counted.c_str(), sharry::memnode::FormatStats(sum).c_str());
    } else {
      // (The same columns as the memnodes' rows: one csv header.)
      out.Emit(sharry::cli::Record("memnode_stats").Add("memnode", "total").Append(HeadRecord(total)));
    }
  }
  std::fflush(stdout);
  return answered == targets.size() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) { return sharry::flags::RunMain("memnode_stats", Main, argc, argv); }
