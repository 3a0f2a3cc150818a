// Copyright 2024 The Sharry Authors.
//
// SectionAllocator: long randomized alloc/free sequences checked against a
// reference model, owner checks, error statuses, OOM, delayed reclamation.

#include "alloc/section_allocator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include "alloc/size_classes.h"
#include "tests/test_util.h"

namespace sharry::alloc {

// Test peer: read-only access to internals the public API does not expose.
class SectionAllocatorPeer {
 public:
  static const PageHeap& page_heap(const SectionAllocator& a) { return a.page_heap_; }
};

namespace {

constexpr uint64_t kMiB = 1 << 20;

// Reference model: every block the allocator considers allocated (live or
// pending), by offset.
class Model {
 public:
  struct Block {
    uint64_t len;  // rounded
    OwnerId owner;
    bool pending;
  };

  // Adds a block; fails the test if it overlaps another or leaves the section.
  void Add(uint64_t off, uint64_t len, OwnerId owner, uint64_t base, uint64_t end) {
    ASSERT_GE(off, base);
    ASSERT_LE(off + len, end) << "block [" << off << ", +" << len << ") leaves the section";
    ASSERT_EQ(off % kMinAlignment, 0u);
    auto next = blocks_.lower_bound(off);
    if (next != blocks_.end()) {
      ASSERT_LE(off + len, next->first) << "overlaps the block at " << next->first;
    }
    if (next != blocks_.begin()) {
      auto prev = std::prev(next);
      ASSERT_LE(prev->first + prev->second.len, off) << "overlaps the block at " << prev->first;
    }
    blocks_[off] = {len, owner, false};
    index_[off] = keys_.size();
    keys_.push_back(off);
    used_ += len;
    OwnerUsage& u = owners_[owner];
    u.owner = owner;
    ++u.blocks;
    u.bytes += len;
  }

  void MarkPending(uint64_t off) {
    Block& b = blocks_.at(off);
    ASSERT_FALSE(b.pending);
    b.pending = true;
    pending_.push_back(off);
    pending_bytes_ += b.len;
  }

  void Remove(uint64_t off) {
    const Block b = blocks_.at(off);
    used_ -= b.len;
    OwnerUsage& u = owners_.at(b.owner);
    --u.blocks;
    u.bytes -= b.len;
    if (u.blocks == 0) owners_.erase(b.owner);
    blocks_.erase(off);
    const size_t i = index_.at(off);
    index_[keys_.back()] = i;
    keys_[i] = keys_.back();
    keys_.pop_back();
    index_.erase(off);
  }

  // The allocator applied its pending frees.
  void ApplyPending() {
    for (uint64_t off : pending_) Remove(off);
    pending_.clear();
    pending_bytes_ = 0;
  }

  // Removes every block of `owner` (none may be pending); returns the
  // number of blocks and bytes removed.
  ReclaimResult RemoveAllOf(OwnerId owner) {
    std::vector<uint64_t> offs;
    for (const auto& [off, b] : blocks_) {
      if (b.owner == owner) offs.push_back(off);
    }
    ReclaimResult r;
    for (uint64_t off : offs) {
      EXPECT_FALSE(blocks_.at(off).pending);
      ++r.blocks;
      r.bytes += blocks_.at(off).len;
      Remove(off);
    }
    return r;
  }

  // A random block that is live and not pending, or nullopt.
  std::optional<uint64_t> RandomLive(std::mt19937_64& rng) const {
    for (int tries = 0; tries < 8 && !keys_.empty(); ++tries) {
      const uint64_t off = keys_[rng() % keys_.size()];
      if (!blocks_.at(off).pending) return off;
    }
    return std::nullopt;
  }
  std::optional<uint64_t> RandomPending(std::mt19937_64& rng) const {
    if (pending_.empty()) return std::nullopt;
    return pending_[rng() % pending_.size()];
  }

  const Block& at(uint64_t off) const { return blocks_.at(off); }
  bool contains(uint64_t off) const { return blocks_.count(off) != 0; }
  const std::map<uint64_t, Block>& blocks() const { return blocks_; }
  uint64_t used() const { return used_; }
  size_t live() const { return blocks_.size(); }
  size_t pending() const { return pending_.size(); }
  uint64_t pending_bytes() const { return pending_bytes_; }
  // Owners with blocks (live or pending), by owner.
  const std::map<OwnerId, OwnerUsage>& owners() const { return owners_; }

 private:
  std::map<uint64_t, Block> blocks_;
  std::vector<uint64_t> keys_;            // for O(1) random choice
  std::map<uint64_t, size_t> index_;      // key -> position in keys_
  std::vector<uint64_t> pending_;
  uint64_t pending_bytes_ = 0;
  uint64_t used_ = 0;
  std::map<OwnerId, OwnerUsage> owners_;
};

// `full`: also compare the whole owner list (O(owners)).
void ExpectStatsMatch(const SectionAllocator& a, const Model& m, bool full = true) {
  const SectionStats s = a.stats();
  ASSERT_EQ(s.used_bytes, m.used());
  ASSERT_EQ(s.live_blocks, m.live());
  ASSERT_EQ(s.pending_blocks, m.pending());
  ASSERT_EQ(s.pending_bytes, m.pending_bytes());
  ASSERT_EQ(s.used_bytes + s.free_bytes, s.section_bytes);
  ASSERT_EQ(s.free_bytes, s.page_heap_free_bytes + s.span_free_bytes + s.span_tail_bytes);
  // Per-owner counters, exactly: each owner's usage, and the owner list.
  for (OwnerId o = 0; o < 5; ++o) {
    const OwnerUsage u = a.Usage(o);
    const auto it = m.owners().find(o);
    ASSERT_EQ(u.owner, o);
    ASSERT_EQ(u.blocks, it == m.owners().end() ? 0 : it->second.blocks) << "owner " << o;
    ASSERT_EQ(u.bytes, it == m.owners().end() ? 0 : it->second.bytes) << "owner " << o;
  }
  if (!full) return;
  std::vector<OwnerUsage> listed;
  a.AppendOwners(&listed);
  ASSERT_EQ(listed.size(), m.owners().size());
  for (const OwnerUsage& u : listed) {
    const auto it = m.owners().find(u.owner);
    ASSERT_TRUE(it != m.owners().end()) << "owner " << u.owner << " holds nothing";
    ASSERT_EQ(u.blocks, it->second.blocks) << "owner " << u.owner;
    ASSERT_EQ(u.bytes, it->second.bytes) << "owner " << u.owner;
  }
}

// A size drawn so that every class and the large path are exercised: pick a
// class uniformly, then a size uniformly among those that map to it; 4% of
// draws are large (up to 2 MiB).
uint64_t DrawSize(std::mt19937_64& rng) {
  if (rng() % 25 == 0) return kMaxSmallSize + 1 + rng() % (2 * kMiB - kMaxSmallSize);
  const uint32_t cl = 1 + rng() % (kNumSizeClasses - 1);
  // Big classes are drawn less often so that the live set stays mixed.
  const uint32_t c = (cl > 80 && rng() % 4 != 0) ? 1 + rng() % 80 : cl;
  const uint64_t lo = SizeMap::Table()[c - 1].size + 1;
  const uint64_t hi = SizeMap::Table()[c].size;
  return lo + rng() % (hi - lo + 1);
}

// A shadow page-owner map kept from the observer's calls: a page is granted
// to one owner at a time, revoked by the same owner, and every block lies in
// pages granted to its owner (what the memnode's confinement relies on).
class ShadowObserver : public SpanObserver {
 public:
  void OnGrant(OwnerId owner, uint64_t offset, uint64_t bytes) override {
    ASSERT_NE(owner, kNoOwner);
    ASSERT_EQ(offset % kPageSize, 0u);
    for (uint64_t p = offset / kPageSize; p < (offset + bytes) / kPageSize; ++p) {
      ASSERT_EQ(pages_.count(p), 0u) << "page " << p << " granted to " << owner << " while owned by " << pages_[p];
      pages_[p] = owner;
    }
    ++grants_;
    max_grant_bytes_ = std::max(max_grant_bytes_, bytes);
  }
  void OnRevoke(OwnerId owner, uint64_t offset, uint64_t bytes) override {
    for (uint64_t p = offset / kPageSize; p < (offset + bytes) / kPageSize; ++p) {
      auto it = pages_.find(p);
      ASSERT_TRUE(it != pages_.end()) << "page " << p << " revoked but not granted";
      ASSERT_EQ(it->second, owner) << "page " << p;
      pages_.erase(it);
    }
    ++revokes_;
  }
  // Every page of [offset, offset + bytes) is granted to `owner`.
  bool Owns(OwnerId owner, uint64_t offset, uint64_t bytes) const {
    for (uint64_t p = offset / kPageSize; p <= (offset + bytes - 1) / kPageSize; ++p) {
      auto it = pages_.find(p);
      if (it == pages_.end() || it->second != owner) return false;
    }
    return true;
  }
  size_t PagesOf(OwnerId owner) const {
    size_t n = 0;
    for (const auto& [p, o] : pages_) n += o == owner;
    return n;
  }
  size_t granted_pages() const { return pages_.size(); }
  uint64_t grants() const { return grants_; }
  uint64_t revokes() const { return revokes_; }
  uint64_t max_grant_bytes() const { return max_grant_bytes_; }

 private:
  std::map<uint64_t, OwnerId> pages_;
  uint64_t grants_ = 0, revokes_ = 0, max_grant_bytes_ = 0;
};

struct RandomParams {
  uint64_t seed;
  uint32_t threshold;
  // Sizes of a few classes only (8, 48, 64, 4096 B, and large blocks now
  // and then), so that owners hold megabytes of a class: grown spans.
  bool few_classes = false;
};

uint64_t DrawFewSize(std::mt19937_64& rng) {
  if (rng() % 300 == 0) return kMaxSmallSize + 1 + rng() % (2 * kMiB - kMaxSmallSize);
  static constexpr uint64_t kSizes[] = {8, 48, 64, 4096, 4096, 4096};
  return kSizes[rng() % std::size(kSizes)];
}

class SectionAllocatorRandomTest : public ::testing::TestWithParam<RandomParams> {};

// 200k operations: allocations, valid frees, invalid frees of every kind,
// and now and then FreeAllOf, checked op by op against the model (stats and
// per-owner usage); full metadata walk every 5000.
TEST_P(SectionAllocatorRandomTest, MatchesReferenceModel) {
  const RandomParams p = GetParam();
  constexpr int kOps = sharry::testing::kTsan ? 50000 : 200000;  // single-threaded: TSan adds nothing here
  const uint64_t base = 3 * 64 * kMiB;  // a section that does not start at 0
  ShadowObserver shadow;
  SectionAllocator a({.base = base, .length = 64 * kMiB, .free_batch_threshold = p.threshold, .observer = &shadow});
  Model m;
  std::mt19937_64 rng(p.seed);
  std::set<uint32_t> classes_seen;
  uint64_t large_seen = 0, ooms = 0, free_all_ofs = 0;
  const uint64_t target_used = 40 * kMiB;  // hover around 60% full

  for (int op = 0; op < kOps; ++op) {
    const uint32_t kind = rng() % 100;
    const bool grow = m.used() < target_used;
    if (rng() % 5000 == 0) {
      // A client dies: every block of one owner goes at once, and all
      // pending frees are applied first.
      const OwnerId owner = rng() % 4;
      const ReclaimResult got = a.FreeAllOf(owner);
      m.ApplyPending();
      const ReclaimResult want = m.RemoveAllOf(owner);
      ASSERT_EQ(got.blocks, want.blocks);
      ASSERT_EQ(got.bytes, want.bytes);
      ASSERT_EQ(a.Usage(owner).blocks, 0u);
      ASSERT_EQ(shadow.PagesOf(owner), 0u) << "a reclaimed owner keeps no pages (cached spans included)";
      ++free_all_ofs;
    } else if (kind < (grow ? 60u : 40u)) {
      // Allocate.
      const uint64_t size = p.few_classes ? DrawFewSize(rng) : DrawSize(rng);
      const OwnerId owner = rng() % 4;
      const size_t pending_before = m.pending();
      const AllocResult r = a.Allocate(size, owner);
      if (pending_before > 0 && a.pending_frees() == 0) m.ApplyPending();  // OOM path flushed
      if (!r.ok()) {
        ASSERT_EQ(r.status, AllocStatus::kOutOfMemory);
        ++ooms;
      } else {
        const uint64_t len = SizeMap::RoundedSize(size);
        ASSERT_GE(len, size);
        ASSERT_NO_FATAL_FAILURE(m.Add(r.offset, len, owner, a.base(), a.end()));
        ASSERT_TRUE(shadow.Owns(owner, r.offset, len)) << "block " << r.offset << " of owner " << owner
                                                       << " outside the pages granted to it";
        if (size <= kMaxSmallSize) {
          classes_seen.insert(SizeMap::ClassFor(size));
        } else {
          ++large_seen;
        }
      }
    } else if (kind < 90) {
      // Valid free by the owner.
      const auto off = m.RandomLive(rng);
      if (!off) continue;
      ASSERT_EQ(a.Free(*off, m.at(*off).owner), AllocStatus::kOk);
      m.MarkPending(*off);
      if (m.pending() >= std::max<uint32_t>(p.threshold, 1)) m.ApplyPending();
    } else {
      // Invalid operations: none may change anything.
      const uint32_t which = rng() % 6;
      if (which == 0) {  // wrong owner
        const auto off = m.RandomLive(rng);
        if (!off) continue;
        ASSERT_EQ(a.Free(*off, m.at(*off).owner + 100), AllocStatus::kNotOwner);
      } else if (which == 1) {  // double free of a pending block
        const auto off = m.RandomPending(rng);
        if (!off) continue;
        ASSERT_EQ(a.Free(*off, m.at(*off).owner), AllocStatus::kNotAllocated);
      } else if (which == 2) {  // inside a block, not its start
        const auto off = m.RandomLive(rng);
        if (!off) continue;
        const uint64_t granules = m.at(*off).len / kMinAlignment;
        if (granules < 2) continue;
        const uint64_t inner = *off + kMinAlignment * (1 + rng() % (granules - 1));
        ASSERT_EQ(a.Free(inner, m.at(*off).owner), AllocStatus::kNotAllocated) << inner;
      } else if (which == 3) {  // out of range
        const uint64_t off = rng() % 2 ? a.end() + rng() % kMiB : base - 1 - rng() % base;
        ASSERT_EQ(a.Free(off, 0), AllocStatus::kOutOfRange);
      } else {  // a random aligned offset that is not a block start
        const uint64_t off = base + (rng() % (a.length() / kMinAlignment)) * kMinAlignment;
        if (m.contains(off)) continue;
        ASSERT_EQ(a.Free(off, 0), AllocStatus::kNotAllocated) << off;
      }
    }
    ASSERT_NO_FATAL_FAILURE(ExpectStatsMatch(a, m, /*full=*/op % 16 == 0)) << "op " << op;
    if (op % 5000 == 0) a.CheckInvariants();
  }
  a.CheckInvariants();
  EXPECT_EQ(classes_seen.size(), p.few_classes ? 4u : static_cast<size_t>(kNumSizeClasses - 1))
      << "not every size class was exercised";
  if (p.few_classes) {
    EXPECT_GT(shadow.max_grant_bytes(), SectionAllocator::kMaxGrownSpanPages / 2 * kPageSize) << "no grown span";
  }
  EXPECT_GT(large_seen, p.few_classes ? 10u : 100u);
  EXPECT_GT(free_all_ofs, 5u);
  RecordProperty("free_all_ofs", static_cast<int>(free_all_ofs));
  RecordProperty("ooms", static_cast<int>(ooms));

  // Free everything: the section must come back as one run.
  a.FlushPendingFrees();
  m.ApplyPending();
  std::vector<std::pair<uint64_t, OwnerId>> all;
  for (const auto& [off, b] : m.blocks()) all.push_back({off, b.owner});
  for (const auto& [off, owner] : all) ASSERT_EQ(a.Free(off, owner), AllocStatus::kOk);
  a.FlushPendingFrees();
  a.CheckInvariants();
  EXPECT_EQ(a.stats().used_bytes, 0u);
  EXPECT_GT(shadow.revokes(), 0u);
  for (OwnerId o = 0; o < 4; ++o) a.FreeAllOf(o);
  EXPECT_EQ(shadow.granted_pages(), 0u) << "every span was revoked once its owner was reclaimed";
  EXPECT_EQ(shadow.grants(), shadow.revokes());
  const AllocResult whole = a.Allocate(a.length(), 1);
  ASSERT_TRUE(whole.ok()) << "freeing everything did not restore one run";
  EXPECT_EQ(whole.offset, base);
}

INSTANTIATE_TEST_SUITE_P(Seeds, SectionAllocatorRandomTest,
                         ::testing::Values(RandomParams{1, 1}, RandomParams{2, 64}, RandomParams{3, 64, true}),
                         [](const auto& info) {
                           return "seed" + std::to_string(info.param.seed) + "_threshold" +
                                  std::to_string(info.param.threshold) + (info.param.few_classes ? "_few_classes" : "");
                         });

TEST(SectionAllocatorTest, InvalidArguments) {
  SectionAllocator a({.base = 0, .length = 4 * kMiB});
  EXPECT_EQ(a.Allocate(0, 1).status, AllocStatus::kInvalidSize);
  EXPECT_EQ(a.Allocate(4 * kMiB + 1, 1).status, AllocStatus::kInvalidSize);
  EXPECT_EQ(a.Allocate(64, kNoOwner).status, AllocStatus::kInvalidOwner);
  EXPECT_EQ(a.Free(4 * kMiB, 1), AllocStatus::kOutOfRange);
  EXPECT_EQ(a.Free(0, 1), AllocStatus::kNotAllocated);
  EXPECT_EQ(a.stats().used_bytes, 0u);
}

TEST(SectionAllocatorTest, OwnerIsCheckedAndNothingIsFreedOnMismatch) {
  SectionAllocator a({.base = 0, .length = 4 * kMiB});
  const AllocResult small = a.Allocate(100, 7);
  const AllocResult large = a.Allocate(kMiB, 7);
  ASSERT_TRUE(small.ok() && large.ok());
  const SectionStats before = a.stats();
  EXPECT_EQ(a.Free(small.offset, 8), AllocStatus::kNotOwner);
  EXPECT_EQ(a.Free(large.offset, 8), AllocStatus::kNotOwner);
  EXPECT_EQ(a.stats().used_bytes, before.used_bytes);
  EXPECT_EQ(a.stats().live_blocks, 2u);
  EXPECT_EQ(a.Free(small.offset, 7), AllocStatus::kOk);
  EXPECT_EQ(a.Free(large.offset, 7), AllocStatus::kOk);
  EXPECT_EQ(a.stats().used_bytes, 0u);
}

TEST(SectionAllocatorTest, DoubleFreeIsReported) {
  for (uint32_t threshold : {1u, 16u}) {
    SectionAllocator a({.base = 0, .length = 4 * kMiB, .free_batch_threshold = threshold});
    const AllocResult s = a.Allocate(48, 1);
    const AllocResult l = a.Allocate(300000, 1);
    ASSERT_TRUE(s.ok() && l.ok());
    EXPECT_EQ(a.Free(s.offset, 1), AllocStatus::kOk);
    EXPECT_EQ(a.Free(l.offset, 1), AllocStatus::kOk);
    EXPECT_EQ(a.Free(s.offset, 1), AllocStatus::kNotAllocated) << "threshold " << threshold;
    EXPECT_EQ(a.Free(l.offset, 1), AllocStatus::kNotAllocated) << "threshold " << threshold;
    a.FlushPendingFrees();
    EXPECT_EQ(a.Free(s.offset, 1), AllocStatus::kNotAllocated);
    EXPECT_EQ(a.Free(l.offset, 1), AllocStatus::kNotAllocated);
    EXPECT_EQ(a.stats().live_blocks, 0u);
    a.CheckInvariants();
  }
}

// (Spans of one class: without mixed spans, which have a test of their own.)
TEST(SectionAllocatorTest, NotABlockStart) {
  SectionAllocator a({.base = 0, .length = 4 * kMiB, .mixed_spans = false});
  const AllocResult s = a.Allocate(64, 1);         // class 64: 128 blocks in 1 page
  const AllocResult t = a.Allocate(640, 1);        // class 640: 12 blocks, 512 B tail
  const AllocResult l = a.Allocate(3 * kPageSize + kMaxSmallSize, 1);  // large
  ASSERT_TRUE(s.ok() && t.ok() && l.ok());
  EXPECT_EQ(a.Free(s.offset + 8, 1), AllocStatus::kNotAllocated);
  EXPECT_EQ(a.Free(s.offset + 64, 1), AllocStatus::kNotAllocated) << "a free block";
  const uint64_t tail = t.offset + 12 * 640;  // past the last block of the span
  EXPECT_EQ(a.Free(tail, 1), AllocStatus::kNotAllocated);
  for (uint64_t d = 8; d < SizeMap::RoundedSize(3 * kPageSize + kMaxSmallSize); d += kPageSize / 2) {
    EXPECT_EQ(a.Free(l.offset + d, 1), AllocStatus::kNotAllocated) << d;
  }
  EXPECT_EQ(a.stats().live_blocks, 3u);
  a.CheckInvariants();
}

TEST(SectionAllocatorTest, OutOfMemoryIsAnErrorAndTheAllocatorRecovers) {
  SectionAllocator a({.base = kMiB, .length = kMiB, .free_batch_threshold = 1});
  // Large blocks: exactly two 512 KiB blocks fit.
  const AllocResult b1 = a.Allocate(512 * 1024, 1);
  const AllocResult b2 = a.Allocate(512 * 1024, 1);
  ASSERT_TRUE(b1.ok() && b2.ok());
  EXPECT_EQ(a.Allocate(512 * 1024, 1).status, AllocStatus::kOutOfMemory);
  EXPECT_EQ(a.Allocate(8, 1).status, AllocStatus::kOutOfMemory);
  ASSERT_EQ(a.Free(b1.offset, 1), AllocStatus::kOk);
  EXPECT_TRUE(a.Allocate(8, 1).ok());
  ASSERT_EQ(a.FreeAllOf(1).blocks, 2u);

  // Small blocks: fill with 8-byte blocks until OOM, then free all and
  // take the whole section as one block (cached empty spans are released).
  std::vector<uint64_t> offs;
  for (;;) {
    const AllocResult r = a.Allocate(8, 2);
    if (!r.ok()) {
      ASSERT_EQ(r.status, AllocStatus::kOutOfMemory);
      break;
    }
    offs.push_back(r.offset);
  }
  EXPECT_EQ(offs.size(), kMiB / 8);
  EXPECT_EQ(a.stats().free_bytes, 0u);
  for (uint64_t off : offs) ASSERT_EQ(a.Free(off, 2), AllocStatus::kOk);
  a.CheckInvariants();
  const AllocResult whole = a.Allocate(kMiB, 3);
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(whole.offset, kMiB);
  a.CheckInvariants();
}

// (LIFO reuse is a property of spans of one class: no mixed spans here.)
TEST(SectionAllocatorTest, DelayedReclamation) {
  SectionAllocator a({.base = 0, .length = 4 * kMiB, .free_batch_threshold = 4, .mixed_spans = false});
  std::vector<uint64_t> offs;
  for (int i = 0; i < 8; ++i) offs.push_back(a.Allocate(64, 1).offset);
  ASSERT_EQ(a.Free(offs[0], 1), AllocStatus::kOk);
  ASSERT_EQ(a.Free(offs[1], 1), AllocStatus::kOk);
  SectionStats s = a.stats();
  EXPECT_EQ(s.pending_blocks, 2u);
  EXPECT_EQ(s.pending_bytes, 128u);
  EXPECT_EQ(s.used_bytes, 8 * 64u) << "pending blocks still count as used";
  EXPECT_EQ(s.live_blocks, 8u);
  // Pending blocks are not handed out again.
  std::set<uint64_t> fresh;
  for (int i = 0; i < 200; ++i) fresh.insert(a.Allocate(64, 1).offset);
  EXPECT_EQ(fresh.count(offs[0]) + fresh.count(offs[1]), 0u);
  // The fourth free reaches the threshold: all four are applied.
  ASSERT_EQ(a.Free(offs[2], 1), AllocStatus::kOk);
  EXPECT_EQ(a.stats().pending_blocks, 3u);
  ASSERT_EQ(a.Free(offs[3], 1), AllocStatus::kOk);
  s = a.stats();
  EXPECT_EQ(s.pending_blocks, 0u);
  EXPECT_EQ(s.pending_bytes, 0u);
  EXPECT_EQ(s.live_blocks, 204u);
  // Now they are reusable (LIFO: the most recently applied first).
  std::set<uint64_t> reused;
  for (int i = 0; i < 4; ++i) reused.insert(a.Allocate(64, 1).offset);
  EXPECT_EQ(reused, std::set<uint64_t>(offs.begin(), offs.begin() + 4));
  // Explicit flush.
  ASSERT_EQ(a.Free(offs[4], 1), AllocStatus::kOk);
  EXPECT_EQ(a.FlushPendingFrees(), 1u);
  EXPECT_EQ(a.stats().pending_blocks, 0u);
  a.CheckInvariants();
}

TEST(SectionAllocatorTest, PendingFreesAreAppliedBeforeReportingOutOfMemory) {
  SectionAllocator a({.base = 0, .length = 512 * 1024, .free_batch_threshold = 100});
  const AllocResult b1 = a.Allocate(kMaxSmallSize, 1);
  const AllocResult b2 = a.Allocate(kMaxSmallSize, 1);
  ASSERT_TRUE(b1.ok() && b2.ok());
  ASSERT_EQ(a.Free(b1.offset, 1), AllocStatus::kOk);
  EXPECT_EQ(a.stats().pending_blocks, 1u);
  const AllocResult b3 = a.Allocate(kMaxSmallSize, 1);
  ASSERT_TRUE(b3.ok());
  EXPECT_EQ(b3.offset, b1.offset);
  EXPECT_EQ(a.stats().pending_blocks, 0u);
}

TEST(SectionAllocatorTest, FreeAllOfReclaimsOneOwner) {
  SectionAllocator a({.base = 0, .length = 64 * kMiB, .free_batch_threshold = 8});
  std::mt19937_64 rng(99);
  std::map<OwnerId, std::vector<std::pair<uint64_t, uint64_t>>> by_owner;  // off, len
  for (int i = 0; i < 1500; ++i) {
    const OwnerId owner = 1 + rng() % 3;
    const uint64_t size = DrawSize(rng) % (300 * 1024) + 1;  // mostly small, some large
    const AllocResult r = a.Allocate(size, owner);
    ASSERT_TRUE(r.ok());
    by_owner[owner].push_back({r.offset, SizeMap::RoundedSize(size)});
  }
  // One block of owner 2 and one of owner 1 are already pending: FreeAllOf
  // applies them (so neither counts for its owner afterwards) and reports
  // only the blocks owner 2 had not freed itself.
  const auto [pend_off, pend_len] = by_owner[2].back();
  by_owner[2].pop_back();
  ASSERT_EQ(a.Free(pend_off, 2), AllocStatus::kOk);
  const auto [pend1_off, pend1_len] = by_owner[1].back();
  by_owner[1].pop_back();
  ASSERT_EQ(a.Free(pend1_off, 1), AllocStatus::kOk);
  EXPECT_EQ(a.stats().pending_blocks, 2u);
  EXPECT_EQ(a.Usage(2).blocks, by_owner[2].size() + 1) << "a pending block still counts";

  uint64_t bytes = 0;
  for (auto& [off, len] : by_owner[2]) bytes += len;
  const ReclaimResult r = a.FreeAllOf(2);
  EXPECT_EQ(r.blocks, by_owner[2].size());
  EXPECT_EQ(r.bytes, bytes);
  EXPECT_EQ(a.stats().pending_blocks, 0u);
  EXPECT_EQ(a.Usage(2).blocks, 0u);
  EXPECT_EQ(a.Usage(2).bytes, 0u);
  std::vector<OwnerUsage> owners;
  a.AppendOwners(&owners);
  ASSERT_EQ(owners.size(), 2u);
  for (const OwnerUsage& u : owners) {
    EXPECT_NE(u.owner, 2u) << "owner 2 still listed after FreeAllOf";
    uint64_t want = 0;
    for (auto& [off, len] : by_owner[u.owner]) want += len;
    EXPECT_EQ(u.blocks, by_owner[u.owner].size()) << "owner " << u.owner;
    EXPECT_EQ(u.bytes, want) << "owner " << u.owner;
  }
  EXPECT_EQ(a.Free(pend_off, 2), AllocStatus::kNotAllocated);
  for (auto& [off, len] : by_owner[2]) EXPECT_EQ(a.Free(off, 2), AllocStatus::kNotAllocated);
  EXPECT_EQ(a.FreeAllOf(2).blocks, 0u);
  // Other owners are untouched.
  for (OwnerId o : {1u, 3u}) {
    for (auto& [off, len] : by_owner[o]) ASSERT_EQ(a.Free(off, o), AllocStatus::kOk);
  }
  a.FlushPendingFrees();
  EXPECT_EQ(a.stats().used_bytes, 0u);
  a.CheckInvariants();
  // Apart from the empty span each class may cache per owner, everything
  // coalesced:
  // a block of the whole section fits again.
  // (Private spans: each of the two remaining owners may cache one.)
  EXPECT_LE(SectionAllocatorPeer::page_heap(a).free_runs(), 1u + 2 * kNumSizeClasses);
  EXPECT_TRUE(a.Allocate(a.length(), 9).ok());
  (void)pend_len;
  (void)pend1_len;
}

// Private spans (the default): two owners never share a span, even for the
// same size class; shared spans (the paper's allocator) pack them together.
TEST(SectionAllocatorTest, PrivateSpansKeepOwnersApartSharedSpansPackThem) {
  ShadowObserver shadow;
  SectionAllocator priv({.length = 64 * kPageSize, .observer = &shadow});
  const AllocResult a1 = priv.Allocate(64, 1), b1 = priv.Allocate(64, 2), a2 = priv.Allocate(64, 1);
  ASSERT_TRUE(a1.ok() && b1.ok() && a2.ok());
  EXPECT_EQ(a2.offset, a1.offset + 64) << "one owner's blocks share its span";
  EXPECT_NE(a1.offset / kPageSize, b1.offset / kPageSize) << "another owner gets a span of its own";
  EXPECT_TRUE(shadow.Owns(1, a1.offset, 64));
  EXPECT_TRUE(shadow.Owns(2, b1.offset, 64));
  EXPECT_FALSE(shadow.Owns(1, b1.offset, 64));
  EXPECT_EQ(shadow.grants(), 2u);
  EXPECT_EQ(priv.stats().small_spans, 2u);
  // Freeing owner 2's only block keeps its span cached (still granted to 2);
  // reclaiming owner 2 revokes it.
  ASSERT_EQ(priv.Free(b1.offset, 2), AllocStatus::kOk);
  priv.FlushPendingFrees();
  EXPECT_TRUE(shadow.Owns(2, b1.offset, 64));
  EXPECT_EQ(priv.FreeAllOf(2).blocks, 0u);
  EXPECT_EQ(shadow.PagesOf(2), 0u);
  EXPECT_EQ(shadow.revokes(), 1u);
  priv.CheckInvariants();

  SectionAllocator shared({.length = 64 * kPageSize, .private_spans = false});
  const AllocResult x = shared.Allocate(64, 1), y = shared.Allocate(64, 2);
  ASSERT_TRUE(x.ok() && y.ok());
  EXPECT_EQ(y.offset, x.offset + 64);
  EXPECT_EQ(shared.stats().small_spans, 1u);
  shared.CheckInvariants();
}

// Mixed spans: an owner's first blocks of many classes share one page, each
// its class size, instead of a partly filled span per class.
TEST(SectionAllocatorTest, SmallOwnerBlocksOfManyClassesShareOnePage) {
  ShadowObserver shadow;
  SectionAllocator a({.length = 64 * kPageSize, .observer = &shadow});
  std::vector<std::pair<uint64_t, uint64_t>> blocks;  // offset, class size
  uint64_t bytes = 0;
  for (uint32_t cl = 1; SizeMap::ClassSize(cl) <= 512; ++cl) {
    const uint64_t size = SizeMap::ClassSize(cl);
    const AllocResult r = a.Allocate(size, 1);
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r.offset % kMinAlignment, 0u);
    ASSERT_TRUE(shadow.Owns(1, r.offset, size));
    blocks.push_back({r.offset, size});
    bytes += size;
  }
  ASSERT_GT(blocks.size(), 30u);
  EXPECT_EQ(shadow.PagesOf(1), 1u) << "one page for " << blocks.size() << " classes";
  EXPECT_EQ(shadow.grants(), 1u);
  EXPECT_EQ(a.Usage(1).bytes, bytes) << "charged the class sizes, as before";
  EXPECT_EQ(a.stats().used_bytes, bytes);
  a.CheckInvariants();
  // Another owner gets a page of its own.
  const AllocResult other = a.Allocate(64, 2);
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other.offset / kPageSize, blocks[0].first / kPageSize);
  EXPECT_TRUE(shadow.Owns(2, other.offset, 64));
  // Only block starts can be freed, only by their owner.
  EXPECT_EQ(a.Free(blocks[5].first + 8, 1), AllocStatus::kNotAllocated);
  EXPECT_EQ(a.Free(blocks[5].first, 2), AllocStatus::kNotOwner);
  uint64_t freed = 0;
  for (const auto& [off, size] : blocks) ASSERT_EQ(a.Free(off, 1, &freed), AllocStatus::kOk);
  EXPECT_EQ(freed, bytes);
  EXPECT_EQ(a.Free(blocks[0].first, 1), AllocStatus::kNotAllocated) << "double free";
  a.FlushPendingFrees();
  a.CheckInvariants();
  // The empty mixed span stays the owner's (cached) and starts over.
  EXPECT_EQ(shadow.PagesOf(1), 1u);
  const AllocResult again = a.Allocate(100, 1);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.offset, blocks[0].first);
  ASSERT_EQ(a.FreeAllOf(1).blocks, 1u);
  EXPECT_EQ(shadow.PagesOf(1), 0u);
  a.CheckInvariants();
}

// Once an owner was handed a span's worth of blocks of a class from its
// mixed span, the class gets spans of its own; classes above
// kMaxMixedBlockSize (the demo's 4 KiB objects) never use a mixed span.
TEST(SectionAllocatorTest, MixedSpanGivesWayToSpansOfTheClass) {
  ShadowObserver shadow;
  SectionAllocator a({.length = 64 * kPageSize, .observer = &shadow});
  const uint32_t cl = SizeMap::ClassFor(64);
  const uint32_t n = SizeMap::BlocksPerSpan(cl);
  std::vector<uint64_t> offs;
  for (uint32_t i = 0; i < n + 1; ++i) {
    const AllocResult r = a.Allocate(64, 1);
    ASSERT_TRUE(r.ok());
    offs.push_back(r.offset);
  }
  EXPECT_EQ(shadow.grants(), 2u) << "the mixed span (now full), then a span of the class";
  EXPECT_EQ(offs[n - 1], offs[0] + (n - 1) * 64);
  EXPECT_NE(offs[n] / kPageSize, offs[0] / kPageSize);
  EXPECT_EQ(a.stats().small_spans, 2u);
  const AllocResult big1 = a.Allocate(4096, 1), big2 = a.Allocate(4096, 1);
  ASSERT_TRUE(big1.ok() && big2.ok());
  EXPECT_EQ(big2.offset, big1.offset + 4096) << "a span of the 4096 B class";
  EXPECT_EQ(shadow.grants(), 3u);
  a.CheckInvariants();
  // A full mixed span is out of the lists; freeing all its blocks gives it
  // back.
  for (uint32_t i = 0; i < n; ++i) ASSERT_EQ(a.Free(offs[i], 1), AllocStatus::kOk);
  a.FlushPendingFrees();
  EXPECT_EQ(shadow.revokes(), 1u);
  EXPECT_FALSE(shadow.Owns(1, offs[0], 64));
  a.CheckInvariants();
}

// A block that does not fit in the rest of the mixed span retires it (the
// owner starts a new one); the retired span goes back once empty.
TEST(SectionAllocatorTest, MixedSpanIsRetiredWhenABlockDoesNotFit) {
  ShadowObserver shadow;
  SectionAllocator a({.length = 64 * kPageSize, .observer = &shadow});
  std::vector<uint64_t> first;
  for (int i = 0; i < 7; ++i) first.push_back(a.Allocate(1024, 1).offset);
  first.push_back(a.Allocate(512, 1).offset);  // 512 bytes of room left
  EXPECT_EQ(shadow.grants(), 1u);
  const AllocResult next = a.Allocate(1000, 1);  // the 1024 B class
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(shadow.grants(), 2u);
  EXPECT_NE(next.offset / kPageSize, first[0] / kPageSize);
  const AllocResult small = a.Allocate(8, 1);
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(small.offset, next.offset + 1024) << "the new mixed span, not the retired one's room";
  EXPECT_EQ(a.stats().span_free_bytes, 512 + (kPageSize - 1024 - 8));
  a.CheckInvariants();
  for (uint64_t off : first) ASSERT_EQ(a.Free(off, 1), AllocStatus::kOk);
  a.FlushPendingFrees();
  EXPECT_EQ(shadow.revokes(), 1u);
  EXPECT_EQ(shadow.PagesOf(1), 1u);
  a.CheckInvariants();
}

// Growing spans: a large owner of 4 KiB objects (the demo's arrays) gets
// spans of up to 1/64 of what it holds of the class, so 32 MiB take ~370
// grants (one MR registration each over verbs) instead of 4096 spans of
// one page; a small owner next to it keeps spans of the table's size; every
// block lies in its owner's pages, and every page comes back.
TEST(SectionAllocatorTest, SpansGrowWithWhatAnOwnerHoldsOfAClass) {
  constexpr uint64_t kHeld = 32 * kMiB;
  ShadowObserver shadow;
  SectionAllocator a({.length = 64 * kMiB, .free_batch_threshold = 64, .observer = &shadow});
  std::vector<uint64_t> big, small;
  for (uint64_t i = 0; i < kHeld / 4096; ++i) {
    const AllocResult r = a.Allocate(4096, 1);
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE(shadow.Owns(1, r.offset, 4096)) << r.offset;
    big.push_back(r.offset);
    if (i % 64 == 0) {  // owner 2 holds 1/64 as much: 512 KiB
      const AllocResult q = a.Allocate(4096, 2);
      ASSERT_TRUE(q.ok());
      ASSERT_TRUE(shadow.Owns(2, q.offset, 4096)) << q.offset;
      small.push_back(q.offset);
    }
  }
  a.CheckInvariants();
  // Owner 2: 64 spans of one page (it never holds 128 pages of the class);
  // owner 1: 128 of one page, then ~64 * ln(4096 / 128) = 222 growing ones.
  EXPECT_LE(shadow.grants(), 64u + 400u) << "spans of the table's size would be 4096 + 64";
  EXPECT_GE(shadow.grants(), 64u + 250u);
  EXPECT_GT(shadow.max_grant_bytes(), SectionAllocator::kMaxGrownSpanPages / 2 * kPageSize);
  EXPECT_LE(shadow.max_grant_bytes(), SectionAllocator::kMaxGrownSpanPages * kPageSize);
  EXPECT_EQ(shadow.PagesOf(2) * kPageSize, small.size() * 4096);
  EXPECT_LE(shadow.PagesOf(1) * kPageSize, kHeld + kHeld / 64) << "one partly filled span, <= 1/64 of the rest";
  // Freeing and allocating again inside the spans grants nothing.
  const uint64_t grants = shadow.grants();
  for (size_t i = 0; i < big.size(); i += 2) ASSERT_EQ(a.Free(big[i], 1), AllocStatus::kOk);
  a.FlushPendingFrees();
  for (size_t i = 0; i < big.size(); i += 2) {
    const AllocResult r = a.Allocate(4096, 1);
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE(shadow.Owns(1, r.offset, 4096));
    big[i] = r.offset;
  }
  EXPECT_EQ(shadow.grants(), grants);
  // Delayed frees of everything: every span but one cached per owner goes
  // back, and reclaiming the owners returns the rest.
  for (uint64_t off : big) ASSERT_EQ(a.Free(off, 1), AllocStatus::kOk);
  for (uint64_t off : small) ASSERT_EQ(a.Free(off, 2), AllocStatus::kOk);
  a.FlushPendingFrees();
  a.CheckInvariants();
  EXPECT_LE(shadow.PagesOf(1), SectionAllocator::kMaxGrownSpanPages);
  EXPECT_LE(shadow.PagesOf(2), 1u);
  EXPECT_EQ(a.FreeAllOf(1).blocks, 0u);
  EXPECT_EQ(a.FreeAllOf(2).blocks, 0u);
  EXPECT_EQ(shadow.granted_pages(), 0u);
  EXPECT_EQ(shadow.grants(), shadow.revokes());
  a.CheckInvariants();
  EXPECT_TRUE(a.Allocate(a.length(), 3).ok()) << "the section is one run again";
}

// FreeAllOf of a large owner that did not free its blocks: every grown span
// is revoked; the owner starts over with spans of the table's size.
TEST(SectionAllocatorTest, FreeAllOfRevokesGrownSpans) {
  ShadowObserver shadow;
  SectionAllocator a({.length = 16 * kMiB, .free_batch_threshold = 64, .observer = &shadow});
  for (int i = 0; i < 2048; ++i) ASSERT_TRUE(a.Allocate(4096, 1).ok());
  for (int i = 0; i < 3000; ++i) ASSERT_TRUE(a.Allocate(64, 1).ok());
  EXPECT_GT(shadow.max_grant_bytes(), kPageSize);
  EXPECT_EQ(a.FreeAllOf(1).blocks, 2048u + 3000u);
  EXPECT_EQ(shadow.granted_pages(), 0u);
  EXPECT_EQ(shadow.grants(), shadow.revokes());
  a.CheckInvariants();
  const AllocResult r = a.Allocate(4096, 1);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(shadow.PagesOf(1), 1u);
  a.CheckInvariants();
}

// When no run is long enough for a grown span, a span of the table's size
// is taken: the section still fills up to its last page.
TEST(SectionAllocatorTest, GrownSpanFallsBackToTheTableSizeWhenMemoryIsShort) {
  ShadowObserver shadow;
  SectionAllocator a({.length = 1024 * kPageSize, .observer = &shadow});
  uint64_t blocks = 0;
  while (a.Allocate(4096, 1).ok()) ++blocks;
  EXPECT_EQ(blocks, 2048u);
  EXPECT_EQ(a.stats().free_bytes, 0u);
  EXPECT_GT(shadow.max_grant_bytes(), kPageSize);
  a.CheckInvariants();
}

// Without growing spans (Options::growing_spans = false) every span has the
// table's size: one grant per page of 4 KiB objects.
TEST(SectionAllocatorTest, WithoutGrowingSpansEverySpanHasTheTableSize) {
  ShadowObserver shadow;
  SectionAllocator a({.length = 8 * kMiB, .growing_spans = false, .observer = &shadow});
  for (int i = 0; i < 1024; ++i) ASSERT_TRUE(a.Allocate(4096, 1).ok());
  EXPECT_EQ(shadow.grants(), 512u);
  EXPECT_EQ(shadow.max_grant_bytes(), kPageSize);
  a.CheckInvariants();
}

}  // namespace
}  // namespace sharry::alloc
