// Erasure-coded far copies (ec:K+M, Unique-Copy; docs/redundancy.md): the
// stripes of an eviction round, reads of one member (healthy: one READ;
// degraded: rebuilt from K others), members leaving their stripe (holes),
// what a dead memnode takes, and the restriper that rewrites the live members
// of stripes with holes or lost blocks into new stripes (compaction and
// repair in one).
#include <glog/logging.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <numeric>

#include "compute/runtime_impl.h"

namespace sharry::compute {

using namespace meta;  // NOLINT: the bit names of object.h

namespace {
uint32_t RefId(uint64_t ref) { return static_cast<uint32_t>(ref >> 8); }
uint32_t RefPos(uint64_t ref) { return static_cast<uint32_t>(ref & 0xFF); }
}  // namespace

Status RuntimeImpl::WriteStripes(std::vector<StripeItem>& items) {
  const uint32_t K = static_cast<uint32_t>(ec_->k()), M = static_cast<uint32_t>(ec_->m());
  std::vector<FarNode*> order = PlacementOrder();
  if (order.size() < M + 1)
    return FailedAccess(Status::Unavailable(
        "redundancy " + RedundancyName(opts_.redundancy) + " needs at least " + std::to_string(M + 1) +
        " healthy memnodes to write a stripe; " + std::to_string(order.size()) + " are: " +
        NoHealthyStatus(nullptr).message()));
  // A stripe takes K members, or fewer while fewer memnodes are healthy
  // (each block on its own memnode); similar sizes share one (less padding).
  const uint32_t per = std::min<uint32_t>(K, static_cast<uint32_t>(order.size()) - M);
  std::vector<size_t> idx(items.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return items[a].size > items[b].size; });
  struct Plan {
    std::vector<size_t> members;  // items at data positions 0..r-1
    uint32_t len = 0;
    std::vector<uint32_t> node;   // K + M
    std::vector<uint64_t> addr;   // K + M
  };
  std::vector<Plan> plans;
  std::vector<uint64_t> score(kMaxMemnodes, 0);
  for (FarNode* n : order) score[n->index] = n->Score();
  for (size_t b = 0; b < idx.size(); b += per) {
    Plan p;
    p.members.assign(idx.begin() + static_cast<ptrdiff_t>(b),
                     idx.begin() + static_cast<ptrdiff_t>(std::min(idx.size(), b + per)));
    p.len = items[p.members[0]].size;
    std::sort(order.begin(), order.end(),
              [&](const FarNode* x, const FarNode* y) { return score[x->index] < score[y->index]; });
    p.node.assign(K + M, ~0u);
    p.addr.assign(K + M, kNoFarOffset);
    const uint32_t r = static_cast<uint32_t>(p.members.size());
    for (uint32_t i = 0; i < r; ++i) {
      p.node[i] = order[i]->index;
      score[order[i]->index] += items[p.members[i]].size;
    }
    for (uint32_t j = 0; j < M; ++j) {
      p.node[K + j] = order[r + j]->index;
      score[order[r + j]->index] += p.len;
    }
    plans.push_back(std::move(p));
  }
  auto block_size = [&](const Plan& p, uint32_t pos) { return pos < K ? items[p.members[pos]].size : p.len; };
  auto give_back = [&] {
    std::vector<std::vector<FarBlockQueue::Block>> back(kMaxMemnodes);
    for (const Plan& p : plans)
      for (uint32_t pos = 0; pos < K + M; ++pos)
        if (p.addr[pos] != kNoFarOffset)
          back[far::NodeOf(p.addr[pos])].push_back({far::OffsetOf(p.addr[pos]), block_size(p, pos)});
    for (const auto& n : nodes_) n->free_queue.PushAll(back[n->index]);
  };
  // The blocks: queued ones of the right size first, then one ALLOC per memnode.
  struct Need {
    size_t plan;
    uint32_t pos;
  };
  std::vector<std::vector<Need>> needs(kMaxMemnodes);
  for (size_t pi = 0; pi < plans.size(); ++pi)
    for (uint32_t pos = 0; pos < K + M; ++pos)
      if (plans[pi].node[pos] != ~0u) needs[plans[pi].node[pos]].push_back({pi, pos});
  Status fail;
  for (const auto& np : nodes_) {
    FarNode& n = *np;
    const std::vector<Need>& need = needs[n.index];
    if (need.empty()) continue;
    std::vector<uint32_t> sizes;
    for (const Need& x : need) sizes.push_back(block_size(plans[x.plan], x.pos));
    std::vector<uint64_t> got;
    bool died = false;
    fail = BlocksAt(n, sizes, &got, &died, "swap-out: ALLOC");
    for (size_t j = 0; j < need.size(); ++j) plans[need[j].plan].addr[need[j].pos] = got[j];
    if (!fail.ok()) break;
  }
  if (!fail.ok()) {
    give_back();
    return fail;
  }
  // Encode: short members padded with zeros, missing members are zeros.
  uint32_t max_len = 0;
  for (const Plan& p : plans) max_len = std::max(max_len, p.len);
  std::vector<uint8_t> zeros(max_len, 0);
  std::vector<std::vector<uint8_t>> parity(plans.size());
  std::vector<std::vector<uint8_t>> padded;
  for (size_t pi = 0; pi < plans.size(); ++pi) {
    const Plan& p = plans[pi];
    std::vector<const uint8_t*> data(K, zeros.data());
    for (size_t i = 0; i < p.members.size(); ++i) {
      const StripeItem& it = items[p.members[i]];
      if (it.size == p.len) {
        data[i] = static_cast<const uint8_t*>(it.data);
      } else {
        padded.emplace_back(p.len, 0);
        std::memcpy(padded.back().data(), it.data, it.size);
        data[i] = padded.back().data();
      }
    }
    parity[pi].assign(size_t{p.len} * M, 0);
    std::vector<uint8_t*> par(M);
    for (uint32_t j = 0; j < M; ++j) par[j] = parity[pi].data() + size_t{j} * p.len;
    ec_->Encode(p.len, data, par);
  }
  // One chain of WRITEs per memnode.
  std::vector<std::vector<RemoteOp>> writes(kMaxMemnodes);
  for (size_t pi = 0; pi < plans.size(); ++pi) {
    const Plan& p = plans[pi];
    for (uint32_t pos = 0; pos < K + M; ++pos) {
      if (p.addr[pos] == kNoFarOffset) continue;
      const void* src = pos < K ? items[p.members[pos]].data : parity[pi].data() + size_t{pos - K} * p.len;
      writes[far::NodeOf(p.addr[pos])].push_back({far::OffsetOf(p.addr[pos]), const_cast<void*>(src),
                                                  block_size(p, pos)});
    }
  }
  for (const auto& np : nodes_) {
    FarNode& n = *np;
    if (writes[n.index].empty()) continue;
    Status ws = WriteChain(n, writes[n.index], "swap-out: WRITE");
    if (ws.ok()) continue;
    give_back();
    return ws;
  }
  // The stripes exist.
  MutexLock l(&stripes_mu_);
  for (const Plan& p : plans) {
    uint32_t id;
    if (!free_stripe_ids_.empty()) {
      id = free_stripe_ids_.back();
      free_stripe_ids_.pop_back();
    } else {
      id = static_cast<uint32_t>(stripes_.size());
      stripes_.emplace_back();
    }
    auto s = std::make_unique<Stripe>();
    s->serial = next_stripe_serial_++;
    s->len = p.len;
    s->k_real = static_cast<uint32_t>(p.members.size());
    s->live = s->k_real;
    s->addr = p.addr;
    s->size.assign(K, 0);
    s->block.assign(K, 0);
    s->member.assign(K, nullptr);
    s->kept.resize(K);
    for (uint32_t i = 0; i < s->k_real; ++i) {
      StripeItem& it = items[p.members[i]];
      s->size[i] = it.size;
      s->block[i] = it.size;
      s->member[i] = it.h;
      it.addr = p.addr[i];
      it.ref = StripeRef(id, i);
    }
    for (uint32_t pos = 0; pos < K + M; ++pos) {
      if (p.addr[pos] == kNoFarOffset) continue;
      const uint32_t bs = pos < K ? s->size[pos] : p.len;
      FarNode& n = *nodes_[far::NodeOf(p.addr[pos])];
      n.copies++;
      n.copy_bytes += bs;
      n.placed_since_stats += bs;
      far_copy_bytes_ += bs;
    }
    stripes_[id] = std::move(s);
    live_stripes_++;
  }
  return Status::Ok();
}

Status RuntimeImpl::EvictToStripes(std::vector<Victim>& all) {
  // Victims of a kept hole's size refill it in place (stripe_refill.cc);
  // the others become new stripes.
  std::vector<Victim> victims;
  RefillHoles(all, &victims);
  if (victims.empty()) return Status::Ok();
  std::vector<StripeItem> items;
  items.reserve(victims.size());
  for (const Victim& v : victims) items.push_back({v.h, reinterpret_cast<void*>(Addr(v.word)), v.h->size});
  if (Status s = WriteStripes(items); !s.ok()) {
    for (const Victim& v : victims) Release(v);
    return s.code() == StatusCode::kUnavailable ? s : s.WithContext("swap-out: objects stay local");
  }
  for (size_t i = 0; i < victims.size(); ++i) {
    const Victim& v = victims[i];
    far_bytes_ += v.h->size;
    SetExtras(v.h, &items[i].ref, 1);
    std::free(reinterpret_cast<void*>(Addr(v.word)));
    local_bytes_ -= v.h->size;
    v.h->word.store(kFar | items[i].addr, std::memory_order_release);
    swap_outs_++;
  }
  return Status::Ok();
}

Status RuntimeImpl::ReadMember(ObjectHeader* h, uint64_t addr, void* out) {
  const uint32_t size = h->size;
  const uint32_t K = static_cast<uint32_t>(ec_->k()), M = static_cast<uint32_t>(ec_->m());
  const uint64_t ref = Extras(h)[0];
  const uint32_t pos = RefPos(ref);
  // Healthy: one READ of its own block (unless that block went with its
  // memnode). The stripe is copied only for a degraded read.
  bool own_block;
  {
    MutexLock l(&stripes_mu_);
    own_block = stripes_[RefId(ref)]->addr[pos] == addr;
  }
  FarNode& home = *nodes_[far::NodeOf(addr)];
  if (own_block && home.healthy()) {
    auto conn = DataConnection(home);
    if (conn.ok()) {
      Status s = (*conn)->Read(far::OffsetOf(addr), out, size);
      if (s.ok()) {
        far_read_bytes_ += size;
        return s;
      }
      if ((*conn)->alive()) return FailedAccess(s.WithContext("swap-in from memnode " + home.name));
      (void)ConnectionFailed(home, s, "swap-in");
    }
  }
  // Degraded: rebuild the block from K others of the stripe — not while a
  // refill rewrites it (its parity and one hole disagree meanwhile), and no
  // refill starts while we read (readers).
  uint32_t len, k_real;
  std::vector<uint64_t> baddr;
  std::vector<uint32_t> bsize;
  {
    MutexLock l(&stripes_mu_);
    while (stripes_[RefId(ref)]->busy > 0) stripes_cv_.Wait(&stripes_mu_);
    Stripe& s = *stripes_[RefId(ref)];  // h is a live member: the stripe stays
    s.readers++;
    len = s.len;
    k_real = s.k_real;
    baddr = s.addr;
    bsize = s.size;
  }
  struct Reading {
    RuntimeImpl* rt;
    uint32_t id;
    ~Reading() {
      MutexLock l(&rt->stripes_mu_);
      rt->stripes_[id]->readers--;
    }
  } reading{this, RefId(ref)};
  std::vector<std::vector<uint8_t>> bufs;
  bufs.reserve(K + M);
  std::vector<int> present_idx;
  std::vector<const uint8_t*> present;
  std::vector<uint8_t> zeros(len, 0);
  for (uint32_t i = k_real; i < K && present.size() < K; ++i) {  // missing members are zeros: free
    present_idx.push_back(static_cast<int>(i));
    present.push_back(zeros.data());
  }
  for (uint32_t i = 0; i < K + M && present.size() < K; ++i) {
    if (i == pos || (i >= k_real && i < K) || baddr[i] == kNoFarOffset) continue;
    FarNode& n = *nodes_[far::NodeOf(baddr[i])];
    if (!n.healthy()) continue;
    auto conn = DataConnection(n);
    if (!conn.ok()) continue;
    bufs.emplace_back(len, 0);
    const uint32_t want = i < K ? bsize[i] : len;
    Status s = (*conn)->Read(far::OffsetOf(baddr[i]), bufs.back().data(), want);
    if (s.ok()) far_read_bytes_ += want;
    if (!s.ok()) {
      if (!(*conn)->alive()) (void)ConnectionFailed(n, s, "degraded swap-in");
      bufs.pop_back();
      continue;
    }
    present_idx.push_back(static_cast<int>(i));
    present.push_back(bufs.back().data());
  }
  if (present.size() < K)
    return FailedAccess(Status::Unavailable("swap-in: degraded read: " + std::to_string(present.size()) + " of the " +
                                            std::to_string(K) + " blocks it needs are readable now; " +
                                            NoHealthyStatus(nullptr).message()));
  std::vector<uint8_t> rebuilt(len);
  const int want_idx[1] = {static_cast<int>(pos)};
  uint8_t* const outs[1] = {rebuilt.data()};
  SHARRY_RETURN_IF_ERROR(ec_->Reconstruct(len, present_idx, present, want_idx, outs));
  std::memcpy(out, rebuilt.data(), size);
  degraded_reads_++;
  return Status::Ok();
}

bool RuntimeImpl::FreeStripeBlocks(const Stripe& s) {
  // The stripe is out of the table: its blocks are queued for FREE.
  const uint32_t K = static_cast<uint32_t>(ec_->k());
  bool flush = false;
  for (uint32_t pos = 0; pos < s.addr.size(); ++pos) {
    if (s.addr[pos] == kNoFarOffset) continue;
    const uint32_t bs = pos < K ? s.block[pos] : s.len;
    flush |= QueueAndMaybeSignal(*nodes_[far::NodeOf(s.addr[pos])], far::OffsetOf(s.addr[pos]), bs);
  }
  return flush;
}

bool RuntimeImpl::OverHoleBudget() const {
  const double data = static_cast<double>(far_bytes_.load(std::memory_order_relaxed));
  const double K = ec_->k(), M = ec_->m();
  return static_cast<double>(far_copy_bytes_.load(std::memory_order_relaxed)) >
         data * (K + M) / K * (1 + opts_.ec_hole_budget);
}

void RuntimeImpl::UpdateRestripePending() {
  restripe_pending_.store(repair_stripes_.size() + repair_in_flight_, std::memory_order_relaxed);
  holes_pending_.store(restripe_q_.size() + holes_in_flight_, std::memory_order_relaxed);
}

void RuntimeImpl::MaybeQueueRestripe(uint32_t id, Stripe& s) {
  // Lost blocks: repair (first, always). Holes: compaction (while over the
  // hole budget, oldest holes first).
  if (s.live == 0) return;
  if (s.gone > 0 && !s.queued_repair) {
    s.queued_repair = true;
    repair_stripes_.push_back(id);
  } else if (s.gone == 0 && s.live < s.k_real && !s.queued) {
    s.queued = true;
    restripe_q_.push_back(id);
  }
  UpdateRestripePending();
}

bool RuntimeImpl::LeaveStripe(ObjectHeader* h, const void* data) {
  const uint64_t ref = Extras(h)[0];
  SetExtras(h, nullptr, 0);
  std::unique_ptr<Stripe> dead;
  bool queued = false;
  {
    MutexLock l(&stripes_mu_);
    std::unique_ptr<Stripe>& s = stripes_[RefId(ref)];
    CHECK(s && s->member[RefPos(ref)] == h) << "object not in its stripe";
    s->member[RefPos(ref)] = nullptr;
    s->live--;
    if (s->live == 0) {
      DropAllKept(*s);
      dead = std::move(s);
      free_stripe_ids_.push_back(RefId(ref));
      live_stripes_--;
    } else {
      if (data != nullptr) KeepHole(RefId(ref), *s, RefPos(ref), data);
      MaybeQueueRestripe(RefId(ref), *s);
      queued = !repair_stripes_.empty() || OverHoleBudget();
    }
  }
  if (queued) {
    MutexLock l(&repair_mu_);
    repair_cv_.Signal();
  }
  return dead ? FreeStripeBlocks(*dead) : false;
}

void RuntimeImpl::MarkStripesLost(FarNode& n, uint64_t* lost, uint64_t* lost_bytes) {
  const uint32_t K = static_cast<uint32_t>(ec_->k()), M = static_cast<uint32_t>(ec_->m());
  // Pass 1: the blocks at n are gone.
  std::vector<std::unique_ptr<Stripe>> dead;
  {
    MutexLock l(&stripes_mu_);
    for (size_t id = 0; id < stripes_.size(); ++id) {
      Stripe* s = stripes_[id].get();
      if (s == nullptr) continue;
      bool touched = false;
      for (uint32_t pos = 0; pos < K + M; ++pos) {
        if (s->addr[pos] == kNoFarOffset || far::NodeOf(s->addr[pos]) != n.index) continue;
        far_copy_bytes_ -= pos < K ? s->block[pos] : s->len;
        s->addr[pos] = kNoFarOffset;
        s->gone++;
        touched = true;
      }
      if (!touched) continue;
      DropAllKept(*s);  // degraded: repaired, not refilled
      MaybeQueueRestripe(static_cast<uint32_t>(id), *s);
    }
  }
  // Pass 2: members whose own block is gone, in stripes past M lost, are
  // lost (whichever dead memnode held their block).
  const size_t hw = high_water_.load(std::memory_order_acquire);
  for (size_t i = 0; i < hw; ++i) {
    ObjectHeader* h = HeaderAt(i);
    uint64_t m = h->word.load(std::memory_order_acquire);
    for (;;) {
      if (h->live.load(std::memory_order_acquire) == 0 || !Is(m, kFar) || Is(m, kPresent)) break;
      if (Addr(m) == kLostFar) break;
      if (Is(m, kBusy)) {
        std::this_thread::yield();
        m = h->word.load(std::memory_order_acquire);
        continue;
      }
      if (!h->word.compare_exchange_weak(m, m | kBusy, std::memory_order_acq_rel)) continue;
      // Its own block gone (with this memnode or an earlier one) and more
      // than M of its stripe: nothing can rebuild it.
      bool is_lost;
      {
        MutexLock l(&stripes_mu_);
        const uint64_t ref = Extras(h)[0];
        const Stripe& s = *stripes_[RefId(ref)];
        is_lost = s.addr[RefPos(ref)] == kNoFarOffset && s.gone > M;
      }
      if (!is_lost) {
        h->word.store(m, std::memory_order_release);  // degraded reads rebuild it
        break;
      }
      (void)LeaveStripe(h);  // (FREEs go out with a later batch: no far access here)
      const uint32_t size = h->size;  // before the store: then a Destroy may reuse the header
      far_bytes_ -= size;
      h->word.store(kFar | kLostFar, std::memory_order_release);
      (*lost)++;
      *lost_bytes += size;
      break;
    }
  }
  {
    MutexLock l(&repair_mu_);
    repair_cv_.SignalAll();
  }
}

size_t RuntimeImpl::RestripeBatch() {
  // The live members of queued stripes, up to one eviction batch.
  struct Cand {
    ObjectHeader* h;
    uint64_t ref;
    bool repair;  // its stripe lost blocks
  };
  std::vector<Cand> cands;
  std::vector<uint32_t> requeue;
  size_t taken = 0, holes_taken = 0;
  {
    MutexLock l(&stripes_mu_);
    auto take = [&](std::deque<uint32_t>& q, bool repair_q) REQUIRES(stripes_mu_) {
      while (!q.empty() && cands.size() < opts_.evict_batch) {
        if (!repair_q && !OverHoleBudget()) return;
        const uint32_t id = q.front();
        q.pop_front();
        Stripe* s = id < stripes_.size() ? stripes_[id].get() : nullptr;
        if (s == nullptr || !(repair_q ? s->queued_repair : s->queued)) continue;
        (repair_q ? s->queued_repair : s->queued) = false;
        if (!repair_q && s->queued_repair) continue;  // the repair queue has it
        if (s->busy > 0) {  // a refill rewrites it: later
          requeue.push_back(id);
          continue;
        }
        for (uint32_t pos = 0; pos < s->k_real; ++pos)
          if (s->member[pos] != nullptr) cands.push_back({s->member[pos], StripeRef(id, pos), s->gone > 0});
        (repair_q ? taken : holes_taken)++;
      }
    };
    take(repair_stripes_, true);
    take(restripe_q_, false);
    // Pending until done: the stripes taken count until this batch ends.
    repair_in_flight_ = taken;
    holes_in_flight_ = holes_taken;
    UpdateRestripePending();
  }
  std::vector<StripeItem> items;
  std::vector<uint64_t> words;
  std::vector<bool> repair;
  for (const Cand& c : cands) {
    uint64_t m = c.h->word.load(std::memory_order_acquire);
    if (!Is(m, kFar) || Is(m, kPresent) || Addr(m) == kLostFar) continue;  // swapped in meanwhile
    if (Is(m, kBusy) || !c.h->word.compare_exchange_strong(m, m | kBusy, std::memory_order_acq_rel)) {
      requeue.push_back(RefId(c.ref));  // try again later
      continue;
    }
    if (c.h->live.load(std::memory_order_acquire) == 0 || Extras(c.h)[0] != c.ref) {
      c.h->word.store(m, std::memory_order_release);
      continue;
    }
    void* buf = std::malloc(c.h->size);
    Status rs = buf ? ReadMember(c.h, Addr(m), buf) : Status::OutOfMemory("restripe buffer");
    if (!rs.ok()) {
      VLOG(1) << "restripe: cannot read a member now: " << rs;
      std::free(buf);
      c.h->word.store(m, std::memory_order_release);
      requeue.push_back(RefId(c.ref));
      continue;
    }
    items.push_back({c.h, buf, c.h->size});
    words.push_back(m);
    repair.push_back(c.repair);
  }
  size_t done = 0;
  bool flush = false;
  Status ws = items.empty() ? Status::Ok() : WriteStripes(items);
  for (size_t i = 0; i < items.size(); ++i) {
    StripeItem& it = items[i];
    if (ws.ok()) {
      flush |= LeaveStripe(it.h);  // the old one: a hole there
      SetExtras(it.h, &it.ref, 1);
      it.h->word.store(kFar | it.addr, std::memory_order_release);
      (repair[i] ? repaired_ : restriped_)++;
      done++;
    } else {
      it.h->word.store(words[i], std::memory_order_release);
      requeue.push_back(RefId(Extras(it.h)[0]));
    }
    std::free(const_cast<void*>(it.data));
  }
  if (!ws.ok()) VLOG(1) << "restripe: write failed: " << ws;
  if (flush) (void)FlushAllQueued(FreeReserve());
  MutexLock l(&stripes_mu_);
  repair_in_flight_ = 0;
  holes_in_flight_ = 0;
  for (uint32_t id : requeue) {
    Stripe* s = id < stripes_.size() ? stripes_[id].get() : nullptr;
    if (s != nullptr) MaybeQueueRestripe(id, *s);
  }
  UpdateRestripePending();
  return done;
}

}  // namespace sharry::compute
