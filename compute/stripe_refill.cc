// Refilling ec stripes' holes in place (docs/redundancy.md, "Refills").
//
// Under Unique-Copy a swapped-in member leaves a hole in its stripe: its
// block must stay while the stripe's other members may need it for a
// degraded read. Compaction (stripes.cc) rewrites the live members of such
// stripes, a READ and a rewrite each. A refill is cheaper: the swap-in keeps
// the member's old bytes d (it has just read them), and the next eviction
// round puts a victim v that fills at least 3/4 of the hole's block into
// it (L = max(|d|, |v|) <= the block's size <= the parity's length):
//
//   1. READ the first L bytes of each of the stripe's M parity blocks
//      (one chain per memnode),
//   2. parity ^= G[j][pos] x (d xor v) for each parity block j, both
//      zero-padded to L (ErasureCode::UpdateParity; bytes past L do not
//      change),
//   3. WRITE v over the start of the hole's block and the parity back (one
//      chain per memnode). The member's size becomes |v|; the block keeps
//      its size (bytes past |v| are stale, and read by no one: the code
//      takes them as zeros, as it always did past a member's size).
//
// No ALLOC, no FREE, no compaction: the stripe is full again. It costs the
// victim's WRITE (as any swap-out) plus a READ and a WRITE of L per parity
// block, against (K+M)/K WRITEs for a new stripe plus, once over the hole
// budget, a compaction (a READ and a (K+M)/K rewrite) per hole.
//
// Consistency. Between steps 1 and 3 the stripe's parity and that position
// disagree, so the stripe is `busy`: degraded reads of it wait (ReadMember),
// compaction skips it, and a refill starts only while no degraded read is
// reading it (`readers`). A WRITE chain that fails leaves its blocks'
// contents unknown, so every block it carried is dropped from its stripe
// (DropStripeBlock: the stripe is queued for repair, as when a memnode
// dies) — the code never decodes with a block it cannot trust. A victim
// whose own block was dropped stays local and is written to a new stripe by
// the same round.
//
// Memory. The kept bytes (one hole's old bytes each) are bounded by
// ec_refill_bytes (auto: min(budget / 16, 2 x evict_batch x 4 KiB)); a
// hole beyond that is an ordinary hole (compaction). They are counted in
// Stats().ec_kept_bytes, outside the local budget (like the FREE queue).
#include <glog/logging.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "compute/runtime_impl.h"

namespace sharry::compute {

using namespace meta;  // NOLINT: the bit names of object.h

namespace {
uint64_t Ref(uint32_t id, uint32_t pos) { return (uint64_t{id} << 8) | pos; }
}  // namespace

void RuntimeImpl::KeepHole(uint32_t id, Stripe& s, uint32_t pos, const void* data) {
  const uint32_t size = s.size[pos];
  if (refill_cap_ == 0 || s.gone > 0 || s.addr[pos] == kNoFarOffset) return;
  if (kept_bytes_.load(std::memory_order_relaxed) + size > refill_cap_) return;
  std::unique_ptr<uint8_t[]> copy(new (std::nothrow) uint8_t[size]);
  if (!copy) return;  // an ordinary hole
  std::memcpy(copy.get(), data, size);
  s.kept[pos] = std::move(copy);
  kept_bytes_ += size;
  kept_holes_++;
  refill_holes_[s.block[pos]].push_back({id, pos, s.serial});
}

void RuntimeImpl::DropKept(Stripe& s, uint32_t pos) {
  if (!s.kept[pos]) return;
  s.kept[pos].reset();
  kept_bytes_ -= s.size[pos];
  kept_holes_--;
  // Its refill_holes_ entry is skipped when met.
}

void RuntimeImpl::DropAllKept(Stripe& s) {
  for (uint32_t pos = 0; pos < s.kept.size(); ++pos) DropKept(s, pos);
}

void RuntimeImpl::DropStripeBlock(uint32_t id, Stripe& s, uint32_t pos, std::vector<BlockToFree>* to_free) {
  const uint32_t K = static_cast<uint32_t>(ec_->k());
  if (s.addr[pos] == kNoFarOffset) return;
  const uint32_t bs = pos < K ? s.block[pos] : s.len;
  // Queued for FREE even at a memnode that failed: if it turns out lost,
  // its queue is cleared with everything else we held there.
  to_free->push_back({s.addr[pos], bs});  // QueueAndMaybeSignal takes it off the counts
  s.addr[pos] = kNoFarOffset;
  s.gone++;
  DropAllKept(s);  // a degraded stripe is repaired, not refilled
  MaybeQueueRestripe(id, s);
}

void RuntimeImpl::RefillHoles(std::vector<Victim>& victims, std::vector<Victim>* rest) {
  const uint32_t K = static_cast<uint32_t>(ec_->k()), M = static_cast<uint32_t>(ec_->m());
  struct Refill {
    size_t victim;
    uint32_t id, pos;
    uint32_t size;      // the victim's
    uint32_t old_size;  // the hole's old member's (its kept bytes)
    uint32_t len;       // max of the two: the bytes of parity that change
    uint64_t data_addr;
    std::vector<uint64_t> parity_addr;     // M
    std::unique_ptr<uint8_t[]> old;        // the hole's old bytes
    std::vector<uint8_t> parity;           // M x len: read, updated, written
    bool cancelled = false;                // before any WRITE: nothing changed
    bool data_failed = false;              // the WRITE of the victim's block failed
    std::vector<bool> parity_failed;       // M
  };
  std::vector<Refill> refills;
  {
    MutexLock l(&stripes_mu_);
    for (size_t i = 0; i < victims.size(); ++i) {
      const uint32_t size = victims[i].h->size;
      bool placed = false;
      // The smallest kept blocks that the victim fills to at least 3/4.
      const uint64_t max_block = uint64_t{size} + size / 3;
      for (auto it = refill_holes_.lower_bound(size); it != refill_holes_.end() && it->first <= max_block && !placed;) {
        std::deque<HoleRef>& q = it->second;
        std::vector<HoleRef> later;  // usable holes of stripes busy now
        while (!q.empty() && !placed) {
          const HoleRef r = q.front();
          q.pop_front();
          Stripe* s = r.id < stripes_.size() ? stripes_[r.id].get() : nullptr;
          if (s == nullptr || s->serial != r.serial || !s->kept[r.pos] || s->member[r.pos] != nullptr) continue;
          if (s->gone > 0) {  // degraded: repaired, not refilled
            DropKept(*s, r.pos);
            continue;
          }
          bool healthy = nodes_[far::NodeOf(s->addr[r.pos])]->healthy();
          for (uint32_t j = 0; j < M; ++j) healthy = healthy && nodes_[far::NodeOf(s->addr[K + j])]->healthy();
          if (s->busy > 0 || s->readers > 0 || !healthy) {
            later.push_back(r);
            continue;
          }
          Refill f;
          f.victim = i;
          f.id = r.id;
          f.pos = r.pos;
          f.size = size;
          f.old_size = s->size[r.pos];
          f.len = std::max(size, f.old_size);
          f.data_addr = s->addr[r.pos];
          f.parity_addr.assign(s->addr.begin() + K, s->addr.end());
          f.old = std::move(s->kept[r.pos]);
          kept_bytes_ -= f.old_size;
          kept_holes_--;
          f.parity.assign(size_t{f.len} * M, 0);
          f.parity_failed.assign(M, false);
          s->busy = 1;
          s->live++;  // reserved: the stripe is not freed while the refill is in flight
          refills.push_back(std::move(f));
          placed = true;
        }
        for (auto r = later.rbegin(); r != later.rend(); ++r) q.push_front(*r);
        it = q.empty() ? refill_holes_.erase(it) : std::next(it);
      }
      if (!placed) rest->push_back(victims[i]);
    }
  }
  if (refills.empty()) return;

  // 1. The parity blocks' first L bytes: one READ chain per memnode.
  std::vector<std::vector<RemoteOp>> reads(kMaxMemnodes);
  std::vector<std::vector<size_t>> read_refills(kMaxMemnodes);
  for (size_t f = 0; f < refills.size(); ++f)
    for (uint32_t j = 0; j < M; ++j) {
      const uint32_t n = far::NodeOf(refills[f].parity_addr[j]);
      reads[n].push_back({far::OffsetOf(refills[f].parity_addr[j]),
                          refills[f].parity.data() + size_t{j} * refills[f].len, refills[f].len});
      read_refills[n].push_back(f);
    }
  for (const auto& np : nodes_) {
    FarNode& n = *np;
    if (reads[n.index].empty()) continue;
    auto conn = DataConnection(n);
    Status rs = conn.ok() ? (*conn)->ReadBatch(reads[n.index]) : conn.status();
    if (rs.ok()) {
      uint64_t bytes = 0;
      for (const RemoteOp& op : reads[n.index]) bytes += op.length;
      far_read_bytes_.fetch_add(bytes, std::memory_order_relaxed);
      continue;
    }
    if (conn.ok() && !(*conn)->alive()) (void)ConnectionFailed(n, rs, "swap-out: refill: READ parity");
    else if (rs.code() != StatusCode::kUnavailable) (void)FailedAccess(rs.WithContext("swap-out: refill: READ parity"));
    for (size_t f : read_refills[n.index]) refills[f].cancelled = true;
  }

  // 2. The delta into each parity block (old and new zero-padded to len).
  std::vector<uint8_t> old_padded, new_padded;
  for (Refill& f : refills) {
    if (f.cancelled) continue;
    std::vector<uint8_t*> par(M);
    for (uint32_t j = 0; j < M; ++j) par[j] = f.parity.data() + size_t{j} * f.len;
    const uint8_t* old_bytes = f.old.get();
    const uint8_t* new_bytes = reinterpret_cast<const uint8_t*>(Addr(victims[f.victim].word));
    if (f.old_size < f.len) {
      old_padded.assign(f.len, 0);
      std::memcpy(old_padded.data(), old_bytes, f.old_size);
      old_bytes = old_padded.data();
    }
    if (f.size < f.len) {
      new_padded.assign(f.len, 0);
      std::memcpy(new_padded.data(), new_bytes, f.size);
      new_bytes = new_padded.data();
    }
    ec_->UpdateParity(f.len, static_cast<int>(f.pos), old_bytes, new_bytes, par);
  }

  // 3. The victims' bytes over the holes' blocks and the parity back: one
  // WRITE chain per memnode; a failed chain's blocks are all dropped.
  struct Where {
    size_t refill;
    int parity;  // -1: the data block
  };
  std::vector<std::vector<RemoteOp>> writes(kMaxMemnodes);
  std::vector<std::vector<Where>> write_what(kMaxMemnodes);
  for (size_t f = 0; f < refills.size(); ++f) {
    Refill& r = refills[f];
    if (r.cancelled) continue;
    writes[far::NodeOf(r.data_addr)].push_back(
        {far::OffsetOf(r.data_addr), reinterpret_cast<void*>(Addr(victims[r.victim].word)), r.size});
    write_what[far::NodeOf(r.data_addr)].push_back({f, -1});
    for (uint32_t j = 0; j < M; ++j) {
      writes[far::NodeOf(r.parity_addr[j])].push_back(
          {far::OffsetOf(r.parity_addr[j]), r.parity.data() + size_t{j} * r.len, r.len});
      write_what[far::NodeOf(r.parity_addr[j])].push_back({f, static_cast<int>(j)});
    }
  }
  for (const auto& np : nodes_) {
    FarNode& n = *np;
    if (writes[n.index].empty()) continue;
    if (WriteChain(n, writes[n.index], "swap-out: refill: WRITE").ok()) continue;
    for (const Where& w : write_what[n.index]) {
      if (w.parity < 0) refills[w.refill].data_failed = true;
      else refills[w.refill].parity_failed[static_cast<size_t>(w.parity)] = true;
    }
  }

  // Commit: the stripes take their new members (or give back the holes).
  std::vector<BlockToFree> to_free;
  std::vector<std::unique_ptr<Stripe>> dead;
  {
    MutexLock l(&stripes_mu_);
    for (Refill& f : refills) {
      std::unique_ptr<Stripe>& sp = stripes_[f.id];
      Stripe& s = *sp;
      s.busy = 0;
      Victim& v = victims[f.victim];
      if (f.cancelled) {  // nothing written: the hole is as it was
        s.live--;
        if (s.gone == 0 && s.live > 0) {
          s.kept[f.pos] = std::move(f.old);
          kept_bytes_ += f.old_size;
          kept_holes_++;
          refill_holes_[s.block[f.pos]].push_back({f.id, f.pos, s.serial});
        }
      } else {
        for (uint32_t j = 0; j < M; ++j)
          if (f.parity_failed[j]) DropStripeBlock(f.id, s, K + j, &to_free);
        if (f.data_failed) {
          DropStripeBlock(f.id, s, f.pos, &to_free);
          s.live--;
        } else {
          s.member[f.pos] = v.h;
          s.size[f.pos] = f.size;
        }
      }
      if (s.live == 0) {  // its other members left meanwhile, and the refill failed
        DropAllKept(s);
        dead.push_back(std::move(sp));
        free_stripe_ids_.push_back(f.id);
        live_stripes_--;
      } else if (f.cancelled || f.data_failed) {
        MaybeQueueRestripe(f.id, s);
      }
    }
    UpdateRestripePending();
  }
  stripes_cv_.SignalAll();
  for (Refill& f : refills) {
    Victim& v = victims[f.victim];
    if (f.cancelled || f.data_failed) {
      rest->push_back(v);  // still local and busy: a new stripe takes it
      continue;
    }
    const uint64_t ref = Ref(f.id, f.pos);
    far_bytes_ += v.h->size;
    SetExtras(v.h, &ref, 1);
    std::free(reinterpret_cast<void*>(Addr(v.word)));
    local_bytes_ -= v.h->size;
    v.h->word.store(kFar | f.data_addr, std::memory_order_release);
    swap_outs_++;
    refills_++;
  }
  bool flush = false;
  for (const BlockToFree& b : to_free)
    flush |= QueueAndMaybeSignal(*nodes_[far::NodeOf(b.addr)], far::OffsetOf(b.addr), b.size);
  for (const auto& s : dead) flush |= FreeStripeBlocks(*s);
  if (flush) (void)FlushAllQueued(FreeReserve());
  if (!to_free.empty() || !dead.empty()) {
    MutexLock l(&repair_mu_);
    repair_cv_.Signal();
  }
}

}  // namespace sharry::compute
