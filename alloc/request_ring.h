// Copyright 2024 The Sharry Authors.
//
// RequestRing<T>: a bounded lock-free multi-producer single-consumer queue
// (D. Vyukov's bounded queue with a sequence number per slot), plus the
// sleep/wake protocol of its consumer. No mutexes anywhere.
//
// Slot layout (one cache line per slot so that producers writing adjacent
// slots do not false-share; pinned by static_assert for the requests used
// in alloc/):
//
//   byte 0        8                                          64
//        +--------+------------------------------------------+
//        | seq    | value: T (trivially copyable)   ...pad   |
//        +--------+------------------------------------------+
//
// Sequence protocol, for ring position pos (a 64-bit counter that never
// wraps in practice) and slot i = pos % capacity:
//   seq == pos                 the slot is free for the producer of pos
//   seq == pos + 1             the value of pos is published
//   seq == pos + capacity      consumed; free for the producer of the next lap
// A producer claims pos by CAS on tail_, writes the value and publishes by
// storing seq = pos + 1. The consumer reads head_'s slot when seq == head+1,
// then frees it by storing seq = head + capacity.
//
// Sleep/wake. An idle consumer may Park(): it announces itself in
// consumer_sleeping_, re-checks the ring, and sleeps on wake_epoch_ with
// std::atomic::wait (a futex). A producer that published, then sees the
// consumer asleep, bumps wake_epoch_ and notifies. The publish store, the
// producer's load of consumer_sleeping_, the consumer's store to it and its
// re-check load are all seq_cst, so one of the two sides always sees the
// other: no lost wakeups. Producers pay one extra load when the consumer is
// awake.
//
// Thread-safety: TryPush/Push/Wake/size from any thread; TryPop, Front,
// PopFront, Park and HasItem only from the single consumer thread.

#ifndef SHARRY_ALLOC_REQUEST_RING_H_
#define SHARRY_ALLOC_REQUEST_RING_H_

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <thread>
#include <type_traits>

#include "base/cpu_relax.h"
#include "glog/logging.h"

namespace sharry::alloc {

inline constexpr size_t kCacheLineSize = 64;

template <typename T>
class RequestRing {
  static_assert(std::is_trivially_copyable_v<T>, "ring values are copied by value");

 public:
  struct alignas(kCacheLineSize) Slot {
    std::atomic<uint64_t> seq;
    T value;
  };

  // REQUIRES: capacity is a power of two >= 2.
  explicit RequestRing(size_t capacity)
      : capacity_(capacity), mask_(capacity - 1), slots_(new Slot[capacity]) {
    CHECK(capacity >= 2 && std::has_single_bit(capacity)) << "ring capacity " << capacity;
    for (size_t i = 0; i < capacity; ++i) slots_[i].seq.store(i, std::memory_order_relaxed);
  }
  RequestRing(const RequestRing&) = delete;
  RequestRing& operator=(const RequestRing&) = delete;

  size_t capacity() const { return capacity_; }

  // Any thread. Enqueues v, or returns false at once if the ring is full.
  [[nodiscard]] bool TryPush(const T& v) {
    uint64_t pos = tail_.load(std::memory_order_relaxed);
    Slot* slot;
    for (;;) {
      slot = &slots_[pos & mask_];
      const uint64_t seq = slot->seq.load(std::memory_order_acquire);
      const int64_t dif = static_cast<int64_t>(seq) - static_cast<int64_t>(pos);
      if (dif == 0) {
        if (tail_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) break;
      } else if (dif < 0) {
        return false;  // the consumer has not freed this slot: full
      } else {
        pos = tail_.load(std::memory_order_relaxed);
      }
    }
    slot->value = v;
    slot->seq.store(pos + 1, std::memory_order_seq_cst);  // publish (see Park)
    if (consumer_sleeping_.load(std::memory_order_seq_cst)) Wake();
    return true;
  }

  // Any thread. Enqueues v, spinning and then yielding while the ring is
  // full. Returns the number of times it found the ring full.
  uint64_t Push(const T& v) {
    uint64_t full = 0;
    while (!TryPush(v)) {
      ++full;
      if (full < 64) {
        CpuRelax();
      } else {
        std::this_thread::yield();
      }
    }
    return full;
  }

  // Consumer only. Dequeues into *out; false if the next value is not yet
  // published.
  [[nodiscard]] bool TryPop(T* out) {
    Slot& slot = slots_[head_ & mask_];
    if (slot.seq.load(std::memory_order_acquire) != head_ + 1) return false;
    *out = slot.value;
    slot.seq.store(head_ + capacity_, std::memory_order_release);
    ++head_;
    head_published_.store(head_, std::memory_order_relaxed);
    return true;
  }

  // Consumer only. The next published value, left in its slot, or nullptr.
  // The pointer is valid until PopFront(); producers cannot reuse the slot
  // before that. Serving a request in place and freeing its slot only
  // afterwards keeps the slot's release store off the path to the answer.
  [[nodiscard]] const T* Front() const {
    const Slot& slot = slots_[head_ & mask_];
    if (slot.seq.load(std::memory_order_acquire) != head_ + 1) return nullptr;
    return &slot.value;
  }

  // Consumer only. Frees the slot of Front(). REQUIRES: Front() != nullptr.
  void PopFront() {
    slots_[head_ & mask_].seq.store(head_ + capacity_, std::memory_order_release);
    ++head_;
    head_published_.store(head_, std::memory_order_relaxed);
  }

  // Consumer only. True if TryPop would succeed.
  bool HasItem() const {
    return slots_[head_ & mask_].seq.load(std::memory_order_seq_cst) == head_ + 1;
  }

  // Consumer only. Sleeps until a producer publishes, Wake() is called, or
  // (on entry) the ring already has an item or should_stop() is true.
  // Spurious returns are allowed; callers loop.
  template <typename StopFn>
  void Park(StopFn&& should_stop) {
    const uint32_t epoch = wake_epoch_.load(std::memory_order_acquire);
    consumer_sleeping_.store(true, std::memory_order_seq_cst);
    if (!HasItem() && !should_stop()) {
      wake_epoch_.wait(epoch, std::memory_order_acquire);
      parks_.fetch_add(1, std::memory_order_relaxed);
    }
    consumer_sleeping_.store(false, std::memory_order_relaxed);
  }

  // Any thread. Wakes a parked consumer (e.g. after setting a stop flag
  // with a seq_cst store).
  void Wake() {
    wake_epoch_.fetch_add(1, std::memory_order_seq_cst);
    wake_epoch_.notify_one();
  }

  // Any thread. Approximate number of queued values.
  size_t size() const {
    const uint64_t tail = tail_.load(std::memory_order_relaxed);
    const uint64_t head = head_published_.load(std::memory_order_relaxed);
    return tail > head ? static_cast<size_t>(tail - head) : 0;
  }

  // Times the consumer actually went to sleep.
  uint64_t parks() const { return parks_.load(std::memory_order_relaxed); }

 private:
  const size_t capacity_;
  const size_t mask_;
  const std::unique_ptr<Slot[]> slots_;

  alignas(kCacheLineSize) std::atomic<uint64_t> tail_{0};  // producers
  alignas(kCacheLineSize) uint64_t head_ = 0;              // consumer only
  std::atomic<uint64_t> head_published_{0};
  std::atomic<uint64_t> parks_{0};
  alignas(kCacheLineSize) std::atomic<bool> consumer_sleeping_{false};
  std::atomic<uint32_t> wake_epoch_{0};
};

}  // namespace sharry::alloc

#endif  // SHARRY_ALLOC_REQUEST_RING_H_
