// Copyright 2024 The Sharry Authors.
//
// Span: a run of pages of one section, and the metadata of the blocks in it.
//
// A span is in one of four states:
//   kUnused  the record is in the SpanArena's free list; its fields are stale.
//   kFree    a free run owned by the PageHeap, linked into its best-fit set.
//   kSmall   carved into equal blocks of one size class; owned by the
//            SectionAllocator and, while it has free blocks, linked into the
//            list of its class.
//   kLarge   one block covering the whole span (a request > kMaxSmallSize).
//
// Segregated layout (paper 4.3). Nothing is ever written into the UMA data
// area: a span only knows page numbers, and all block state is held here.
// For a small span of B blocks of size S starting at byte offset O of its
// section, block i covers [O + i*S, O + (i+1)*S) and its metadata is:
//
//   owners_[i]        uint32  owner of block i, kNoOwner when free
//   pending_bits_     1 bit   set while a free of block i is pending
//   free_stack_       uint16  stack of indices of freed blocks (LIFO reuse)
//   next_fresh_       uint16  blocks [next_fresh_, B) were never handed out
//
//   block i:   never used    live          pending          free (reused)
//   ---------  ------------  ------------  ---------------  ---------------
//   i < fresh  no            yes           yes              yes
//   owner      (not read)    client id     client id        kNoOwner
//   pending    0             0             1                0
//   on stack   no            no            no               yes
//
// so a block costs 6.125 bytes of metadata (+ a share of the ~100-byte span
// record), whatever its size. Blocks are handed out from the free stack
// first and then in address order from next_fresh_, so a new span needs no
// O(B) initialisation of its stack. Indices are 16 bits because a span holds
// at most kMaxBlocksPerSpan blocks (see size_classes.h).
//
// A mixed span (SectionAllocator: an owner's first blocks of the small
// classes) is a kSmall span of class 0: blocks of several classes of one
// owner, bump-allocated in 8-byte granules. The arrays are indexed by
// granule; a block starting at granule g has owners_[g] == its owner and
// free_stack_[g] == its length in granules (no free stack: a freed block's
// granules are not reused until the whole span is empty), and every other
// granule of it has owners_ == kNoOwner, so an interior offset reads as
// free. next_fresh_ is the bump pointer; Retire() moves it to the end.
//
// A large span keeps its owner and pending flag in owner_ and
// large_pending_ and uses none of the arrays. A small span of a private-span
// allocator (SectionAllocator::Options::private_spans) keeps in owner_ the
// one owner all its blocks are handed to; of a shared one, kNoOwner.
//
// Thread-safety: none. A span belongs to one SectionAllocator, which is used
// by one thread at a time.

#ifndef SHARRY_ALLOC_SPAN_H_
#define SHARRY_ALLOC_SPAN_H_

#include <cstdint>
#include <vector>

#include "alloc/types.h"
#include "boost/intrusive/list_hook.hpp"
#include "boost/intrusive/set_hook.hpp"
#include "glog/logging.h"

namespace sharry::alloc {

// The unit of a mixed span: blocks start and end on multiples of it.
inline constexpr uint32_t kMixedGranule = kMinAlignment;

class Span {
 public:
  enum class State : uint8_t { kUnused, kFree, kSmall, kLarge };
  enum class BlockState : uint8_t { kFree, kLive, kPending };

  using BlockIndex = uint16_t;

  Span() = default;
  Span(const Span&) = delete;
  Span& operator=(const Span&) = delete;

  // ---- Page range --------------------------------------------------------
  State state() const { return state_; }
  PageId first_page() const { return first_page_; }
  PageCount num_pages() const { return num_pages_; }
  PageId end_page() const { return first_page_ + num_pages_; }  // exclusive
  PageId last_page() const { return first_page_ + num_pages_ - 1; }
  uint64_t start_byte() const { return uint64_t{first_page_} << kPageShift; }
  uint64_t bytes() const { return uint64_t{num_pages_} << kPageShift; }
  bool ContainsPage(PageId p) const { return p >= first_page_ && p < end_page(); }

  // ---- Large span ----------------------------------------------------------
  // REQUIRES: state() == kLarge for the accessors.
  void InitLarge(OwnerId owner);
  OwnerId large_owner() const { return owner_; }
  bool large_pending() const { return large_pending_; }
  void set_large_pending(bool p) { large_pending_ = p; }

  // ---- Small span ----------------------------------------------------------
  // Carves the span into blocks of class `size_class`. All blocks are free.
  // `owner`: the one owner of all its blocks (private spans), or kNoOwner
  // (blocks of any owner).
  // REQUIRES: state() == kSmall, num_pages() a multiple of
  // SizeMap::ClassPages(cl) (a grown span: SectionAllocator), at most
  // kMaxBlocksPerSpan blocks.
  void InitSmall(uint32_t size_class, OwnerId owner = kNoOwner);

  // The owner of the whole span: a large span's owner, a private small
  // span's owner; kNoOwner for a shared small span.
  OwnerId span_owner() const { return owner_; }

  uint32_t size_class() const { return size_class_; }
  // The block size of a span of one class; kMixedGranule for a mixed span.
  uint32_t block_size() const { return block_size_; }
  uint32_t num_blocks() const { return num_blocks_; }
  uint32_t allocated() const { return allocated_; }  // live + pending
  uint32_t free_blocks() const { return num_blocks_ - allocated_; }
  bool full() const { return allocated_ == num_blocks_; }
  bool empty() const { return allocated_ == 0; }
  // Bytes of the span past the last block.
  uint64_t tail_bytes() const { return bytes() - uint64_t{num_blocks_} * block_size_; }

  // Hands out a free block to `owner` and returns its index.
  // REQUIRES: !full(), owner != kNoOwner.
  BlockIndex AllocateBlock(OwnerId owner);

  // REQUIRES: index < num_blocks().
  BlockState block_state(uint32_t index) const;
  // REQUIRES: block_state(index) != kFree.
  OwnerId block_owner(uint32_t index) const { return owners_[index]; }

  // Marks a live block as pending. REQUIRES: block_state(index) == kLive.
  void MarkPending(uint32_t index);

  // Returns a live or pending block to the free stack.
  // REQUIRES: block_state(index) != kFree.
  void FreeBlock(uint32_t index);

  // ---- Mixed span (size class 0) -------------------------------------------
  // Makes the span an empty mixed span of `owner`.
  // REQUIRES: state() == kSmall, owner != kNoOwner.
  void InitMixed(OwnerId owner);
  bool mixed() const { return size_class_ == 0; }  // REQUIRES: state() == kSmall
  // Bytes not yet handed out past the bump pointer.
  uint64_t room_bytes() const { return uint64_t{num_blocks_ - next_fresh_} * kMixedGranule; }
  // Hands out the next `bytes` (a multiple of kMixedGranule) to `owner`;
  // returns the block's first granule. REQUIRES: mixed(),
  // 0 < bytes <= room_bytes().
  BlockIndex AllocateRun(uint32_t bytes, OwnerId owner);
  // No more blocks: room_bytes() becomes 0. REQUIRES: mixed().
  void Retire();
  // An empty mixed span starts over. REQUIRES: mixed(), empty().
  void Reset();

  // Bytes of the block at `index` (its class size; in a mixed span, its
  // run). REQUIRES: block_state(index) != kFree.
  uint64_t block_bytes(uint32_t index) const {
    return mixed() ? uint64_t{free_stack_[index]} * kMixedGranule : block_size_;
  }

  // Byte offset (from the section start) of block `index`.
  uint64_t block_start(uint32_t index) const {
    return start_byte() + uint64_t{index} * block_size_;
  }

  // Calls fn(index, owner, pending) for every live or pending block.
  template <typename Fn>
  void ForEachAllocatedBlock(Fn&& fn) const {
    for (uint32_t i = 0; i < next_fresh_; ++i) {
      if (owners_[i] != kNoOwner) fn(i, owners_[i], PendingBit(i));
    }
  }

 private:
  friend class PageHeap;
  friend class SpanArena;
  friend class SectionAllocator;

  bool PendingBit(uint32_t i) const { return (pending_bits_[i >> 6] >> (i & 63)) & 1; }
  // Makes all num_blocks_ blocks free, for `owner` (the rest of InitSmall
  // and InitMixed).
  void ClearBlocks(OwnerId owner);

  // Hooks; a span is in at most one of these containers, by state.
  boost::intrusive::set_member_hook<> free_hook_;    // kFree: PageHeap set
  boost::intrusive::list_member_hook<> class_hook_;  // kSmall: class list
  Span* next_unused_ = nullptr;                      // kUnused: arena list

  PageId first_page_ = 0;
  PageCount num_pages_ = 0;
  State state_ = State::kUnused;
  bool large_pending_ = false;
  uint8_t size_class_ = 0;
  uint16_t next_fresh_ = 0;
  uint16_t free_top_ = 0;  // number of indices on free_stack_
  uint32_t block_size_ = 0;
  uint32_t num_blocks_ = 0;
  uint32_t allocated_ = 0;
  OwnerId owner_ = kNoOwner;

  // Small-span block metadata (see the file comment). The vectors keep their
  // capacity when the record is recycled, so a reused record rarely
  // allocates.
  std::vector<OwnerId> owners_;
  std::vector<uint64_t> pending_bits_;
  std::vector<BlockIndex> free_stack_;
};

}  // namespace sharry::alloc

#endif  // SHARRY_ALLOC_SPAN_H_
