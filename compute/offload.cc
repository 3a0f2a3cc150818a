// Aggregates split between this process and the memnodes (compute/aggregate.h,
// docs/offload.md): one Aggregate() call is an AggregateRun, which walks the
// units in windows:
//
//   1. Take: every chunk of each unit of the window is pinned if it is local,
//      or marked busy if it is far (waiting for a chunk some other thread is
//      moving), all inside one far access (epoch_mu_ shared), so no
//      reconnector can drop a copy under us and no swap-in, eviction,
//      repair or restripe moves a chunk a memnode is reading.
//   2. Classify: local (every chunk pinned), far at one memnode (every
//      chunk has a healthy copy there), or pulled (the rest, and far units
//      that are not worth offloading).
//   3. Submit the far units as OFFLOAD requests, packed per memnode, their
//      partials going to one result block per memnode and window.
//   4. Compute the local and pulled units here, while the memnodes work.
//   5. Collect: poll the jobs (backing off), READ each job's partials.
//      A refused or failed job's units are pulled instead.
//   6. Release the pins and marks, merge the window's partials in unit order.
#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <numeric>
#include <thread>

#include "compute/runtime_impl.h"

namespace sharry::compute {

using namespace meta;  // NOLINT: the bit names of object.h

uint64_t DefaultUnitRows(std::span<const uint32_t> rows_per_chunk) {
  uint64_t l = 1;
  for (uint32_t r : rows_per_chunk)
    if (r > 0) l = std::lcm(l, uint64_t{r});
  return l * std::max<uint64_t>(1, (kDefaultUnitRows + l - 1) / l);
}

StatusOr<offload::Result> Aggregate(Runtime& rt, const offload::Spec& spec, std::span<const AggregateColumn> columns,
                                    uint64_t rows, const AggregateOptions& options) {
  return ImplOf(rt).Aggregate(spec, columns, rows, options);
}

namespace {

std::string Col(size_t c) { return "column " + std::to_string(c); }

}  // namespace

class RuntimeImpl::AggregateRun {
 public:
  AggregateRun(RuntimeImpl& rt, const offload::Spec& spec, std::span<const AggregateColumn> cols, uint64_t rows,
               uint64_t unit_rows, OffloadMode mode, const AggregateOptions& o)
      : rt_(rt),
        spec_(spec),
        cols_(cols),
        rows_(rows),
        unit_rows_(unit_rows),
        mode_(mode),
        opts_(o),
        partial_bytes_(offload::PartialBytes(spec)),
        step_(Step(cols, rt.opts_.local_budget_bytes)),
        spec_bytes_(offload::Encode(spec)) {}

  Status Run(offload::Result* out) {
    const uint64_t units = (rows_ + unit_rows_ - 1) / unit_rows_;
    if (mode_ == OffloadMode::kNever) {
      for (uint64_t u = 0; u < units; ++u) SHARRY_RETURN_IF_ERROR(RunDerefUnit(u, out));
      return Status::Ok();
    }
    const uint64_t window = std::max<uint32_t>(1, opts_.window_units);
    for (uint64_t u0 = 0; u0 < units; u0 += window) {
      const uint64_t u1 = std::min(units, u0 + window);
      Status s;
      {
        rt_.BeginFar();
        ReaderMutexLock far(&rt_.epoch_mu_, std::adopt_lock);
        s = RunWindow(u0, u1);
        ReleaseAll();
      }
      if (!s.ok()) return s;
      for (Unit& unit : window_) {
        SHARRY_RETURN_IF_ERROR(out->Add(unit.partial));
        out->units++;
        out->rows += unit.rows;
      }
    }
    return Status::Ok();
  }

 private:
  enum class Kind { kLocal, kFar, kPull };
  struct Take {
    ObjectHeader* h = nullptr;
    uint64_t word = 0;     // as it was before we pinned / marked it
    bool local = false;    // pinned (else marked busy)
    bool alias = false;    // the same chunk as an earlier take (a column given twice): not released
    bool stage = false;    // kFar: local with no valid far copy; WRITTEN to a staging block first
    uint32_t bytes = 0;    // of the chunk this unit reads (a prefix of it)
  };
  struct Unit {
    uint64_t index = 0, first_row = 0;
    uint32_t rows = 0;
    Kind kind = Kind::kLocal;
    uint32_t node = 0;              // kFar: the memnode with a copy of every chunk
    std::vector<Take> takes;        // column-major
    std::vector<uint32_t> col_end;  // takes of column c: [col_end[c-1], col_end[c])
    std::vector<uint64_t> far_addr; // per take: the copy at `node` (kFar)
    std::vector<uint8_t> partial;
    uint64_t far_bytes = 0;         // kFar: bytes the memnode reads in place
    uint64_t staged_bytes = 0;      // kFar: local bytes written there first
    size_t job = SIZE_MAX;          // kFar: index in jobs_
  };
  struct Job {
    uint32_t node;
    uint64_t id = 0;
    uint64_t result_offset = 0;  // UMA offset at the node
    std::vector<size_t> units;   // indices in window_
    bool done = false;
    Status status;
  };

  // kNever walks a unit this many rows at a time: whole chunks of every
  // column (their lcm) if those take at most 1/16 of the local budget, else
  // the fewest rows per chunk of the columns (about one chunk of each
  // column pinned, as the columns' cursors would).
  static uint64_t Step(std::span<const AggregateColumn> cols, uint64_t budget) {
    uint64_t m = UINT64_MAX, l = 1, row_bytes = 0;
    for (const AggregateColumn& c : cols) {
      m = std::min<uint64_t>(m, c.rows_per_chunk);
      l = std::lcm(l, uint64_t{c.rows_per_chunk});
      row_bytes += offload::ElemSize(c.type);
    }
    return l * row_bytes <= budget / 16 ? l : std::max<uint64_t>(1, m);
  }

  // Chunks [first, last] of column c for unit u, and the bytes of each it reads.
  size_t ChunkOf(size_t c, uint64_t row) const { return row / cols_[c].rows_per_chunk; }

  // Waits while another thread moves h; then pins it (local) or marks it
  // busy (far). REQUIRES: inside the far access.
  Status TakeChunk(ObjectHeader* h, Take* t) {
    uint64_t m = h->word.load(std::memory_order_acquire);
    for (;;) {
      if (Is(m, kBusy)) {
        std::this_thread::yield();
        m = h->word.load(std::memory_order_acquire);
        continue;
      }
      if (Is(m, kPresent)) {
        if (h->word.compare_exchange_weak(m, m + kPinOne, std::memory_order_acq_rel, std::memory_order_acquire)) {
          t->word = m;
          t->local = true;
          return Status::Ok();
        }
        continue;
      }
      if (!Is(m, kFar)) return Status::Internal("aggregate over a destroyed object");
      if (Addr(m) == kLostFar) return rt_.LostObjectStatus();
      if (h->word.compare_exchange_weak(m, m | kBusy, std::memory_order_acq_rel, std::memory_order_acquire)) {
        t->word = m;
        t->local = false;
        return Status::Ok();
      }
    }
  }

  static void Release(const Take& t) {
    if (t.h == nullptr || t.alias) return;
    if (t.local) RuntimeImpl::Unpin(t.h);
    else t.h->word.store(t.word, std::memory_order_release);  // nobody else changes a busy word
  }
  void ReleaseAll() {
    for (Unit& u : window_)
      for (Take& t : u.takes) {
        Release(t);
        t.h = nullptr;
      }
  }

  // Lists unit u's chunks (not yet taken), checking their sizes.
  Status ListUnit(Unit& unit) {
    const uint64_t end = unit.first_row + unit.rows;
    for (size_t c = 0; c < cols_.size(); ++c) {
      const AggregateColumn& col = cols_[c];
      const uint32_t esize = static_cast<uint32_t>(offload::ElemSize(col.type));
      for (size_t k = ChunkOf(c, unit.first_row); k <= ChunkOf(c, end - 1); ++k) {
        const RemoteObject& obj = col.chunks[k];
        if (!obj) return Status::InvalidArgument(Col(c) + ": chunk " + std::to_string(k) + " is empty");
        const uint64_t chunk_first = k * uint64_t{col.rows_per_chunk};
        const uint64_t use_rows = std::min<uint64_t>(end, chunk_first + col.rows_per_chunk) - chunk_first;
        ObjectHeader* h = HeaderOf(obj);
        const bool last = k + 1 == col.chunks.size();
        if (h->size % esize != 0 || h->size < use_rows * esize ||
            (!last && h->size != uint64_t{col.rows_per_chunk} * esize))
          return Status::InvalidArgument(Col(c) + ": chunk " + std::to_string(k) + " holds " +
                                         std::to_string(h->size) + " B, not " + std::to_string(col.rows_per_chunk) +
                                         " rows of " + std::string(offload::ElemTypeName(col.type)));
        unit.takes.emplace_back();
        unit.takes.back().h = h;
        unit.takes.back().bytes = static_cast<uint32_t>(use_rows * esize);
      }
      unit.col_end.push_back(static_cast<uint32_t>(unit.takes.size()));
    }
    return Status::Ok();
  }

  // Takes every chunk of the window in address order, so that aggregates
  // over overlapping columns never wait for each other in a cycle; a chunk
  // listed twice is taken once. On error, what was taken is released by
  // the caller (ReleaseAll) and the rest is not.
  Status TakeWindow() {
    std::vector<Take*> order;
    for (Unit& u : window_)
      for (Take& t : u.takes) order.push_back(&t);
    std::sort(order.begin(), order.end(), [](const Take* a, const Take* b) { return a->h < b->h; });
    for (Take* t : order) t->alias = true;  // not taken yet: nothing to release
    for (size_t i = 0; i < order.size(); ++i) {
      Take& t = *order[i];
      if (i > 0 && order[i - 1]->h == t.h) {
        const Take& first = *order[i - 1];
        t.word = first.word;
        t.local = first.local;
        continue;  // stays an alias
      }
      SHARRY_RETURN_IF_ERROR(TakeChunk(t.h, &t));
      t.alias = false;
    }
    return Status::Ok();
  }

  // Where a far unit can run: a healthy memnode that takes offloads and
  // holds a copy of every far chunk (ec: the chunk's own data block) and of
  // every local one that has a valid far copy (Multi-Copy, clean); the
  // other local chunks would be staged there (WRITTEN to a scratch block).
  // kAuto offloads when that moves fewer bytes than pulling the far chunks
  // here: staged bytes + the partial < the far bytes.
  void Classify(Unit& unit) {
    bool any_far = false;
    for (const Take& t : unit.takes) any_far |= !t.local;
    if (!any_far) {
      unit.kind = Kind::kLocal;
      return;
    }
    unit.kind = Kind::kPull;
    if (partial_bytes_ > kMaxResultBlock) return;  // no result block could hold it
    auto copies_of = [&](const Take& t) {
      if (!t.local) return rt_.CopiesOf(t.h, Addr(t.word));
      if (Is(t.word, kFar) && !Is(t.word, kDirty)) return rt_.CopiesOf(t.h, t.h->far_offset);
      return Copies{};  // stays pinned: its far_offset cannot change meanwhile
    };
    // The candidate memnodes: those of the first far chunk's copies.
    const Take* first_far = nullptr;
    for (const Take& t : unit.takes)
      if (!t.local) {
        first_far = &t;
        break;
      }
    const Copies first = copies_of(*first_far);
    for (uint32_t ci = 0; ci < first.n; ++ci) {
      const uint32_t node = far::NodeOf(first.addr[ci]);
      FarNode& n = *rt_.nodes_[node];
      if (!n.healthy() || no_offload_[node]) continue;
      std::vector<uint64_t> addrs;
      uint64_t far_bytes = 0, staged = 0;
      bool all = true;
      for (const Take& t : unit.takes) {
        const Copies cs = copies_of(t);
        uint64_t at = kNoFarOffset;
        for (uint32_t j = 0; j < cs.n; ++j)
          if (far::NodeOf(cs.addr[j]) == node) at = cs.addr[j];
        if (at == kNoFarOffset && !t.local) {
          all = false;  // a far chunk with no copy there
          break;
        }
        addrs.push_back(at);  // kNoFarOffset: staged
        (at == kNoFarOffset ? staged : far_bytes) += t.bytes;
      }
      if (!all) continue;
      uint64_t pulled = 0;  // what kPull would READ
      for (const Take& t : unit.takes) pulled += t.local ? 0 : t.bytes;
      if (mode_ == OffloadMode::kAuto && staged + partial_bytes_ * 2 > pulled) return;
      if (staged > kMaxStageBlock) return;  // one block per unit
      unit.kind = Kind::kFar;
      unit.node = node;
      unit.far_addr = std::move(addrs);
      unit.far_bytes = far_bytes;
      unit.staged_bytes = staged;
      for (size_t i = 0; i < unit.takes.size(); ++i) unit.takes[i].stage = unit.far_addr[i] == kNoFarOffset;
      return;
    }
  }

  // Computes a unit here: local chunks in place, far ones READ into scratch.
  Status ComputeHere(Unit& unit) REQUIRES_SHARED(rt_.epoch_mu_) {
    std::vector<std::span<const uint8_t>> pieces(unit.takes.size());
    size_t scratch_bytes = 0;
    for (const Take& t : unit.takes)
      if (!t.local) scratch_bytes += t.h->size;
    scratch_.resize(scratch_bytes);
    size_t at = 0;
    for (size_t i = 0; i < unit.takes.size(); ++i) {
      const Take& t = unit.takes[i];
      if (t.local) {
        pieces[i] = {reinterpret_cast<const uint8_t*>(Addr(t.word)), t.bytes};
        continue;
      }
      uint8_t* dst = scratch_.data() + at;
      SHARRY_RETURN_IF_ERROR(rt_.ReadFar(t.h, Addr(t.word), dst, "aggregate"));
      at += t.h->size;
      pieces[i] = {dst, t.bytes};
    }
    return RunPieces(unit, pieces);
  }

  Status RunPieces(Unit& unit, std::span<const std::span<const uint8_t>> pieces) {
    std::vector<offload::Pieces> columns(cols_.size());
    uint32_t begin = 0;
    for (size_t c = 0; c < cols_.size(); ++c) {
      columns[c] = pieces.subspan(begin, unit.col_end[c] - begin);
      begin = unit.col_end[c];
    }
    unit.partial.resize(partial_bytes_);
    return offload::RunUnit(spec_, unit.rows, columns, unit.partial, unit.first_row);
  }

  // kNever: the unit's chunks dereferenced (swapped in) as any scan does,
  // one step (Step) at a time, so few chunks are pinned at once; RunRows
  // goes on from the step before, so the partial is the unit's
  // (bit-identical).
  Status RunDerefUnit(uint64_t u, offload::Result* out) {
    const uint64_t first = u * unit_rows_, end = std::min(rows_, first + unit_rows_);
    std::vector<uint8_t> partial(partial_bytes_);
    offload::InitPartial(spec_, partial);
    std::vector<std::span<const uint8_t>> pieces;
    std::vector<offload::Pieces> columns(cols_.size());
    for (uint64_t r0 = first; r0 < end; r0 += step_) {
      const uint64_t r1 = std::min(end, r0 + step_);
      // Prefetch the chunks of the next steps.
      for (uint64_t p = 1; p <= opts_.prefetch_steps; ++p) {
        const uint64_t n0 = r0 + p * step_;
        if (n0 >= rows_) break;
        const uint64_t n1 = std::min(rows_, n0 + step_);
        for (size_t c = 0; c < cols_.size(); ++c)
          for (size_t k = ChunkOf(c, n0); k <= ChunkOf(c, n1 - 1); ++k) cols_[c].chunks[k].Prefetch();
      }
      DerefScope scope(rt_);
      pieces.clear();
      std::vector<uint32_t> col_end;
      for (size_t c = 0; c < cols_.size(); ++c) {
        const AggregateColumn& col = cols_[c];
        const uint32_t esize = static_cast<uint32_t>(offload::ElemSize(col.type));
        for (size_t k = ChunkOf(c, r0); k <= ChunkOf(c, r1 - 1); ++k) {
          const uint64_t chunk_first = k * uint64_t{col.rows_per_chunk};
          const uint64_t from = std::max(r0, chunk_first) - chunk_first;
          const uint64_t to = std::min<uint64_t>(r1, chunk_first + col.rows_per_chunk) - chunk_first;
          const RemoteObject& obj = col.chunks[k];
          if (!obj || obj.size() < to * esize)
            return Status::InvalidArgument(Col(c) + ": chunk " + std::to_string(k) + " is shorter than its rows");
          auto p = obj.Deref(scope, false);
          if (!p.ok()) return p.status();
          pieces.push_back({static_cast<const uint8_t*>(*p) + from * esize, static_cast<size_t>((to - from) * esize)});
        }
        col_end.push_back(static_cast<uint32_t>(pieces.size()));
      }
      uint32_t begin = 0;
      for (size_t c = 0; c < cols_.size(); ++c) {
        columns[c] = std::span<const std::span<const uint8_t>>(pieces).subspan(begin, col_end[c] - begin);
        begin = col_end[c];
      }
      SHARRY_RETURN_IF_ERROR(offload::RunRows(spec_, r1 - r0, columns, partial, r0));
    }
    rt_.agg_local_units_++;
    SHARRY_RETURN_IF_ERROR(out->Add(partial));
    out->units++;
    out->rows += end - first;
    return Status::Ok();
  }

  Status RunWindow(uint64_t u0, uint64_t u1) REQUIRES_SHARED(rt_.epoch_mu_) {
    window_.clear();
    jobs_.clear();
    window_.resize(u1 - u0);
    for (uint64_t u = u0; u < u1; ++u) {
      Unit& unit = window_[u - u0];
      unit.index = u;
      unit.first_row = u * unit_rows_;
      unit.rows = static_cast<uint32_t>(std::min(unit_rows_, rows_ - unit.first_row));
      SHARRY_RETURN_IF_ERROR(ListUnit(unit));
    }
    SHARRY_RETURN_IF_ERROR(TakeWindow());
    for (Unit& unit : window_) Classify(unit);
    Submit();
    for (Unit& unit : window_) {
      if (unit.kind == Kind::kFar) continue;
      SHARRY_RETURN_IF_ERROR(ComputeHere(unit));
      (unit.kind == Kind::kLocal ? rt_.agg_local_units_ : rt_.agg_pulled_units_)++;
    }
    SHARRY_RETURN_IF_ERROR(Collect());
    // Units whose job was refused or failed: pulled here.
    for (Unit& unit : window_) {
      if (unit.kind != Kind::kPull || !unit.partial.empty()) continue;
      SHARRY_RETURN_IF_ERROR(ComputeHere(unit));
      rt_.agg_pulled_units_++;
    }
    FreeResultBlocks();
    return Status::Ok();
  }

  // Packs the far units of each memnode into OFFLOAD requests and sends them.
  void Submit() REQUIRES_SHARED(rt_.epoch_mu_) {
    std::vector<std::vector<size_t>> by_node(rt_.nodes_.size());
    for (size_t i = 0; i < window_.size(); ++i)
      if (window_[i].kind == Kind::kFar) by_node[window_[i].node].push_back(i);
    for (uint32_t node = 0; node < by_node.size(); ++node) {
      std::vector<size_t>& units = by_node[node];
      if (units.empty()) continue;
      FarNode& n = *rt_.nodes_[node];
      // One result block for this memnode's units of the window.
      const uint64_t need = units.size() * partial_bytes_;
      std::vector<uint64_t> got;
      bool died = false;
      const uint32_t sizes[1] = {static_cast<uint32_t>(std::min<uint64_t>(need, kMaxResultBlock))};
      if (need > kMaxResultBlock) {  // the rest: pulled
        const size_t fit = kMaxResultBlock / partial_bytes_;
        Refuse(std::span<const size_t>(units).subspan(fit), node, Status::ResourceExhausted("result block full"));
        units.resize(fit);
      }
      Status st = rt_.BlocksAt(n, sizes, &got, &died, "aggregate: result block");
      if (!st.ok() || got[0] == kNoFarOffset) {
        Refuse(units, node, st.ok() ? Status::OutOfMemory("no far block for the offload results") : st);
        continue;
      }
      result_blocks_.push_back({got[0], sizes[0]});
      if (Status staged = Stage(n, units); !staged.ok()) {
        Refuse(units, node, staged);
        continue;
      }
      auto conn = rt_.DataConnection(n);
      if (!conn.ok()) {
        Refuse(units, node, conn.status());
        continue;
      }
      size_t next = 0;
      while (next < units.size()) {
        Job job;
        job.node = node;
        job.result_offset = far::OffsetOf(got[0]) + next * partial_bytes_;
        memnode::OffloadRequestBuilder b(memnode::MaxRequestBytes(**conn));
        b.Begin(spec_bytes_, job.result_offset, static_cast<uint32_t>((units.size() - next) * partial_bytes_));
        size_t first = next;
        while (next < units.size() && b.TryAdd(UnitRef(window_[units[next]]))) next++;
        if (next == first) {  // one unit does not fit a request: pulled
          Refuse(std::span<const size_t>(units).subspan(first, 1), node,
                 Status::ResourceExhausted("one unit does not fit an OFFLOAD request"));
          next++;
          continue;
        }
        job.units.assign(units.begin() + first, units.begin() + next);
        auto id = memnode::SubmitOffload(**conn, b.bytes());
        rt_.offload_rpc_bytes_ += b.bytes().size() + 16;
        if (!id.ok()) {
          if (!(*conn)->alive()) {
            (void)rt_.ConnectionFailed(n, id.status(), "aggregate: OFFLOAD");
          } else if (id.status().code() == StatusCode::kFailedPrecondition) {
            no_offload_[node] = true;  // offload is off there (--offload_threads=0)
          } else if (id.status().code() != StatusCode::kResourceExhausted) {
            LOG_FIRST_N(WARNING, 5) << "aggregate: memnode " << n.name << " refused an OFFLOAD: " << id.status();
          }
          Refuse(job.units, node, id.status());
          continue;
        }
        rt_.offload_jobs_++;
        job.id = *id;
        for (size_t i : job.units) window_[i].job = jobs_.size();
        jobs_.push_back(std::move(job));
      }
    }
  }

  // Writes the staged (local) chunks of `units` to staging blocks at n,
  // one per unit (one ALLOC for all, one chain of WRITEs), and points their
  // pieces there. A unit the memnode gives no block is pulled instead.
  Status Stage(FarNode& n, std::vector<size_t>& units) REQUIRES_SHARED(rt_.epoch_mu_) {
    std::vector<uint32_t> sizes;
    std::vector<size_t> staged;
    for (size_t i : units)
      if (window_[i].staged_bytes > 0) {
        sizes.push_back(static_cast<uint32_t>(window_[i].staged_bytes));
        staged.push_back(i);
      }
    if (sizes.empty()) return Status::Ok();
    std::vector<uint64_t> got;
    bool died = false;
    SHARRY_RETURN_IF_ERROR(rt_.BlocksAt(n, sizes, &got, &died, "aggregate: staging blocks"));
    std::vector<RemoteOp> ops;
    std::vector<size_t> refused;
    for (size_t j = 0; j < staged.size(); ++j) {
      if (got[j] == kNoFarOffset) {
        refused.push_back(staged[j]);
        continue;
      }
      result_blocks_.push_back({got[j], sizes[j]});
      Unit& u = window_[staged[j]];
      uint64_t at = 0;
      for (size_t k = 0; k < u.takes.size(); ++k) {
        const Take& t = u.takes[k];
        if (!t.stage) continue;
        u.far_addr[k] = got[j] + at;
        ops.push_back({far::OffsetOf(got[j]) + at, reinterpret_cast<void*>(Addr(t.word)), t.bytes});
        at += t.bytes;
      }
    }
    if (!refused.empty()) {
      Refuse(refused, n.index, Status::OutOfMemory("no far block for staging"));
      std::erase_if(units, [&](size_t i) { return window_[i].kind != Kind::kFar; });
    }
    return ops.empty() ? Status::Ok() : rt_.WriteChain(n, ops, "aggregate: staging");
  }

  memnode::OffloadUnitRef UnitRef(const Unit& unit) const {
    memnode::OffloadUnitRef r;
    r.first_row = unit.first_row;
    r.rows = unit.rows;
    r.columns.resize(cols_.size());
    uint32_t begin = 0;
    for (size_t c = 0; c < cols_.size(); ++c) {
      for (uint32_t i = begin; i < unit.col_end[c]; ++i)
        r.columns[c].push_back({far::OffsetOf(unit.far_addr[i]), unit.takes[i].bytes});
      begin = unit.col_end[c];
    }
    return r;
  }

  void Refuse(std::span<const size_t> units, uint32_t node, const Status& why) {
    rt_.offload_refused_++;
    VLOG(1) << "aggregate: " << units.size() << " unit(s) pulled from memnode " << rt_.nodes_[node]->name << ": " << why;
    for (size_t i : units) {
      window_[i].kind = Kind::kPull;
      window_[i].job = SIZE_MAX;
    }
  }

  // Waits for every job (polling each memnode, backing off), then READs the
  // partials of those that succeeded. A job the memnode refused, lost or
  // failed for want of resources: its units are pulled. A kernel error
  // (group key out of range, overflow) is the aggregate's error.
  Status Collect() REQUIRES_SHARED(rt_.epoch_mu_) {
    using Clock = std::chrono::steady_clock;
    auto last_progress = Clock::now();
    int sleep_us = 20;
    size_t left = jobs_.size();
    while (left > 0) {
      bool progress = false;
      for (uint32_t node = 0; node < rt_.nodes_.size(); ++node) {
        std::vector<uint64_t> ids;
        std::vector<size_t> which;
        for (size_t j = 0; j < jobs_.size(); ++j)
          if (!jobs_[j].done && jobs_[j].node == node && ids.size() < memnode::kMaxOffloadWait) {
            ids.push_back(jobs_[j].id);
            which.push_back(j);
          }
        if (ids.empty()) continue;
        FarNode& n = *rt_.nodes_[node];
        auto conn = rt_.DataConnection(n);
        StatusOr<std::vector<memnode::OffloadJobState>> st =
            conn.ok() ? memnode::PollOffload(**conn, ids) : StatusOr<std::vector<memnode::OffloadJobState>>(conn.status());
        rt_.offload_rpc_bytes_ += 8 + 8 * ids.size() + 8 + 40 * ids.size();
        if (!st.ok()) {
          if (conn.ok() && !(*conn)->alive()) (void)rt_.ConnectionFailed(n, st.status(), "aggregate: OFFLOAD_WAIT");
          for (size_t j : which) FailJob(j, st.status());
          left -= which.size();
          progress = true;
          continue;
        }
        for (const memnode::OffloadJobState& js : *st) {
          auto it = std::find(ids.begin(), ids.end(), js.job);
          if (it == ids.end() || !js.done) continue;
          const size_t j = which[it - ids.begin()];
          if (jobs_[j].done) continue;
          rt_.offload_cpu_ns_ += js.cpu_ns;
          if (js.status.ok()) SHARRY_RETURN_IF_ERROR(ReadResults(j));
          else if (js.status.code() == StatusCode::kOutOfRange || js.status.code() == StatusCode::kInvalidArgument)
            return js.status.WithContext("offloaded aggregate at memnode " + n.name);
          else FailJob(j, js.status);
          jobs_[j].done = true;
          left--;
          progress = true;
        }
      }
      if (left == 0) break;
      if (progress) {
        last_progress = Clock::now();
        sleep_us = 20;
        continue;
      }
      if (Clock::now() - last_progress > std::chrono::milliseconds(rt_.opts_.op_timeout_ms)) {
        for (size_t j = 0; j < jobs_.size(); ++j)
          if (!jobs_[j].done) FailJob(j, Status::Timeout("offload job unanswered for " + std::to_string(rt_.opts_.op_timeout_ms) + " ms"));
        break;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(sleep_us));
      sleep_us = std::min(sleep_us * 2, 1000);
    }
    return Status::Ok();
  }

  void FailJob(size_t j, const Status& why) {
    Job& job = jobs_[j];
    job.done = true;
    job.status = why;
    Refuse(job.units, job.node, why);
  }

  Status ReadResults(size_t j) REQUIRES_SHARED(rt_.epoch_mu_) {
    Job& job = jobs_[j];
    FarNode& n = *rt_.nodes_[job.node];
    std::vector<uint8_t> buf(job.units.size() * partial_bytes_);
    auto conn = rt_.DataConnection(n);
    Status s = conn.ok() ? (*conn)->Read(job.result_offset, buf.data(), buf.size()) : conn.status();
    if (!s.ok()) {
      if (conn.ok() && !(*conn)->alive()) (void)rt_.ConnectionFailed(n, s, "aggregate: results");
      FailJob(j, s);
      return Status::Ok();
    }
    rt_.far_read_bytes_ += buf.size();
    for (size_t k = 0; k < job.units.size(); ++k) {
      Unit& u = window_[job.units[k]];
      u.partial.assign(buf.begin() + k * partial_bytes_, buf.begin() + (k + 1) * partial_bytes_);
      rt_.agg_offloaded_units_++;
      rt_.agg_offloaded_rows_ += u.rows;
    }
    return Status::Ok();
  }

  void FreeResultBlocks() REQUIRES_SHARED(rt_.epoch_mu_) {
    for (const auto& [addr, size] : result_blocks_)
      if (Status s = rt_.QueueFreeInFarAccess(addr, size); !s.ok())
        LOG(WARNING) << "aggregate: FREE of a result block failed (it stays queued): " << s;
    result_blocks_.clear();
  }

  static constexpr uint64_t kMaxResultBlock = 1u << 20;
  static constexpr uint64_t kMaxStageBlock = 1u << 20;

  RuntimeImpl& rt_;
  const offload::Spec& spec_;
  std::span<const AggregateColumn> cols_;
  const uint64_t rows_, unit_rows_;
  const OffloadMode mode_;
  const AggregateOptions& opts_;
  const size_t partial_bytes_;
  const uint64_t step_;  // kNever: rows per step (Step)
  const std::vector<uint8_t> spec_bytes_;
  std::vector<Unit> window_;
  std::vector<Job> jobs_;
  std::vector<std::pair<uint64_t, uint32_t>> result_blocks_;
  std::vector<uint8_t> scratch_;
  bool no_offload_[kMaxMemnodes] = {};  // refused with FailedPrecondition (offload off there)
};

StatusOr<offload::Result> RuntimeImpl::Aggregate(const offload::Spec& spec, std::span<const AggregateColumn> columns,
                                                 uint64_t rows, const AggregateOptions& o) {
  SHARRY_RETURN_IF_ERROR(offload::Validate(spec));
  if (columns.size() != spec.columns.size())
    return Status::InvalidArgument("aggregate over " + std::to_string(columns.size()) + " columns; the spec has " +
                                   std::to_string(spec.columns.size()));
  std::vector<uint32_t> rpc;
  for (size_t c = 0; c < columns.size(); ++c) {
    const AggregateColumn& col = columns[c];
    if (col.type != spec.columns[c])
      return Status::InvalidArgument(Col(c) + " is " + std::string(offload::ElemTypeName(col.type)) +
                                     "; the spec says " + std::string(offload::ElemTypeName(spec.columns[c])));
    if (col.rows_per_chunk == 0) return Status::InvalidArgument(Col(c) + ": rows_per_chunk 0");
    if (col.chunks.size() * uint64_t{col.rows_per_chunk} < rows)
      return Status::InvalidArgument(Col(c) + ": " + std::to_string(col.chunks.size()) + " chunks of " +
                                     std::to_string(col.rows_per_chunk) + " rows do not hold " +
                                     std::to_string(rows) + " rows");
    rpc.push_back(col.rows_per_chunk);
  }
  const uint64_t unit_rows = o.unit_rows != 0 ? o.unit_rows : DefaultUnitRows(rpc);
  for (size_t c = 0; c < rpc.size(); ++c)
    if (unit_rows % rpc[c] != 0 || unit_rows > UINT32_MAX)
      return Status::InvalidArgument("unit_rows " + std::to_string(unit_rows) + " is not a multiple of " + Col(c) +
                                     "'s " + std::to_string(rpc[c]) + " rows per chunk (or above 2^32)");
  aggregates_++;
  offload::Result result(spec);
  if (rows == 0) return result;
  AggregateRun run(*this, spec, columns, rows, unit_rows, o.offload.value_or(opts_.offload), o);
  SHARRY_RETURN_IF_ERROR(run.Run(&result));
  return result;
}

}  // namespace sharry::compute
