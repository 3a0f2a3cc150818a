// FarBlockQueue (compute/far_block_queue.h): reuse newest first, FREE the
// oldest, a failed FREE goes back to the front, in-flight blocks still count.
#include "compute/far_block_queue.h"

#include <gtest/gtest.h>

#include <vector>

namespace sharry::compute {
namespace {

constexpr uint64_t kNone = ~uint64_t{0};

TEST(FarBlockQueueTest, ReusesTheNewestBlockOfTheSize) {
  FarBlockQueue q;
  EXPECT_EQ(q.Push({100, 64}), 1u);
  EXPECT_EQ(q.Push({200, 128}), 2u);
  EXPECT_EQ(q.Push({300, 64}), 3u);
  const std::vector<uint32_t> sizes = {64, 64, 64, 256};
  EXPECT_EQ(q.TakeReusable(sizes, kNone), (std::vector<uint64_t>{300, 100, kNone, kNone}));
  EXPECT_EQ(q.queued(), 1u);
  EXPECT_EQ(q.Pending().bytes, 128u);
}

TEST(FarBlockQueueTest, FreesTheOldestAndKeepsTheReserve) {
  FarBlockQueue q;
  for (uint64_t i = 0; i < 5; ++i) q.Push({i * 100, 10});
  auto out = q.TakeOldest(2);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out.front().offset, 0u);
  EXPECT_EQ(out.back().offset, 200u);
  EXPECT_EQ(q.queued(), 2u);
  EXPECT_EQ(q.Pending().blocks, 5u);  // in flight still counts
  EXPECT_EQ(q.Pending().bytes, 50u);
  q.FreeDone(out);
  EXPECT_EQ(q.Pending().blocks, 2u);
  EXPECT_TRUE(q.TakeOldest(2).empty());
}

TEST(FarBlockQueueTest, AFailedFreeGoesBackToTheFront) {
  FarBlockQueue q;
  for (uint64_t i = 0; i < 4; ++i) q.Push({i * 100, 10});
  auto out = q.TakeOldest(1);
  q.Push({900, 10});
  q.Requeue(out);
  EXPECT_EQ(q.Pending().blocks, 5u);
  auto all = q.TakeOldest(0);
  ASSERT_EQ(all.size(), 5u);
  EXPECT_EQ(all[0].offset, 0u);
  EXPECT_EQ(all[3].offset, 300u);
  EXPECT_EQ(all[4].offset, 900u);
  q.Requeue(all);
  q.Clear();
  EXPECT_EQ(q.Pending().blocks, 0u);
  EXPECT_EQ(q.Pending().bytes, 0u);
}

}  // namespace
}  // namespace sharry::compute
