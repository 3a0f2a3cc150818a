// Repair (docs/redundancy.md): after a memnode died, each object that kept
// a copy elsewhere but has fewer than the redundancy wants is queued here;
// the repair thread gives it new copies on the surviving healthy memnodes
// (least used first, never one that already holds a copy), in batches: one
// READ per object from a surviving copy, one ALLOC and one chain of WRITEs
// per memnode. Objects swapped in meanwhile need nothing (Unique-Copy: a
// swap-out writes all copies anew). With no memnode to repair onto, the
// objects wait (repair_pending) until one comes back.
#include <glog/logging.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "compute/runtime_impl.h"

namespace sharry::compute {

using namespace meta;  // NOLINT: the bit names of object.h

void RuntimeImpl::QueueRepair(ObjectHeader* h) {
  MutexLock l(&repair_mu_);
  repair_q_.push_back(h);
  repair_pending_.store(repair_q_.size(), std::memory_order_relaxed);
  repair_cv_.Signal();
}

void RuntimeImpl::RepairLoop() {
  std::vector<ObjectHeader*> batch;
  int idle_ms = 0;
  while (ec_) {
    // ec: the restriper (stripes.cc). Woken by LeaveStripe and
    // MarkStripesLost; looks again now and then while work is pending.
    {
      MutexLock l(&repair_mu_);
      const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(idle_ms > 0 ? idle_ms : 100);
      // Work pending and no backoff: go at once; else wait for a signal
      // with work (or the backoff, or the poll).
      auto work = [&] { return restripe_pending_.load() > 0 || (holes_pending_.load() > 0 && OverHoleBudget()); };
      if (idle_ms > 0 || !work()) {
        while (!repair_stop_ && repair_cv_.WaitUntil(&repair_mu_, until)) {
          if (idle_ms == 0 && work()) break;
        }
      }
      if (repair_stop_) return;
      if (!work()) continue;
    }
    size_t done;
    {
      BeginFar();
      ReaderMutexLock far(&epoch_mu_, std::adopt_lock);
      done = RestripeBatch();
    }
    idle_ms = done > 0 ? 0 : std::min(std::max(idle_ms * 2, 10), 500);
  }
  for (;;) {
    {
      MutexLock l(&repair_mu_);
      if (idle_ms > 0) {
        const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(idle_ms);
        while (!repair_stop_ && repair_cv_.WaitUntil(&repair_mu_, until)) {
        }
      }
      while (!repair_stop_ && repair_q_.empty()) repair_cv_.Wait(&repair_mu_);
      if (repair_stop_) return;
      const size_t n = std::min<size_t>(repair_q_.size(), opts_.evict_batch);
      batch.assign(repair_q_.end() - static_cast<ptrdiff_t>(n), repair_q_.end());
      repair_q_.resize(repair_q_.size() - n);
    }
    size_t done = 0;
    {
      BeginFar();
      ReaderMutexLock far(&epoch_mu_, std::adopt_lock);
      done = RepairBatch(batch);
    }
    {
      MutexLock l(&repair_mu_);
      // What could not be repaired now goes back, and we wait a little.
      repair_q_.insert(repair_q_.begin(), batch.begin(), batch.end());
      repair_pending_.store(repair_q_.size(), std::memory_order_relaxed);
    }
    idle_ms = batch.empty() || done > 0 ? 0 : std::min(std::max(idle_ms * 2, 10), 500);
  }
}

size_t RuntimeImpl::RepairBatch(std::vector<ObjectHeader*>& batch) {
  // Take each object (kBusy) that is far, not lost, and short of copies.
  struct Item {
    ObjectHeader* h;
    uint64_t word;
    Copies copies;
    void* data;  // its bytes (read from a copy, or its local copy)
    uint64_t target = kNoFarOffset;  // the new copy
  };
  std::vector<Item> items;
  std::vector<ObjectHeader*> later;
  for (ObjectHeader* h : batch) {
    uint64_t m = h->word.load(std::memory_order_acquire);
    if (h->live.load(std::memory_order_acquire) == 0 || !Is(m, kFar)) continue;  // gone or local only: done
    if (!Is(m, kPresent) && Addr(m) == kLostFar) continue;
    if (Is(m, kBusy) || !h->word.compare_exchange_strong(m, m | kBusy, std::memory_order_acq_rel)) {
      later.push_back(h);
      continue;
    }
    const bool present = Is(m, kPresent);
    Copies c = CopiesOf(h, present ? h->far_offset : Addr(m));
    if (c.n >= copies_ || c.n == 0) {
      h->word.fetch_and(~kBusy, std::memory_order_release);
      continue;
    }
    items.push_back({h, m, c, present ? reinterpret_cast<void*>(Addr(m)) : nullptr});
  }
  // Read the far-only ones from a healthy copy.
  for (Item& it : items) {
    if (it.data != nullptr) continue;
    it.data = std::malloc(it.h->size);
    Status last = Status::Unavailable("no healthy copy");
    for (uint32_t c = 0; c < it.copies.n && it.data != nullptr; ++c) {
      FarNode& n = *nodes_[far::NodeOf(it.copies.addr[c])];
      if (!n.healthy()) continue;
      auto conn = DataConnection(n);
      if (!conn.ok()) continue;
      last = (*conn)->Read(far::OffsetOf(it.copies.addr[c]), it.data, it.h->size);
      if (last.ok()) {
        far_read_bytes_ += it.h->size;
        break;
      }
      if (!(*conn)->alive()) (void)ConnectionFailed(n, last, "repair: READ");
    }
    if (!last.ok() || it.data == nullptr) {
      VLOG(1) << "repair: no copy readable now: " << last;
      std::free(it.data);
      it.data = nullptr;
    }
  }
  // Targets: the least used healthy memnode without a copy of the object.
  std::vector<FarNode*> order = PlacementOrder();
  std::vector<uint64_t> score(kMaxMemnodes, 0);
  for (FarNode* n : order) score[n->index] = n->Score();
  std::vector<std::vector<size_t>> per_node(kMaxMemnodes);
  for (size_t i = 0; i < items.size(); ++i) {
    Item& it = items[i];
    if (it.data == nullptr) continue;
    FarNode* best = nullptr;
    for (FarNode* n : order) {
      bool holds = false;
      for (uint32_t c = 0; c < it.copies.n; ++c) holds |= far::NodeOf(it.copies.addr[c]) == n->index;
      if (!holds && (best == nullptr || score[n->index] < score[best->index])) best = n;
    }
    if (best == nullptr) continue;  // nowhere to put it now
    per_node[best->index].push_back(i);
    score[best->index] += it.h->size;
  }
  for (const auto& np : nodes_) {
    FarNode& n = *np;
    const std::vector<size_t>& mine = per_node[n.index];
    if (mine.empty()) continue;
    std::vector<uint32_t> sizes;
    for (size_t i : mine) sizes.push_back(items[i].h->size);
    std::vector<uint64_t> got;
    bool died = false;
    (void)BlocksAt(n, sizes, &got, &died, "repair: ALLOC");
    if (died) continue;
    std::vector<RemoteOp> writes;
    std::vector<size_t> wrote;
    for (size_t j = 0; j < mine.size(); ++j) {
      if (got[j] == kNoFarOffset) continue;
      Item& it = items[mine[j]];
      writes.push_back({far::OffsetOf(got[j]), it.data, it.h->size});
      wrote.push_back(mine[j]);
      it.target = got[j];
    }
    if (writes.empty()) continue;
    auto conn = DataConnection(n);
    Status ws = conn.ok() ? (*conn)->WriteBatch(writes) : conn.status();
    if (ws.ok()) {
      uint64_t bytes = 0;
      for (const RemoteOp& op : writes) bytes += op.length;
      far_write_bytes_.fetch_add(bytes, std::memory_order_relaxed);
    }
    if (!ws.ok()) {
      if (conn.ok() && !(*conn)->alive()) (void)ConnectionFailed(n, ws, "repair: WRITE");
      std::vector<FarBlockQueue::Block> back;
      for (size_t i : wrote) {
        back.push_back({far::OffsetOf(items[i].target), items[i].h->size});
        items[i].target = kNoFarOffset;
      }
      n.free_queue.PushAll(back);
    }
  }
  size_t done = 0;
  for (Item& it : items) {
    if (it.target != kNoFarOffset) {
      it.copies.addr[it.copies.n++] = it.target;
      SetExtras(it.h, it.copies.addr + 1, it.copies.n - 1);
      FarNode& n = *nodes_[far::NodeOf(it.target)];
      n.copies++;
      n.copy_bytes += it.h->size;
      n.placed_since_stats += it.h->size;
      far_copy_bytes_ += it.h->size;
      repaired_++;
      done++;
    }
    // Still short (copies_ > 2 and one added, or nothing added): again later.
    const bool again = it.copies.n < copies_;
    if (!Is(it.word, kPresent)) std::free(it.data);
    it.data = nullptr;
    it.h->word.fetch_and(~kBusy, std::memory_order_release);  // (a present one's pins may have changed)
    if (again) later.push_back(it.h);
  }
  items.clear();
  batch.swap(later);
  return done;
}

}  // namespace sharry::compute
