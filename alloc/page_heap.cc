// Copyright 2024 The Sharry Authors.

#include "alloc/page_heap.h"

#include "glog/logging.h"

namespace sharry::alloc {

PageHeap::PageHeap(PageCount num_pages) : num_pages_(num_pages), map_(num_pages) {
  CHECK_GE(num_pages, 1u);
  Span* all = arena_.New();
  all->first_page_ = 0;
  all->num_pages_ = num_pages;
  InsertFree(all);
  MapEnds(all);
  free_pages_ = num_pages;
}

PageHeap::~PageHeap() {
  // The set only unlinks; the arena owns the records.
  free_runs_.clear();
}

void PageHeap::MapEnds(Span* s) {
  map_.set(s->first_page_, s);
  map_.set(s->last_page(), s);
}

void PageHeap::MapAll(Span* s) {
  for (PageId p = s->first_page_; p < s->end_page(); ++p) map_.set(p, s);
}

void PageHeap::InsertFree(Span* s) {
  s->state_ = Span::State::kFree;
  auto [it, inserted] = free_runs_.insert(*s);
  CHECK(inserted) << "duplicate free run at page " << s->first_page_;
}

Span* PageHeap::New(PageCount n, Span::State state) {
  CHECK_GE(n, 1u);
  CHECK(state == Span::State::kSmall || state == Span::State::kLarge);
  auto it = free_runs_.lower_bound(RunKey{n, 0}, RunKeyLess());
  if (it == free_runs_.end()) return nullptr;
  Span* run = &*it;
  free_runs_.erase(it);
  DCHECK_GE(run->num_pages_, n);

  Span* span;
  if (run->num_pages_ == n) {
    span = run;
  } else {
    // Carve the span from the start of the run; the rest stays free. The
    // rest's last page already maps to `run`, its new first page is set here.
    span = arena_.New();
    span->first_page_ = run->first_page_;
    span->num_pages_ = n;
    run->first_page_ += n;
    run->num_pages_ -= n;
    InsertFree(run);
    MapEnds(run);
  }
  span->state_ = state;
  if (state == Span::State::kSmall) {
    MapAll(span);
  } else {
    MapEnds(span);
  }
  free_pages_ -= n;
  return span;
}

void PageHeap::Delete(Span* span) {
  CHECK(span->state_ == Span::State::kSmall || span->state_ == Span::State::kLarge)
      << "Delete of a span that is not in use";
  CHECK(!span->class_hook_.is_linked());
  const PageCount n = span->num_pages_;
  span->state_ = Span::State::kFree;

  if (span->first_page_ > 0) {
    Span* left = Lookup(span->first_page_ - 1);
    CHECK(left != nullptr);
    if (left->state_ == Span::State::kFree) {
      free_runs_.erase(free_runs_.iterator_to(*left));
      span->first_page_ = left->first_page_;
      span->num_pages_ += left->num_pages_;
      arena_.Delete(left);
    }
  }
  if (span->end_page() < num_pages_) {
    Span* right = Lookup(span->end_page());
    CHECK(right != nullptr);
    if (right->state_ == Span::State::kFree) {
      free_runs_.erase(free_runs_.iterator_to(*right));
      span->num_pages_ += right->num_pages_;
      arena_.Delete(right);
    }
  }
  // Entries that pointed at a merged neighbour now point at an unused record
  // (stale, rejected by Lookup) except the two ends, which MapEnds fixes.
  MapEnds(span);
  InsertFree(span);
  free_pages_ += n;
}

PageCount PageHeap::largest_free_run() const {
  if (free_runs_.empty()) return 0;
  return std::prev(free_runs_.end())->num_pages_;
}

void PageHeap::CheckInvariants() const {
  uint64_t free_pages = 0;
  uint64_t runs = 0;
  size_t spans = 0;
  bool prev_free = false;
  PageId expected_first = 0;
  ForEachSpan([&](const Span& s) {
    CHECK_EQ(s.first_page_, expected_first);
    CHECK_GE(s.num_pages_, 1u);
    CHECK(s.state_ != Span::State::kUnused);
    CHECK_EQ(map_.get(s.first_page_), &s);
    CHECK_EQ(map_.get(s.last_page()), &s);
    if (s.state_ == Span::State::kFree) {
      CHECK(!prev_free) << "adjacent free runs at page " << s.first_page_;
      CHECK(s.free_hook_.is_linked());
      free_pages += s.num_pages_;
      ++runs;
    } else {
      CHECK(!s.free_hook_.is_linked());
    }
    if (s.state_ == Span::State::kSmall) {
      for (PageId p = s.first_page_; p < s.end_page(); ++p) CHECK_EQ(map_.get(p), &s);
    }
    prev_free = s.state_ == Span::State::kFree;
    expected_first = s.end_page();
    ++spans;
  });
  CHECK_EQ(expected_first, num_pages_);
  CHECK_EQ(free_pages, free_pages_);
  CHECK_EQ(runs, free_runs_.size());
  // Every live record is one of the spans walked above.
  CHECK_EQ(arena_.in_use(), spans);
}

}  // namespace sharry::alloc
