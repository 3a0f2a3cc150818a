// FarBlockQueue: the far blocks a runtime no longer needs (Unique-Copy
// swap-ins, destroyed objects), waiting to be reused or freed. Private to
// compute/ (not installed).
//
// Delayed reclamation (docs/compute.md, "Unique-Copy"): a swap-out of the same
// size takes a queued block instead of ALLOCating one (newest first); the
// runtime sends the oldest blocks back in one FREE once free_batch of them
// are queued beyond the reuse reserve (RuntimeImpl::FreeReserve).
//
// Thread safety: every method takes the queue's own lock, briefly — never
// across an RPC — so a swap-in that queues a block never waits behind a FREE
// or an ALLOC. The lock is a leaf: no other lock is taken while it is held.
// A FREE in flight takes its blocks out (TakeOldest) and gives them back if
// it fails (Requeue); until it ends they still count as pending (Pending()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "base/mutex.h"

namespace sharry::compute {

class FarBlockQueue {
 public:
  struct Block {
    uint64_t offset;
    uint32_t size;
  };
  struct Level {
    uint64_t blocks = 0, bytes = 0;
  };

  // Queues one block (at the back: the newest). Returns how many are queued.
  size_t Push(Block b) EXCLUDES(mu_);
  // Queues blocks a failed swap-out round had taken or ALLOCated.
  void PushAll(std::span<const Block> blocks) EXCLUDES(mu_);
  // For each size, a queued block of that size (newest first) or `none` if
  // there is none; the blocks taken leave the queue. One lock for the round.
  std::vector<uint64_t> TakeReusable(std::span<const uint32_t> sizes, uint64_t none) EXCLUDES(mu_);
  // Takes all but the newest `keep` blocks (oldest first) for a FREE. They
  // count as pending until FreeDone() or Requeue().
  std::vector<Block> TakeOldest(size_t keep) EXCLUDES(mu_);
  // The FREE of `blocks` (from TakeOldest) went out.
  void FreeDone(std::span<const Block> blocks) EXCLUDES(mu_);
  // The FREE of `blocks` failed: they go back to the front (the oldest).
  void Requeue(std::span<const Block> blocks) EXCLUDES(mu_);
  // The memnode reclaimed every block (our control connection is gone).
  // REQUIRES: no FREE in flight (the caller excludes far accesses).
  void Clear() EXCLUDES(mu_);

  size_t queued() const EXCLUDES(mu_);
  // Queued plus in a FREE in flight: the blocks we hold but no longer use.
  Level Pending() const EXCLUDES(mu_);

 private:
  mutable Mutex mu_;
  std::vector<Block> q_ GUARDED_BY(mu_);  // oldest first
  uint64_t q_bytes_ GUARDED_BY(mu_) = 0;
  Level in_flight_ GUARDED_BY(mu_);
};

}  // namespace sharry::compute
