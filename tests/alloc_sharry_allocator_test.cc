// Copyright 2024 The Sharry Authors.
//
// SharryAllocator (front end + scheduler + section threads) and the
// MutexAllocator baseline, including many requester threads at once.

#include "alloc/sharry_allocator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "alloc/mutex_allocator.h"
#include "alloc/size_classes.h"
#include "tests/test_util.h"

namespace sharry::alloc {

// Test peer: direct access to one section thread and the scheduler.
class SharryAllocatorPeer {
 public:
  static SectionThread& section(SharryAllocator& a, uint32_t i) { return *a.sections_[i]; }
  static RequestScheduler& scheduler(SharryAllocator& a) { return a.scheduler_; }
};

namespace {

constexpr uint64_t kMiB = 1 << 20;

SharryAllocatorOptions Opts(uint64_t uma, uint32_t k, uint32_t threshold = 16) {
  SharryAllocatorOptions o;
  o.uma_bytes = uma;
  o.num_sections = k;
  o.free_batch_threshold = threshold;
  o.ring_capacity = 256;
  o.idle_spin_nanos = 5000;  // short idle budget: sections park often
  o.idle_yield_nanos = 5000;
  return o;
}

// One bit per 8-byte granule of the UMA: set while some requester believes
// it owns that granule. Catches any block handed out twice while live.
class Ownership {
 public:
  explicit Ownership(uint64_t uma) : words_((uma / kMinAlignment + 63) / 64) {}
  // Returns false if any granule was already claimed.
  bool Claim(uint64_t off, uint64_t len) { return Flip(off, len, true); }
  bool Release(uint64_t off, uint64_t len) { return Flip(off, len, false); }

 private:
  bool Flip(uint64_t off, uint64_t len, bool set) {
    bool ok = true;
    for (uint64_t g = off / kMinAlignment; g < (off + len) / kMinAlignment;) {
      const uint64_t bit = g % 64;
      const uint64_t n = std::min<uint64_t>(64 - bit, (off + len) / kMinAlignment - g);
      const uint64_t mask = (n == 64 ? ~uint64_t{0} : ((uint64_t{1} << n) - 1)) << bit;
      std::atomic<uint64_t>& w = words_[g / 64];
      const uint64_t old = set ? w.fetch_or(mask) : w.fetch_and(~mask);
      if (set ? (old & mask) != 0 : (old & mask) != mask) ok = false;
      g += n;
    }
    return ok;
  }
  std::vector<std::atomic<uint64_t>> words_;
};

TEST(SharryAllocatorTest, SectionsAndRouting) {
  SharryAllocator a(Opts(64 * kMiB + 12345, 4));
  EXPECT_EQ(a.section_bytes(), 16 * kMiB);
  EXPECT_EQ(a.SectionOf(0), 0u);
  EXPECT_EQ(a.SectionOf(16 * kMiB), 1u);
  EXPECT_EQ(a.SectionOf(64 * kMiB), RequestScheduler::kNoSection);

  const std::vector<uint64_t> sizes = {1, 64, 4096, 100000, 300000, 0, 16 * kMiB + 1};
  std::vector<AllocResult> out(sizes.size());
  a.AllocBatch(3, sizes, out);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(out[i].ok()) << i;
  EXPECT_EQ(out[5].status, AllocStatus::kInvalidSize);
  EXPECT_EQ(out[6].status, AllocStatus::kInvalidSize);
  EXPECT_EQ(a.Allocate(kNoOwner, 8).status, AllocStatus::kInvalidOwner);

  std::vector<uint64_t> offs;
  for (int i = 0; i < 5; ++i) offs.push_back(out[i].offset);
  offs.push_back(offs[0]);          // double free in the same batch
  offs.push_back(offs[2] + 8);      // not a block start
  offs.push_back(80 * kMiB);        // past the UMA
  std::vector<AllocStatus> st(offs.size());
  EXPECT_EQ(a.Free(4, offs[1]), AllocStatus::kNotOwner);
  uint64_t freed = 0;  // the rounded bytes of the frees accepted (the memnode's quotas)
  a.FreeBatch(3, offs, st, &freed);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(st[i], AllocStatus::kOk) << i;
  EXPECT_EQ(st[5], AllocStatus::kNotAllocated);
  EXPECT_EQ(st[6], AllocStatus::kNotAllocated);
  EXPECT_EQ(st[7], AllocStatus::kOutOfRange);

  AllocatorStats s = a.Stats();
  EXPECT_EQ(s.sections.size(), 4u);
  EXPECT_EQ(s.total.live_blocks, s.total.pending_blocks) << "only pending blocks remain";
  // Pending blocks still count for their owner, in every section.
  ASSERT_EQ(s.owners.size(), 1u);
  EXPECT_EQ(s.owners[0].owner, 3u);
  EXPECT_EQ(s.owners[0].blocks, 5u);
  EXPECT_EQ(s.owners[0].bytes, s.total.used_bytes);
  EXPECT_EQ(a.Usage(3).bytes, s.total.used_bytes);
  EXPECT_EQ(freed, s.total.used_bytes) << "every block was freed: the pending ones are all there is";
  EXPECT_EQ(a.Usage(4).blocks, 0u);
  a.Flush();
  s = a.Stats();
  EXPECT_TRUE(s.owners.empty());
  EXPECT_EQ(a.Usage(3).blocks, 0u);
  EXPECT_EQ(s.total.used_bytes, 0u);
  EXPECT_EQ(s.total.section_bytes, 64 * kMiB);
  for (const auto& sec : s.sections) {
    EXPECT_EQ(sec.base, sec.index * 16 * kMiB);
    EXPECT_EQ(sec.stats.used_bytes + sec.stats.free_bytes, 16 * kMiB);
  }
}

// One section: the front end skips the scheduling policy, but answers,
// errors, OOM and the request-rate stats are as with K sections.
TEST(SharryAllocatorTest, OneSection) {
  ManualClock clock;  // the request window never expires
  SharryAllocatorOptions o = Opts(2 * kMiB, 1, /*threshold=*/4);
  o.clock = &clock;
  SharryAllocator a(o);
  const std::vector<uint64_t> sizes = {100, 0, 3 * kMiB, kMiB};
  std::vector<AllocResult> out(sizes.size());
  a.AllocBatch(5, sizes, out);
  EXPECT_TRUE(out[0].ok());
  EXPECT_EQ(out[1].status, AllocStatus::kInvalidSize);
  EXPECT_EQ(out[2].status, AllocStatus::kInvalidSize);
  EXPECT_TRUE(out[3].ok());
  EXPECT_EQ(a.Allocate(5, kMiB).status, AllocStatus::kOutOfMemory) << "no other section";
  const AllocResult one = a.Allocate(6, 8);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(a.Free(5, one.offset), AllocStatus::kNotOwner);
  EXPECT_EQ(a.Free(6, one.offset), AllocStatus::kOk);
  const std::vector<uint64_t> offs = {out[0].offset, out[3].offset, 2 * kMiB, out[0].offset};
  std::vector<AllocStatus> st(offs.size());
  a.FreeBatch(5, offs, st);
  EXPECT_EQ(st[0], AllocStatus::kOk);
  EXPECT_EQ(st[1], AllocStatus::kOk);
  EXPECT_EQ(st[2], AllocStatus::kOutOfRange);
  EXPECT_EQ(st[3], AllocStatus::kNotAllocated);
  const AllocatorStats s = a.Stats();
  EXPECT_EQ(s.sections.size(), 1u);
  EXPECT_GE(s.sections[0].window_ops, 9u);
  EXPECT_GT(s.sections[0].requests_per_second, 0.0);
  a.Flush();
  EXPECT_EQ(a.Stats().total.used_bytes, 0u);
}

// A section that runs out makes the front end try the others; only when
// all fail is kOutOfMemory reported, and the allocator keeps working.
TEST(SharryAllocatorTest, OutOfMemoryTriesOtherSections) {
  SharryAllocator a(Opts(4 * kMiB, 4, /*threshold=*/1));  // 128 pages each
  auto direct = [&](uint32_t s, uint64_t size) {
    uint64_t sz = size;
    AllocResult r;
    SharryAllocatorPeer::section(a, s).AllocBatch(1, std::span<const uint64_t>(&sz, 1),
                                                  std::span<AllocResult>(&r, 1));
    EXPECT_TRUE(r.ok());
    return r.offset;
  };
  // Sections 0-2: 48 pages used in the middle, free runs of 48 and 32
  // pages: 80 pages free, but no 63-page run. Section 3: 60 pages used at
  // the start, one free run of 68 pages.
  for (uint32_t s = 0; s < 3; ++s) {
    const uint64_t l1 = direct(s, 48 * kPageSize);
    direct(s, 48 * kPageSize);
    const uint64_t l3 = direct(s, 32 * kPageSize);
    ASSERT_EQ(a.Free(1, l1), AllocStatus::kOk);
    ASSERT_EQ(a.Free(1, l3), AllocStatus::kOk);
  }
  direct(3, 60 * kPageSize);
  // The scheduler prefers sections 0-2 (37.5% used vs 47%); each is out of
  // memory for 63 pages, so the answer must come from section 3.
  const AllocResult x = a.Allocate(2, 63 * kPageSize);
  ASSERT_TRUE(x.ok()) << AllocStatusName(x.status);
  EXPECT_EQ(a.SectionOf(x.offset), 3u);
  // Now nothing has 63 pages: every section is tried, then OOM.
  EXPECT_EQ(a.Allocate(2, 63 * kPageSize).status, AllocStatus::kOutOfMemory);
  EXPECT_TRUE(a.Allocate(2, 48 * kPageSize).ok()) << "smaller blocks still fit";
  EXPECT_EQ(a.FreeAllOf(1).blocks, 4u);
  EXPECT_EQ(a.FreeAllOf(2).blocks, 2u);
  EXPECT_TRUE(a.Allocate(2, kMiB).ok());
}

// Near exhaustion the refused elements of a batch are retried together,
// one request per other section — not one per element and section (which
// made a 64-element ALLOC outlast a client's op timeout on a loaded host).
TEST(SharryAllocatorTest, RefusedElementsOfABatchAreRetriedTogether) {
  SharryAllocator a(Opts(4 * kMiB, 4, /*threshold=*/1));  // 128 pages each
  // Sections 0-2: a 96-page block each (75% used, no room for 63 pages);
  // section 3: an 8-page block (room for two 63-page blocks? no: 120 free
  // pages hold one 63-page block and 57 pages).
  for (uint32_t s = 0; s < 4; ++s) {
    uint64_t sz = (s < 3 ? 96 : 8) * kPageSize;
    AllocResult r;
    SharryAllocatorPeer::section(a, s).AllocBatch(1, std::span<const uint64_t>(&sz, 1),
                                                  std::span<AllocResult>(&r, 1));
    ASSERT_TRUE(r.ok());
  }
  auto served = [&] {
    uint64_t n = 0;
    for (const auto& sec : a.Stats().sections) n += sec.requests_served;
    return n;
  };
  // Stats() itself is a request to every section: measure what it adds.
  const uint64_t s0 = served();
  const uint64_t stats_requests = served() - s0;
  const uint64_t before = served();
  const std::vector<uint64_t> sizes(6, 63 * kPageSize);
  std::vector<AllocResult> out(sizes.size());
  a.AllocBatch(2, sizes, out);
  const uint64_t requests = served() - before - stats_requests;
  int ok = 0;
  for (const AllocResult& r : out) {
    if (r.ok()) {
      ++ok;
      EXPECT_EQ(a.SectionOf(r.offset), 3u);
    } else {
      EXPECT_EQ(r.status, AllocStatus::kOutOfMemory);
    }
  }
  EXPECT_EQ(ok, 1) << "exactly one 63-page block fits anywhere";
  // At most one request per section for the plan and one per section for
  // the retries.
  EXPECT_LE(requests, 8u);
  EXPECT_EQ(a.FreeAllOf(2).blocks, 1u);
}

// Many requester threads against several section threads. Every block
// handed out is claimed in a shared granule bitmap (double hand-out fails
// at once); at the end the allocator's totals match the requesters'.
TEST(SharryAllocatorTest, ConcurrentRequestersAgainstSections) {
  constexpr uint64_t kUma = 96 * kMiB;
  constexpr int kThreads = 8;
  constexpr int kRounds = sharry::testing::kTsan ? 150 : 600;
  SharryAllocator a(Opts(kUma, 3, /*threshold=*/8));
  Ownership owned(kUma);
  std::atomic<uint64_t> allocs{0}, frees{0}, errors{0};
  std::vector<std::vector<std::pair<uint64_t, uint64_t>>> live(kThreads);
  std::vector<std::thread> threads;
  for (int id = 0; id < kThreads; ++id) {
    threads.emplace_back([&, id] {
      std::mt19937_64 rng(1000 + id);
      auto& mine = live[id];
      const OwnerId me = 10 + id;
      for (int round = 0; round < kRounds; ++round) {
        std::vector<uint64_t> sizes(rng() % 3 == 0 ? 1 : 1 + rng() % 16);
        for (auto& s : sizes) s = rng() % 50 == 0 ? kMaxSmallSize + rng() % kMiB : 1 + rng() % 8192;
        std::vector<AllocResult> out(sizes.size());
        a.AllocBatch(me, sizes, out);
        for (size_t i = 0; i < sizes.size(); ++i) {
          if (!out[i].ok()) {
            errors.fetch_add(1);
            continue;
          }
          const uint64_t len = SizeMap::RoundedSize(sizes[i]);
          if (!owned.Claim(out[i].offset, len)) errors.fetch_add(1000000);
          mine.push_back({out[i].offset, len});
          allocs.fetch_add(1);
        }
        std::vector<uint64_t> offs;
        while (mine.size() > 64 || (!mine.empty() && rng() % 4 == 0)) {
          const size_t k = rng() % mine.size();
          // Release before freeing: once freed, another thread may get it.
          if (!owned.Release(mine[k].first, mine[k].second)) errors.fetch_add(1000000);
          offs.push_back(mine[k].first);
          mine[k] = mine.back();
          mine.pop_back();
        }
        std::vector<AllocStatus> st(offs.size());
        a.FreeBatch(me, offs, st);
        for (AllocStatus s : st) {
          if (s != AllocStatus::kOk) errors.fetch_add(1);
        }
        frees.fetch_add(offs.size());
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0u) << "(>= 1000000: a block was handed out twice)";

  // Totals: the allocator holds exactly what the requesters hold.
  a.Flush();
  AllocatorStats s = a.Stats();
  uint64_t held = 0, bytes = 0;
  std::set<uint64_t> offsets;
  for (auto& v : live) {
    for (auto [off, len] : v) {
      ++held;
      bytes += len;
      EXPECT_TRUE(offsets.insert(off).second);
    }
  }
  EXPECT_EQ(s.total.live_blocks, held);
  EXPECT_EQ(s.total.used_bytes, bytes);
  EXPECT_EQ(allocs.load() - frees.load(), held);
  uint64_t served = 0;
  for (const auto& sec : s.sections) served += sec.elements_served;
  EXPECT_GE(served, allocs.load() + frees.load());

  // Per owner: Stats().owners and Usage() match what each requester holds,
  // and the list is sorted by bytes descending.
  std::map<OwnerId, OwnerUsage> want;
  for (int id = 0; id < kThreads; ++id) {
    for (auto [off, len] : live[id]) {
      OwnerUsage& u = want[10 + id];
      u.owner = 10 + id;
      ++u.blocks;
      u.bytes += len;
    }
  }
  ASSERT_EQ(s.owners.size(), want.size());
  for (size_t i = 0; i < s.owners.size(); ++i) {
    const OwnerUsage& u = s.owners[i];
    ASSERT_TRUE(want.count(u.owner)) << u.owner;
    EXPECT_EQ(u.blocks, want[u.owner].blocks) << "owner " << u.owner;
    EXPECT_EQ(u.bytes, want[u.owner].bytes) << "owner " << u.owner;
    if (i > 0) {
      EXPECT_GE(s.owners[i - 1].bytes, u.bytes) << "not sorted by bytes";
    }
    const OwnerUsage direct = a.Usage(u.owner);
    EXPECT_EQ(direct.blocks, u.blocks);
    EXPECT_EQ(direct.bytes, u.bytes);
  }

  // FreeAllOf of each requester returns the rest, and the owner leaves the
  // list at once.
  uint64_t reclaimed = 0;
  for (int id = 0; id < kThreads; ++id) {
    reclaimed += a.FreeAllOf(10 + id).blocks;
    EXPECT_EQ(a.Usage(10 + id).blocks, 0u);
    for (const OwnerUsage& u : a.Stats().owners) EXPECT_NE(u.owner, OwnerId(10 + id));
  }
  EXPECT_EQ(reclaimed, held);
  s = a.Stats();
  EXPECT_EQ(s.total.used_bytes, 0u);
  EXPECT_EQ(s.total.live_blocks, 0u);
  EXPECT_TRUE(s.owners.empty());
}

// Skewed start: section 0 prefilled to 80%, the others empty. Allocating
// through the front end until the UMA is 85% full leaves the sections
// within pressure_weight + one batch of each other (see scheduler.h).
TEST(SharryAllocatorTest, SkewedLoadIsBalancedByTheScheduler) {
  ManualClock clock;
  SharryAllocatorOptions o = Opts(32 * kMiB, 4);
  o.clock = &clock;
  o.pressure_weight = 0.05;
  SharryAllocator a(o);
  const uint64_t section = a.section_bytes();

  std::vector<uint64_t> fill(section * 8 / 10 / (64 * 1024), 64 * 1024);
  std::vector<AllocResult> out(fill.size());
  SharryAllocatorPeer::section(a, 0).AllocBatch(1, fill, out);
  for (auto& r : out) ASSERT_TRUE(r.ok());

  std::mt19937_64 rng(3);
  uint64_t max_batch = 0;
  while (a.Stats().total.used_bytes < 4 * section * 85 / 100) {
    std::vector<uint64_t> sizes(1 + rng() % 16, 4096);
    max_batch = std::max<uint64_t>(max_batch, sizes.size() * 4096);
    std::vector<AllocResult> res(sizes.size());
    a.AllocBatch(2, sizes, res);
    for (auto& r : res) ASSERT_TRUE(r.ok());
    clock.Advance(1'000'000);
  }
  const AllocatorStats s = a.Stats();
  uint64_t lo = ~uint64_t{0}, hi = 0;
  for (const auto& sec : s.sections) {
    lo = std::min(lo, sec.stats.used_bytes);
    hi = std::max(hi, sec.stats.used_bytes);
  }
  const double spread = static_cast<double>(hi - lo) / section;
  EXPECT_LE(spread, 0.05 + static_cast<double>(max_batch) / section) << hi << " " << lo;
}

TEST(MutexAllocatorTest, SameContractAsSharry) {
  MutexAllocator a({.uma_bytes = 16 * kMiB + 100, .free_batch_threshold = 4});
  const std::vector<uint64_t> sizes = {8, 5000, 400000, 0};
  std::vector<AllocResult> out(sizes.size());
  a.AllocBatch(1, sizes, out);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(out[i].ok());
  EXPECT_EQ(out[3].status, AllocStatus::kInvalidSize);
  EXPECT_EQ(a.Free(2, out[0].offset), AllocStatus::kNotOwner);
  EXPECT_EQ(a.Free(1, out[0].offset), AllocStatus::kOk);
  EXPECT_EQ(a.Free(1, out[0].offset), AllocStatus::kNotAllocated);
  EXPECT_EQ(a.Free(1, 16 * kMiB), AllocStatus::kOutOfRange);
  EXPECT_EQ(a.Stats().pending_blocks, 1u);
  EXPECT_EQ(a.Usage(1).blocks, 3u) << "the pending block counts until applied";
  EXPECT_EQ(a.Usage(1).bytes, SizeMap::RoundedSize(8) + SizeMap::RoundedSize(5000) +
                                SizeMap::RoundedSize(400000));
  ASSERT_EQ(a.Owners().size(), 1u);
  EXPECT_EQ(a.Owners()[0].owner, 1u);
  EXPECT_EQ(a.FreeAllOf(1).blocks, 2u) << "the pending free is applied, not counted";
  EXPECT_EQ(a.Flush(), 0u);
  EXPECT_EQ(a.Usage(1).blocks, 0u);
  EXPECT_TRUE(a.Owners().empty());
  EXPECT_EQ(a.Stats().used_bytes, 0u);
}

TEST(MutexAllocatorTest, ConcurrentRequesters) {
  constexpr uint64_t kUma = 64 * kMiB;
  MutexAllocator a({.uma_bytes = kUma, .free_batch_threshold = 8});
  Ownership owned(kUma);
  std::atomic<uint64_t> bad{0};
  std::vector<std::thread> threads;
  for (int id = 0; id < 6; ++id) {
    threads.emplace_back([&, id] {
      std::mt19937_64 rng(id);
      std::vector<std::pair<uint64_t, uint64_t>> mine;
      for (int i = 0; i < 5000; ++i) {
        const uint64_t size = 1 + rng() % 4096;
        const AllocResult r = a.Allocate(id, size);
        if (!r.ok() || !owned.Claim(r.offset, SizeMap::RoundedSize(size))) bad.fetch_add(1);
        mine.push_back({r.offset, SizeMap::RoundedSize(size)});
        if (mine.size() > 32) {
          const auto [off, len] = mine[rng() % mine.size()];
          std::erase(mine, std::pair{off, len});
          if (!owned.Release(off, len) || a.Free(id, off) != AllocStatus::kOk) bad.fetch_add(1);
        }
      }
      for (auto [off, len] : mine) {
        if (!owned.Release(off, len)) bad.fetch_add(1);
      }
      a.FreeAllOf(id);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0u);
  a.Flush();
  EXPECT_EQ(a.Stats().used_bytes, 0u);
}

}  // namespace
}  // namespace sharry::alloc
