// RuntimeImpl::AggregateRun: one compute::Aggregate() call (compute/aggregate.h,
// docs/offload.md) — its windows of units, their pins and busy marks, and
// the OFFLOAD jobs sent for them. Private to compute/ (not installed).
//
//   offload.cc       a window's units: take (pin / mark busy), classify,
//                    compute here, release; the kNever path; the entry point
//   offload_jobs.cc  the far units' jobs: staging, OFFLOAD, OFFLOAD_WAIT,
//                    reading the partials, freeing the scratch blocks
//
// One thread; one object per call. Everything a window takes is released
// (and every job it sent waited for) before the next window starts.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <span>
#include <utility>
#include <vector>

#include "compute/runtime_impl.h"

namespace sharry::compute {

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

  Status Run(offload::Result* out);

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
    // The memnode said the job is over (or its connection died, taking our
    // blocks there with it): its result block can be freed. A job given up
    // on (no answer) may still write it: that block is never freed.
    bool confirmed = false;
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
  Status TakeChunk(ObjectHeader* h, Take* t);

  static void Release(const Take& t) {
    if (t.h == nullptr || t.alias) return;
    if (t.local) RuntimeImpl::Unpin(t.h);
    else t.h->word.store(t.word, std::memory_order_release);  // nobody else changes a busy word
  }
  void ReleaseAll();

  // Lists unit u's chunks (not yet taken), checking their sizes.
  Status ListUnit(Unit& unit);

  // Takes every chunk of the window in address order, so that aggregates
  // over overlapping columns never wait for each other in a cycle; a chunk
  // listed twice is taken once. On error, what was taken is released by
  // the caller (ReleaseAll) and the rest is not.
  Status TakeWindow();

  // Where a far unit can run: a healthy memnode that takes offloads and
  // holds a copy of every far chunk (ec: the chunk's own data block) and of
  // every local one that has a valid far copy (Multi-Copy, clean); the
  // other local chunks would be staged there (WRITTEN to a scratch block).
  // kAuto offloads when that moves fewer bytes than pulling the far chunks
  // here: staged bytes + the partial < the far bytes.
  void Classify(Unit& unit);

  // Computes a unit here: local chunks in place, far ones READ into scratch.
  Status ComputeHere(Unit& unit) REQUIRES_SHARED(rt_.epoch_mu_);

  Status RunPieces(Unit& unit, std::span<const std::span<const uint8_t>> pieces);

  // kNever: the unit's chunks dereferenced (swapped in) as any scan does,
  // one step (Step) at a time, so few chunks are pinned at once; RunRows
  // goes on from the step before, so the partial is the unit's
  // (bit-identical).
  Status RunDerefUnit(uint64_t u, offload::Result* out);

  Status RunWindow(uint64_t u0, uint64_t u1) REQUIRES_SHARED(rt_.epoch_mu_);

  // Packs the far units of each memnode into OFFLOAD requests and sends them.
  void Submit() REQUIRES_SHARED(rt_.epoch_mu_);

  // Writes the staged (local) chunks of `units` to staging blocks at n,
  // one per unit (one ALLOC for all, one chain of WRITEs), and points their
  // pieces there. A unit the memnode gives no block is pulled instead.
  Status Stage(FarNode& n, std::vector<size_t>& units) REQUIRES_SHARED(rt_.epoch_mu_);

  memnode::OffloadUnitRef UnitRef(const Unit& unit) const;

  void Refuse(std::span<const size_t> units, uint32_t node, const Status& why);

  // Waits for every job (polling each memnode, backing off), then READs the
  // partials of those that succeeded. A job the memnode refused, lost or
  // failed for want of resources: its units are pulled. A kernel error
  // (group key out of range, overflow) is the aggregate's error.
  Status Collect() REQUIRES_SHARED(rt_.epoch_mu_);

  void FailJob(size_t j, const Status& why);

  void ReadResults(size_t j) REQUIRES_SHARED(rt_.epoch_mu_);

  // Frees the window's result and staging blocks — except at a memnode
  // that may still run a job of ours we gave up on (it would write into a
  // block we reuse): those are left allocated (counted, logged).
  void FreeResultBlocks() REQUIRES_SHARED(rt_.epoch_mu_);

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

}  // namespace sharry::compute
