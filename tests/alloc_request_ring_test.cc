// Copyright 2024 The Sharry Authors.
//
// RequestRing (bounded lock-free MPSC queue with a parking consumer) and
// Completion (one-shot answer slot). No timing assertions: a lost wakeup
// shows up as a hang, which the ctest timeout turns into a failure.

#include "alloc/request_ring.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "alloc/completion.h"
#include "tests/test_util.h"

namespace sharry::alloc {
namespace {

struct Item {
  uint32_t producer;
  uint32_t seq;
  uint64_t payload;
};

TEST(RequestRingTest, FifoFullAndWraparound) {
  RequestRing<Item> ring(8);
  Item out;
  EXPECT_FALSE(ring.TryPop(&out));
  EXPECT_FALSE(ring.HasItem());
  uint32_t next_push = 0, next_pop = 0;
  for (int lap = 0; lap < 100; ++lap) {
    while (ring.TryPush({0, next_push, next_push * 3ull})) ++next_push;
    EXPECT_EQ(ring.size(), 8u);
    EXPECT_TRUE(ring.HasItem());
    const int pops = 1 + lap % 8;
    for (int i = 0; i < pops; ++i) {
      ASSERT_TRUE(ring.TryPop(&out));
      EXPECT_EQ(out.seq, next_pop);
      EXPECT_EQ(out.payload, next_pop * 3ull);
      ++next_pop;
    }
  }
  while (ring.TryPop(&out)) EXPECT_EQ(out.seq, next_pop++);
  EXPECT_EQ(next_pop, next_push);
  EXPECT_EQ(ring.size(), 0u);
}

// Many producers, one consumer that parks when idle. Every item arrives
// exactly once and each producer's items arrive in order.
TEST(RequestRingTest, MpscStressCountsReconcile) {
  constexpr uint32_t kProducers = 8;
  constexpr uint32_t kPerProducer = sharry::testing::kTsan ? 20000 : 100000;
  RequestRing<Item> ring(64);  // small: producers often find it full
  std::vector<std::thread> producers;
  std::atomic<uint64_t> full_events{0};
  for (uint32_t p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      uint64_t full = 0;
      for (uint32_t i = 0; i < kPerProducer; ++i) {
        full += ring.Push({p, i, (uint64_t{p} << 32) | i});
        if (i % 1024 == 0) std::this_thread::yield();  // let the consumer idle
      }
      full_events.fetch_add(full);
    });
  }
  std::vector<uint32_t> next(kProducers, 0);
  uint64_t received = 0, payload_sum = 0;
  uint32_t idle = 0;
  Item it;
  while (received < uint64_t{kProducers} * kPerProducer) {
    if (ring.TryPop(&it)) {
      ASSERT_LT(it.producer, kProducers);
      ASSERT_EQ(it.seq, next[it.producer]) << "producer " << it.producer << " out of order";
      ++next[it.producer];
      payload_sum += it.payload & 0xFFFFFFFFu;
      ++received;
      idle = 0;
    } else if (++idle > 64) {
      ring.Park([] { return false; });
      idle = 0;
    }
  }
  for (auto& t : producers) t.join();
  EXPECT_FALSE(ring.TryPop(&it));
  EXPECT_EQ(received, uint64_t{kProducers} * kPerProducer);
  EXPECT_EQ(payload_sum, uint64_t{kProducers} * (uint64_t{kPerProducer} * (kPerProducer - 1) / 2));
  for (uint32_t p = 0; p < kProducers; ++p) EXPECT_EQ(next[p], kPerProducer);
  RecordProperty("parks", static_cast<int>(ring.parks()));
  RecordProperty("full_events", static_cast<int>(full_events.load()));
}

// Ping-pong through a ring and Completions: the consumer parks between
// every request and each requester sleeps on its completion, exercising
// both wake paths many times.
TEST(RequestRingTest, ParkAndCompletionPingPong) {
  struct Req {
    uint64_t value;
    uint64_t* answer;
    Completion* done;
  };
  RequestRing<Req> ring(16);
  std::atomic<bool> stop{false};
  std::thread server([&] {
    Req r;
    for (;;) {
      while (ring.TryPop(&r)) {
        *r.answer = r.value + 1;
        r.done->Signal();
      }
      if (stop.load(std::memory_order_seq_cst)) {
        if (!ring.HasItem()) return;
        continue;
      }
      ring.Park([&] { return stop.load(std::memory_order_seq_cst); });
    }
  });
  constexpr int kClients = 4;
  constexpr int kRounds = 3000;
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; i < kRounds; ++i) {
        uint64_t answer = 0;
        Completion done;
        ring.Push({uint64_t(c) * kRounds + i, &answer, &done});
        done.Wait();
        ASSERT_EQ(answer, uint64_t(c) * kRounds + i + 1);
        ASSERT_TRUE(done.done());
      }
    });
  }
  for (auto& t : clients) t.join();
  stop.store(true, std::memory_order_seq_cst);
  ring.Wake();
  server.join();
}

TEST(CompletionTest, SignalBeforeWaitAndAfterSleep) {
  Completion a;
  a.Signal();
  a.Wait();  // already done: returns at once
  EXPECT_TRUE(a.done());
  a.Reset();
  EXPECT_FALSE(a.done());

  for (int i = 0; i < 200; ++i) {
    Completion c;
    uint64_t result = 0;
    std::thread t([&] {
      if (i % 2 == 0) std::this_thread::yield();
      result = 42 + i;  // written before Signal, read after Wait
      c.Signal();
    });
    c.Wait();
    EXPECT_EQ(result, 42u + i);
    t.join();
  }
}

}  // namespace
}  // namespace sharry::alloc
