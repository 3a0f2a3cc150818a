// The Prometheus exposition of the memnode's numbers (memnode/metrics.h):
// every line for a given Stats, the tenant rows, and label escaping. No
// sockets; the endpoint itself is tests/metrics_http_test.cc.
#include "memnode/metrics.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

namespace sharry::memnode {
namespace {

Stats SomeStats() {
  Stats s;
  s.head.uma_bytes = 67108864;
  s.head.used_bytes = 40960;
  s.head.free_bytes = 67067904;
  s.head.live_blocks = 5;
  s.head.pending_blocks = 1;
  s.head.pending_bytes = 8192;
  s.head.alloc_requests = 12;
  s.head.free_requests = 3;
  s.head.reclaimed_blocks = 2;
  s.head.sections = 2;
  s.head.clients = 3;
  s.sections.push_back({.used_bytes = 32768, .free_bytes = 33521664, .live_blocks = 4, .ring_depth = 1});
  s.sections.push_back({.used_bytes = 8192, .free_bytes = 33546240, .live_blocks = 1});
  s.clients.push_back({.client_id = 7, .bytes_held = 32768, .blocks_held = 4});
  s.clients.push_back({.client_id = 9, .bytes_held = 8192, .blocks_held = 1});
  s.clients.push_back({.client_id = 11, .bytes_held = 0, .blocks_held = 0});
  s.head.client_records = 3;
  return s;
}

TEST(FormatPrometheus, EveryLineOfAStats) {
  const MemnodeCounters c{.zeroed_bytes = 16384, .metrics_scrapes = 4, .metrics_refused_requests = 1};
  EXPECT_EQ(FormatPrometheus(SomeStats(), c, {}),
            "# HELP sharry_memnode_uma_bytes Size of the UMA (far memory) in bytes.\n"
            "# TYPE sharry_memnode_uma_bytes gauge\n"
            "sharry_memnode_uma_bytes 67108864\n"
            "# HELP sharry_memnode_used_bytes Far memory in live blocks (rounded to their size classes), "
            "frees not yet applied included.\n"
            "# TYPE sharry_memnode_used_bytes gauge\n"
            "sharry_memnode_used_bytes 40960\n"
            "# HELP sharry_memnode_free_bytes Far memory not in any block.\n"
            "# TYPE sharry_memnode_free_bytes gauge\n"
            "sharry_memnode_free_bytes 67067904\n"
            "# HELP sharry_memnode_live_blocks Blocks allocated, frees not yet applied included.\n"
            "# TYPE sharry_memnode_live_blocks gauge\n"
            "sharry_memnode_live_blocks 5\n"
            "# HELP sharry_memnode_pending_free_blocks Frees accepted but not yet applied (delayed reclamation).\n"
            "# TYPE sharry_memnode_pending_free_blocks gauge\n"
            "sharry_memnode_pending_free_blocks 1\n"
            "# HELP sharry_memnode_pending_free_bytes Bytes of the frees not yet applied.\n"
            "# TYPE sharry_memnode_pending_free_bytes gauge\n"
            "sharry_memnode_pending_free_bytes 8192\n"
            "# HELP sharry_memnode_alloc_requests_total ALLOC requests served since start.\n"
            "# TYPE sharry_memnode_alloc_requests_total counter\n"
            "sharry_memnode_alloc_requests_total 12\n"
            "# HELP sharry_memnode_free_requests_total FREE requests served since start.\n"
            "# TYPE sharry_memnode_free_requests_total counter\n"
            "sharry_memnode_free_requests_total 3\n"
            "# HELP sharry_memnode_reclaimed_blocks_total Blocks freed because their client went away, "
            "since start.\n"
            "# TYPE sharry_memnode_reclaimed_blocks_total counter\n"
            "sharry_memnode_reclaimed_blocks_total 2\n"
            "# HELP sharry_memnode_zeroed_bytes_total Far memory zeroed before it passed to another client, "
            "since start.\n"
            "# TYPE sharry_memnode_zeroed_bytes_total counter\n"
            "sharry_memnode_zeroed_bytes_total 16384\n"
            "# HELP sharry_memnode_clients Clients connected now.\n"
            "# TYPE sharry_memnode_clients gauge\n"
            "sharry_memnode_clients 3\n"
            "# HELP sharry_memnode_clients_holding Clients holding far memory now.\n"
            "# TYPE sharry_memnode_clients_holding gauge\n"
            "sharry_memnode_clients_holding 2\n"
            "# HELP sharry_memnode_client_bytes_max Far memory held by the client holding the most.\n"
            "# TYPE sharry_memnode_client_bytes_max gauge\n"
            "sharry_memnode_client_bytes_max 32768\n"
            "# HELP sharry_memnode_sections Memory sections (allocator threads).\n"
            "# TYPE sharry_memnode_sections gauge\n"
            "sharry_memnode_sections 2\n"
            "# HELP sharry_memnode_section_used_bytes Far memory in live blocks of the section.\n"
            "# TYPE sharry_memnode_section_used_bytes gauge\n"
            "sharry_memnode_section_used_bytes{section=\"0\"} 32768\n"
            "sharry_memnode_section_used_bytes{section=\"1\"} 8192\n"
            "# HELP sharry_memnode_section_free_bytes Far memory free in the section.\n"
            "# TYPE sharry_memnode_section_free_bytes gauge\n"
            "sharry_memnode_section_free_bytes{section=\"0\"} 33521664\n"
            "sharry_memnode_section_free_bytes{section=\"1\"} 33546240\n"
            "# HELP sharry_memnode_section_live_blocks Blocks allocated in the section.\n"
            "# TYPE sharry_memnode_section_live_blocks gauge\n"
            "sharry_memnode_section_live_blocks{section=\"0\"} 4\n"
            "sharry_memnode_section_live_blocks{section=\"1\"} 1\n"
            "# HELP sharry_memnode_section_ring_depth Requests waiting for the section's thread.\n"
            "# TYPE sharry_memnode_section_ring_depth gauge\n"
            "sharry_memnode_section_ring_depth{section=\"0\"} 1\n"
            "sharry_memnode_section_ring_depth{section=\"1\"} 0\n"
            "# HELP sharry_memnode_metrics_scrapes_total Scrapes of this endpoint answered, since start.\n"
            "# TYPE sharry_memnode_metrics_scrapes_total counter\n"
            "sharry_memnode_metrics_scrapes_total 4\n"
            "# HELP sharry_memnode_metrics_refused_requests_total Requests to this endpoint refused (other paths "
            "or methods, request bodies), since start.\n"
            "# TYPE sharry_memnode_metrics_refused_requests_total counter\n"
            "sharry_memnode_metrics_refused_requests_total 1\n");
}

// The lines of `text` that start with `prefix`.
std::vector<std::string> LinesStartingWith(const std::string& text, const std::string& prefix) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(prefix, 0) == 0) out.push_back(line);
  return out;
}

TEST(FormatPrometheus, TenantRowsAreLabelledAndEscaped) {
  const std::vector<TenantMetrics> tenants = {
      {.tenant = "alice", .bytes = 4096, .blocks = 1, .quota_bytes = 1 << 20, .quota_refusals = 2,
       .auth_failures = 0},
      // A hostile name: a quote, a backslash and a line feed must not end
      // the label or the line.
      {.tenant = "b\"o\\b\nsharry_memnode_uma_bytes 0", .bytes = 0, .blocks = 0, .quota_bytes = 0,
       .quota_refusals = 0, .auth_failures = 3},
  };
  const std::string text = FormatPrometheus(SomeStats(), {}, tenants);
  const std::string bob = "b\\\"o\\\\b\\nsharry_memnode_uma_bytes 0";
  EXPECT_EQ(LinesStartingWith(text, "sharry_memnode_tenant_"),
            (std::vector<std::string>{
                "sharry_memnode_tenant_bytes{tenant=\"alice\"} 4096",
                "sharry_memnode_tenant_bytes{tenant=\"" + bob + "\"} 0",
                "sharry_memnode_tenant_blocks{tenant=\"alice\"} 1",
                "sharry_memnode_tenant_blocks{tenant=\"" + bob + "\"} 0",
                // bob has no quota: no sample
                "sharry_memnode_tenant_quota_bytes{tenant=\"alice\"} 1048576",
                "sharry_memnode_tenant_quota_refusals_total{tenant=\"alice\"} 2",
                "sharry_memnode_tenant_quota_refusals_total{tenant=\"" + bob + "\"} 0",
                "sharry_memnode_tenant_auth_failures_total{tenant=\"alice\"} 0",
                "sharry_memnode_tenant_auth_failures_total{tenant=\"" + bob + "\"} 3",
            }));
  EXPECT_EQ(LinesStartingWith(text, "# TYPE sharry_memnode_tenant_"),
            (std::vector<std::string>{
                "# TYPE sharry_memnode_tenant_bytes gauge",
                "# TYPE sharry_memnode_tenant_blocks gauge",
                "# TYPE sharry_memnode_tenant_quota_bytes gauge",
                "# TYPE sharry_memnode_tenant_quota_refusals_total counter",
                "# TYPE sharry_memnode_tenant_auth_failures_total counter",
            }));
  // The forged series did not become a line of its own.
  EXPECT_EQ(LinesStartingWith(text, "sharry_memnode_uma_bytes "),
            std::vector<std::string>{"sharry_memnode_uma_bytes 67108864"});
  // No tenants: no tenant families at all.
  EXPECT_EQ(FormatPrometheus(SomeStats(), {}, {}).find("tenant"), std::string::npos);
}

TEST(FormatPrometheus, OffloadFamiliesWhenOffloadIsOn) {
  MemnodeCounters c;
  EXPECT_EQ(FormatPrometheus(SomeStats(), c, {}).find("offload"), std::string::npos) << "offload off: no families";
  c.offload_enabled = true;
  c.offload_jobs = 7;
  c.offload_rows = 4194304;
  c.offload_cpu_ns = 1'500'000'001;
  c.offload_refused = 3;
  c.offload_queue_depth = 2;
  const std::string out = FormatPrometheus(SomeStats(), c, {});
  for (const char* line : {"# TYPE sharry_memnode_offload_jobs_total counter\nsharry_memnode_offload_jobs_total 7\n",
                           "# TYPE sharry_memnode_offload_rows_total counter\nsharry_memnode_offload_rows_total 4194304\n",
                           "# TYPE sharry_memnode_offload_cpu_seconds_total counter\n"
                           "sharry_memnode_offload_cpu_seconds_total 1.500000001\n",
                           "# TYPE sharry_memnode_offload_refused_total counter\nsharry_memnode_offload_refused_total 3\n",
                           "# TYPE sharry_memnode_offload_queue_depth gauge\nsharry_memnode_offload_queue_depth 2\n"})
    EXPECT_NE(out.find(line), std::string::npos) << "missing:\n" << line << "in:\n" << out;
}

TEST(FormatPrometheus, EscapeLabelValue) {
  EXPECT_EQ(EscapeLabelValue(""), "");
  EXPECT_EQ(EscapeLabelValue("alice"), "alice");
  EXPECT_EQ(EscapeLabelValue("a\\b"), "a\\\\b");
  EXPECT_EQ(EscapeLabelValue("say \"hi\""), "say \\\"hi\\\"");
  EXPECT_EQ(EscapeLabelValue("two\nlines"), "two\\nlines");
  EXPECT_EQ(EscapeLabelValue("tab\tand utf-8 \xc3\xa9"), "tab\tand utf-8 \xc3\xa9");  // unchanged
}

TEST(FormatPrometheus, EveryFamilyHasHelpAndTypeBeforeItsSamples) {
  const std::vector<TenantMetrics> tenants = {{.tenant = "alice", .quota_bytes = 1}};
  std::istringstream in(FormatPrometheus(SomeStats(), {.offload_enabled = true}, tenants));
  std::string family;  // of the last TYPE line
  int samples = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# HELP ", 0) == 0) {
      std::string name = line.substr(7, line.find(' ', 7) - 7);
      std::string type;
      ASSERT_TRUE(std::getline(in, type));
      EXPECT_EQ(type.rfind("# TYPE " + name + " ", 0), 0u) << type;
      family = name;
      continue;
    }
    ++samples;
    EXPECT_EQ(line.rfind("sharry_memnode_", 0), 0u) << line;
    EXPECT_EQ(line.substr(0, line.find_first_of("{ ")), family) << line;
  }
  EXPECT_GT(samples, 20);
}

}  // namespace
}  // namespace sharry::memnode
