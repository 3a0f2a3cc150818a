// Health: whether each memnode is usable — its health state, the far-access
// gate (BeginFar), the reconnector of each memnode, and marking what a dead
// memnode held lost (docs/compute.md, "When the memnode fails";
// docs/redundancy.md).
#include <glog/logging.h>

#include <cstdio>

#include "base/cpu_relax.h"
#include "compute/runtime_impl.h"

namespace sharry::compute {

using namespace meta;  // NOLINT: the bit names of object.h

void RuntimeImpl::BeginFar() {
  // A reconnector waiting for the exclusive hold goes first: new far
  // accesses wait (briefly: it never holds it across a network wait).
  while (writers_waiting_.load(std::memory_order_acquire) > 0) {
    CpuRelax();
    std::this_thread::yield();
  }
  epoch_mu_.ReaderLock();
}

bool RuntimeImpl::TryBeginFar() {
  return writers_waiting_.load(std::memory_order_acquire) == 0 && epoch_mu_.TryLockShared();
}

Status RuntimeImpl::ConnectionFailed(FarNode& n, const Status& s, std::string_view what) {
  OnFarFailure(n, s);
  Status h = NodeStatus(n);
  return FailedAccess(h.ok() ? Status::Unavailable(s.ToString()).WithContext(what) : h.WithContext(what));
}

Status RuntimeImpl::FailedAccess(Status s) {
  failed_far_.fetch_add(1, std::memory_order_relaxed);
  return s;
}

Status RuntimeImpl::NodeStatus(const FarNode& n) const {
  const int state = n.health.load(std::memory_order_acquire);
  if (state == FarNode::kHealthy) return Status::Ok();
  MutexLock l(&n.health_mu);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - n.unhealthy_since).count();
  char age[32];
  std::snprintf(age, sizeof(age), "%.1f", secs);
  std::string msg = "memnode " + n.name + " unreachable since " + age + " s" +
                    (state == FarNode::kDead ? " (gave up reconnecting)" : " (reconnecting)") + ": " +
                    std::string(StatusCodeName(n.health_status.code())) + ": " + n.health_status.message();
  return Status::Unavailable(std::move(msg));
}

bool RuntimeImpl::AllHealthy() const {
  for (const auto& n : nodes_)
    if (!n->healthy()) return false;
  return true;
}

bool RuntimeImpl::AnyHealthy() const {
  for (const auto& n : nodes_)
    if (n->healthy()) return true;
  return false;
}

Status RuntimeImpl::NoHealthyStatus(const Copies* copies) const {
  // The first unhealthy memnode of the copies (or of all), with its story.
  if (copies != nullptr) {
    for (uint32_t i = 0; i < copies->n; ++i) {
      Status s = NodeStatus(*nodes_[far::NodeOf(copies->addr[i])]);
      if (!s.ok()) return s;
    }
  }
  for (const auto& n : nodes_) {
    Status s = NodeStatus(*n);
    if (!s.ok()) return s;
  }
  return Status::Unavailable("no memnode is usable");
}

Status RuntimeImpl::health() const {
  Status loss;
  {
    MutexLock l(&health_mu_);
    loss = loss_status_;
  }
  Status now;
  size_t healthy = 0;
  for (const auto& n : nodes_) {
    Status s = NodeStatus(*n);
    if (s.ok()) {
      healthy++;
      continue;
    }
    now = now.ok() ? s : Status::Unavailable(now.message() + "; " + s.message());
  }
  // With redundancy, a dead memnode is not a failure while enough are healthy.
  if (side_table_ && healthy >= opts_.redundancy.nodes_needed()) now = Status::Ok();
  if (!loss.ok()) return now.ok() ? loss : Status::DataLoss(loss.message() + "; and now " + now.message());
  return now;
}

Status RuntimeImpl::LostObjectStatus() {
  MutexLock l(&health_mu_);
  // (While a reconnector is still marking, the memnode it marks.)
  Status lost = !loss_status_.ok() ? loss_status_
                                   : Status::DataLoss("far memory lost: every copy of the object was at memnode " +
                                                      (marking_.empty() ? std::string("(?)") : marking_) +
                                                      ", which reclaimed it when our connection dropped");
  return FailedAccess(lost.WithContext("swap-in of an object lost with the far memory"));
}

void RuntimeImpl::OnFarFailure(FarNode& n, const Status& s) {
  {
    MutexLock rl(&health_mu_);
    if (reconnector_stop_) return;
  }
  MutexLock l(&n.health_mu);
  if (n.health.load(std::memory_order_acquire) != FarNode::kHealthy) return;  // already known
  n.health_status = s.ok() ? Status::Disconnected("connection lost") : s;
  n.unhealthy_since = std::chrono::steady_clock::now();
  n.health.store(FarNode::kReconnecting, std::memory_order_release);
  connection_failures_++;
  LOG(WARNING) << "compute runtime: memnode " << n.name << " lost: " << n.health_status
               << "; far accesses to it fail (or go to other copies) until a reconnect succeeds";
  // At most one reconnector per memnode: a previous one has finished (it
  // sets the state before it returns), so joining it here is brief.
  std::thread old = std::move(n.reconnector);
  n.reconnector = std::thread([this, node = &n] { ReconnectLoop(node, true); });
  l.Unlock();
  if (old.joinable()) old.join();
}

void RuntimeImpl::DeclareDead(FarNode& n, const Status& why) {
  {
    MutexLock rl(&health_mu_);
    if (reconnector_stop_) return;
  }
  MutexLock l(&n.health_mu);
  if (n.health.load(std::memory_order_acquire) != FarNode::kHealthy) return;  // its reconnector decides
  n.health_status = why;
  n.unhealthy_since = std::chrono::steady_clock::now();
  n.health.store(FarNode::kReconnecting, std::memory_order_release);
  connection_failures_++;
  LOG(WARNING) << "compute runtime: memnode " << n.name << " is dead: " << why;
  std::thread old = std::move(n.reconnector);
  n.reconnector = std::thread([this, node = &n] { ReconnectLoop(node, false); });
  l.Unlock();
  if (old.joinable()) old.join();
}

bool RuntimeImpl::ReconnectPause(int ms) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  MutexLock l(&health_mu_);
  while (!reconnector_stop_ && health_cv_.WaitUntil(&health_mu_, until)) {
  }
  return !reconnector_stop_;
}

// A memnode's reconnector. First: is our control connection to it still
// good (a STATS, outside any lock the other memnodes' accesses need)? Then
// only a data connection died: far data is intact, its data connections are
// replaced and the memnode is healthy again. Otherwise the memnode reclaims
// (or has reclaimed) all our blocks there: with every far access drained
// (epoch_mu_ exclusive, briefly) each object that had a copy there keeps its
// others (and is queued for repair) or, with none, is marked lost; then up
// to reconnect_attempts connects (reconnect_timeout_ms each, pauses from
// reconnect_pause_ms doubling) try to get a new control connection: the
// memnode comes back new and empty. After the last one it is dead for good.
void RuntimeImpl::ReconnectLoop(FarNode* n, bool ask) {
  Status probe;
  if (ask) {
    MutexLock l(&n->control_mu);  // its users fail at once meanwhile: the memnode is not healthy
    probe = n->control->transport().alive() ? n->control->GetStats().status() : n->control->transport().dead_reason();
    if (probe.ok() && !n->control->transport().alive()) probe = n->control->transport().dead_reason();
  } else {
    MutexLock l(&n->health_mu);
    probe = n->health_status;  // etcd says it is gone
  }
  auto exclusive = [&](auto&& fn) {
    writers_waiting_.fetch_add(1, std::memory_order_acq_rel);
    {
      WriterMutexLock ex(&epoch_mu_);
      writers_waiting_.fetch_sub(1, std::memory_order_acq_rel);
      fn();
    }
  };
  if (!probe.ok()) dead_memnodes_++;  // (before its objects are marked: Stats() never shows losses first)
  exclusive([&]() REQUIRES(epoch_mu_) {
    if (!probe.ok()) MarkFarMemoryLost(*n, probe);
    DropDataConnections(*n);
  });
  if (probe.ok()) {
    LOG(WARNING) << "compute runtime: memnode " << n->name << " still answers: data connections replaced";
    reconnects_++;
    n->health.store(FarNode::kHealthy, std::memory_order_release);
    return;
  }
  if (!ask) {
    // Gone from etcd: dead until it joins again (a new, empty memnode).
    n->health.store(FarNode::kDead, std::memory_order_release);
    return;
  }
  int pause = opts_.reconnect_pause_ms;
  Status last;
  for (int attempt = 0; attempt < opts_.reconnect_attempts; ++attempt) {
    if (attempt > 0) {
      if (!ReconnectPause(pause)) return;
      pause *= 2;
    }
    {
      MutexLock l(&health_mu_);
      if (reconnector_stop_) return;
    }
    auto c = ConnectControl(n->conn_opts, opts_.reconnect_timeout_ms);
    if (!c.ok()) {
      last = c.status();
      LOG(WARNING) << "compute runtime: reconnect " << attempt + 1 << "/" << opts_.reconnect_attempts << " to "
                   << n->name << " failed: " << last;
      continue;
    }
    InstallControl(n, std::move(*c));
    return;
  }
  LOG(ERROR) << "compute runtime: gave up reconnecting to memnode " << n->name << " after "
             << opts_.reconnect_attempts << " attempts: " << last;
  n->health.store(FarNode::kDead, std::memory_order_release);
}

void RuntimeImpl::InstallControl(FarNode* n, std::unique_ptr<memnode::MemnodeClient> c) {
  std::unique_ptr<memnode::MemnodeClient> old;
  writers_waiting_.fetch_add(1, std::memory_order_acq_rel);
  {
    WriterMutexLock ex(&epoch_mu_);
    writers_waiting_.fetch_sub(1, std::memory_order_acq_rel);
    {
      MutexLock l(&n->control_mu);
      old = std::move(n->control);
      n->control = std::move(c);
      n->control_id = n->control->id();
    }
    n->free_queue.Clear();  // blocks queued since the loss were the old client's: reclaimed
    DropDataConnections(*n);
  }
  n->far_exhausted = false;
  n->used_at_stats = 0;
  n->placed_since_stats = 0;
  reconnects_++;
  LOG(WARNING) << "compute runtime: connected to memnode " << n->name << " again, as client " << n->control_id
               << " (a new, empty memnode to us)";
  n->health.store(FarNode::kHealthy, std::memory_order_release);
  if (side_table_) {
    MutexLock l(&repair_mu_);
    repair_cv_.SignalAll();  // a memnode to repair onto
  }
}

void RuntimeImpl::MarkFarMemoryLost(FarNode& n, const Status& why) {
  // No far access is in flight; an object is busy only briefly (a Pin
  // backing out, a Destroy).
  uint64_t lost = 0, lost_bytes = 0, dropped_copies = 0, degraded = 0;
  {
    MutexLock l(&health_mu_);
    marking_ = n.name;  // a Pin that meets a lost object meanwhile names it (LostObjectStatus)
  }
  if (ec_) MarkStripesLost(n, &lost, &lost_bytes);
  const size_t hw = ec_ ? 0 : high_water_.load(std::memory_order_acquire);
  for (size_t i = 0; i < hw; ++i) {
    ObjectHeader* h = HeaderAt(i);
    uint64_t m = h->word.load(std::memory_order_acquire);
    for (;;) {
      if (h->live.load(std::memory_order_acquire) == 0 || !Is(m, kFar)) break;
      if (Is(m, kBusy)) {
        std::this_thread::yield();
        m = h->word.load(std::memory_order_acquire);
        continue;
      }
      const bool present = Is(m, kPresent);
      if (!present && Addr(m) == kLostFar) break;
      // Busy while its copies change (Destroy and swap-ins read them under
      // kBusy); the pin count may change meanwhile (Unpin), hence the RMWs.
      if (!h->word.compare_exchange_weak(m, m | kBusy, std::memory_order_acq_rel)) continue;
      const Copies all = CopiesOf(h, present ? h->far_offset : Addr(m));
      Copies keep;
      for (uint32_t c = 0; c < all.n; ++c)
        if (far::NodeOf(all.addr[c]) != n.index) keep.addr[keep.n++] = all.addr[c];
      if (keep.n == all.n) {
        h->word.fetch_and(~kBusy, std::memory_order_release);
        break;
      }
      // Its size, read while it is busy: once the word below is released, a
      // Destroy may free the header and a New reuse it.
      const uint32_t size = h->size;
      SetExtras(h, keep.n > 1 ? keep.addr + 1 : nullptr, keep.n > 0 ? keep.n - 1 : 0);
      far_copy_bytes_ -= uint64_t{size} * (all.n - keep.n);
      if (keep.n > 0) {
        degraded++;
        if (present) {
          h->far_offset = keep.addr[0];
          h->word.fetch_and(~kBusy, std::memory_order_release);
        } else {
          h->word.store(kFar | keep.addr[0], std::memory_order_release);
        }
        QueueRepair(h);
      } else if (present) {
        // Multi-Copy: the local copy survives; its far copy is gone, so it
        // is dirty (the next swap-out writes it to new blocks).
        h->far_offset = kNoFarOffset;
        h->word.fetch_or(kDirty, std::memory_order_relaxed);
        h->word.fetch_and(~(kFar | kBusy), std::memory_order_release);
        far_bytes_ -= size;
        dropped_copies++;
      } else {
        h->word.store(kFar | kLostFar, std::memory_order_release);
        far_bytes_ -= size;
        lost++;
        lost_bytes += size;
      }
      break;
    }
  }
  n.free_queue.Clear();
  n.copies = 0;
  n.copy_bytes = 0;
  lost_objects_ += lost;
  lost_bytes_ += lost_bytes;
  MutexLock l(&health_mu_);
  if (lost > 0 && loss_status_.ok()) {
    loss_status_ = Status::DataLoss("far memory lost: " + std::to_string(lost) + " objects (" +
                                    std::to_string(lost_bytes) + " B) whose only copy was at memnode " + n.name +
                                    " were reclaimed when our control connection dropped (" + why.ToString() + ")");
  } else if (lost > 0) {
    loss_status_ = Status::DataLoss(loss_status_.message() + "; then " + std::to_string(lost) +
                                    " more objects at memnode " + n.name);
  }
  LOG(WARNING) << "compute runtime: control connection to memnode " << n.name << " lost (" << why << "): " << lost
               << " far-only objects (" << lost_bytes << " B) lost, " << degraded
               << " objects keep copies elsewhere (queued for repair), " << dropped_copies
               << " local objects lost their far copy and stay local";
}

}  // namespace sharry::compute
