// Copyright 2024 The Sharry Authors.
//
// PageHeap: best fit over free runs, coalescing, page-map lookups.

#include "alloc/page_heap.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <vector>

namespace sharry::alloc {
namespace {

Span* MustNew(PageHeap& h, PageCount n, Span::State st = Span::State::kLarge) {
  Span* s = h.New(n, st);
  EXPECT_NE(s, nullptr) << "New(" << n << ")";
  return s;
}

TEST(PageHeapTest, StartsAsOneRun) {
  PageHeap h(1000);
  EXPECT_EQ(h.free_pages(), 1000u);
  EXPECT_EQ(h.free_runs(), 1u);
  EXPECT_EQ(h.largest_free_run(), 1000u);
  h.CheckInvariants();
}

TEST(PageHeapTest, CarvesFromTheStartAndExhausts) {
  PageHeap h(10);
  Span* a = MustNew(h, 4);
  EXPECT_EQ(a->first_page(), 0u);
  Span* b = MustNew(h, 6);
  EXPECT_EQ(b->first_page(), 4u);
  EXPECT_EQ(h.free_pages(), 0u);
  EXPECT_EQ(h.New(1, Span::State::kLarge), nullptr);
  h.Delete(a);
  EXPECT_EQ(h.New(5, Span::State::kLarge), nullptr);
  h.CheckInvariants();
}

// Holes of 3, 5 and 8 pages (and the tail): each request takes the
// shortest hole that fits, the lowest address among equal ones.
TEST(PageHeapTest, BestFit) {
  PageHeap h(100);
  std::vector<Span*> s;
  for (PageCount n : {3u, 1u, 5u, 1u, 8u, 1u, 5u, 1u}) s.push_back(MustNew(h, n));
  // Layout: [0,3) [3] [4,9) [9] [10,18) [18] [19,24) [24] tail [25,100)
  h.Delete(s[0]);  // hole 3 at 0
  h.Delete(s[2]);  // hole 5 at 4
  h.Delete(s[4]);  // hole 8 at 10
  h.Delete(s[6]);  // hole 5 at 19
  h.CheckInvariants();
  EXPECT_EQ(h.free_runs(), 5u);

  Span* x = MustNew(h, 4);
  EXPECT_EQ(x->first_page(), 4u) << "the lower of the two 5-page holes";
  Span* y = MustNew(h, 5);
  EXPECT_EQ(y->first_page(), 19u) << "the remaining 5-page hole, not the 8";
  Span* z = MustNew(h, 3);
  EXPECT_EQ(z->first_page(), 0u) << "exact fit";
  Span* w = MustNew(h, 6);
  EXPECT_EQ(w->first_page(), 10u) << "the 8-page hole beats the 75-page tail";
  Span* big = MustNew(h, 70);
  EXPECT_EQ(big->first_page(), 25u);
  h.CheckInvariants();
}

TEST(PageHeapTest, CoalescingRestoresOneRun) {
  PageHeap h(4096);
  std::mt19937_64 rng(7);
  std::vector<Span*> spans;
  for (;;) {
    const PageCount n = 1 + rng() % 37;
    Span* s = h.New(n, rng() % 2 ? Span::State::kLarge : Span::State::kSmall);
    if (s == nullptr) break;
    spans.push_back(s);
  }
  EXPECT_LT(h.free_pages(), 37u);
  std::shuffle(spans.begin(), spans.end(), rng);
  for (size_t i = 0; i < spans.size(); ++i) {
    h.Delete(spans[i]);
    if (i % 16 == 0) h.CheckInvariants();
  }
  h.CheckInvariants();
  EXPECT_EQ(h.free_runs(), 1u);
  EXPECT_EQ(h.largest_free_run(), 4096u);
  EXPECT_EQ(h.span_records(), 1u);
  EXPECT_NE(h.New(4096, Span::State::kLarge), nullptr);
}

TEST(PageHeapTest, LookupFollowsThePageMapContract) {
  PageHeap h(100);
  Span* small = MustNew(h, 4, Span::State::kSmall);
  Span* large = MustNew(h, 10, Span::State::kLarge);
  for (PageId p = 0; p < 4; ++p) EXPECT_EQ(h.Lookup(p), small) << p;
  EXPECT_EQ(h.Lookup(4), large);
  EXPECT_EQ(h.Lookup(13), large);
  // Interior pages of a large span are either current or rejected.
  for (PageId p = 5; p < 13; ++p) {
    Span* s = h.Lookup(p);
    EXPECT_TRUE(s == nullptr || s == large) << p;
  }
  Span* rest = h.Lookup(14);
  ASSERT_NE(rest, nullptr);
  EXPECT_EQ(rest->state(), Span::State::kFree);
  EXPECT_EQ(h.Lookup(99), rest);
  // After a merge, stale entries never name a dead span.
  h.Delete(large);
  h.Delete(small);
  for (PageId p = 0; p < 100; ++p) {
    Span* s = h.Lookup(p);
    if (s != nullptr) {
      EXPECT_EQ(s->state(), Span::State::kFree);
      EXPECT_TRUE(s->ContainsPage(p));
    }
  }
  EXPECT_EQ(h.free_runs(), 1u);
}

// Random New/Delete against a model of allocated ranges.
TEST(PageHeapTest, RandomizedAgainstModel) {
  constexpr PageCount kPages = 1 << 14;
  PageHeap h(kPages);
  std::mt19937_64 rng(12345);
  std::map<PageId, Span*> live;  // first page -> span
  uint64_t used = 0;
  for (int op = 0; op < 30000; ++op) {
    if (live.empty() || rng() % 3 != 0) {
      const PageCount n = rng() % 8 == 0 ? 1 + rng() % 300 : 1 + rng() % 8;
      Span* s = h.New(n, Span::State::kLarge);
      if (s == nullptr) {
        ASSERT_LT(h.largest_free_run(), n);
        continue;
      }
      ASSERT_EQ(s->num_pages(), n);
      ASSERT_LE(s->end_page(), kPages);
      auto next = live.lower_bound(s->first_page());
      if (next != live.end()) {
        ASSERT_LE(s->end_page(), next->first) << "overlap";
      }
      if (next != live.begin()) {
        ASSERT_LE(std::prev(next)->second->end_page(), s->first_page()) << "overlap";
      }
      live[s->first_page()] = s;
      used += n;
    } else {
      auto it = live.begin();
      std::advance(it, rng() % std::min<size_t>(live.size(), 64));
      used -= it->second->num_pages();
      h.Delete(it->second);
      live.erase(it);
    }
    ASSERT_EQ(h.free_pages(), kPages - used);
    if (op % 1000 == 0) h.CheckInvariants();
  }
  for (auto& [p, s] : live) h.Delete(s);
  h.CheckInvariants();
  EXPECT_EQ(h.largest_free_run(), kPages);
}

}  // namespace
}  // namespace sharry::alloc
