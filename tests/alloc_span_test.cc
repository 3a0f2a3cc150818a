// Copyright 2024 The Sharry Authors.
//
// Span: block-index allocation and free over segregated metadata.

#include "alloc/span.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
#include <vector>

#include "alloc/page_heap.h"
#include "alloc/size_classes.h"

namespace sharry::alloc {
namespace {

// Spans are made by a page heap, the only producer of span records.
class SpanTest : public ::testing::Test {
 protected:
  Span* NewSmall(uint32_t cl) {
    Span* s = heap_.New(SizeMap::ClassPages(cl), Span::State::kSmall);
    EXPECT_NE(s, nullptr);
    s->InitSmall(cl);
    return s;
  }
  PageHeap heap_{1024};
};

TEST_F(SpanTest, FreshSpanHandsOutEveryBlockOnceInAddressOrder) {
  const uint32_t cl = SizeMap::ClassFor(8);  // the most blocks per span
  Span* s = NewSmall(cl);
  ASSERT_EQ(s->num_blocks(), 1024u);
  EXPECT_TRUE(s->empty());
  for (uint32_t i = 0; i < s->num_blocks(); ++i) {
    ASSERT_FALSE(s->full());
    EXPECT_EQ(s->block_state(i), Span::BlockState::kFree);
    EXPECT_EQ(s->AllocateBlock(7), i);
    EXPECT_EQ(s->block_state(i), Span::BlockState::kLive);
    EXPECT_EQ(s->block_owner(i), 7u);
  }
  EXPECT_TRUE(s->full());
  EXPECT_EQ(s->allocated(), 1024u);
  EXPECT_EQ(s->block_start(3), s->start_byte() + 3 * 8);
}

TEST_F(SpanTest, FreedIndicesAreReusedLifoAndNeverTwice) {
  const uint32_t cl = SizeMap::ClassFor(100);
  Span* s = NewSmall(cl);
  const uint32_t n = s->num_blocks();
  for (uint32_t i = 0; i < n; ++i) (void)s->AllocateBlock(1);
  s->FreeBlock(5);
  s->FreeBlock(2);
  EXPECT_EQ(s->free_blocks(), 2u);
  EXPECT_EQ(s->block_state(5), Span::BlockState::kFree);
  EXPECT_EQ(s->AllocateBlock(3), 2u);  // last freed first
  EXPECT_EQ(s->AllocateBlock(3), 5u);
  EXPECT_TRUE(s->full());
  EXPECT_EQ(s->block_owner(5), 3u);
}

TEST_F(SpanTest, PendingBlocksAreNotHandedOut) {
  Span* s = NewSmall(SizeMap::ClassFor(64));
  const uint32_t n = s->num_blocks();
  for (uint32_t i = 0; i < n; ++i) (void)s->AllocateBlock(1);
  s->FreeBlock(10);
  s->MarkPending(11);
  EXPECT_EQ(s->block_state(11), Span::BlockState::kPending);
  EXPECT_EQ(s->block_owner(11), 1u);
  EXPECT_EQ(s->AllocateBlock(2), 10u);
  EXPECT_TRUE(s->full()) << "a pending block still counts as allocated";
  s->FreeBlock(11);  // the pending free is applied
  EXPECT_EQ(s->block_state(11), Span::BlockState::kFree);
  EXPECT_EQ(s->AllocateBlock(2), 11u);
}

TEST_F(SpanTest, RandomAllocFreeMatchesASet) {
  std::mt19937_64 rng(42);
  for (uint32_t cl : {1u, 17u, 40u, 63u}) {
    Span* s = NewSmall(cl);
    std::set<uint32_t> live;
    for (int op = 0; op < 20000; ++op) {
      if (!s->full() && (live.empty() || rng() % 2 == 0)) {
        const uint32_t i = s->AllocateBlock(cl);
        ASSERT_LT(i, s->num_blocks());
        ASSERT_TRUE(live.insert(i).second) << "block " << i << " handed out twice";
      } else {
        auto it = live.begin();
        std::advance(it, rng() % live.size());
        s->FreeBlock(*it);
        live.erase(it);
      }
      ASSERT_EQ(s->allocated(), live.size());
    }
    std::vector<uint32_t> seen;
    s->ForEachAllocatedBlock([&](uint32_t i, OwnerId o, bool pending) {
      EXPECT_EQ(o, cl);
      EXPECT_FALSE(pending);
      seen.push_back(i);
    });
    EXPECT_EQ(std::set<uint32_t>(seen.begin(), seen.end()), live);
  }
}

TEST_F(SpanTest, LargeSpanKeepsOwnerAndPendingFlag) {
  Span* s = heap_.New(40, Span::State::kLarge);
  ASSERT_NE(s, nullptr);
  s->InitLarge(9);
  EXPECT_EQ(s->large_owner(), 9u);
  EXPECT_FALSE(s->large_pending());
  s->set_large_pending(true);
  EXPECT_TRUE(s->large_pending());
  EXPECT_EQ(s->bytes(), 40 * kPageSize);
}

// A mixed span: blocks of any size (multiples of 8 bytes) in address order;
// only a block's first granule is a block, a freed block is not reused, and
// a recycled record's stale owners never make an interior granule look live.
TEST_F(SpanTest, MixedSpanBumpsBlocksOfAnySize) {
  PageHeap heap(1);
  Span* s = heap.New(1, Span::State::kSmall);
  ASSERT_NE(s, nullptr);
  s->InitSmall(SizeMap::ClassFor(8));
  while (!s->full()) (void)s->AllocateBlock(4);  // every granule a live block...
  heap.Delete(s);
  Span* m = heap.New(1, Span::State::kSmall);  // ...in the recycled record
  ASSERT_EQ(m, s);
  m->InitMixed(7);
  ASSERT_TRUE(m->mixed());
  EXPECT_EQ(m->room_bytes(), kPageSize);
  EXPECT_EQ(m->AllocateRun(24, 7), 0u);
  EXPECT_EQ(m->AllocateRun(512, 7), 3u);
  EXPECT_EQ(m->AllocateRun(8, 7), 67u);
  EXPECT_EQ(m->block_start(67), m->start_byte() + 536);
  EXPECT_EQ(m->room_bytes(), kPageSize - 544);
  EXPECT_EQ(m->allocated(), 3u);
  EXPECT_EQ(m->block_bytes(3), 512u);
  EXPECT_EQ(m->block_state(3), Span::BlockState::kLive);
  for (uint32_t g : {1u, 2u, 4u, 66u, 68u}) EXPECT_EQ(m->block_state(g), Span::BlockState::kFree) << g;
  m->MarkPending(3);
  EXPECT_EQ(m->block_state(3), Span::BlockState::kPending);
  m->FreeBlock(3);
  EXPECT_EQ(m->block_state(3), Span::BlockState::kFree);
  EXPECT_EQ(m->AllocateRun(16, 7), 68u) << "freed bytes wait for Reset";
  std::vector<uint32_t> seen;
  m->ForEachAllocatedBlock([&](uint32_t i, OwnerId o, bool) {
    EXPECT_EQ(o, 7u);
    seen.push_back(i);
  });
  EXPECT_EQ(seen, (std::vector<uint32_t>{0, 67, 68}));
  m->Retire();
  EXPECT_EQ(m->room_bytes(), 0u);
  for (uint32_t i : seen) m->FreeBlock(i);
  EXPECT_TRUE(m->empty());
  m->Reset();
  EXPECT_EQ(m->room_bytes(), kPageSize);
  EXPECT_EQ(m->AllocateRun(static_cast<uint32_t>(kPageSize), 7), 0u);
  EXPECT_EQ(m->room_bytes(), 0u);
}

// A grown span (SectionAllocator's growing spans): a whole number of the
// table's spans of the class, carved into as many blocks as fit, every one
// of them handed out; the tail stays under one block.
TEST_F(SpanTest, GrownSpanHoldsAWholeNumberOfTheTablesSpans) {
  const uint32_t cl = SizeMap::ClassFor(48);  // 170 blocks and 32 bytes of tail per page
  ASSERT_EQ(SizeMap::ClassPages(cl), 1u);
  Span* s = heap_.New(64, Span::State::kSmall);
  ASSERT_NE(s, nullptr);
  s->InitSmall(cl, 3);
  EXPECT_EQ(s->num_blocks(), 64 * kPageSize / 48);
  EXPECT_GT(s->num_blocks(), 64 * SizeMap::BlocksPerSpan(cl));
  EXPECT_LT(s->tail_bytes(), 48u);
  for (uint32_t i = 0; i < s->num_blocks(); ++i) ASSERT_EQ(s->AllocateBlock(3), i);
  EXPECT_TRUE(s->full());
  EXPECT_EQ(s->block_start(s->num_blocks() - 1) + 48 + s->tail_bytes(), s->start_byte() + s->bytes());
  s->FreeBlock(10000);
  EXPECT_EQ(s->AllocateBlock(3), 10000u);
}

TEST(SpanDeathTest, FreeingAFreeBlockIsAnInvariantFailure) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  PageHeap heap(64);
  Span* s = heap.New(1, Span::State::kSmall);
  s->InitSmall(SizeMap::ClassFor(64));
  (void)s->AllocateBlock(1);
  s->FreeBlock(0);
  EXPECT_DEATH(s->FreeBlock(0), "double free");
}

}  // namespace
}  // namespace sharry::alloc
