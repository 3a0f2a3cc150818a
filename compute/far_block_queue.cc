// Delayed reclamation of far blocks: the FarBlockQueue (its own lock), the
// reuse reserve, and the batched FREEs the runtime sends from it.
#include "compute/far_block_queue.h"

#include <glog/logging.h>

#include <algorithm>

#include "compute/runtime_impl.h"

namespace sharry::compute {

// ---------------------------------------------------------------- the queue

size_t FarBlockQueue::Push(Block b) {
  MutexLock l(&mu_);
  q_.push_back(b);
  q_bytes_ += b.size;
  return q_.size();
}

void FarBlockQueue::PushAll(std::span<const Block> blocks) {
  MutexLock l(&mu_);
  for (const Block& b : blocks) {
    q_.push_back(b);
    q_bytes_ += b.size;
  }
}

std::vector<uint64_t> FarBlockQueue::TakeReusable(std::span<const uint32_t> sizes, uint64_t none) {
  std::vector<uint64_t> taken(sizes.size(), none);
  MutexLock l(&mu_);
  // Newest first (from the back): with objects of one size this is O(1) per
  // block, so the lock the swap-in path needs is held briefly.
  for (size_t i = 0; i < sizes.size(); ++i) {
    const uint32_t size = sizes[i];
    auto it = std::find_if(q_.rbegin(), q_.rend(), [size](const Block& b) { return b.size == size; });
    if (it == q_.rend()) continue;
    taken[i] = it->offset;
    q_bytes_ -= size;
    *it = q_.back();
    q_.pop_back();
  }
  return taken;
}

std::vector<FarBlockQueue::Block> FarBlockQueue::TakeOldest(size_t keep) {
  MutexLock l(&mu_);
  if (q_.size() <= keep) return {};
  const size_t n = q_.size() - keep;
  std::vector<Block> out(q_.begin(), q_.begin() + static_cast<ptrdiff_t>(n));
  q_.erase(q_.begin(), q_.begin() + static_cast<ptrdiff_t>(n));
  for (const Block& b : out) {
    q_bytes_ -= b.size;
    in_flight_.bytes += b.size;
  }
  in_flight_.blocks += out.size();
  return out;
}

void FarBlockQueue::FreeDone(std::span<const Block> blocks) {
  MutexLock l(&mu_);
  for (const Block& b : blocks) in_flight_.bytes -= b.size;
  in_flight_.blocks -= blocks.size();
}

void FarBlockQueue::Requeue(std::span<const Block> blocks) {
  MutexLock l(&mu_);
  q_.insert(q_.begin(), blocks.begin(), blocks.end());
  for (const Block& b : blocks) {
    q_bytes_ += b.size;
    in_flight_.bytes -= b.size;
  }
  in_flight_.blocks -= blocks.size();
}

void FarBlockQueue::Clear() {
  MutexLock l(&mu_);
  q_.clear();
  q_bytes_ = 0;
}

size_t FarBlockQueue::queued() const {
  MutexLock l(&mu_);
  return q_.size();
}

FarBlockQueue::Level FarBlockQueue::Pending() const {
  MutexLock l(&mu_);
  return {q_.size() + in_flight_.blocks, q_bytes_ + in_flight_.bytes};
}

// ---------------------------------------------------------------- the runtime's FREEs

size_t RuntimeImpl::FreeReserve() const {
  // Unique-Copy: the next eviction round reuses up to evict_batch queued
  // blocks. Were they freed, that round would need an ALLOC and the FREE
  // would have been wasted: in steady swapping (a swap-in per swap-out) the
  // queue fills to one batch just as the round comes, so without a reserve
  // nearly every round paid one ALLOC and one FREE RPC. Each memnode keeps
  // its share of a round's blocks (copies x batch / memnodes, rounded up).
  if (opts_.mode != CopyMode::kUniqueCopy) return 0;
  const size_t per_round = size_t{opts_.evict_batch} * copies_;
  return (per_round + nodes_.size() - 1) / nodes_.size();
}

bool RuntimeImpl::QueueAndMaybeSignal(FarNode& n, uint64_t offset, uint32_t size) {
  const size_t queued = n.free_queue.Push({offset, size});
  n.copies--;
  n.copy_bytes -= size;
  n.placed_since_stats -= size;
  far_copy_bytes_ -= size;
  const size_t reserve = FreeReserve();
  if (queued < opts_.free_batch + reserve) return false;
  if (!n.healthy()) return false;  // they wait in the queue
  // A full batch beyond the reserve: the background thread sends it, off
  // this (swap-in) path, unless it has fallen far behind.
  if (opts_.prefetch_thread && queued < 4u * opts_.free_batch + reserve) {
    {
      MutexLock pl(&prefetch_mu_);
      flush_wanted_ = true;
    }
    prefetch_cv_.Signal();
    return false;
  }
  return true;
}

Status RuntimeImpl::QueueFreeInFarAccess(uint64_t addr, uint32_t size) {
  FarNode& n = *nodes_[far::NodeOf(addr)];
  if (!QueueAndMaybeSignal(n, far::OffsetOf(addr), size)) return Status::Ok();
  return FlushQueued(n, FreeReserve());
}

Status RuntimeImpl::QueueFree(uint64_t addr, uint32_t size) {
  FarNode& n = *nodes_[far::NodeOf(addr)];
  if (!QueueAndMaybeSignal(n, far::OffsetOf(addr), size)) return Status::Ok();
  // Not waiting for the far access: the caller may hold an object busy.
  if (!TryBeginFar()) return Status::Ok();  // they wait in the queue
  ReaderMutexLock far(&epoch_mu_, std::adopt_lock);
  return FlushQueued(n, FreeReserve());
}

Status RuntimeImpl::FlushFrees() {
  BeginFar();
  ReaderMutexLock far(&epoch_mu_, std::adopt_lock);
  return FlushAllQueued(0);
}

Status RuntimeImpl::FlushAllQueued(size_t keep) {
  // A memnode that is not healthy cannot take FREEs: its error, whether or
  // not blocks wait for it (they are sent after a reconnect that finds our
  // control connection alive, or were reclaimed with it).
  Status first;
  for (auto& n : nodes_) {
    if (!n->healthy()) {
      if (first.ok()) first = FailedAccess(NodeStatus(*n).WithContext("FREE"));
      continue;
    }
    if (n->free_queue.queued() <= keep) continue;
    Status s = FlushQueued(*n, keep);
    if (first.ok() && !s.ok()) first = s;
  }
  return first;
}

Status RuntimeImpl::FlushQueued(FarNode& n, size_t keep) {
  // The oldest go; the newest `keep` stay for reuse (a swap-out takes from the back).
  const std::vector<FarBlockQueue::Block> blocks = n.free_queue.TakeOldest(keep);
  if (blocks.empty()) return Status::Ok();
  std::vector<uint64_t> offsets;
  offsets.reserve(blocks.size());
  for (const FarBlockQueue::Block& b : blocks) offsets.push_back(b.offset);
  std::vector<Status> each;
  MutexLock l(&n.control_mu);
  Status s = n.control->Free(offsets, &each);
  free_rpcs_++;
  n.free_rpcs++;
  if (!s.ok() && !n.control->transport().alive()) {  // keep them queued
    n.free_queue.Requeue(blocks);
    l.Unlock();
    return ConnectionFailed(n, s.WithContext("control connection (FREE)"), "FREE");
  }
  // Element errors would be our bug (a block freed twice): say so, drop them.
  if (!s.ok()) LOG(ERROR) << "compute runtime: memnode " << n.name << " refused a FREE: " << s;
  n.free_queue.FreeDone(blocks);
  return Status::Ok();
}

}  // namespace sharry::compute
