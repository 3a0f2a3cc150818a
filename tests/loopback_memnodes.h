// The fixture part the many-memnode unit tests share (multi_memnode_test,
// affinity_test): real Memnodes in this process over the loopback
// transport, a runtime's options for them (deterministic placement, fast
// give-up on a dead memnode), and killing one (destroying it drops every
// connection at once: what a SIGKILL looks like to the runtime).
//
// Derive from it after ::testing::Test; its memnodes outlive whatever the
// derived fixture holds (runtimes, objects), which goes first.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "compute/runtime.h"
#include "memnode/memnode.h"

namespace sharry::testing {

class LoopbackMemnodes {
 protected:
  void StartMemnodes(int n, uint64_t uma = 16u << 20) {
    for (int i = 0; i < n; ++i) {
      memnode::MemnodeOptions o;
      o.transport = TransportKind::kLoopback;
      o.uma_bytes = uma;
      o.sections = 1;
      o.server.lease_ms = 0;
      o.free_batch = memnode_free_batch_;
      auto m = memnode::Memnode::Start(o);
      ASSERT_TRUE(m.ok()) << m.status();
      nodes_.push_back(std::move(*m));
    }
  }
  compute::RuntimeOptions Options(const std::string& redundancy, uint64_t budget = 256u << 10) const {
    compute::RuntimeOptions o;
    o.transport = TransportKind::kLoopback;
    for (const auto& n : nodes_) o.memnodes.push_back({"loopback", n->port()});
    auto r = compute::ParseRedundancy(redundancy);
    EXPECT_TRUE(r.ok()) << r.status();
    o.redundancy = *r;
    o.local_budget_bytes = budget;
    o.evict_batch = 16;
    o.free_batch = runtime_free_batch_;
    o.prefetch_thread = false;
    o.reconnect_attempts = 1;
    o.reconnect_timeout_ms = 100;
    o.reconnect_pause_ms = 1;
    o.placement_refresh_ms = 0;  // placement by our own bytes only: deterministic
    return o;
  }
  std::unique_ptr<compute::Runtime> Make(const compute::RuntimeOptions& o) {
    auto rt = compute::Runtime::Create(o);
    EXPECT_TRUE(rt.ok()) << rt.status();
    return rt.ok() ? std::move(*rt) : nullptr;
  }
  void Kill(size_t node) { nodes_[node].reset(); }

  // FREE batching at the memnodes and in the runtime: by default FREEs are
  // applied at once (live blocks are exact); a fixture may keep the defaults.
  uint32_t memnode_free_batch_ = 1;
  uint32_t runtime_free_batch_ = 8;
  std::vector<std::unique_ptr<memnode::Memnode>> nodes_;
};

}  // namespace sharry::testing
