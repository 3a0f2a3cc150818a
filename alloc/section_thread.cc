// Copyright 2024 The Sharry Authors.

#include "alloc/section_thread.h"

#include <pthread.h>
#include <sched.h>

#include <chrono>
#include <cstring>

#include "glog/logging.h"

namespace sharry::alloc {

SectionThread::SectionThread(const Options& options)
    : base_(options.section.base),
      length_(options.section.length),
      core_(options.core),
      busy_poll_(options.busy_poll),
      idle_spin_nanos_(options.idle_spin_nanos),
      idle_yield_nanos_(options.idle_yield_nanos),
      alloc_(options.section),
      ring_(options.ring_capacity) {
  thread_ = std::thread([this] { Run(); });
}

SectionThread::~SectionThread() { Stop(); }

void SectionThread::Stop() {
  if (!thread_.joinable()) return;
  stop_.store(true, std::memory_order_seq_cst);
  ring_.Wake();
  thread_.join();
}

void SectionThread::Submit(const SectionRequest& r) {
  DCHECK(!stop_.load(std::memory_order_relaxed)) << "Submit after Stop";
  ring_.Push(r);
}

void SectionThread::PinToCore() {
  if (core_ < 0) return;
  if (core_ >= CPU_SETSIZE) {
    LOG(WARNING) << "section thread for base " << base_ << ": core " << core_
                 << " is out of range; running unpinned";
    return;
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(core_, &set);
  const int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
  if (rc != 0) {
    LOG(WARNING) << "section thread for base " << base_ << ": pinning to core " << core_
                 << " failed: " << std::strerror(rc) << "; running unpinned";
    return;
  }
  pinned_.store(true, std::memory_order_release);
}

void SectionThread::Run() {
  using SteadyClock = std::chrono::steady_clock;
  PinToCore();
  SectionRequest r;
  uint32_t idle_polls = 0;  // empty polls since the last request
  SteadyClock::time_point idle_since;
  uint64_t idle_nanos = 0;
  for (;;) {
    bool served = false;
    while (ring_.TryPop(&r)) {
      Serve(r);
      served = true;
    }
    if (served) {
      idle_polls = 0;
      continue;
    }
    // The ring looked empty. Stop only when asked and nothing is left: the
    // seq_cst load of stop_ follows the last empty poll, and Stop()'s caller
    // submitted nothing after setting it.
    if (stop_.load(std::memory_order_seq_cst)) {
      if (!ring_.HasItem() && ring_.size() == 0) break;
      continue;
    }
    if (busy_poll_) {
      CpuRelax();
      continue;
    }
    // Read the clock only every 32 polls.
    if (idle_polls == 0) {
      idle_since = SteadyClock::now();
      idle_nanos = 0;
    } else if (idle_polls % 32 == 0) {
      idle_nanos = static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(SteadyClock::now() - idle_since)
              .count());
    }
    ++idle_polls;
    if (idle_nanos < idle_spin_nanos_) {
      CpuRelax();
      continue;
    }
    if (idle_nanos < idle_spin_nanos_ + idle_yield_nanos_) {
      std::this_thread::yield();
      continue;
    }
    idle_polls = 0;
    ring_.Park([this] { return stop_.load(std::memory_order_seq_cst); });
  }
}

void SectionThread::Serve(const SectionRequest& r) {
  switch (r.kind) {
    case SectionRequest::Kind::kAlloc:
      for (uint32_t i = 0; i < r.count; ++i) r.out.alloc[i] = alloc_.Allocate(r.in[i], r.owner);
      break;
    case SectionRequest::Kind::kFree:
      for (uint32_t i = 0; i < r.count; ++i) r.out.status[i] = alloc_.Free(r.in[i], r.owner);
      break;
    case SectionRequest::Kind::kFreeAllOf:
      *r.out.reclaim = alloc_.FreeAllOf(r.owner);
      break;
    case SectionRequest::Kind::kFlush:
      *r.out.flushed = alloc_.FlushPendingFrees();
      break;
    case SectionRequest::Kind::kStats:
      r.out.snapshot->stats = alloc_.stats();
      r.out.snapshot->owners.clear();
      alloc_.AppendOwners(&r.out.snapshot->owners);
      break;
    case SectionRequest::Kind::kUsage:
      *r.out.usage = alloc_.Usage(r.owner);
      break;
  }
  // Publish before signalling, so a requester that saw its answer also sees
  // usage that includes it.
  used_bytes_.store(alloc_.used_bytes(), std::memory_order_relaxed);
  requests_.fetch_add(1, std::memory_order_relaxed);
  elements_.fetch_add(r.count, std::memory_order_relaxed);
  r.done->Signal();
}

void SectionThread::AllocBatch(OwnerId owner, std::span<const uint64_t> sizes,
                               std::span<AllocResult> out) {
  CHECK_EQ(sizes.size(), out.size());
  Completion done;
  SectionRequest r;
  r.kind = SectionRequest::Kind::kAlloc;
  r.owner = owner;
  r.count = static_cast<uint32_t>(sizes.size());
  r.in = sizes.data();
  r.out.alloc = out.data();
  r.done = &done;
  Submit(r);
  done.Wait();
}

void SectionThread::FreeBatch(OwnerId owner, std::span<const uint64_t> offsets,
                              std::span<AllocStatus> out) {
  CHECK_EQ(offsets.size(), out.size());
  Completion done;
  SectionRequest r;
  r.kind = SectionRequest::Kind::kFree;
  r.owner = owner;
  r.count = static_cast<uint32_t>(offsets.size());
  r.in = offsets.data();
  r.out.status = out.data();
  r.done = &done;
  Submit(r);
  done.Wait();
}

ReclaimResult SectionThread::FreeAllOf(OwnerId owner) {
  ReclaimResult result;
  Completion done;
  SectionRequest r;
  r.kind = SectionRequest::Kind::kFreeAllOf;
  r.owner = owner;
  r.out.reclaim = &result;
  r.done = &done;
  Submit(r);
  done.Wait();
  return result;
}

uint64_t SectionThread::Flush() {
  uint64_t flushed = 0;
  Completion done;
  SectionRequest r;
  r.kind = SectionRequest::Kind::kFlush;
  r.out.flushed = &flushed;
  r.done = &done;
  Submit(r);
  done.Wait();
  return flushed;
}

SectionStats SectionThread::Stats() { return Snapshot().stats; }

SectionSnapshot SectionThread::Snapshot() {
  SectionSnapshot snapshot;
  Completion done;
  SectionRequest r;
  r.kind = SectionRequest::Kind::kStats;
  r.out.snapshot = &snapshot;
  r.done = &done;
  Submit(r);
  done.Wait();
  return snapshot;
}

OwnerUsage SectionThread::Usage(OwnerId owner) {
  OwnerUsage usage;
  Completion done;
  SectionRequest r;
  r.kind = SectionRequest::Kind::kUsage;
  r.owner = owner;
  r.out.usage = &usage;
  r.done = &done;
  Submit(r);
  done.Wait();
  return usage;
}

}  // namespace sharry::alloc
