#include "memnode/memnode.h"

#include <glog/logging.h>

#include <cstdint>
#include <cstdio>

#include "alloc/sharry_allocator.h"
#include "memnode/metrics_http.h"
#include "memnode/page_owners.h"
#include "memnode/span_fanout.h"

namespace sharry::memnode {

namespace {

// The per-tenant series of the metrics endpoint: each tenant's record of
// the service (the anonymous clients as tenant "(anonymous)"), and the
// failed authentications the transport counted per tenant name ("" = no
// credentials given: "(none)"; "(unknown)": a name the memnode does not have).
std::vector<TenantMetrics> TenantRows(const Stats& st, const AuthCounters& auth) {
  std::vector<TenantMetrics> rows;
  auto row = [&rows](const std::string& name) -> TenantMetrics& {
    for (TenantMetrics& r : rows)
      if (r.tenant == name) return r;
    rows.push_back(TenantMetrics{name});
    return rows.back();
  };
  for (const TenantRecord& t : st.tenants) {
    TenantMetrics& r = row(t.tenant().empty() ? "(anonymous)" : std::string(t.tenant()));
    r.bytes = t.bytes_held;
    r.blocks = t.blocks_held;
    r.quota_bytes = t.quota_bytes;
    r.quota_refusals = t.quota_refusals;
  }
  for (const auto& [name, n] : auth.failures_by_tenant) row(name.empty() ? "(none)" : name).auth_failures = n;
  return rows;
}

}  // namespace

std::string FormatOffloadStats(const OffloadStats& s) {
  if (!s.enabled) return "  offload: off\n";
  char b[256];
  std::snprintf(b, sizeof b,
                "  offload: %llu jobs (%llu failed), %llu rows, %.3f CPU s, %llu refused; %llu queued, %llu running, "
                "%llu not yet collected\n",
                static_cast<unsigned long long>(s.jobs_total), static_cast<unsigned long long>(s.jobs_failed_total),
                static_cast<unsigned long long>(s.rows_total), static_cast<double>(s.cpu_ns_total) / 1e9,
                static_cast<unsigned long long>(s.refused_total), static_cast<unsigned long long>(s.queue_depth),
                static_cast<unsigned long long>(s.running), static_cast<unsigned long long>(s.jobs));
  return b;
}

StatusOr<std::unique_ptr<Memnode>> Memnode::Start(const MemnodeOptions& o) {
  if (o.sections == 0 || o.sections > 64) return Status::InvalidArgument("sections must be 1..64");
  if (!o.confine && (o.tenants || o.server.credentials))
    return Status::InvalidArgument("confine=false (every client gets the key to the whole UMA) with tenants");
  const uint64_t min_bytes = uint64_t{o.sections} * alloc::kPageSize;
  if (o.uma_bytes < min_bytes)
    return Status::InvalidArgument("UMA of " + std::to_string(o.uma_bytes) + " B is smaller than " +
                                   std::to_string(o.sections) + " sections of one page");
  std::unique_ptr<Memnode> m(new Memnode);
  auto uma = Uma::Map(o.uma_bytes, o.hugepages);
  if (!uma.ok()) return uma.status();
  m->uma_.emplace(std::move(*uma));
  m->pages_ = std::make_unique<PageOwnerMap>(m->uma_->base(), m->uma_->size());
  alloc::SharryAllocatorOptions ao;
  m->fanout_ = std::make_unique<SpanFanout>(m->pages_.get());
  ao.observer = m->fanout_.get();
  ao.uma_bytes = o.uma_bytes;
  ao.num_sections = o.sections;
  ao.cores = o.section_cores;
  ao.free_batch_threshold = o.free_batch;
  ao.busy_poll = o.busy_poll;
  m->allocator_ = std::make_unique<alloc::SharryAllocator>(ao);
  ServiceOptions so;
  so.max_object_bytes = o.max_object_bytes;
  so.client_quota_bytes = o.client_quota_bytes;
  so.tenants = o.tenants;
  so.offload = o.offload;
  so.region = m->uma_->base();
  so.region_size = m->uma_->size();
  so.region_access = m->pages_.get();
  m->service_ = std::make_unique<MemnodeService>(m->allocator_.get(), so);
  ServerOptions to = o.server;
  // The whole UMA is the transport's region.
  to.region = m->uma_->base();
  to.region_size = m->uma_->size();
  // Confinement: a client READs and WRITEs only its own blocks' pages —
  // checked by the server (tcp, loopback: the page-owner map) or by the
  // device (verbs: a protection domain per session, an MR per span).
  to.region_access = m->pages_.get();
  to.confine = o.confine;
  if (o.busy_poll) to.backoff.busy_poll = true;
  auto server = TransportServer::Start(o.transport, to, m->service_.get());
  if (!server.ok()) return server.status().WithContext("memnode transport");
  m->server_ = std::move(*server);
  if (RegionKeys* keys = m->server_->region_keys()) {
    m->fanout_->Attach(keys);
    m->service_->SetRegionKeys(keys);
  }
  LOG(INFO) << "memnode: UMA " << o.uma_bytes << " B (" << m->uma_->page_kind() << " pages) at "
            << static_cast<void*>(m->uma_->base()) << ", " << o.sections << " section(s) of "
            << m->allocator_->section_bytes() << " B, " << TransportName(o.transport) << " on "
            << o.server.listen_addr << ":" << m->port() << "; offload: "
            << (o.offload.threads == 0 ? std::string("off (--offload_threads=0)")
                                       : std::to_string(o.offload.threads) + " worker(s), queue " +
                                             std::to_string(o.offload.queue) + ", " +
                                             std::to_string(o.offload.max_rows) + " rows per request");
  if (o.metrics.enabled) {
    Memnode* raw = m.get();
    auto metrics = MetricsHttpServer::Start(o.metrics, [raw](const MetricsHttpServer::Counters& c) {
      MemnodeCounters mc;
      mc.zeroed_bytes = raw->zeroed_bytes();
      mc.metrics_scrapes = c.scrapes;
      mc.metrics_refused_requests = c.refused;
      const OffloadStats off = raw->service_->offload_stats();
      mc.offload_enabled = off.enabled;
      mc.offload_jobs = off.jobs_total;
      mc.offload_rows = off.rows_total;
      mc.offload_cpu_ns = off.cpu_ns_total;
      mc.offload_refused = off.refused_total;
      mc.offload_queue_depth = off.queue_depth;
      // Every client's record, folded into totals (no per-client series);
      // per tenant: its usage, quota and refusals, and failed authentications.
      const Stats st = raw->service_->CollectStats(SIZE_MAX);
      return FormatPrometheus(st, mc, TenantRows(st, raw->server_->auth_counters()));
    });
    if (!metrics.ok()) return metrics.status();
    m->metrics_ = std::move(*metrics);
    LOG(INFO) << "memnode: metrics on http://" << o.metrics.listen_addr << ":" << m->metrics_->port() << "/metrics";
  }
  if (o.stats_interval_s > 0) {
    Memnode* raw = m.get();
    m->stats_thread_ = std::thread([raw, s = o.stats_interval_s] { raw->StatsLoop(s); });
  }
  return m;
}

uint64_t Memnode::zeroed_bytes() const { return pages_->zeroed_bytes(); }

uint16_t Memnode::metrics_port() const { return metrics_ ? metrics_->port() : 0; }

void Memnode::StatsLoop(int interval_s) {
  MutexLock l(&stop_mu_);
  for (;;) {
    const auto due = std::chrono::steady_clock::now() + std::chrono::seconds(interval_s);
    while (!stop_)
      if (!stop_cv_.WaitUntil(&stop_mu_, due)) break;  // the interval is up
    if (stop_) return;
    l.Unlock();
    LOG(INFO) << "memnode stats: " << FormatStats(service_->CollectStats()) << FormatOffloadStats(service_->offload_stats());
    l.Lock();
  }
}

Memnode::~Memnode() {
  {
    MutexLock l(&stop_mu_);
    stop_ = true;
  }
  stop_cv_.SignalAll();
  if (stats_thread_.joinable()) stats_thread_.join();
  metrics_.reset();    // no more scrapes
  // Revokes from here on (the disconnects' reclamation, the section threads'
  // delayed frees) stop at the page map: the transport deregisters every
  // span that is left as it goes.
  if (service_) service_->SetRegionKeys(nullptr);
  if (fanout_) fanout_->Detach();
  server_.reset();     // no more requests; disconnects reclaim their blocks
  service_.reset();    // joins the offload workers (they read uma_ through pages_)
  allocator_.reset();  // stops the section threads
  fanout_.reset();
  pages_.reset();
  uma_.reset();        // after the transport deregistered it
}

}  // namespace sharry::memnode
