// The memnode's numbers in the Prometheus text exposition format (version
// 0.0.4), for its metrics endpoint (memnode/metrics_http.h, `--metrics_port`;
// docs/memnode.md lists the metrics). No sockets here: FormatPrometheus is a
// pure function of its inputs, so tests pin its output line by line.
//
// Every family gets a `# HELP` and a `# TYPE` line; names start with
// `sharry_memnode_`; counters end in `_total` (Prometheus computes rates from
// them). Label values are escaped as the format says (\\, \", \n), so a
// tenant name can never break a line or forge a series.
//
// Cardinality is bounded: totals, one series per section (at most 64) and
// one per tenant (the tenants file), never one per client id.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "memnode/rpc.h"

namespace sharry::memnode {

// The metrics endpoint of a memnode (Memnode::Start serves it; the memnode
// binary's --metrics_port and --metrics_listen set it). An endpoint that
// cannot start fails the start with an InvalidArgument naming the flag.
struct MetricsOptions {
  bool enabled = false;
  std::string listen_addr = "127.0.0.1";
  uint16_t port = 0;  // 0: any free port (Memnode::metrics_port() says which)
  // The endpoint has no authentication: a non-loopback listen_addr is
  // refused unless this is set (the binary sets it when --metrics_listen is
  // given explicitly), and is then logged as a warning.
  bool allow_non_loopback = false;
  // Hostile peers: connections open at once (all peers, and per address),
  // and seconds after which an idle or slow connection is closed.
  uint32_t max_connections = 16;
  uint32_t max_connections_per_ip = 4;
  uint32_t timeout_s = 10;
};

// One tenant's row (label tenant="<name>"). Filled once the memnode keeps
// per-tenant accounting (issue #11); until then the list is empty.
struct TenantMetrics {
  std::string tenant;
  uint64_t bytes = 0;           // far memory its clients hold
  uint64_t blocks = 0;
  uint64_t quota_bytes = 0;     // 0: no quota (no sample is written)
  uint64_t quota_refusals = 0;  // ALLOC elements refused for the quota, since start
  uint64_t auth_failures = 0;   // refused authentications naming it, since start
};

// Counters kept outside MemnodeService::CollectStats.
struct MemnodeCounters {
  uint64_t zeroed_bytes = 0;             // Memnode::zeroed_bytes()
  uint64_t metrics_scrapes = 0;          // GET /metrics answered, this one included
  uint64_t metrics_refused_requests = 0; // other paths, methods, request bodies
  // Offload (issue #13; MemnodeService::offload_stats()). The offload_*
  // families are written only when offload_enabled.
  bool offload_enabled = false;
  uint64_t offload_jobs = 0;         // jobs accepted, since start
  uint64_t offload_rows = 0;         // rows scanned by jobs, since start
  uint64_t offload_cpu_ns = 0;       // worker CPU time spent on jobs, since start
  uint64_t offload_refused = 0;      // OFFLOAD requests refused, since start
  uint64_t offload_queue_depth = 0;  // jobs waiting for a worker now
};

// The exposition of `stats` (all its client records are folded into
// totals), `counters` and `tenants`, in this order; ends with a newline.
std::string FormatPrometheus(const Stats& stats, const MemnodeCounters& counters,
                             std::span<const TenantMetrics> tenants);

// A label value as the format wants it between double quotes: backslash,
// double quote and line feed escaped (\\, \", \n); other bytes unchanged.
std::string EscapeLabelValue(std::string_view value);

}  // namespace sharry::memnode
