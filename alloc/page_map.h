// Copyright 2024 The Sharry Authors.
//
// PageMap: page number -> Span*, for one section.
//
// A two-level radix array. The root has one slot per 2^kLeafBits pages
// (256 MiB of UMA); a leaf is an array of 2^kLeafBits Span pointers (256 KiB
// of metadata) and is allocated the first time one of its pages is set, so
// a mostly empty 1 TiB section costs a 4096-entry root and a few leaves.
// Pages whose leaf was never allocated read as nullptr.
//
// Which pages are kept current is the PageHeap's business (see
// page_heap.h): the first and last page of every span, and every page of
// a small span. Other entries may be stale; they always point at a Span
// record that still exists (records are never deleted, only recycled), so
// a reader must check Span::ContainsPage before trusting an entry.
//
// Thread-safety: none; owned by one PageHeap.

#ifndef SHARRY_ALLOC_PAGE_MAP_H_
#define SHARRY_ALLOC_PAGE_MAP_H_

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "alloc/types.h"
#include "glog/logging.h"

namespace sharry::alloc {

class Span;

class PageMap {
 public:
  static constexpr int kLeafBits = 15;
  static constexpr uint64_t kLeafPages = uint64_t{1} << kLeafBits;

  explicit PageMap(PageCount num_pages)
      : num_pages_(num_pages), root_((num_pages + kLeafPages - 1) / kLeafPages) {}

  PageCount num_pages() const { return num_pages_; }

  // REQUIRES: p < num_pages().
  Span* get(PageId p) const {
    DCHECK_LT(p, num_pages_);
    const Leaf* leaf = root_[p >> kLeafBits].get();
    return leaf == nullptr ? nullptr : (*leaf)[p & (kLeafPages - 1)];
  }

  // REQUIRES: p < num_pages().
  void set(PageId p, Span* span) {
    CHECK_LT(p, num_pages_);
    std::unique_ptr<Leaf>& leaf = root_[p >> kLeafBits];
    if (leaf == nullptr) leaf = std::make_unique<Leaf>();  // value-initialised
    (*leaf)[p & (kLeafPages - 1)] = span;
  }

  // Metadata bytes held by allocated leaves (for stats and tests).
  uint64_t leaf_bytes() const {
    uint64_t n = 0;
    for (const auto& leaf : root_) n += leaf ? sizeof(Leaf) : 0;
    return n;
  }

 private:
  using Leaf = std::array<Span*, kLeafPages>;

  PageCount num_pages_;
  std::vector<std::unique_ptr<Leaf>> root_;
};

}  // namespace sharry::alloc

#endif  // SHARRY_ALLOC_PAGE_MAP_H_
