// Copyright 2024 The Sharry Authors.

#include "alloc/section_thread.h"

#include <pthread.h>
#include <sched.h>

#include <chrono>
#include <cstring>

#include "base/cpu_relax.h"
#include "glog/logging.h"

namespace sharry::alloc {
namespace {

// The answer to a one-element request and its completion in one cache
// line: the section thread's writes and the requester's reads each touch a
// single line.
template <typename T>
struct alignas(kCacheLineSize) OneReply {
  Completion done;
  T value;
};

}  // namespace

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
  DCHECK(r.in != nullptr || r.count <= 1) << "inline input holds one element";
  SectionRequest with_cpu = r;
  with_cpu.cpu = sched_getcpu();
  ring_.Push(with_cpu);
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
  uint32_t idle_polls = 0;  // empty polls since the last request
  SteadyClock::time_point idle_since;
  uint64_t idle_nanos = 0;
  bool shared_cpu = false;  // the last requests all came from this thread's CPU
  for (;;) {
    const int cpu = sched_getcpu();
    if (cpu != cpu_.load(std::memory_order_relaxed)) cpu_.store(cpu, std::memory_order_relaxed);
    uint32_t local = 0, remote = 0;  // requesters on this CPU / elsewhere
    // Serve in place; the slot is freed after the answer is signalled.
    while (const SectionRequest* r = ring_.Front()) {
      ++(Serve(*r, cpu) ? local : remote);
      ring_.PopFront();
    }
    if (local + remote > 0) {
      idle_polls = 0;
      // Only requesters on this CPU: they cannot run while we poll, so give
      // them the CPU now. If requesters elsewhere are active, keep the CPU:
      // they are waiting for us, and yielding would make them wait for
      // every thread queued on this CPU.
      shared_cpu = remote == 0;
      if (shared_cpu && !busy_poll_) std::this_thread::yield();
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
    // PAUSE polling only helps when requesters run on other CPUs.
    if (idle_nanos < idle_spin_nanos_ && !shared_cpu) {
      CpuRelax();
      continue;
    }
    if (idle_nanos < idle_spin_nanos_ + idle_yield_nanos_) {
      std::this_thread::yield();
      continue;
    }
    idle_polls = 0;
    shared_cpu = false;
    ring_.Park([this] { return stop_.load(std::memory_order_seq_cst); });
  }
}

bool SectionThread::Serve(const SectionRequest& r, int cpu) {
  const uint64_t* in = r.in != nullptr ? r.in : &r.in1;  // r lives in the slot
  switch (r.kind) {
    case SectionRequest::Kind::kAlloc:
      for (uint32_t i = 0; i < r.count; ++i) r.out.alloc[i] = alloc_.Allocate(in[i], r.owner);
      break;
    case SectionRequest::Kind::kFree:
      for (uint32_t i = 0; i < r.count; ++i) r.out.status[i] = alloc_.Free(in[i], r.owner, r.freed_bytes);
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
  // usage that includes it. Single writer: load + store, no atomic RMW.
  used_bytes_.store(alloc_.used_bytes(), std::memory_order_relaxed);
  requests_.store(requests_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  elements_.store(elements_.load(std::memory_order_relaxed) + r.count, std::memory_order_relaxed);
  const bool same_cpu = r.cpu == cpu && cpu >= 0;
  r.done->Signal();  // r.done may be gone after this
  return same_cpu;
}

template <typename T>
void SectionThread::RunBatch(SectionRequest::Kind kind, OwnerId owner, std::span<const uint64_t> in,
                             std::span<T> out, uint64_t* freed_bytes) {
  CHECK_EQ(in.size(), out.size());
  SectionRequest r;
  r.kind = kind;
  r.owner = owner;
  r.freed_bytes = freed_bytes;
  r.count = static_cast<uint32_t>(in.size());
  if (r.count == 1) {
    // The element travels in the slot, the answer beside the completion.
    OneReply<T> reply;
    r.in1 = in[0];
    SetOut(r.out, &reply.value);
    r.done = &reply.done;
    Submit(r);
    reply.done.Wait(&cpu_);
    out[0] = reply.value;
    return;
  }
  Completion done;
  r.in = in.data();
  SetOut(r.out, out.data());
  r.done = &done;
  Submit(r);
  done.Wait(&cpu_);
}

void SectionThread::AllocBatch(OwnerId owner, std::span<const uint64_t> sizes,
                               std::span<AllocResult> out) {
  RunBatch(SectionRequest::Kind::kAlloc, owner, sizes, out);
}

void SectionThread::FreeBatch(OwnerId owner, std::span<const uint64_t> offsets,
                              std::span<AllocStatus> out, uint64_t* freed_bytes) {
  RunBatch(SectionRequest::Kind::kFree, owner, offsets, out, freed_bytes);
}

template <typename T>
T SectionThread::RunOne(SectionRequest::Kind kind, OwnerId owner) {
  T answer{};
  Completion done;
  SectionRequest r;
  r.kind = kind;
  r.owner = owner;
  SetOut(r.out, &answer);
  r.done = &done;
  Submit(r);
  done.Wait(&cpu_);
  return answer;
}

ReclaimResult SectionThread::FreeAllOf(OwnerId owner) {
  return RunOne<ReclaimResult>(SectionRequest::Kind::kFreeAllOf, owner);
}

uint64_t SectionThread::Flush() { return RunOne<uint64_t>(SectionRequest::Kind::kFlush, kNoOwner); }

SectionStats SectionThread::Stats() { return Snapshot().stats; }

SectionSnapshot SectionThread::Snapshot() { return RunOne<SectionSnapshot>(SectionRequest::Kind::kStats, kNoOwner); }

OwnerUsage SectionThread::Usage(OwnerId owner) { return RunOne<OwnerUsage>(SectionRequest::Kind::kUsage, owner); }

}  // namespace sharry::alloc
