// Copyright 2024 The Sharry Authors.
//
// Size classes: the fixed table of small block sizes and the span size (in
// pages) used for each, in the style of TCMalloc's size map.
//
// Requests of 1 .. kMaxSmallSize bytes are rounded up to the smallest class
// that fits and served from a small span of that class; larger requests are
// served by the page heap directly, rounded up to whole pages.
//
// Why 8 KiB pages and a 256 KiB small limit (see size_classes.cc for the
// table and the waste of each class):
//   * Above 256 KiB a large block wastes less than one page to rounding,
//     i.e. < 8 KiB / 256 KiB = 3.1%, so classes stop paying off there.
//   * Below it, classes are spaced at most 1/8 of their size apart (8-byte
//     steps up to 128 B, then 8 classes per power of two), so rounding wastes
//     at most 11.1% of a block for every class >= 144 B; span sizes are the
//     smallest page count whose unusable tail is <= 1/16 of the span.
//   * 8 KiB pages (rather than 4 KiB) halve the page map and the number of
//     spans, and a span of the table's size never holds more than 1024
//     blocks, far below the 65535 a 16-bit block index can name. (A
//     client's grown span — a whole number of the table's spans, up to 64
//     pages, SectionAllocator "Growing spans" — is kept under 65535.)
//
// Thread-safety: everything here is immutable after static initialisation.

#ifndef SHARRY_ALLOC_SIZE_CLASSES_H_
#define SHARRY_ALLOC_SIZE_CLASSES_H_

#include <cstddef>
#include <cstdint>
#include <span>

#include "alloc/types.h"

namespace sharry::alloc {

// One row of the size-class table.
struct SizeClassInfo {
  uint32_t size;   // block size in bytes (a multiple of kMinAlignment)
  uint32_t pages;  // span size in pages
  // Worst-case internal waste of a span of this class, in basis points
  // (1/100 of a percent): the fraction of the span's bytes that hold no
  // requested data when every block holds the smallest request that maps to
  // this class (one byte more than the previous class), including the tail
  // of the span that is too short for a block:
  //   worst = 1 - blocks * (previous_size + 1) / (pages * kPageSize)
  // rounded down. Metadata is not counted: it lives outside the UMA.
  // Recomputed and checked by tests/alloc_size_classes_test.cc.
  uint32_t worst_waste_bp;
};

inline constexpr uint64_t kMaxSmallSize = 256 * 1024;
inline constexpr int kNumSizeClasses = 105;  // including class 0
inline constexpr uint32_t kMaxBlocksPerSpan = 65535;  // 16-bit block index

// Maps sizes to classes. All functions are O(1) table lookups.
class SizeMap {
 public:
  // The whole table, indexed by class; entry 0 is the "no class" row.
  static std::span<const SizeClassInfo, kNumSizeClasses> Table();

  // REQUIRES: 1 <= size <= kMaxSmallSize.
  // Returns the smallest class whose size is >= size (never 0).
  static uint32_t ClassFor(uint64_t size);

  // REQUIRES: 1 <= cl < kNumSizeClasses.
  static uint32_t ClassSize(uint32_t cl) { return Table()[cl].size; }
  static uint32_t ClassPages(uint32_t cl) { return Table()[cl].pages; }
  static uint32_t BlocksPerSpan(uint32_t cl) {
    return static_cast<uint32_t>(ClassPages(cl) * kPageSize / ClassSize(cl));
  }

  // The number of bytes a block for `size` occupies: the class size for
  // small sizes, whole pages above kMaxSmallSize.
  // REQUIRES: size >= 1.
  static uint64_t RoundedSize(uint64_t size);

  // Index into the lookup array (TCMalloc's two-region scheme): 8-byte steps
  // up to 1024 B, 128-byte steps above.
  static constexpr size_t LookupIndex(uint64_t size) {
    return size <= 1024 ? static_cast<size_t>((size + 7) >> 3)
                        : static_cast<size_t>((size + 127 + (120 << 7)) >> 7);
  }
};

// Entries of the size -> class lookup array.
inline constexpr size_t kSizeLookupEntries = SizeMap::LookupIndex(kMaxSmallSize) + 1;

}  // namespace sharry::alloc

#endif  // SHARRY_ALLOC_SIZE_CLASSES_H_
