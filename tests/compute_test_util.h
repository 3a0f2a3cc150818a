// Helpers shared by the compute runtime's tests (compute_test over tcp and
// rxe, compute_fault_test over the loopback transport).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "compute/runtime.h"

namespace sharry::testing {

// After a reconnect that lost the far copies of objs[0..n), each `bytes`
// long: the runtime counts them as lost, its health is kDataLoss naming
// them, and each is lost for good (no far copy; Deref fails with kDataLoss,
// "far memory lost").
inline void ExpectFarMemoryLost(compute::Runtime& rt, std::vector<compute::RemoteObject>& objs, uint64_t n,
                                uint64_t bytes) {
  const compute::RuntimeStats st = rt.Stats();
  EXPECT_EQ(st.lost_objects, n);
  EXPECT_EQ(st.lost_bytes, n * bytes);
  const Status h = rt.health();
  EXPECT_EQ(h.code(), StatusCode::kDataLoss) << h;
  EXPECT_NE(h.message().find("far memory lost: " + std::to_string(n) + " objects"), std::string::npos) << h;
  for (uint64_t i = 0; i < n; ++i) {
    EXPECT_TRUE(objs[i].lost()) << i;
    EXPECT_FALSE(objs[i].has_far_copy()) << i;
    compute::DerefScope s(rt);
    auto p = objs[i].Deref(s, false);
    ASSERT_FALSE(p.ok()) << i;
    EXPECT_EQ(p.status().code(), StatusCode::kDataLoss) << p.status();
    EXPECT_NE(p.status().message().find("far memory lost"), std::string::npos) << p.status();
  }
}

}  // namespace sharry::testing
