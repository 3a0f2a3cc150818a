// Memnode: the memory node, assembled — the UMA (mapped once, registered
// once), the Sharry allocator over its offsets, the MemnodeService, and a
// transport server (verbs or tcp) that carries requests to it. The
// `memnode` binary is a thin gflags front end over this class; tests run it
// in-process.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/mutex.h"
#include "memnode/metrics.h"
#include "memnode/service.h"  // also declares alloc::SharryAllocator (not installed)
#include "memnode/uma.h"
#include "verbs/transport.h"

namespace sharry {
class PageOwnerMap;  // memnode/page_owners.h (not installed)
}

namespace sharry::memnode {
class SpanFanout;  // memnode/span_fanout.h (not installed)

class MetricsHttpServer;  // memnode/metrics_http.h (not installed)

struct MemnodeOptions {
  TransportKind transport = TransportKind::kTcp;
  // The transport server: address, port, pollers, client limits, the lease
  // and the hostile-peer bounds (docs/security.md). Memnode::Start sets its
  // region (the UMA) and, with busy_poll, its backoff; the rest is used as
  // given. Unlike a bare ServerOptions, a memnode has a 30 s lease by default.
  ServerOptions server = [] {
    ServerOptions s;
    s.lease_ms = 30000;  // 0: none; a client silent this long loses its far memory
    return s;
  }();
  uint64_t uma_bytes = 256u << 20;
  uint32_t sections = 1;
  std::vector<int> section_cores;  // core of section i: [i % size]; empty: unpinned
  bool hugepages = false;
  uint32_t free_batch = 64;        // delayed reclamation threshold (paper 4.2)
  bool busy_poll = false;          // section threads and pollers never sleep
  int stats_interval_s = 0;        // 0: no periodic stats log
  uint64_t max_object_bytes = 0;   // 0: one section
  uint64_t client_quota_bytes = 0; // far memory one client may hold (ServiceOptions); 0: no cap
  // The tenants file, parsed (their quotas reach the service); nullptr: none.
  std::shared_ptr<const TenantsConfig> tenants;
  MetricsOptions metrics;          // the Prometheus endpoint (off by default)
  // OFFLOAD (issue #13): the offload workers and their bounds
  // (docs/offload.md); threads 0: offload off.
  OffloadOptions offload;
  // Over verbs, confine each session to its spans (a protection domain per
  // session, a memory region per span; docs/tenants.md). false only to
  // measure what that costs (memnode_rpc_bench --confine=false): every
  // client then gets the key to the whole UMA. Refused with a tenants file.
  bool confine = true;
};

// One line of the offload numbers for the stats log ("  offload: off" or
// "  offload: N jobs (F failed), R rows, ...").
std::string FormatOffloadStats(const OffloadStats& s);

class Memnode {
 public:
  static StatusOr<std::unique_ptr<Memnode>> Start(const MemnodeOptions& options);
  ~Memnode();  // stops the transport first (no more requests), then the offload workers, then the allocator

  uint16_t port() const { return server_->port(); }
  const Uma& uma() const { return *uma_; }
  MemnodeService& service() { return *service_; }
  alloc::SharryAllocator& allocator() { return *allocator_; }
  size_t num_clients() const { return server_->num_clients(); }
  // Bytes of far memory zeroed so far because they left their owner.
  uint64_t zeroed_bytes() const;
  // The port of the metrics endpoint; 0 if it is off.
  uint16_t metrics_port() const;

 private:
  Memnode() = default;
  void StatsLoop(int interval_s) EXCLUDES(stop_mu_);

  // Declared in start order; destroyed in reverse.
  std::optional<Uma> uma_;
  // Who owns each page of the UMA; told by the allocator of every span it
  // grants and revokes, it zeroes revoked pages (no remanence, issue #11).
  std::unique_ptr<PageOwnerMap> pages_;
  // The allocator's observer: pages_, and the verbs transport's keys.
  std::unique_ptr<SpanFanout> fanout_;
  std::unique_ptr<alloc::SharryAllocator> allocator_;
  // Owns the offload workers, which read uma_ through pages_: destroyed
  // (the workers stopped and joined) right after server_, before
  // allocator_, pages_ and uma_.
  std::unique_ptr<MemnodeService> service_;
  std::unique_ptr<TransportServer> server_;
  // Started last, stopped first: it reads service_ and pages_.
  std::unique_ptr<MetricsHttpServer> metrics_;
  // A leaf lock (the stats thread collects stats with it released).
  Mutex stop_mu_;
  CondVar stop_cv_;  // with stop_mu_: stop_ was set
  bool stop_ GUARDED_BY(stop_mu_) = false;
  std::thread stats_thread_;
};

}  // namespace sharry::memnode
