#include "memnode/metrics.h"

#include <algorithm>
#include <cstdio>

namespace sharry::memnode {

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

namespace {

// Appends families to one string. HELP texts are ours (no backslash or line
// feed in them); label values go through EscapeLabelValue.
class Exposition {
 public:
  void Family(std::string_view name, std::string_view type, std::string_view help) {
    name_ = name;
    out_ += "# HELP sharry_memnode_";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE sharry_memnode_";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  // A sample of the current family, without labels.
  void Sample(uint64_t value) { Sample({}, {}, value); }
  // A sample of the current family with one label.
  void Sample(std::string_view label, std::string_view label_value, uint64_t value) {
    out_ += "sharry_memnode_";
    out_ += name_;
    if (!label.empty()) {
      out_ += '{';
      out_ += label;
      out_ += "=\"";
      out_ += EscapeLabelValue(label_value);
      out_ += "\"}";
    }
    out_ += ' ';
    out_ += std::to_string(value);
    out_ += '\n';
  }
  // A sample of the current family, without labels, of a real value
  // (nanosecond precision is enough for the seconds we report).
  void SampleReal(double value) {
    char b[64];
    std::snprintf(b, sizeof b, "%.9f", value);
    out_ += "sharry_memnode_";
    out_ += name_;
    out_ += ' ';
    out_ += b;
    out_ += '\n';
  }
  // A family with a single unlabelled sample.
  void One(std::string_view name, std::string_view type, std::string_view help, uint64_t value) {
    Family(name, type, help);
    Sample(value);
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
  std::string name_;
};

}  // namespace

std::string FormatPrometheus(const Stats& s, const MemnodeCounters& c, std::span<const TenantMetrics> tenants) {
  Exposition e;
  const StatsHead& h = s.head;
  e.One("uma_bytes", "gauge", "Size of the UMA (far memory) in bytes.", h.uma_bytes);
  e.One("used_bytes", "gauge",
        "Far memory in live blocks (rounded to their size classes), frees not yet applied included.",
        h.used_bytes);
  e.One("free_bytes", "gauge", "Far memory not in any block.", h.free_bytes);
  e.One("live_blocks", "gauge", "Blocks allocated, frees not yet applied included.", h.live_blocks);
  e.One("pending_free_blocks", "gauge", "Frees accepted but not yet applied (delayed reclamation).",
        h.pending_blocks);
  e.One("pending_free_bytes", "gauge", "Bytes of the frees not yet applied.", h.pending_bytes);
  e.One("alloc_requests_total", "counter", "ALLOC requests served since start.", h.alloc_requests);
  e.One("free_requests_total", "counter", "FREE requests served since start.", h.free_requests);
  e.One("reclaimed_blocks_total", "counter", "Blocks freed because their client went away, since start.",
        h.reclaimed_blocks);
  e.One("zeroed_bytes_total", "counter", "Far memory zeroed before it passed to another client, since start.",
        c.zeroed_bytes);
  e.One("clients", "gauge", "Clients connected now.", h.clients);
  uint64_t holding = 0;
  uint64_t most = 0;
  for (const ClientRecord& r : s.clients) {
    if (r.bytes_held > 0) ++holding;
    most = std::max(most, r.bytes_held);
  }
  e.One("clients_holding", "gauge", "Clients holding far memory now.", holding);
  e.One("client_bytes_max", "gauge", "Far memory held by the client holding the most.", most);
  e.One("sections", "gauge", "Memory sections (allocator threads).", h.sections);
  struct PerSection {
    const char* name;
    const char* help;
    uint64_t SectionRecord::*field;
  };
  static constexpr PerSection kPerSection[] = {
      {"section_used_bytes", "Far memory in live blocks of the section.", &SectionRecord::used_bytes},
      {"section_free_bytes", "Far memory free in the section.", &SectionRecord::free_bytes},
      {"section_live_blocks", "Blocks allocated in the section.", &SectionRecord::live_blocks},
      {"section_ring_depth", "Requests waiting for the section's thread.", &SectionRecord::ring_depth},
  };
  for (const PerSection& f : kPerSection) {
    e.Family(f.name, "gauge", f.help);
    for (size_t i = 0; i < s.sections.size(); ++i) e.Sample("section", std::to_string(i), s.sections[i].*f.field);
  }
  if (!tenants.empty()) {
    struct PerTenant {
      const char* name;
      const char* type;
      const char* help;
      uint64_t TenantMetrics::*field;
    };
    static constexpr PerTenant kPerTenant[] = {
        {"tenant_bytes", "gauge", "Far memory held by the tenant's clients.", &TenantMetrics::bytes},
        {"tenant_blocks", "gauge", "Blocks held by the tenant's clients.", &TenantMetrics::blocks},
        {"tenant_quota_bytes", "gauge", "The tenant's far-memory quota (absent: none).",
         &TenantMetrics::quota_bytes},
        {"tenant_quota_refusals_total", "counter", "ALLOC elements refused for the tenant's quota, since start.",
         &TenantMetrics::quota_refusals},
        {"tenant_auth_failures_total", "counter", "Refused authentications naming the tenant, since start.",
         &TenantMetrics::auth_failures},
    };
    for (const PerTenant& f : kPerTenant) {
      e.Family(f.name, f.type, f.help);
      for (const TenantMetrics& t : tenants) {
        if (f.field == &TenantMetrics::quota_bytes && t.quota_bytes == 0) continue;
        e.Sample("tenant", t.tenant, t.*f.field);
      }
    }
  }
  if (c.offload_enabled) {
    e.One("offload_jobs_total", "counter", "OFFLOAD jobs accepted, since start.", c.offload_jobs);
    e.One("offload_rows_total", "counter", "Rows scanned by offload jobs, since start.", c.offload_rows);
    e.Family("offload_cpu_seconds_total", "counter", "CPU time of the offload workers spent on jobs, since start.");
    e.SampleReal(static_cast<double>(c.offload_cpu_ns) / 1e9);
    e.One("offload_refused_total", "counter",
          "OFFLOAD requests refused (malformed, not the client's memory, past a bound), since start.",
          c.offload_refused);
    e.One("offload_queue_depth", "gauge", "Offload jobs waiting for a worker.", c.offload_queue_depth);
  }
  e.One("metrics_scrapes_total", "counter", "Scrapes of this endpoint answered, since start.", c.metrics_scrapes);
  e.One("metrics_refused_requests_total", "counter",
        "Requests to this endpoint refused (other paths or methods, request bodies), since start.",
        c.metrics_refused_requests);
  return e.Take();
}

}  // namespace sharry::memnode
