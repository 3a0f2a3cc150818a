// Eviction: when to evict (MaybeEvict, MakeRoom, EvictToBudget, SwapOut) and
// one eviction round, Evict = PickVictims -> AssignFarBlocks -> WriteBack ->
// Commit, each step rolling the round back on failure (every object stays
// local, every far block it took goes back to the queue).
#include <glog/logging.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "compute/runtime_impl.h"
#include "memnode/rpc.h"

namespace sharry::compute {

using namespace meta;  // NOLINT: the bit names of object.h

// ---------------------------------------------------------------- when

void RuntimeImpl::MaybeEvict() {
  const uint64_t budget = opts_.local_budget_bytes;
  const uint64_t local = local_bytes_.load(std::memory_order_relaxed);
  if (local <= evict_start_) return;
  if (opts_.evict_thread) {
    SignalEvictor();
    if (local <= budget) return;  // the evictor catches up off this thread
  }
  if (!evict_mu_.TryLock()) {
    // Another thread (the evictor, or another application thread) is
    // evicting. Go on, unless usage ran far past the budget: then wait for it
    // and help, so usage stays bounded.
    if (local_bytes_.load(std::memory_order_relaxed) <= budget + budget / 8) return;
    evict_mu_.Lock();
  }
  EvictPastBudget();
  evict_mu_.Unlock();
}

void RuntimeImpl::EvictPastBudget() {
  // Evict a little below the budget, so that rounds come in batches. A
  // further round only while still over the budget: the first one stops at
  // evict_batch objects, often one object short of sync_target_, and a
  // round of one object would cost a whole WRITE round trip on this path.
  for (int round = 0; round < 64; ++round) {
    const uint64_t now = local_bytes_.load(std::memory_order_relaxed);
    if (now <= (round == 0 ? sync_target_ : opts_.local_budget_bytes)) break;
    const uint64_t rounds_before = rounds_.load(std::memory_order_relaxed);
    Status s = Evict(now - sync_target_, nullptr);
    if (!s.ok()) {
      RecordEvictionError(s);
      break;
    }
    if (rounds_.load(std::memory_order_relaxed) == rounds_before) break;  // nothing evictable now
    sync_rounds_++;
  }
}

Status RuntimeImpl::MakeRoom(uint64_t size, bool swap_in) {
  auto fits = [&] {
    const uint64_t now = local_bytes_.load(std::memory_order_relaxed);
    return now + size <= local_limit_ || (swap_in && now <= local_limit_);
  };
  if (fits()) return Status::Ok();
  Status why;
  {
    MutexLock l(&evict_mu_);
    for (int round = 0; round < 64 && !fits(); ++round) {
      const uint64_t now = local_bytes_.load(std::memory_order_relaxed);
      const uint64_t rounds_before = rounds_.load(std::memory_order_relaxed);
      why = Evict(now + size - std::min(now + size, sync_target_), nullptr);
      if (!why.ok()) RecordEvictionError(why);
      // Multi-Copy, far memory exhausted: objects with a far copy can still
      // go (clean ones are dropped, dirty ones rewritten in place).
      if (!why.ok() && IsFarMemoryRefused(why.code()) && opts_.mode == CopyMode::kMultiCopy && !fits())
        (void)Evict(now + size - std::min(now + size, sync_target_), nullptr, true);
      if (local_bytes_.load(std::memory_order_relaxed) >= now &&
          (!why.ok() || rounds_.load(std::memory_order_relaxed) == rounds_before))
        break;  // no progress
    }
    if (fits()) return Status::Ok();
  }
  refused_local_++;
  std::string at = "local usage " + std::to_string(local_bytes_.load()) + " B at its bound of " +
                   std::to_string(local_limit_) + " B (budget + budget/8)";
  if (why.code() == StatusCode::kUnavailable || health_.load() != kHealthy) {
    Status h = health();
    return Status::Unavailable(at + ": " + (h.ok() ? why.message() : h.message()));
  }
  if (!why.ok()) return Status::ResourceExhausted(at + ": far memory exhausted or refused: " + why.ToString());
  return Status::ResourceExhausted(at + ": every local object is pinned or busy");
}

Status RuntimeImpl::EvictToBudget() {
  MutexLock l(&evict_mu_);
  for (int round = 0; round < 1 << 20; ++round) {
    uint64_t local = local_bytes_.load();
    if (local <= opts_.local_budget_bytes) return Status::Ok();
    uint64_t before = local;
    SHARRY_RETURN_IF_ERROR(Evict(local - opts_.local_budget_bytes, nullptr));
    if (local_bytes_.load() >= before) return Status::Unavailable("every local object is pinned or busy");
  }
  return Status::Ok();
}

Status RuntimeImpl::SwapOut(const RemoteObject& obj) {
  MutexLock l(&evict_mu_);
  return Evict(0, obj.h_);
}

void RuntimeImpl::RecordEvictionError(const Status& s) {
  MutexLock sl(&evict_status_mu_);
  if (evict_status_.ok() || evict_status_.code() != s.code())
    LOG(WARNING) << "compute runtime: eviction failed, objects stay local: " << s;
  evict_status_ = s;
}

void RuntimeImpl::NoteAllocResult(const Status& s, bool any_refused) {
  if (!any_refused) {
    if (far_exhausted_.load(std::memory_order_relaxed) && far_exhausted_.exchange(false))
      LOG(WARNING) << "compute runtime: far memory available again at memnode " << MemnodeName();
    return;
  }
  if (far_exhausted_.load(std::memory_order_relaxed) || far_exhausted_.exchange(true)) return;
  far_exhausted_count_++;
  // Over our client's or our tenant's quota (kQuotaExceeded, issue #11) is
  // handled as far memory exhausted; only the words differ.
  const bool quota = memnode::IsQuotaExceeded(s);
  if (quota) quota_exceeded_count_++;
  const char* what = quota ? "far-memory quota exceeded" : "far memory exhausted";
  LOG(WARNING) << "compute runtime: " << what << " at memnode " << MemnodeName() << ": " << s;
  if (!exhausted_said_.exchange(true)) {
    // Once per runtime on stderr (glog's files are easy to miss).
    std::fprintf(stderr,
                 "sharry runtime: %s at memnode %s (%s): local usage is held to %llu B "
                 "(budget + budget/8); New() and swap-ins past it fail with ResourceExhausted\n",
                 what, MemnodeName().c_str(), s.ToString().c_str(), static_cast<unsigned long long>(local_limit_));
  }
}

// ---------------------------------------------------------------- one round

Status RuntimeImpl::Evict(uint64_t bytes_to_free, ObjectHeader* only, bool drops_only) {
  // Victims are taken only inside the far access, so the reconnector
  // (epoch_mu_ exclusive) never waits for one of ours.
  Status why;
  if (!TryBeginFar(&why)) return why.WithContext("swap-out");
  ReaderMutexLock far(&epoch_mu_, std::adopt_lock);
  std::vector<Victim> victims;
  SHARRY_RETURN_IF_ERROR(PickVictims(bytes_to_free, only, drops_only, &victims));
  if (victims.empty()) return Status::Ok();
  rounds_++;
  Status refused;
  SHARRY_RETURN_IF_ERROR(AssignFarBlocks(victims, &refused));
  SHARRY_RETURN_IF_ERROR(WriteBack(victims));
  Commit(victims);
  if (!refused.ok()) return refused.WithContext("swap-out: some objects stay local");
  return Status::Ok();
}

Status RuntimeImpl::PickVictims(uint64_t bytes_to_free, ObjectHeader* only, bool drops_only,
                                std::vector<Victim>* victims) {
  if (only != nullptr) {
    uint64_t m = only->word.load(std::memory_order_acquire);
    if (!Is(m, kPresent)) return Status::Ok();  // already far
    if (Is(m, kBusy) || Pins(m) > 0) return Status::Unavailable("the object is pinned by a DerefScope or busy");
    if (!only->word.compare_exchange_strong(m, m | kBusy, std::memory_order_acq_rel))
      return Status::Unavailable("the object changed while being swapped out; retry");
    victims->push_back({only, m});
    return Status::Ok();
  }
  const size_t hw = high_water_.load(std::memory_order_acquire);
  if (hw == 0) return Status::Ok();
  uint64_t freed = 0;
  for (size_t step = 0; step < 2 * hw && victims->size() < opts_.evict_batch && freed < bytes_to_free; ++step) {
    ObjectHeader* h = HeaderAt(clock_hand_);
    clock_hand_ = (clock_hand_ + 1) % hw;
    if (h->live.load(std::memory_order_relaxed) == 0) continue;
    uint64_t m = h->word.load(std::memory_order_acquire);
    if (!Is(m, kPresent) || Is(m, kBusy) || Pins(m) > 0) continue;
    if (drops_only && !Is(m, kFar)) continue;
    if (Is(m, kHot)) {  // second chance
      h->word.compare_exchange_strong(m, m & ~kHot, std::memory_order_acq_rel);
      continue;
    }
    if (!h->word.compare_exchange_strong(m, m | kBusy, std::memory_order_acq_rel)) continue;
    victims->push_back({h, m});
    freed += h->size;
  }
  return Status::Ok();
}

Status RuntimeImpl::AssignFarBlocks(std::vector<Victim>& victims, Status* refused) {
  // Unique-Copy always needs new blocks; Multi-Copy only the first time.
  std::vector<size_t> needs;
  std::vector<uint32_t> sizes;
  for (size_t i = 0; i < victims.size(); ++i) {
    Victim& v = victims[i];
    if (opts_.mode == CopyMode::kMultiCopy && Is(v.word, kFar)) {
      v.far = v.h->far_offset;
    } else {
      v.new_block = true;
      needs.push_back(i);
      sizes.push_back(v.h->size);
    }
  }
  if (needs.empty()) return Status::Ok();
  // First reuse queued far blocks of the same size: no ALLOC, no FREE.
  const std::vector<uint64_t> reused = free_queue_.TakeReusable(sizes, kNoFarOffset);
  std::vector<size_t> still;
  std::vector<uint64_t> alloc_sizes;
  for (size_t j = 0; j < needs.size(); ++j) {
    Victim& v = victims[needs[j]];
    v.far = reused[j];
    if (v.far != kNoFarOffset) {
      recycled_++;
    } else {
      still.push_back(needs[j]);
      alloc_sizes.push_back(v.h->size);
    }
  }
  if (alloc_sizes.empty()) return Status::Ok();
  std::vector<uint64_t> offs;
  std::vector<Status> each;
  Status alloc_status;
  bool alive = true;
  {
    MutexLock l(&control_mu_);
    alloc_status = control_->Alloc(alloc_sizes, &offs, &each);
    alive = control_->transport().alive();
  }
  alloc_rpcs_++;
  if (!alloc_status.ok() && !alive) {
    std::vector<FarBlockQueue::Block> back;  // the reused blocks go back to the queue
    for (size_t k : needs)
      if (victims[k].far != kNoFarOffset) back.push_back({victims[k].far, victims[k].h->size});
    free_queue_.PushAll(back);
    for (const Victim& v : victims) Release(v);
    return ConnectionFailed(alloc_status.WithContext("control connection (ALLOC)"), "swap-out: ALLOC");
  }
  for (size_t j = 0; j < still.size(); ++j) victims[still[j]].far = offs[j];
  NoteAllocResult(alloc_status, !alloc_status.ok());
  *refused = alloc_status;
  return Status::Ok();
}

Status RuntimeImpl::WriteBack(std::vector<Victim>& victims) {
  // Objects without a far block (far memory exhausted) stay local.
  std::vector<RemoteOp> writes;
  for (const Victim& v : victims) {
    if (v.far == memnode::kNoOffset) continue;
    const bool must_write = opts_.mode == CopyMode::kUniqueCopy || !Is(v.word, kFar) || Is(v.word, kDirty);
    if (must_write) writes.push_back({v.far, reinterpret_cast<void*>(Addr(v.word)), v.h->size});
  }
  if (writes.empty()) return Status::Ok();
  auto conn = DataConnection();
  Status ws = conn.ok() ? (*conn)->WriteBatch(writes) : conn.status();
  if (!ws.ok() && conn.ok() && !(*conn)->alive()) ws = ConnectionFailed(ws, "swap-out: WRITE");
  if (ws.ok()) return Status::Ok();
  // Nothing was lost: every object is still local. Give back the new blocks.
  std::vector<FarBlockQueue::Block> back;
  for (const Victim& v : victims)
    if (v.new_block && v.far != memnode::kNoOffset) back.push_back({v.far, v.h->size});
  free_queue_.PushAll(back);
  for (const Victim& v : victims) Release(v);
  return ws.code() == StatusCode::kUnavailable ? ws : FailedAccess(ws.WithContext("swap-out: WRITE"));
}

void RuntimeImpl::Commit(const std::vector<Victim>& victims) {
  for (const Victim& v : victims) {
    if (v.far == memnode::kNoOffset) {
      Release(v);
      continue;
    }
    const bool had_far = opts_.mode == CopyMode::kMultiCopy && Is(v.word, kFar);
    const bool dropped = had_far && !Is(v.word, kDirty);
    if (!had_far) far_bytes_ += v.h->size;
    v.h->far_offset = opts_.mode == CopyMode::kMultiCopy ? v.far : kNoFarOffset;
    std::free(reinterpret_cast<void*>(Addr(v.word)));
    local_bytes_ -= v.h->size;
    v.h->word.store(kFar | v.far, std::memory_order_release);
    if (dropped) drops_++;
    else swap_outs_++;
  }
}

}  // namespace sharry::compute
