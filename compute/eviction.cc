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
      // A memnode that died during the round is out of the next one: go on
      // while another is healthy.
      const bool retry = why.code() == StatusCode::kUnavailable && AnyHealthy() && round < 8;
      if (local_bytes_.load(std::memory_order_relaxed) >= now && !retry &&
          (!why.ok() || rounds_.load(std::memory_order_relaxed) == rounds_before))
        break;  // no progress
    }
    if (fits()) return Status::Ok();
  }
  refused_local_++;
  std::string at = "local usage " + std::to_string(local_bytes_.load()) + " B at its bound of " +
                   std::to_string(local_limit_) + " B (budget + budget/8)";
  if (why.code() == StatusCode::kUnavailable || !AnyHealthy()) {
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

void RuntimeImpl::NoteAllocResult(FarNode& n, const Status& s, bool any_refused) {
  if (!any_refused) {
    if (n.far_exhausted.load(std::memory_order_relaxed) && n.far_exhausted.exchange(false))
      LOG(WARNING) << "compute runtime: far memory available again at memnode " << n.name;
    return;
  }
  if (n.far_exhausted.load(std::memory_order_relaxed) || n.far_exhausted.exchange(true)) return;
  far_exhausted_count_++;
  // Over our client's or our tenant's quota (kQuotaExceeded, issue #11) is
  // handled as far memory exhausted; only the words differ.
  const bool quota = memnode::IsQuotaExceeded(s);
  if (quota) quota_exceeded_count_++;
  const char* what = quota ? "far-memory quota exceeded" : "far memory exhausted";
  LOG(WARNING) << "compute runtime: " << what << " at memnode " << n.name << ": " << s;
  if (!exhausted_said_.exchange(true)) {
    // Once per runtime on stderr (glog's files are easy to miss).
    std::fprintf(stderr,
                 "sharry runtime: %s at memnode %s (%s): local usage is held to %llu B "
                 "(budget + budget/8); New() and swap-ins past it fail with ResourceExhausted\n",
                 what, n.name.c_str(), s.ToString().c_str(), static_cast<unsigned long long>(local_limit_));
  }
}

std::vector<FarNode*> RuntimeImpl::PlacementOrder() const {
  // The scores are read once: other threads change them meanwhile, and a
  // sort whose comparisons change under it may run off its range.
  std::vector<std::pair<uint64_t, FarNode*>> scored;
  for (const auto& n : nodes_)
    if (n->healthy()) scored.push_back({n->Score(), n});
  std::stable_sort(scored.begin(), scored.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<FarNode*> v;
  v.reserve(scored.size());
  for (const auto& [score, n] : scored) v.push_back(n);
  return v;
}

FarNode* RuntimeImpl::AffinityHome(uint32_t key, std::span<FarNode* const> healthy) {
  FarNode* home = nullptr;
  uint64_t best = 0;
  for (FarNode* n : healthy) {
    if (n->far_exhausted.load(std::memory_order_relaxed)) continue;
    const uint64_t w = AffinityWeight(key, n->index);
    if (home == nullptr || w > best) {
      home = n;
      best = w;
    }
  }
  return home;
}

Status RuntimeImpl::BlocksAt(FarNode& n, std::span<const uint32_t> sizes, std::vector<uint64_t>* out, bool* died,
                             std::string_view what) {
  *died = false;
  const std::vector<uint64_t> reused = n.free_queue.TakeReusable(sizes, kNoFarOffset);
  out->assign(sizes.size(), kNoFarOffset);
  std::vector<size_t> still;
  std::vector<uint64_t> alloc_sizes;
  for (size_t j = 0; j < sizes.size(); ++j) {
    if (reused[j] != kNoFarOffset) {
      (*out)[j] = far::Make(n.index, reused[j]);
      recycled_++;
    } else {
      still.push_back(j);
      alloc_sizes.push_back(sizes[j]);
    }
  }
  if (alloc_sizes.empty()) return Status::Ok();
  std::vector<uint64_t> offs;
  Status st;
  bool alive = true;
  {
    MutexLock l(&n.control_mu);
    st = n.control->Alloc(alloc_sizes, &offs, nullptr);
    alive = n.control->transport().alive();
  }
  alloc_rpcs_++;
  n.alloc_rpcs++;
  if (!st.ok() && !alive) {
    out->assign(sizes.size(), kNoFarOffset);
    *died = true;
    return ConnectionFailed(n, st.WithContext("control connection (ALLOC)"), what);
  }
  for (size_t j = 0; j < still.size(); ++j)
    if (offs[j] != memnode::kNoOffset) (*out)[still[j]] = far::Make(n.index, offs[j]);
  NoteAllocResult(n, st, !st.ok());
  return st;
}

Status RuntimeImpl::WriteChain(FarNode& n, std::span<const RemoteOp> ops, std::string_view what) {
  auto conn = DataConnection(n);
  Status ws = conn.ok() ? (*conn)->WriteBatch(ops) : conn.status();
  if (ws.ok()) {
    uint64_t bytes = 0;
    for (const RemoteOp& op : ops) bytes += op.length;
    far_write_bytes_.fetch_add(bytes, std::memory_order_relaxed);  // one atomic per chain
    return ws;
  }
  if (conn.ok() && !(*conn)->alive()) return ConnectionFailed(n, ws, what);
  if (ws.code() != StatusCode::kUnavailable) return FailedAccess(ws.WithContext(what));
  return ws;
}

// ---------------------------------------------------------------- one round

Status RuntimeImpl::Evict(uint64_t bytes_to_free, ObjectHeader* only, bool drops_only) {
  // Victims are taken only inside the far access, so a reconnector
  // (epoch_mu_ exclusive) never waits for one of ours.
  if (!AnyHealthy()) return FailedAccess(NoHealthyStatus(nullptr).WithContext("swap-out"));
  BeginFar();
  ReaderMutexLock far(&epoch_mu_, std::adopt_lock);
  std::vector<Victim> victims;
  SHARRY_RETURN_IF_ERROR(PickVictims(bytes_to_free, only, drops_only, &victims));
  if (victims.empty()) return Status::Ok();
  rounds_++;
  if (ec_) return EvictToStripes(victims);
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
    victims->push_back({only, m, {}});
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
    victims->push_back({h, m, {}});
    freed += h->size;
  }
  return Status::Ok();
}

Status RuntimeImpl::AssignFarBlocks(std::vector<Victim>& victims, Status* refused) {
  // Unique-Copy always needs new blocks; Multi-Copy only the first time.
  // Each new block's memnode: the least used healthy ones, a different one
  // per copy; what a memnode gets in this round counts at once. A victim
  // with an affinity key puts its first copy on the key's home instead
  // (AffinityHome: the healthy, not far-exhausted memnode the key hashes
  // to), its other copies least used first on the others. Still one ALLOC
  // and one WRITE chain per memnode.
  std::vector<FarNode*> order = PlacementOrder();
  const std::vector<FarNode*> healthy = order;  // AffinityHome's candidates (order is re-sorted below)
  if (order.empty()) {
    for (const Victim& v : victims) Release(v);
    return FailedAccess(NoHealthyStatus(nullptr).WithContext("swap-out"));
  }
  std::vector<uint64_t> score(kMaxMemnodes, 0);
  for (FarNode* n : order) score[n->index] = n->Score();
  // Per memnode: the victims (index, copy slot) that need a block there.
  struct Need {
    size_t victim;
    uint32_t slot;
  };
  std::vector<std::vector<Need>> needs(kMaxMemnodes);
  const uint32_t want = std::min<uint32_t>(copies_, static_cast<uint32_t>(order.size()));
  for (size_t i = 0; i < victims.size(); ++i) {
    Victim& v = victims[i];
    if (opts_.mode == CopyMode::kMultiCopy && Is(v.word, kFar)) {
      v.far = CopiesOf(v.h, v.h->far_offset);
      continue;
    }
    v.new_blocks = true;
    v.short_copies = want < copies_;
    std::sort(order.begin(), order.end(),
              [&](const FarNode* a, const FarNode* b) { return score[a->index] < score[b->index]; });
    FarNode* const home = v.h->affinity != 0 ? AffinityHome(v.h->affinity, healthy) : nullptr;
    auto place = [&](FarNode* n, uint32_t c) {
      needs[n->index].push_back({i, c});
      score[n->index] += v.h->size;
      v.far.addr[c] = kNoFarOffset;
    };
    uint32_t c = 0;
    if (home != nullptr) place(home, c++);
    for (size_t k = 0; c < want; ++k)  // home is one of `order`: there are enough others
      if (order[k] != home) place(order[k], c++);
    v.far.n = want;
  }
  Status first_refusal;
  for (const auto& np : nodes_) {
    FarNode& n = *np;
    std::vector<Need>& need = needs[n.index];
    if (need.empty()) continue;
    // Queued far blocks of the same size first: no ALLOC, no FREE.
    std::vector<uint32_t> sizes;
    for (const Need& x : need) sizes.push_back(victims[x.victim].h->size);
    std::vector<uint64_t> got;
    bool died = false;
    Status st = BlocksAt(n, sizes, &got, &died, "swap-out: ALLOC");
    for (size_t j = 0; j < need.size(); ++j) victims[need[j].victim].far.addr[need[j].slot] = got[j];
    if (!st.ok() && first_refusal.ok()) first_refusal = st;
  }
  // Compact each victim's copies: the blocks it got, in order.
  for (Victim& v : victims) {
    if (!v.new_blocks) continue;
    Copies got;
    for (uint32_t c = 0; c < v.far.n; ++c)
      if (v.far.addr[c] != kNoFarOffset) got.addr[got.n++] = v.far.addr[c];
    if (got.n < copies_ && got.n > 0) v.short_copies = true;
    v.far = got;
  }
  *refused = first_refusal;
  return Status::Ok();
}

void RuntimeImpl::GiveBack(const std::vector<Victim>& victims) {
  std::vector<std::vector<FarBlockQueue::Block>> back(kMaxMemnodes);
  for (const Victim& v : victims) {
    if (!v.new_blocks) continue;
    for (uint32_t c = 0; c < v.far.n; ++c)
      back[far::NodeOf(v.far.addr[c])].push_back({far::OffsetOf(v.far.addr[c]), v.h->size});
  }
  for (const auto& n : nodes_) n->free_queue.PushAll(back[n->index]);
}

Status RuntimeImpl::WriteBack(std::vector<Victim>& victims) {
  // Objects without a far block (far memory exhausted) stay local. One chain
  // of WRITEs per memnode.
  std::vector<std::vector<RemoteOp>> writes(kMaxMemnodes);
  std::vector<std::vector<std::pair<size_t, uint32_t>>> whose(kMaxMemnodes);
  for (size_t i = 0; i < victims.size(); ++i) {
    const Victim& v = victims[i];
    const bool must_write = opts_.mode == CopyMode::kUniqueCopy || !Is(v.word, kFar) || Is(v.word, kDirty);
    if (!must_write) continue;
    for (uint32_t c = 0; c < v.far.n; ++c) {
      const uint32_t node = far::NodeOf(v.far.addr[c]);
      writes[node].push_back({far::OffsetOf(v.far.addr[c]), reinterpret_cast<void*>(Addr(v.word)), v.h->size});
      whose[node].push_back({i, c});
    }
  }
  Status other;
  for (const auto& np : nodes_) {
    FarNode& n = *np;
    if (writes[n.index].empty()) continue;
    Status ws = WriteChain(n, writes[n.index], "swap-out: WRITE");
    if (ws.ok()) continue;
    if (ws.code() != StatusCode::kUnavailable) {
      other = ws;
      break;
    }
    // This memnode is out of the round: its blocks go back to its queue (a
    // reconnect clears it if the memnode lost them), the victims keep their
    // other copies (and are repaired later) or stay local.
    // (Multi-Copy: an object's old copy there is stale now: it goes too.)
    std::vector<FarBlockQueue::Block> back;
    for (auto [i, c] : whose[n.index]) {
      Victim& v = victims[i];
      back.push_back({far::OffsetOf(v.far.addr[c]), v.h->size});
      if (!v.new_blocks) {
        n.copies--;
        n.copy_bytes -= v.h->size;
        far_copy_bytes_ -= v.h->size;
      }
      v.far.addr[c] = kNoFarOffset;
    }
    n.free_queue.PushAll(back);
    if (other.ok()) other = ws;
  }
  bool any = false;
  for (Victim& v : victims) {
    Copies got;
    for (uint32_t c = 0; c < v.far.n; ++c)
      if (v.far.addr[c] != kNoFarOffset) got.addr[got.n++] = v.far.addr[c];
    if (got.n < v.far.n) v.short_copies = true;
    v.far = got;
    any |= got.n > 0;
  }
  if (other.ok()) return Status::Ok();
  if (other.code() == StatusCode::kUnavailable && any) return Status::Ok();  // the others went out
  // Nothing was lost: every object is still local. Give back the new blocks.
  GiveBack(victims);
  for (const Victim& v : victims) Release(v);
  return other;
}

void RuntimeImpl::Commit(const std::vector<Victim>& victims) {
  for (const Victim& v : victims) {
    if (v.far.n == 0) {
      if (opts_.mode == CopyMode::kMultiCopy && Is(v.word, kFar) && !v.new_blocks) {
        // Multi-Copy: every copy's memnode failed during the rewrite; the
        // object stays local and dirty, without far copies.
        SetExtras(v.h, nullptr, 0);
        v.h->far_offset = kNoFarOffset;
        far_bytes_ -= v.h->size;
        v.h->word.store((v.word & ~kFar) | kDirty, std::memory_order_release);
        continue;
      }
      Release(v);
      continue;
    }
    const bool had_far = opts_.mode == CopyMode::kMultiCopy && Is(v.word, kFar);
    const bool dropped = had_far && !Is(v.word, kDirty);
    if (!had_far) far_bytes_ += v.h->size;
    if (v.new_blocks) {
      far_copy_bytes_ += uint64_t{v.h->size} * v.far.n;
      for (uint32_t c = 0; c < v.far.n; ++c) {
        FarNode& n = *nodes_[far::NodeOf(v.far.addr[c])];
        n.copies++;
        n.copy_bytes += v.h->size;
        n.placed_since_stats += v.h->size;
      }
    }
    SetExtras(v.h, v.far.addr + 1, v.far.n - 1);
    v.h->far_offset = opts_.mode == CopyMode::kMultiCopy ? v.far.addr[0] : kNoFarOffset;
    std::free(reinterpret_cast<void*>(Addr(v.word)));
    local_bytes_ -= v.h->size;
    v.h->word.store(kFar | v.far.addr[0], std::memory_order_release);
    if (dropped) drops_++;
    else swap_outs_++;
    if (v.short_copies) QueueRepair(v.h);
  }
}

}  // namespace sharry::compute
