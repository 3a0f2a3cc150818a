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
//      partials going to one result block per memnode and window
//      (offload_jobs.cc, as 5).
//   4. Compute the local and pulled units here, while the memnodes work.
//   5. Collect: poll the jobs (backing off), READ each job's partials.
//      A refused or failed job's units are pulled instead.
//   6. Release the pins and marks, merge the window's partials in unit order.
// The class and what each step promises: compute/aggregate_run.h.
#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <numeric>
#include <thread>

#include "compute/aggregate_run.h"

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

Status RuntimeImpl::AggregateRun::Run(offload::Result* out) {
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

Status RuntimeImpl::AggregateRun::TakeChunk(ObjectHeader* h, Take* t) {
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

void RuntimeImpl::AggregateRun::ReleaseAll() {
  for (Unit& u : window_)
    for (Take& t : u.takes) {
      Release(t);
      t.h = nullptr;
    }
}

Status RuntimeImpl::AggregateRun::ListUnit(Unit& unit) {
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

Status RuntimeImpl::AggregateRun::TakeWindow() {
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

void RuntimeImpl::AggregateRun::Classify(Unit& unit) {
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

Status RuntimeImpl::AggregateRun::ComputeHere(Unit& unit) {
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

Status RuntimeImpl::AggregateRun::RunPieces(Unit& unit, std::span<const std::span<const uint8_t>> pieces) {
  std::vector<offload::Pieces> columns(cols_.size());
  uint32_t begin = 0;
  for (size_t c = 0; c < cols_.size(); ++c) {
    columns[c] = pieces.subspan(begin, unit.col_end[c] - begin);
    begin = unit.col_end[c];
  }
  unit.partial.resize(partial_bytes_);
  return offload::RunUnit(spec_, unit.rows, columns, unit.partial, unit.first_row);
}

Status RuntimeImpl::AggregateRun::RunDerefUnit(uint64_t u, offload::Result* out) {
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

Status RuntimeImpl::AggregateRun::RunWindow(uint64_t u0, uint64_t u1) {
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
  // From here on, jobs may be in flight: every path waits for them
  // (Collect) before the window's blocks are freed and its chunks released.
  Status s;
  for (Unit& unit : window_) {
    if (unit.kind == Kind::kFar) continue;
    s = ComputeHere(unit);
    if (!s.ok()) break;
    (unit.kind == Kind::kLocal ? rt_.agg_local_units_ : rt_.agg_pulled_units_)++;
  }
  Status c = Collect();
  if (s.ok()) s = c;
  // Units whose job was refused or failed: pulled here.
  for (Unit& unit : window_) {
    if (!s.ok()) break;
    if (unit.kind != Kind::kPull || !unit.partial.empty()) continue;
    s = ComputeHere(unit);
    rt_.agg_pulled_units_++;
  }
  FreeResultBlocks();
  return s;
}

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
