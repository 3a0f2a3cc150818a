// Copyright 2024 The Sharry Authors.
//
// Properties of the size-class table (alloc/size_classes.cc): the rules it
// was built by, its documented worst-case waste, and the size -> class map.

#include "alloc/size_classes.h"

#include <gtest/gtest.h>

#include <bit>
#include <cstdint>

namespace sharry::alloc {
namespace {

auto T() { return SizeMap::Table(); }

uint64_t SpanBytes(uint32_t cl) { return uint64_t{T()[cl].pages} * kPageSize; }
uint64_t Blocks(uint32_t cl) { return SpanBytes(cl) / T()[cl].size; }
uint64_t Tail(uint32_t cl) { return SpanBytes(cl) - Blocks(cl) * T()[cl].size; }

TEST(SizeClassesTest, ClassZeroIsTheNoClassRow) {
  EXPECT_EQ(T()[0].size, 0u);
  EXPECT_EQ(T()[0].pages, 0u);
}

TEST(SizeClassesTest, SizesIncreaseAlignedUpToTheSmallLimit) {
  EXPECT_LE(kNumSizeClasses, 256) << "classes are stored in a uint8_t";
  EXPECT_EQ(T()[1].size, 8u);
  EXPECT_EQ(T()[kNumSizeClasses - 1].size, kMaxSmallSize);
  for (int cl = 1; cl < kNumSizeClasses; ++cl) {
    EXPECT_EQ(T()[cl].size % kMinAlignment, 0u) << cl;
    EXPECT_GT(T()[cl].size, T()[cl - 1].size) << cl;
  }
}

// Spacing rule: 8-byte steps up to 128 B, then eight classes per power of
// two (step = 2^floor(log2(previous)) / 8).
TEST(SizeClassesTest, SpacingFollowsTheRule) {
  for (int cl = 2; cl < kNumSizeClasses; ++cl) {
    const uint32_t prev = T()[cl - 1].size;
    const uint32_t step = prev < 128 ? 8 : std::max<uint32_t>(8, std::bit_floor(prev) / 8);
    EXPECT_EQ(T()[cl].size - prev, step) << "class " << cl;
  }
}

// Pages rule: the smallest span holding at least one block whose tail is at
// most 1/16 of the span; and the 16-bit block index always suffices.
TEST(SizeClassesTest, SpanPagesAreMinimalWithSmallTail) {
  for (int cl = 1; cl < kNumSizeClasses; ++cl) {
    const uint32_t size = T()[cl].size;
    ASSERT_GE(T()[cl].pages, 1u);
    EXPECT_GE(Blocks(cl), 1u) << cl;
    EXPECT_LE(Blocks(cl), kMaxBlocksPerSpan) << cl;
    EXPECT_EQ(Blocks(cl), SizeMap::BlocksPerSpan(cl));
    EXPECT_LE(Tail(cl) * 16, SpanBytes(cl)) << "class " << cl << " tail " << Tail(cl);
    for (uint32_t p = 1; p < T()[cl].pages; ++p) {
      const uint64_t bytes = p * kPageSize;
      const uint64_t n = bytes / size;
      EXPECT_FALSE(n >= 1 && (bytes - n * size) * 16 <= bytes)
          << "class " << cl << " would fit in " << p << " pages";
    }
  }
}

// The documented worst case, recomputed from its definition.
TEST(SizeClassesTest, WorstWasteColumnIsExact) {
  for (int cl = 1; cl < kNumSizeClasses; ++cl) {
    const uint64_t smallest_request = uint64_t{T()[cl - 1].size} + 1;
    const uint64_t wasted = SpanBytes(cl) - Blocks(cl) * smallest_request;
    EXPECT_EQ(T()[cl].worst_waste_bp, wasted * 10000 / SpanBytes(cl)) << "class " << cl;
  }
}

// The bounds the header promises.
TEST(SizeClassesTest, WasteBounds) {
  uint32_t worst_bp = 0;
  for (int cl = 1; cl < kNumSizeClasses; ++cl) {
    const uint32_t size = T()[cl].size;
    const uint32_t prev = T()[cl - 1].size;
    if (size >= 144) {
      // Rounding of one block: at most 1/9 (11.1%) of the block.
      EXPECT_LE(uint64_t{size - prev - 1} * 9, size) << "class " << cl;
      worst_bp = std::max(worst_bp, T()[cl].worst_waste_bp);
    }
  }
  EXPECT_EQ(worst_bp, 1665u) << "update the comment in size_classes.cc";
  // Large blocks: page rounding above kMaxSmallSize wastes < 3.2%.
  const uint64_t large = kMaxSmallSize + 1;
  EXPECT_LT((SizeMap::RoundedSize(large) - large) * 1000, 32 * large);
}

TEST(SizeClassesTest, ClassForIsTheSmallestFittingClassForEverySize) {
  for (uint64_t size = 1; size <= kMaxSmallSize; ++size) {
    const uint32_t cl = SizeMap::ClassFor(size);
    ASSERT_GE(cl, 1u);
    ASSERT_LT(cl, static_cast<uint32_t>(kNumSizeClasses));
    ASSERT_GE(SizeMap::ClassSize(cl), size);
    ASSERT_LT(T()[cl - 1].size, size) << "size " << size << " over-rounded";
    ASSERT_EQ(SizeMap::RoundedSize(size), SizeMap::ClassSize(cl));
  }
}

TEST(SizeClassesTest, LargeSizesRoundToPages) {
  for (uint64_t size : {kMaxSmallSize + 1, kMaxSmallSize + kPageSize, uint64_t{1} << 30,
                        (uint64_t{1} << 30) + 1}) {
    const uint64_t r = SizeMap::RoundedSize(size);
    EXPECT_EQ(r % kPageSize, 0u);
    EXPECT_GE(r, size);
    EXPECT_LT(r - size, kPageSize);
  }
}

}  // namespace
}  // namespace sharry::alloc
