// Copyright 2024 The Sharry Authors.
//
// SectionAllocator: the allocator of one memory section [base, base+length)
// of the UMA (paper 4.3, 4.4).
//
// It hands out UMA offsets, never pointers, and never touches the data area:
// all metadata (spans, block indices, owners, the page map) lives in this
// object. Layers, top to bottom:
//
//   SectionAllocator   sizes -> classes, owner checks, delayed frees, stats,
//                      per-owner usage (OwnerTable)
//     class lists      per owner and size class, the small spans with a free
//                      block (one list per class for shared spans), and
//                      the owner's mixed span
//     Span             blocks of one class, 16-bit free-index stack, owners;
//                      or a mixed span: blocks of several classes, bumped
//     PageHeap         best-fit runs of pages, coalescing, page map
//
// Allocate(size, owner):
//   size <= kMaxSmallSize: round up to the class; while the owner has
//     blocks of the class to come from its mixed span (below), take one
//     there; else take a block from the first span in the owner's list of
//     the class, getting a new span from the page heap if the list is empty.
//     A span leaves the list when it becomes full.
//   size >  kMaxSmallSize: a large span of ceil(size / kPageSize) pages.
//   When the page heap is exhausted, pending frees are applied and the empty
//   spans cached per class are released before OOM is reported.
//
// Free(offset, owner) validates at once, so every error is reported to the
// caller that made it: the offset must be in the section, be the start of a
// live block (not free, not already pending: that is a double free) and
// belong to `owner`, else nothing changes. A valid free is queued (the block
// becomes "pending", still counted as used and never handed out) and the
// queue is applied once it holds free_batch_threshold entries (paper 4.2,
// delayed reclamation). FlushPendingFrees() applies it now.
//
// Private spans (Options::private_spans, the default; issue #11): a span
// holds blocks of one owner only, so that each span is a protection unit
// that can be granted to, and revoked from, exactly one client (see
// span_observer.h). The cost is fragmentation: every owner has its own
// partly filled span per size class it uses (SectionStats::span_free_bytes).
// With private_spans off, blocks of all owners share spans (the paper's
// allocator; kept for the allocator benchmarks).
//
// Mixed spans (private spans only): a private span per size class costs a
// partly filled span per class an owner uses, which is most of what a small
// owner holds when it uses many classes (a client with 1 MiB of hash-table
// entries of 16..512 B uses ~30). So an owner's first blocks of each class
// up to kMaxMixedBlockSize — as many as one span of the class holds
// (SizeMap::BlocksPerSpan) — come from its mixed span instead: one page of
// blocks of any class of that owner, each exactly its class size, handed
// out in address order (Span::AllocateRun). Further blocks of the class come
// from spans of the class, as above. A block that does not fit in the rest
// of the owner's mixed span retires it (at most kMaxMixedBlockSize - 8
// bytes unused) and starts a new one; a freed block of a mixed span is not
// reused until the whole span is empty. So an owner has at most one mixed
// span with room, and at most 323 KiB of blocks ever come from its mixed
// spans (one span's worth of each of the 40 classes up to 1 KiB; FreeAllOf
// starts the count over): a large owner (whose classes soon take spans of
// their own) and an owner of only bigger blocks (the 4 KiB objects of the
// demo) see almost no change, and a small owner is granted fewer spans.
// Blocks keep their class size, so what an owner is charged
// (SizeMap::RoundedSize) does not change.
//
// Growing spans (private spans only; Options::growing_spans): a span of the
// table's size per grant costs one grant per span — over verbs one memory
// registration (~100 us emulated, several us on a NIC) — and the 4 KiB
// class has 1-page spans of 2 blocks: 128 grants per MiB. So an owner's new
// span of class cl has
//
//   pages = k * ClassPages(cl),  k = clamp(held / kSpanGrowthDivisor
//                                          / ClassPages(cl), 1, k_max)
//
// where held is the pages of the owner's spans of cl (OwnerSpans::
// class_pages; mixed spans not counted) and k_max keeps the span at most
// kMaxGrownSpanPages pages and kMaxBlocksPerSpan blocks (63 pages for the
// 8 B class). A whole number of the table's spans keeps the tail at most k
// times the table's, so the waste bound of size_classes.cc holds. Each new
// span is at most 1/64 of what the owner already holds of the class: an
// owner that holds H >= 128 pages of it was granted about
// 128 + 64 * ln(H / 128) spans of the class, not H (a 32 MiB owner of 4 KiB
// objects: ~370 instead of 4096; below 128 pages nothing changes), for at
// most one partly filled span per class of <= 1/64 of H and <= 512 KiB.
// The price: a span's pages go back only when all its blocks are free, so
// an owner that frees most of its blocks in random order keeps more pages
// than with the table's spans (its partly filled spans are refilled before
// it is granted a new one). Block metadata stays 6.125 bytes per block; a
// recycled span record keeps the capacity of the largest span it described.
// If the page heap has no run for a grown span, a span of the table's size
// is tried before reporting OOM.
//
// When a small span becomes empty it goes back to the page heap, unless it
// is the only span of its (owner's) class with free blocks; so each class
// caches at most one empty span per owner, which avoids thrashing at a span
// boundary. FreeAllOf(owner) releases the owner's cached spans too: a
// reclaimed owner keeps no pages.
//
// Costs: Allocate and Free are O(1) apart from the page heap's O(log runs)
// (a mixed-span block clears the metadata of its 8-byte granules, at most
// 128; retiring a mixed span, of the rest of its 1024);
// FreeAllOf walks all spans and their block metadata. Per-owner counters
// (Usage) are O(1) per Allocate and per applied free.
//
// Thread-safety: none, and no locks by design. A SectionAllocator is used by
// one thread at a time: its section thread, or a caller holding the lock of
// a MutexAllocator.

#ifndef SHARRY_ALLOC_SECTION_ALLOCATOR_H_
#define SHARRY_ALLOC_SECTION_ALLOCATOR_H_

#include <array>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "alloc/owner_table.h"
#include "alloc/page_heap.h"
#include "alloc/size_classes.h"
#include "alloc/span.h"
#include "alloc/span_observer.h"
#include "alloc/types.h"
#include "boost/intrusive/list.hpp"

namespace sharry::alloc {

class SectionAllocator {
 public:
  // Mixed spans (above): one page each, for classes up to this size.
  static constexpr PageCount kMixedSpanPages = 1;
  static constexpr uint32_t kMaxMixedBlockSize = 1024;
  // Growing spans (above): a new span is about 1/kSpanGrowthDivisor of what
  // its owner holds of the class, at most kMaxGrownSpanPages pages.
  static constexpr uint32_t kSpanGrowthDivisor = 64;
  static constexpr PageCount kMaxGrownSpanPages = 64;

  struct Options {
    // UMA offset of the first byte. REQUIRES: a multiple of kPageSize.
    uint64_t base = 0;
    // Section size in bytes. REQUIRES: a non-zero multiple of kPageSize,
    // at most 2^32 pages.
    uint64_t length = 0;
    // Pending frees are applied once this many are queued; 0 or 1 applies
    // every free at once.
    uint32_t free_batch_threshold = 1;
    // Every span holds one owner's blocks (see above). Required for an
    // observer.
    bool private_spans = true;
    // An owner's first blocks of the small classes come from its mixed span
    // (see above). Only with private spans.
    bool mixed_spans = true;
    // An owner's spans of a class grow with what it holds of the class (see
    // above). Only with private spans.
    bool growing_spans = true;
    // Told of every span granted to and revoked from an owner; may be null.
    SpanObserver* observer = nullptr;
  };

  explicit SectionAllocator(const Options& options);
  SectionAllocator(const SectionAllocator&) = delete;
  SectionAllocator& operator=(const SectionAllocator&) = delete;
  ~SectionAllocator();

  // Allocates a block of at least `size` bytes for `owner`.
  // Errors: kInvalidSize (size 0 or > max_block_size()), kInvalidOwner
  // (owner == kNoOwner), kOutOfMemory (nothing changed).
  [[nodiscard]] AllocResult Allocate(uint64_t size, OwnerId owner);

  // Frees the block starting at `offset` on behalf of `owner` (delayed; see
  // above). Errors (nothing changed): kOutOfRange (offset outside the
  // section), kNotAllocated (not the start of a live block, including a
  // double free or a free of a pending block), kNotOwner. On kOk, adds the
  // block's rounded bytes to *freed_bytes (if given): what its owner is no
  // longer charged for once the free is applied (the memnode's quotas).
  [[nodiscard]] AllocStatus Free(uint64_t offset, OwnerId owner, uint64_t* freed_bytes);
  [[nodiscard]] AllocStatus Free(uint64_t offset, OwnerId owner) { return Free(offset, owner, nullptr); }

  // Applies all pending frees (of every owner), then frees at once every
  // remaining live block of `owner`. Returns what the second step freed:
  // the blocks the owner had not freed itself. Afterwards the owner holds
  // nothing in this section.
  ReclaimResult FreeAllOf(OwnerId owner);

  // Applies all pending frees. Returns how many were applied.
  size_t FlushPendingFrees();

  // O(1) snapshot of the counters.
  SectionStats stats() const;

  // What `owner` holds in this section (pending blocks included; see
  // owner_table.h). O(1).
  OwnerUsage Usage(OwnerId owner) const { return owners_.Usage(owner); }
  // Appends one entry per owner with live blocks, unordered. O(owners).
  void AppendOwners(std::vector<OwnerUsage>* out) const { owners_.AppendTo(out); }

  uint64_t base() const { return base_; }
  uint64_t length() const { return length_; }
  uint64_t end() const { return base_ + length_; }
  uint64_t max_block_size() const { return length_; }
  uint32_t free_batch_threshold() const { return free_batch_threshold_; }
  uint64_t used_bytes() const { return counts_.used_bytes; }
  size_t pending_frees() const { return pending_.size(); }

  // Walks all metadata and CHECKs that it agrees with the counters: the page
  // heap's invariants, every span's block accounting, the class lists, and
  // used + free == length with free fully broken down. O(metadata).
  void CheckInvariants() const;

 private:
  friend class SectionAllocatorPeer;

  using ClassList = boost::intrusive::list<
      Span, boost::intrusive::member_hook<Span, boost::intrusive::list_member_hook<>,
                                          &Span::class_hook_>>;

  // A located live-or-pending block.
  struct BlockRef {
    Span* span = nullptr;
    uint32_t index = 0;  // block index, 0 for a large span
  };

  // The small spans with a free block of one owner (kNoOwner: of every
  // owner, for shared spans), by size class; by_class[0] holds the owner's
  // mixed span with room, if any.
  struct OwnerSpans {
    std::array<ClassList, kNumSizeClasses> by_class;
    // Blocks of each class still to come from the mixed span (0 without
    // mixed spans and for classes above kMaxMixedBlockSize).
    std::array<uint16_t, kNumSizeClasses> mixed_left{};
    // Pages of the owner's small spans of each class (class 0: its mixed
    // spans, retired ones included), empty cached ones included.
    std::array<uint32_t, kNumSizeClasses> class_pages{};
  };

  AllocResult TryAllocate(uint64_t size, OwnerId owner);
  // A block of class `cl` from the owner's mixed span (a new one if it has
  // no room).
  AllocResult AllocateMixed(OwnerSpans& spans, uint32_t cl, OwnerId owner);
  // The pages of `spans`' next span of class `cl` (growing spans, above).
  PageCount SpanPages(const OwnerSpans& spans, uint32_t cl) const;
  // Links a small span of class `cl` (0: mixed) just taken from the page
  // heap into the owner's list and counts it.
  void AddSmallSpan(Span* span, OwnerSpans& spans, uint32_t cl);
  // The class lists of `owner` (created on first use; cached lookup).
  OwnerSpans& SpansOf(OwnerId owner) {
    const OwnerId key = private_spans_ ? owner : kNoOwner;
    if (last_spans_ != nullptr && last_key_ == key) [[likely]] return *last_spans_;
    return FindOrAddSpans(key);
  }
  OwnerSpans& FindOrAddSpans(OwnerId key);
  ClassList& ListOf(const Span& span);
  // A span's pages from the page heap for `owner` / back to it, telling the
  // observer.
  Span* NewSpan(PageCount pages, Span::State state, OwnerId owner);
  void DeleteSpan(Span* span);
  // Finds the block that starts at section-relative byte `rel`. kOk only
  // for a live (not pending) block; *pending tells a pending one apart.
  AllocStatus FindBlock(uint64_t rel, BlockRef* ref, bool* pending) const;
  uint64_t BlockBytes(const BlockRef& ref) const;
  // Returns a live or pending block to its span / the page heap.
  void ApplyFree(const BlockRef& ref);
  // Gives back to the page heap the one empty span each class may cache.
  // Returns how many spans were released.
  size_t ReleaseCachedSpans();
  void ReleaseSmallSpan(Span* span);
  // Releases the cached empty spans of an owner that holds no block and
  // drops its class lists.
  void ForgetOwnerSpans(OwnerId owner);

  const uint64_t base_;
  const uint64_t length_;
  const uint32_t free_batch_threshold_;
  const bool private_spans_;
  const bool mixed_spans_;
  const bool growing_spans_;
  SpanObserver* const observer_;

  PageHeap page_heap_;
  // Keyed by span owner (kNoOwner only, with shared spans). An entry lives
  // until FreeAllOf(owner). unordered_map: entries never move.
  std::unordered_map<OwnerId, OwnerSpans> class_lists_;
  OwnerId last_key_ = kNoOwner;
  OwnerSpans* last_spans_ = nullptr;

  // Section-relative starts of pending blocks, in arrival order.
  std::vector<uint64_t> pending_;

  // Per-owner {blocks, bytes}, updated on Allocate and on ApplyFree.
  OwnerTable owners_;

  // The counters kept up to date as blocks come and go: used_bytes,
  // live_blocks, pending_bytes, span_free_bytes, span_tail_bytes,
  // small_spans, large_spans (stats() fills in the rest).
  SectionStats counts_;
};

}  // namespace sharry::alloc

#endif  // SHARRY_ALLOC_SECTION_ALLOCATOR_H_
