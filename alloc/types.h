// Copyright 2024 The Sharry Authors.
//
// Core vocabulary of the Sharry allocator (alloc/). Start here.
//
// Glossary (each term is defined once; the rest of alloc/ uses them as here):
//
//   UMA            Unified Memory Address Space (paper 4.1): one flat space of
//                  N bytes on the memory node shared by all computing
//                  processes. The allocator hands out UMA OFFSETS (uint64 in
//                  [0, N)), never process pointers, and never reads or writes
//                  the data area: it may not even be mapped here.
//   section        A contiguous slice [base, base + length) of the UMA managed
//                  by exactly one SectionAllocator (paper 4.4). The UMA is cut
//                  into K equal sections; the section of an offset is found by
//                  one division: offset / section_length.
//   page           The unit of the page heap: kPageSize = 8 KiB of UMA. Pages
//                  are numbered from 0 inside their section (PageId).
//   run            A maximal range of consecutive free pages in a section.
//   span           A run of pages taken from the page heap. A small span is
//                  carved into equal blocks of one size class; a large span is
//                  one block by itself. Span metadata lives in the allocator's
//                  own memory (segregated layout, paper 4.3).
//   size class     One of kNumSizeClasses - 1 block sizes (8 B .. 256 KiB);
//                  small requests are rounded up to their class. Class 0 means
//                  "no class" (large span or free run).
//   block          The unit handed to a client: one UMA offset plus a rounded
//                  length. A block is live from Allocate until its free is
//                  applied.
//   block index    A 16-bit number naming a block inside its small span. Free
//                  blocks are tracked by a stack of block indices held in
//                  metadata, never by pointers written into the data area.
//   owner          The 32-bit id of the client (computing process) a live
//                  block belongs to. Only the owner may free a block;
//                  FreeAllOf(owner) reclaims everything it holds.
//   pending free   A free that was validated and accepted but not yet applied
//                  (delayed reclamation, paper 4.2). A pending block still
//                  counts as used and is never handed out; a flush applies all
//                  pending frees of a section.
//   section thread The allocator thread that owns one SectionAllocator and
//                  serves requests from its request ring (paper 4.3: offload
//                  to a dedicated core).
//   request ring   A bounded lock-free multi-producer single-consumer queue of
//                  requests into one section thread.
//   scheduler      Picks the section for each allocation from the sections'
//                  usage and request pressure (paper 4.4).
//
// Errors that a client can cause (bad size, double free, wrong owner, full
// memory) are returned as AllocStatus values. Broken invariants are CHECK
// failures, which stay on in release builds.

#ifndef SHARRY_ALLOC_TYPES_H_
#define SHARRY_ALLOC_TYPES_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace sharry::alloc {

// The 32-bit id of a client. kNoOwner is reserved: it marks free blocks in
// metadata and is refused by Allocate.
using OwnerId = uint32_t;
inline constexpr OwnerId kNoOwner = 0xFFFFFFFFu;

// Page numbers and page counts, relative to the start of a section. 32 bits
// cover sections up to 32 TiB.
using PageId = uint32_t;
using PageCount = uint32_t;

inline constexpr int kPageShift = 13;
inline constexpr uint64_t kPageSize = uint64_t{1} << kPageShift;  // 8 KiB

// Every block offset is a multiple of kMinAlignment (the smallest class).
inline constexpr uint64_t kMinAlignment = 8;

// Outcome of one allocator operation on one element.
enum class AllocStatus : uint8_t {
  kOk = 0,
  kOutOfMemory,   // no section has a free block of this size
  kInvalidSize,   // size 0, or larger than one section
  kInvalidOwner,  // owner == kNoOwner
  kNotAllocated,  // not the start of a live block (includes double free)
  kOutOfRange,    // offset outside the section / UMA
  kNotOwner,      // the block belongs to another owner; nothing was freed
};

constexpr std::string_view AllocStatusName(AllocStatus s) {
  switch (s) {
    case AllocStatus::kOk: return "OK";
    case AllocStatus::kOutOfMemory: return "OUT_OF_MEMORY";
    case AllocStatus::kInvalidSize: return "INVALID_SIZE";
    case AllocStatus::kInvalidOwner: return "INVALID_OWNER";
    case AllocStatus::kNotAllocated: return "NOT_ALLOCATED";
    case AllocStatus::kOutOfRange: return "OUT_OF_RANGE";
    case AllocStatus::kNotOwner: return "NOT_OWNER";
  }
  return "UNKNOWN";
}

// Result of allocating one block. `offset` is a UMA offset and is meaningful
// only when status == kOk.
struct AllocResult {
  uint64_t offset = 0;
  AllocStatus status = AllocStatus::kOutOfMemory;

  bool ok() const { return status == AllocStatus::kOk; }
};

// What FreeAllOf(owner) reclaimed.
struct ReclaimResult {
  uint64_t blocks = 0;
  uint64_t bytes = 0;  // rounded block sizes

  ReclaimResult& operator+=(const ReclaimResult& o) {
    blocks += o.blocks;
    bytes += o.bytes;
    return *this;
  }
};

// What one owner (client) holds: its live blocks and their rounded sizes.
// Blocks whose free is pending still count until the free is applied, as in
// SectionStats::used_bytes.
struct OwnerUsage {
  OwnerId owner = 0;
  uint64_t blocks = 0;
  uint64_t bytes = 0;
};

// Per-section accounting. Invariants (checked by SectionAllocator::Validate):
//   used_bytes + free_bytes == section_bytes
//   free_bytes == page_heap_free_bytes + span_free_bytes + span_tail_bytes
//   pending_bytes <= used_bytes, pending_blocks <= live_blocks
struct SectionStats {
  uint64_t section_bytes = 0;
  uint64_t used_bytes = 0;     // rounded sizes of live blocks (incl. pending)
  uint64_t free_bytes = 0;     // section_bytes - used_bytes
  uint64_t live_blocks = 0;    // incl. pending
  uint64_t pending_blocks = 0; // accepted frees not yet applied
  uint64_t pending_bytes = 0;
  // Breakdown of free_bytes.
  uint64_t page_heap_free_bytes = 0;  // pages in free runs
  uint64_t span_free_bytes = 0;       // free blocks inside small spans
  uint64_t span_tail_bytes = 0;       // span bytes past the last block
  uint64_t small_spans = 0;
  uint64_t large_spans = 0;
  uint64_t free_runs = 0;
  uint64_t largest_free_run_bytes = 0;

  // Adds another section's counters (largest_free_run_bytes: the larger).
  void Add(const SectionStats& x) {
    for (uint64_t SectionStats::*f :
         {&SectionStats::section_bytes, &SectionStats::used_bytes, &SectionStats::free_bytes,
          &SectionStats::live_blocks, &SectionStats::pending_blocks, &SectionStats::pending_bytes,
          &SectionStats::page_heap_free_bytes, &SectionStats::span_free_bytes, &SectionStats::span_tail_bytes,
          &SectionStats::small_spans, &SectionStats::large_spans, &SectionStats::free_runs}) {
      this->*f += x.*f;
    }
    if (x.largest_free_run_bytes > largest_free_run_bytes) largest_free_run_bytes = x.largest_free_run_bytes;
  }
};

}  // namespace sharry::alloc

#endif  // SHARRY_ALLOC_TYPES_H_
