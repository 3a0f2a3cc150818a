// The client's timeline (tools/cli/timeline.h): its rows add up to the
// timed phase's counts, whenever the phase ends relative to the ticks — the
// redundancy experiment reconciles them with the client's totals.
// A runtime over the loopback transport supplies the runtime counters.
#include "tools/cli/timeline.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "compute/runtime.h"
#include "memnode/memnode.h"

namespace sharry::cli {
namespace {

class TimelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    memnode::MemnodeOptions o;
    o.transport = TransportKind::kLoopback;
    o.uma_bytes = 4u << 20;
    o.sections = 1;
    o.server.lease_ms = 0;
    auto m = memnode::Memnode::Start(o);
    ASSERT_TRUE(m.ok()) << m.status();
    node_ = std::move(*m);
    compute::RuntimeOptions r;
    r.transport = TransportKind::kLoopback;
    r.memnode_addr = "loopback";
    r.memnode_port = node_->port();
    r.local_budget_bytes = 1u << 20;
    r.prefetch_thread = false;
    r.evict_thread = false;
    auto rt = compute::Runtime::Create(r);
    ASSERT_TRUE(rt.ok()) << rt.status();
    rt_ = std::move(*rt);
    file_ = std::tmpfile();
    ASSERT_NE(file_, nullptr);
  }
  void TearDown() override {
    if (file_ != nullptr) std::fclose(file_);
  }
  // The rows' ops and errors columns summed, and the number of rows.
  struct Sums {
    uint64_t rows = 0, ops = 0, errors = 0;
  };
  Sums Read() {
    std::rewind(file_);
    char line[512];
    Sums s;
    EXPECT_NE(std::fgets(line, sizeof line, file_), nullptr);
    EXPECT_EQ(std::string(line),
              "t_ms,ops,ops_per_s,errors,degraded_reads,repaired_objects,repair_pending,dead_memnodes\n");
    while (std::fgets(line, sizeof line, file_) != nullptr) {
      unsigned long long t, ops, rate, errors;
      EXPECT_EQ(std::sscanf(line, "%llu,%llu,%llu,%llu,", &t, &ops, &rate, &errors), 4) << line;
      ++s.rows;
      s.ops += ops;
      s.errors += errors;
    }
    return s;
  }

  std::unique_ptr<memnode::Memnode> node_;
  std::unique_ptr<compute::Runtime> rt_;
  std::FILE* file_ = nullptr;
};

// The phase ends long before the first tick (the CI failure of stop 18: ops
// done after the last row, with Stop under a millisecond later, were never
// written): the one partial row carries them.
TEST_F(TimelineTest, OpsDoneJustBeforeStopAreInTheLastRow) {
  OpCounters counters(2);
  Timeline tl(*rt_, counters, 10000, file_, nullptr);
  tl.Start();
  counters.slot(0).Set(5);
  counters.slot(1).Set(2);
  counters.slot(1).AddError();
  tl.Stop();
  const Sums s = Read();
  EXPECT_EQ(s.rows, 1u);
  EXPECT_EQ(s.ops, 7u);
  EXPECT_EQ(s.errors, 1u);
}

// Nothing done, stopped at once: no row (not a zero-length row with an
// undefined rate).
TEST_F(TimelineTest, NothingDoneNoRow) {
  OpCounters counters(1);
  Timeline tl(*rt_, counters, 10000, file_, nullptr);
  tl.Start();
  tl.Stop();
  EXPECT_EQ(Read().rows, 0u);
}

// Over many ticks while two workers count, the rows add up exactly.
TEST_F(TimelineTest, RowsAddUpOverManyTicks) {
  OpCounters counters(2);
  Timeline tl(*rt_, counters, 1, file_, nullptr);
  tl.Start();
  std::vector<std::thread> ts;
  for (int t = 0; t < 2; ++t)
    ts.emplace_back([&counters, t] {
      // 200 000 counts each, over at least 20 ms (many 1 ms ticks).
      const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(20);
      for (uint64_t i = 1; i <= 200000; ++i) {
        counters.slot(t).Set(i);
        if (i % 1000 == 0) {
          counters.slot(t).AddError();
          while (i == 100000 && std::chrono::steady_clock::now() < end) std::this_thread::yield();
        }
      }
    });
  for (auto& t : ts) t.join();
  tl.Stop();
  const Sums s = Read();
  EXPECT_GE(s.rows, 1u);
  EXPECT_EQ(s.ops, 400000u);
  EXPECT_EQ(s.errors, 400u);
}

}  // namespace
}  // namespace sharry::cli
