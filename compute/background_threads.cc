// The runtime's background threads: the evictor (evict_thread), the prefetch
// thread (prefetch_thread: Prefetch() requests and full FREE batches), and
// the lease renewer. The reconnector is in health.cc.
#include <glog/logging.h>

#include <algorithm>

#include "compute/runtime_impl.h"

namespace sharry::compute {

using namespace meta;  // NOLINT: the bit names of object.h

void RuntimeImpl::StartThreads() {
  if (opts_.evict_thread) evictor_ = std::thread([this] { EvictorLoop(); });
  if (opts_.prefetch_thread) prefetcher_ = std::thread([this] { PrefetchLoop(); });
  lease_thread_ = std::thread([this] { LeaseLoop(); });
  if (side_table_) repairer_ = std::thread([this] { RepairLoop(); });
}

void RuntimeImpl::StopThreads() {
  // The evictor and the prefetch thread stop (an eviction round in flight
  // completes) before the last FREEs go out.
  {
    MutexLock l(&evictor_mu_);
    evictor_stop_ = true;
  }
  evictor_cv_.SignalAll();
  {
    MutexLock l(&prefetch_mu_);
    prefetch_stop_ = true;
  }
  prefetch_cv_.SignalAll();
  if (evictor_.joinable()) evictor_.join();
  if (prefetcher_.joinable()) prefetcher_.join();
  {
    MutexLock l(&lease_mu_);
    lease_stop_ = true;
  }
  lease_cv_.SignalAll();
  if (lease_thread_.joinable()) lease_thread_.join();
  {
    MutexLock l(&repair_mu_);
    repair_stop_ = true;
  }
  repair_cv_.SignalAll();
  if (repairer_.joinable()) repairer_.join();
  {
    MutexLock l(&health_mu_);
    reconnector_stop_ = true;
    health_cv_.SignalAll();
  }
  for (auto& n : nodes_) {
    std::thread reconnector;
    {
      MutexLock l(&n->health_mu);
      reconnector = std::move(n->reconnector);
    }
    if (reconnector.joinable()) reconnector.join();
  }
}

// ---------------------------------------------------------------- evictor

void RuntimeImpl::SignalEvictor() {
  // Once per wake-up: while the flag is set, signalling costs one load.
  if (evict_wanted_.load(std::memory_order_relaxed) || evict_wanted_.exchange(true)) return;
  { MutexLock l(&evictor_mu_); }  // the evictor is waiting, or will see the flag
  evictor_cv_.Signal();
}

// Sleeps until signalled, then swaps out rounds until usage is at
// evict_target_. A round that fails (far memory exhausted, the memnode lost)
// or finds nothing evictable (all pinned) makes it back off (1 ms doubling to
// 128 ms) instead of spinning on the next signal; a successful round resets
// the backoff.
void RuntimeImpl::EvictorLoop() {
  auto backoff = std::chrono::milliseconds(0);
  for (;;) {
    {
      MutexLock l(&evictor_mu_);
      if (backoff.count() > 0) {
        const auto until = std::chrono::steady_clock::now() + backoff;
        while (!evictor_stop_ && evictor_cv_.WaitUntil(&evictor_mu_, until)) {
        }
      }
      while (!evictor_stop_ && !evict_wanted_.load()) evictor_cv_.Wait(&evictor_mu_);
      if (evictor_stop_) return;
      evictor_busy_ = true;
    }
    // Cleared before usage is read (an RMW: it sees the signaller's usage),
    // so a signal after this read sets the flag again and wakes us.
    evict_wanted_.exchange(false, std::memory_order_acq_rel);
    bool stuck = false;
    for (;;) {
      {
        MutexLock l(&evictor_mu_);
        if (evictor_stop_) break;
      }
      Status s;
      bool progress = false;
      {
        MutexLock l(&evict_mu_);
        // A round starts only past the start mark, so that it frees a full
        // batch (down to evict_target_): swap-ins during a round must not
        // make the next one a round of one object.
        const uint64_t now = local_bytes_.load();
        if (now <= evict_start_) break;
        const uint64_t rounds_before = rounds_.load(std::memory_order_relaxed);
        s = Evict(now - evict_target_, nullptr);
        progress = rounds_.load(std::memory_order_relaxed) != rounds_before;
      }
      if (!s.ok()) RecordEvictionError(s);
      if (!s.ok() || !progress) {
        stuck = true;
        break;
      }
      background_rounds_++;
    }
    {
      MutexLock l(&evictor_mu_);
      evictor_busy_ = false;
    }
    evictor_idle_cv_.SignalAll();
    backoff = !stuck ? std::chrono::milliseconds(0)
                     : std::min(std::chrono::milliseconds(128), std::max(std::chrono::milliseconds(1), backoff * 2));
  }
}

void RuntimeImpl::WaitEvictorIdle() {
  if (!evictor_.joinable()) return;
  MutexLock l(&evictor_mu_);
  while (!evictor_stop_ && (evictor_busy_ || evict_wanted_.load())) evictor_idle_cv_.Wait(&evictor_mu_);
}

// ---------------------------------------------------------------- prefetch

void RuntimeImpl::EnqueuePrefetch(ObjectHeader* h) {
  if (!opts_.prefetch_thread) return;
  uint64_t m = h->word.load(std::memory_order_relaxed);
  if (Is(m, kPresent) || Is(m, kBusy)) return;
  MutexLock l(&prefetch_mu_);
  if (prefetch_q_.size() >= 256) return;  // best effort
  prefetch_q_.push_back(h);
  prefetch_cv_.Signal();
}

void RuntimeImpl::PrefetchLoop() {
  for (;;) {
    ObjectHeader* h = nullptr;
    bool flush = false;
    {
      MutexLock l(&prefetch_mu_);
      while (!prefetch_stop_ && !flush_wanted_ && prefetch_q_.empty()) prefetch_cv_.Wait(&prefetch_mu_);
      if (prefetch_stop_) return;
      flush = flush_wanted_;
      flush_wanted_ = false;
      if (!flush) {
        h = prefetch_q_.front();
        prefetch_q_.pop_front();
      }
    }
    if (flush) {
      const size_t reserve = FreeReserve();
      BeginFar();
      ReaderMutexLock far(&epoch_mu_, std::adopt_lock);
      for (auto& n : nodes_) {
        if (!n->healthy() || n->free_queue.queued() < opts_.free_batch + reserve) continue;
        if (Status s = FlushQueued(*n, reserve); !s.ok()) LOG(WARNING) << "compute runtime: FREE failed: " << s;
      }
      continue;
    }
    uint64_t m = h->word.load(std::memory_order_acquire);
    if (Is(m, kPresent) || Is(m, kBusy) || !Is(m, kFar) || Addr(m) == kLostFar) continue;
    // Best effort: never past the budget, never while no memnode is usable.
    if (local_bytes_.load(std::memory_order_relaxed) + h->size > opts_.local_budget_bytes || !AnyHealthy())
      continue;
    Status s;
    {
      BeginFar();  // before kBusy (health.cc)
      ReaderMutexLock far(&epoch_mu_, std::adopt_lock);
      if (!h->word.compare_exchange_strong(m, m | kBusy, std::memory_order_acq_rel)) continue;
      s = SwapIn(h, m);
    }
    if (!s.ok()) {
      VLOG(1) << "prefetch failed: " << s;
      continue;
    }
    h->word.fetch_and(~kBusy, std::memory_order_release);
    prefetches_++;
    MaybeEvict();
  }
}

// ---------------------------------------------------------------- lease

void RuntimeImpl::LeaseLoop() {
  auto next_stats = std::chrono::steady_clock::now();
  for (;;) {
    uint32_t lease_ms = 0;
    const auto now = std::chrono::steady_clock::now();
    const bool refresh = opts_.placement_refresh_ms > 0 && nodes_.size() > 1 && now >= next_stats;
    if (refresh) next_stats = now + std::chrono::milliseconds(opts_.placement_refresh_ms);
    for (auto& np : nodes_) {
      FarNode& n = *np;
      Status failed;
      // Not while a reconnector replaces connections (it holds epoch_mu_).
      if (!n.healthy() || !TryBeginFar()) continue;
      {
        ReaderMutexLock far(&epoch_mu_, std::adopt_lock);
        MutexLock l(&n.control_mu);
        const uint32_t node_lease = n.control->transport().info().lease_ms;
        if (node_lease > 0 && (lease_ms == 0 || node_lease < lease_ms)) lease_ms = node_lease;
        if (refresh) {
          // STATS renews the lease too.
          auto st = n.control->GetStats();
          if (st.ok()) {
            n.used_at_stats = st->head.used_bytes;
            n.placed_since_stats = 0;
            if (node_lease > 0) renewals_++;
          } else {
            failed = st.status();
          }
        } else if (node_lease > 0) {
          failed = n.control->Renew();
          if (failed.ok()) renewals_++;
        }
        if (!failed.ok() && n.control->transport().alive()) failed = Status::Ok();  // refused: not a failure
      }
      if (!failed.ok()) {
        failed_far_++;
        OnFarFailure(n, failed.WithContext(refresh ? "placement STATS" : "lease renewal"));
      }
    }
    // Every lease/3 (two missed renewals of slack); without a lease, look
    // again now and then (a reconnect may bring one); placement refreshes
    // on their own period.
    int wait_ms = lease_ms > 0 ? std::max<int>(1, static_cast<int>(lease_ms / 3)) : 1000;
    if (opts_.placement_refresh_ms > 0 && nodes_.size() > 1) wait_ms = std::min(wait_ms, opts_.placement_refresh_ms);
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
    MutexLock l(&lease_mu_);
    while (!lease_stop_ && lease_cv_.WaitUntil(&lease_mu_, until)) {
    }
    if (lease_stop_) return;
  }
}

}  // namespace sharry::compute
