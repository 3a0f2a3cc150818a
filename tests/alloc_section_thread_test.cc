// Copyright 2024 The Sharry Authors.
//
// SectionThread: a section allocator served by its own thread through the
// request ring.

#include "alloc/section_thread.h"

#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "alloc/size_classes.h"

namespace sharry::alloc {
namespace {

constexpr uint64_t kMiB = 1 << 20;

SectionThread::Options Opts(uint64_t length, uint32_t threshold = 1, int core = -1,
                            bool busy_poll = false) {
  SectionThread::Options o;
  o.section = {.base = 0, .length = length, .free_batch_threshold = threshold};
  o.core = core;
  o.busy_poll = busy_poll;
  o.ring_capacity = 64;
  o.idle_spin_nanos = 1000;  // sleep soon: exercise the wake path
  o.idle_yield_nanos = 1000;
  return o;
}

TEST(SectionThreadTest, BatchesAndErrorsRoundTrip) {
  SectionThread t(Opts(8 * kMiB, /*threshold=*/4));
  const std::vector<uint64_t> sizes = {64, 0, 4096, 9 * kMiB, 300000};
  std::vector<AllocResult> out(sizes.size());
  t.AllocBatch(5, sizes, out);
  EXPECT_TRUE(out[0].ok());
  EXPECT_EQ(out[1].status, AllocStatus::kInvalidSize);
  EXPECT_TRUE(out[2].ok());
  EXPECT_EQ(out[3].status, AllocStatus::kInvalidSize);
  EXPECT_TRUE(out[4].ok());

  const std::vector<uint64_t> frees = {out[0].offset, out[0].offset, out[2].offset + 8,
                                       out[4].offset, 8 * kMiB};
  std::vector<AllocStatus> st(frees.size());
  t.FreeBatch(6, std::span<const uint64_t>(frees).subspan(3, 1), std::span(st).subspan(3, 1));
  EXPECT_EQ(st[3], AllocStatus::kNotOwner);
  t.FreeBatch(5, frees, st);
  EXPECT_EQ(st[0], AllocStatus::kOk);
  EXPECT_EQ(st[1], AllocStatus::kNotAllocated) << "double free within one batch";
  EXPECT_EQ(st[2], AllocStatus::kNotAllocated);
  EXPECT_EQ(st[3], AllocStatus::kOk);
  EXPECT_EQ(st[4], AllocStatus::kOutOfRange);

  SectionStats s = t.Stats();
  EXPECT_EQ(s.pending_blocks, 2u);
  EXPECT_EQ(s.live_blocks, 3u);
  EXPECT_EQ(t.Flush(), 2u);
  EXPECT_EQ(t.FreeAllOf(5).blocks, 1u);
  s = t.Stats();
  EXPECT_EQ(s.used_bytes, 0u);
  EXPECT_EQ(t.published_used_bytes(), 0u);
  EXPECT_GE(t.requests_served(), 6u);
}

// Many requester threads against one section thread: every live offset is
// unique, and the totals reconcile exactly.
TEST(SectionThreadTest, ManyRequestersTotalsReconcile) {
  SectionThread t(Opts(64 * kMiB, /*threshold=*/32));
  constexpr int kThreads = 8;
  constexpr int kRounds = 300;
  std::vector<std::vector<std::pair<uint64_t, uint64_t>>> live(kThreads);  // off, len
  std::vector<std::thread> threads;
  for (int id = 0; id < kThreads; ++id) {
    threads.emplace_back([&, id] {
      std::mt19937_64 rng(id);
      auto& mine = live[id];
      for (int round = 0; round < kRounds; ++round) {
        std::vector<uint64_t> sizes(1 + rng() % 16);
        for (auto& s : sizes) s = 1 + rng() % 5000;
        std::vector<AllocResult> out(sizes.size());
        t.AllocBatch(id, sizes, out);
        for (size_t i = 0; i < sizes.size(); ++i) {
          ASSERT_TRUE(out[i].ok());
          mine.push_back({out[i].offset, SizeMap::RoundedSize(sizes[i])});
        }
        std::vector<uint64_t> frees;
        while (mine.size() > 40) {
          const size_t k = rng() % mine.size();
          frees.push_back(mine[k].first);
          mine[k] = mine.back();
          mine.pop_back();
        }
        std::vector<AllocStatus> st(frees.size());
        t.FreeBatch(id, frees, st);
        for (AllocStatus s : st) ASSERT_EQ(s, AllocStatus::kOk);
      }
    });
  }
  for (auto& th : threads) th.join();

  std::map<uint64_t, uint64_t> all;
  uint64_t bytes = 0;
  for (auto& v : live) {
    for (auto [off, len] : v) {
      ASSERT_TRUE(all.emplace(off, len).second) << "offset " << off << " handed out twice";
      bytes += len;
    }
  }
  uint64_t end = 0;
  for (auto [off, len] : all) {
    ASSERT_GE(off, end) << "overlap at " << off;
    end = off + len;
  }
  t.Flush();
  SectionStats s = t.Stats();
  EXPECT_EQ(s.live_blocks, all.size());
  EXPECT_EQ(s.used_bytes, bytes);
  for (int id = 0; id < kThreads; ++id) t.FreeAllOf(id);
  s = t.Stats();
  EXPECT_EQ(s.live_blocks, 0u);
  EXPECT_EQ(s.used_bytes, 0u);
}

// Stop() serves everything already queued before the thread exits.
TEST(SectionThreadTest, StopDrainsQueuedRequests) {
  auto t = std::make_unique<SectionThread>(Opts(8 * kMiB));
  constexpr int kRequests = 50;
  std::vector<uint64_t> sizes(kRequests, 128);
  std::vector<AllocResult> out(kRequests);
  std::vector<Completion> done(kRequests);
  for (int i = 0; i < kRequests; ++i) {
    SectionRequest r;
    r.kind = SectionRequest::Kind::kAlloc;
    r.owner = 1;
    r.count = 1;
    r.in = &sizes[i];
    r.out.alloc = &out[i];
    r.done = &done[i];
    t->Submit(r);
  }
  t->Stop();
  for (int i = 0; i < kRequests; ++i) {
    EXPECT_TRUE(done[i].done()) << i;
    EXPECT_TRUE(out[i].ok()) << i;
  }
  std::set<uint64_t> unique;
  for (auto& r : out) unique.insert(r.offset);
  EXPECT_EQ(unique.size(), static_cast<size_t>(kRequests));
  t.reset();  // Stop() again in the destructor is a no-op
}

AllocResult Alloc64(SectionThread& t) {
  const uint64_t size = 64;
  AllocResult r;
  t.AllocBatch(1, std::span<const uint64_t>(&size, 1), std::span<AllocResult>(&r, 1));
  return r;
}

// The first CPU this process may run on (CPU_SETSIZE if none is found).
int FirstAllowedCore() {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return CPU_SETSIZE;
  int core = 0;
  while (core < CPU_SETSIZE && !CPU_ISSET(core, &allowed)) ++core;
  return core;
}

TEST(SectionThreadTest, PinningAndBusyPoll) {
  const int core = FirstAllowedCore();
  ASSERT_LT(core, CPU_SETSIZE);
  {
    SectionThread t(Opts(kMiB, 1, core, /*busy_poll=*/true));
    EXPECT_TRUE(Alloc64(t).ok());
    EXPECT_TRUE(t.pinned()) << "could not pin to allowed core " << core;
  }
  {
    // A core that does not exist: logged, not fatal.
    SectionThread t(Opts(kMiB, 1, CPU_SETSIZE + 5));
    EXPECT_TRUE(Alloc64(t).ok());
    EXPECT_FALSE(t.pinned());
  }
}

// Requester and section thread pinned to the same CPU: the requester sees
// the section thread on its own CPU (running_cpu) and yields instead of
// spinning, the section thread yields back after serving it. Round trips
// of one element (inline in the slot) and of batches all come back right.
TEST(SectionThreadTest, SharedCpuHandoff) {
  const int core = FirstAllowedCore();
  ASSERT_LT(core, CPU_SETSIZE);
  SectionThread t(Opts(8 * kMiB, /*threshold=*/8, core));
  uint64_t rounds = 0;
  std::thread requester([&] {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(core, &one);
    ASSERT_EQ(pthread_setaffinity_np(pthread_self(), sizeof(one), &one), 0);
    std::vector<uint64_t> live;
    for (int i = 0; i < 2000; ++i) {
      const uint64_t size = 8 + i % 512;
      AllocResult r;
      t.AllocBatch(3, std::span<const uint64_t>(&size, 1), std::span<AllocResult>(&r, 1));
      ASSERT_TRUE(r.ok());
      live.push_back(r.offset);
      if (i % 50 == 49) {
        const std::vector<uint64_t> sizes(16, 100);
        std::vector<AllocResult> out(16);
        t.AllocBatch(3, sizes, out);
        for (const AllocResult& x : out) {
          ASSERT_TRUE(x.ok());
          live.push_back(x.offset);
        }
      }
      if (live.size() > 64) {
        AllocStatus st;
        t.FreeBatch(3, std::span<const uint64_t>(&live.front(), 1), std::span<AllocStatus>(&st, 1));
        ASSERT_EQ(st, AllocStatus::kOk);
        live.erase(live.begin());
      }
      ++rounds;
    }
    EXPECT_EQ(t.running_cpu().load(), core);
    std::vector<AllocStatus> st(live.size());
    t.FreeBatch(3, live, st);
    for (AllocStatus x : st) ASSERT_EQ(x, AllocStatus::kOk);
  });
  requester.join();
  EXPECT_EQ(rounds, 2000u);
  t.Flush();
  EXPECT_EQ(t.Stats().used_bytes, 0u);
  EXPECT_EQ(t.Usage(3).blocks, 0u);
}

}  // namespace
}  // namespace sharry::alloc
