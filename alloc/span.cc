// Copyright 2024 The Sharry Authors.

#include "alloc/span.h"

#include <algorithm>

#include "alloc/size_classes.h"

namespace sharry::alloc {

void Span::InitLarge(OwnerId owner) {
  CHECK(state_ == State::kLarge);
  CHECK_NE(owner, kNoOwner);
  owner_ = owner;
  large_pending_ = false;
  size_class_ = 0;
  block_size_ = 0;
  num_blocks_ = 0;
  allocated_ = 0;
}

inline void Span::ClearBlocks(OwnerId owner) {
  allocated_ = 0;
  next_fresh_ = 0;
  free_top_ = 0;
  owner_ = owner;
  large_pending_ = false;
  // Blocks at or past next_fresh_ are never read, so only grow the arrays.
  if (owners_.size() < num_blocks_) owners_.resize(num_blocks_);
  if (free_stack_.size() < num_blocks_) free_stack_.resize(num_blocks_);
  pending_bits_.assign((num_blocks_ + 63) / 64, 0);
}

void Span::InitSmall(uint32_t size_class, OwnerId owner) {
  CHECK(state_ == State::kSmall);
  CHECK(size_class >= 1 && size_class < kNumSizeClasses) << size_class;
  CHECK(num_pages_ > 0 && num_pages_ % SizeMap::ClassPages(size_class) == 0) << num_pages_;
  size_class_ = static_cast<uint8_t>(size_class);
  block_size_ = SizeMap::ClassSize(size_class);
  num_blocks_ = static_cast<uint32_t>(bytes() / block_size_);
  CHECK(num_blocks_ >= 1 && num_blocks_ <= kMaxBlocksPerSpan) << num_blocks_;
  ClearBlocks(owner);
}

void Span::InitMixed(OwnerId owner) {
  CHECK(state_ == State::kSmall);
  CHECK_NE(owner, kNoOwner);
  size_class_ = 0;
  block_size_ = kMixedGranule;
  num_blocks_ = static_cast<uint32_t>(bytes() / kMixedGranule);
  CHECK(num_blocks_ >= 1 && num_blocks_ <= kMaxBlocksPerSpan) << num_blocks_;
  ClearBlocks(owner);
}

Span::BlockIndex Span::AllocateRun(uint32_t bytes, OwnerId owner) {
  DCHECK(state_ == State::kSmall && mixed());
  DCHECK_NE(owner, kNoOwner);
  DCHECK_EQ(owner_, owner) << "block of owner " << owner << " in a mixed span of " << owner_;
  CHECK(bytes > 0 && bytes % kMixedGranule == 0 && bytes <= room_bytes()) << bytes;
  const uint32_t n = bytes / kMixedGranule;
  const BlockIndex index = next_fresh_;
  owners_[index] = owner;
  // The interior may hold a recycled record's owners: it must read as free.
  std::fill(owners_.begin() + index + 1, owners_.begin() + index + n, kNoOwner);
  free_stack_[index] = static_cast<BlockIndex>(n);
  next_fresh_ = static_cast<uint16_t>(next_fresh_ + n);
  ++allocated_;
  return index;
}

void Span::Retire() {
  CHECK(state_ == State::kSmall && mixed());
  std::fill(owners_.begin() + next_fresh_, owners_.begin() + num_blocks_, kNoOwner);
  next_fresh_ = static_cast<uint16_t>(num_blocks_);
}

void Span::Reset() {
  CHECK(state_ == State::kSmall && mixed() && empty());
  next_fresh_ = 0;
}

Span::BlockIndex Span::AllocateBlock(OwnerId owner) {
  DCHECK(state_ == State::kSmall && !mixed());
  CHECK(!full());
  DCHECK_NE(owner, kNoOwner);
  DCHECK(owner_ == kNoOwner || owner_ == owner) << "block of owner " << owner << " in a span of " << owner_;
  BlockIndex index;
  if (free_top_ > 0) {
    index = free_stack_[--free_top_];
    DCHECK_EQ(owners_[index], kNoOwner) << "block " << index << " on the free stack is live";
  } else {
    CHECK_LT(next_fresh_, num_blocks_);
    index = next_fresh_++;
  }
  owners_[index] = owner;
  ++allocated_;
  return index;
}

Span::BlockState Span::block_state(uint32_t index) const {
  DCHECK(state_ == State::kSmall);
  DCHECK_LT(index, num_blocks_);
  if (index >= next_fresh_ || owners_[index] == kNoOwner) return BlockState::kFree;
  return PendingBit(index) ? BlockState::kPending : BlockState::kLive;
}

void Span::MarkPending(uint32_t index) {
  CHECK(block_state(index) == BlockState::kLive);
  pending_bits_[index >> 6] |= uint64_t{1} << (index & 63);
}

void Span::FreeBlock(uint32_t index) {
  CHECK(block_state(index) != BlockState::kFree) << "double free of block " << index;
  pending_bits_[index >> 6] &= ~(uint64_t{1} << (index & 63));
  owners_[index] = kNoOwner;
  --allocated_;
  if (mixed()) [[unlikely]] return;  // its granules wait for Reset()
  CHECK_LT(free_top_, num_blocks_);
  free_stack_[free_top_++] = static_cast<BlockIndex>(index);
}

}  // namespace sharry::alloc
