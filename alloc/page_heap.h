// Copyright 2024 The Sharry Authors.
//
// PageHeap: the page-level allocator of one section.
//
// It hands out spans (runs of whole pages) for small spans and for large
// blocks, and takes them back. All pages of the section start as one free
// run.
//
//   * Best fit. Free runs are kept in a Boost.Intrusive set ordered by
//     (length, first page). New(n) takes the first run not shorter than n:
//     the shortest run that fits, the lowest-addressed among equals, and
//     carves the span from its start; the remainder stays a free run.
//     O(log runs).
//   * Coalescing. Delete(span) merges the span with a free left and/or right
//     neighbour before inserting it, so freeing everything restores a single
//     run of all pages. The neighbours are found in O(1) through the page map:
//     page first-1 is the last page of the left neighbour and page end is the
//     first page of the right neighbour.
//
// Page-map contract (what Lookup may rely on). For every span, free or not,
// the entries of its first and last page point at it; for a small span every
// page does. Interior entries of large spans and free runs may be stale.
// Lookup(p) therefore returns a span only if the entry is current (a live
// record containing p); a stale entry means p is interior to a large block
// or a free run, so p holds no block start.
//
// Thread-safety: none. Owned by one SectionAllocator.

#ifndef SHARRY_ALLOC_PAGE_HEAP_H_
#define SHARRY_ALLOC_PAGE_HEAP_H_

#include <cstdint>

#include "alloc/page_map.h"
#include "alloc/span.h"
#include "alloc/span_arena.h"
#include "alloc/types.h"
#include "boost/intrusive/set.hpp"

namespace sharry::alloc {

class PageHeap {
 public:
  // REQUIRES: num_pages >= 1.
  explicit PageHeap(PageCount num_pages);
  PageHeap(const PageHeap&) = delete;
  PageHeap& operator=(const PageHeap&) = delete;
  ~PageHeap();

  // Allocates a span of exactly n pages in `state` (kSmall or kLarge), best
  // fit. Returns nullptr when no free run has n pages.
  // REQUIRES: n >= 1.
  [[nodiscard]] Span* New(PageCount n, Span::State state);

  // Returns a span from New() to the free runs, merging it with free
  // neighbours. The span pointer must not be used afterwards.
  // REQUIRES: span->state() is kSmall or kLarge; its blocks are all free.
  void Delete(Span* span);

  // The span containing page p if p's map entry is current, else nullptr.
  // REQUIRES: p < num_pages().
  Span* Lookup(PageId p) const {
    Span* s = map_.get(p);
    if (s == nullptr || s->state() == Span::State::kUnused || !s->ContainsPage(p)) {
      return nullptr;
    }
    return s;
  }

  // Calls fn(const Span&) for every span (free runs included) in address
  // order. fn must not modify the heap.
  template <typename Fn>
  void ForEachSpan(Fn&& fn) const {
    for (PageId p = 0; p < num_pages_;) {
      const Span* s = Lookup(p);
      CHECK(s != nullptr) << "page map hole at first page " << p;
      fn(*s);
      p = s->end_page();
    }
  }

  PageCount num_pages() const { return num_pages_; }
  uint64_t free_pages() const { return free_pages_; }
  uint64_t free_runs() const { return free_runs_.size(); }
  // Length of the longest free run, 0 if none.
  PageCount largest_free_run() const;
  // Span records in use (free runs included).
  size_t span_records() const { return arena_.in_use(); }

  // Walks the whole heap and CHECKs its invariants: runs tile the section,
  // no two free runs are adjacent, the best-fit set holds exactly the free
  // runs, free_pages() is their total, and the page-map contract holds.
  void CheckInvariants() const;

 private:
  // Orders free runs by (length, first page).
  struct RunLess {
    bool operator()(const Span& a, const Span& b) const {
      return a.num_pages_ != b.num_pages_ ? a.num_pages_ < b.num_pages_
                                          : a.first_page_ < b.first_page_;
    }
  };
  // Heterogeneous comparison against a (length, first page) key.
  struct RunKey {
    PageCount len;
    PageId first;
  };
  struct RunKeyLess {
    bool operator()(const RunKey& k, const Span& s) const {
      return k.len != s.num_pages_ ? k.len < s.num_pages_ : k.first < s.first_page_;
    }
    bool operator()(const Span& s, const RunKey& k) const {
      return s.num_pages_ != k.len ? s.num_pages_ < k.len : s.first_page_ < k.first;
    }
  };
  using FreeRunSet = boost::intrusive::set<
      Span, boost::intrusive::member_hook<Span, boost::intrusive::set_member_hook<>,
                                          &Span::free_hook_>,
      boost::intrusive::compare<RunLess>>;

  // Points the map entries of s's first and last page (or all its pages)
  // at s.
  void MapEnds(Span* s);
  void MapAll(Span* s);
  // Inserts a free run into the set (s->state_ becomes kFree).
  void InsertFree(Span* s);

  const PageCount num_pages_;
  uint64_t free_pages_ = 0;
  SpanArena arena_;
  PageMap map_;
  FreeRunSet free_runs_;
};

}  // namespace sharry::alloc

#endif  // SHARRY_ALLOC_PAGE_HEAP_H_
