// Health: the one place that decides whether the memnode is usable — the
// health state, the far-access gate (TryBeginFar), the reconnector, and
// marking far memory lost (docs/compute.md, "When the memnode fails").
#include <glog/logging.h>

#include <cstdio>

#include "compute/runtime_impl.h"

namespace sharry::compute {

using namespace meta;  // NOLINT: the bit names of object.h

std::string RuntimeImpl::MemnodeName() const {
  return opts_.memnode_addr + ":" + std::to_string(opts_.memnode_port);
}

Status RuntimeImpl::ConnectionFailed(const Status& s, std::string_view what) {
  OnFarFailure(s);
  Status h = health();
  return FailedAccess(h.ok() ? Status::Unavailable(s.ToString()).WithContext(what) : h.WithContext(what));
}

Status RuntimeImpl::FailedAccess(Status s) {
  failed_far_.fetch_add(1, std::memory_order_relaxed);
  return s;
}

Status RuntimeImpl::UnhealthyStatus() const {
  if (health_.load(std::memory_order_acquire) == kHealthy) return Status::Ok();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - unhealthy_since_).count();
  char age[32];
  std::snprintf(age, sizeof(age), "%.1f", secs);
  const bool failed = health_.load(std::memory_order_acquire) == kFailed;
  std::string msg = "memnode " + MemnodeName() + " unreachable since " + age + " s" +
                    (failed ? " (gave up reconnecting)" : " (reconnecting)") + ": " +
                    std::string(StatusCodeName(health_status_.code())) + ": " + health_status_.message();
  return Status::Unavailable(std::move(msg));
}

Status RuntimeImpl::health() const {
  MutexLock l(&health_mu_);
  if (!loss_status_.ok()) {
    if (health_.load(std::memory_order_acquire) != kHealthy) {
      Status now = UnhealthyStatus();
      return Status::DataLoss(loss_status_.message() + "; and now " + now.message());
    }
    return loss_status_;
  }
  return UnhealthyStatus();
}

Status RuntimeImpl::LostObjectStatus() {
  MutexLock l(&health_mu_);
  Status lost = !loss_status_.ok() ? loss_status_
                                   : Status::DataLoss("far memory lost: the object's only copy was at memnode " +
                                                      MemnodeName() + ", reclaimed when our connection dropped");
  return FailedAccess(lost.WithContext("swap-in of an object lost with the far memory"));
}

bool RuntimeImpl::TryBeginFar(Status* why) {
  // Not available: the reconnector is replacing the connections.
  if (health_.load(std::memory_order_acquire) == kHealthy && epoch_mu_.TryLockShared()) return true;
  MutexLock l(&health_mu_);
  Status s = UnhealthyStatus();
  if (s.ok()) s = Status::Unavailable("memnode " + MemnodeName() + ": the runtime is reconnecting");
  *why = FailedAccess(std::move(s));
  return false;
}

void RuntimeImpl::OnFarFailure(const Status& s) {
  MutexLock l(&health_mu_);
  if (health_.load(std::memory_order_acquire) != kHealthy || reconnector_stop_) return;  // already known
  health_status_ = s.ok() ? Status::Disconnected("connection lost") : s;
  unhealthy_since_ = std::chrono::steady_clock::now();
  health_.store(kReconnecting, std::memory_order_release);
  connection_failures_++;
  LOG(WARNING) << "compute runtime: memnode " << MemnodeName() << " lost: " << health_status_
               << "; far accesses fail until a reconnect succeeds";
  // At most one reconnector: a previous one has finished (it sets the state
  // before it returns), so joining it here is brief.
  std::thread old = std::move(reconnector_);
  reconnector_ = std::thread([this] { ReconnectLoop(); });
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

void RuntimeImpl::SetHealth(int state) {
  MutexLock l(&health_mu_);
  health_.store(state, std::memory_order_release);
}

// The reconnector. First, with every far access drained (epoch_mu_
// exclusive), is the control connection still good? Then only a data
// connection died: far data is intact, the data connections are replaced and
// the runtime is healthy again. Otherwise the memnode reclaims (or has
// reclaimed) all our blocks: the far-only objects are marked lost at once,
// and up to reconnect_attempts connects (reconnect_timeout_ms each, pauses
// from reconnect_pause_ms doubling) try to get a new control connection, so
// that the surviving local objects and new ones can use far memory again.
// After the last one the runtime is failed for good.
void RuntimeImpl::ReconnectLoop() {
  bool control_lost = false;
  {
    WriterMutexLock ex(&epoch_mu_);
    Status probe;
    {
      // Nobody waits for control_mu_ meanwhile: its users are far accesses,
      // and those fail at once while epoch_mu_ is held exclusively.
      MutexLock l(&control_mu_);
      probe = control_->transport().alive() ? control_->GetStats().status() : control_->transport().dead_reason();
      if (probe.ok() && !control_->transport().alive()) probe = control_->transport().dead_reason();
    }
    if (!probe.ok()) {
      control_lost = true;
      MarkFarMemoryLost(probe);
    }
    DropDataConnections();
  }
  if (!control_lost) {
    LOG(WARNING) << "compute runtime: memnode " << MemnodeName() << " still answers: data connections replaced";
    reconnects_++;
    SetHealth(kHealthy);
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
    ClientOptions co = conn_opts_;
    co.connect_attempts = 1;
    co.connect_timeout_ms = opts_.reconnect_timeout_ms;
    auto c = memnode::MemnodeClient::Connect(opts_.transport, co);
    if (!c.ok()) {
      last = c.status();
      LOG(WARNING) << "compute runtime: reconnect " << attempt + 1 << "/" << opts_.reconnect_attempts << " to "
                   << MemnodeName() << " failed: " << last;
      continue;
    }
    {
      WriterMutexLock ex(&epoch_mu_);
      std::unique_ptr<memnode::MemnodeClient> old;
      {
        MutexLock l(&control_mu_);
        old = std::move(control_);
        control_ = std::move(*c);
        control_id_ = control_->id();
      }
      free_queue_.Clear();  // blocks queued since the loss were the old client's: reclaimed
      DropDataConnections();
    }
    far_exhausted_ = false;
    reconnects_++;
    LOG(WARNING) << "compute runtime: reconnected to memnode " << MemnodeName() << " as client " << control_id_;
    SetHealth(kHealthy);
    return;
  }
  LOG(ERROR) << "compute runtime: gave up reconnecting to memnode " << MemnodeName() << " after "
             << opts_.reconnect_attempts << " attempts: " << last;
  SetHealth(kFailed);
}

void RuntimeImpl::MarkFarMemoryLost(const Status& why) {
  // No far access is in flight; an object is busy only briefly (a Pin
  // backing out of a swap-in, a Destroy).
  uint64_t lost = 0, lost_bytes = 0, dropped_copies = 0;
  const size_t hw = high_water_.load(std::memory_order_acquire);
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
      if (Is(m, kPresent)) {
        // Multi-Copy: the local copy survives; its far copy is gone, so it
        // is dirty (the next swap-out writes it to a new block). Busy while
        // far_offset changes (Destroy reads it under kBusy); the pin count
        // may change meanwhile (Unpin), hence the RMWs.
        if (h->word.compare_exchange_weak(m, m | kBusy, std::memory_order_acq_rel)) {
          h->far_offset = kNoFarOffset;
          h->word.fetch_or(kDirty, std::memory_order_relaxed);
          h->word.fetch_and(~(kFar | kBusy), std::memory_order_release);
          dropped_copies++;
          break;
        }
        continue;
      }
      if (Addr(m) == kLostFar) break;
      if (h->word.compare_exchange_weak(m, kFar | kLostFar, std::memory_order_acq_rel)) {
        lost++;
        lost_bytes += h->size;
        break;
      }
    }
  }
  free_queue_.Clear();
  far_bytes_ = 0;  // no object has a far copy any more
  lost_objects_ += lost;
  lost_bytes_ += lost_bytes;
  MutexLock l(&health_mu_);
  if (lost > 0 && loss_status_.ok()) {
    loss_status_ = Status::DataLoss("far memory lost: " + std::to_string(lost) + " objects (" +
                                    std::to_string(lost_bytes) + " B) whose only copy was at memnode " +
                                    MemnodeName() + " were reclaimed when our control connection dropped (" +
                                    why.ToString() + ")");
  } else if (lost > 0) {
    loss_status_ = Status::DataLoss(loss_status_.message() + "; then " + std::to_string(lost) + " more objects");
  }
  LOG(WARNING) << "compute runtime: control connection to memnode " << MemnodeName() << " lost (" << why
               << "): " << lost << " far-only objects (" << lost_bytes << " B) lost, " << dropped_copies
               << " local objects lost their far copy and stay local";
}

}  // namespace sharry::compute
