// Aggregates over columns of far-memory chunks, split between this process
// and the memnodes (issue #13; docs/offload.md).
//
// A column is a run of chunk objects in row order (a RemoteArray's chunks:
// remote_ds/remote_array.h), each holding rows_per_chunk rows (the last one
// may hold fewer). Aggregate() runs an offload::Spec over `rows` rows of
// several columns in step, one unit of unit_rows rows at a time:
//
//   - a unit whose chunks are all local is computed here, on the chunks
//     in place (pinned while read);
//   - a unit whose chunks are all far on one memnode is sent there in an
//     OFFLOAD request (batched per memnode, many in flight) and computed by
//     the memnode's offload workers; meanwhile its chunks are marked busy,
//     so no swap-in, eviction, repair or restripe moves them while the
//     memnode reads them (a thread that dereferences one waits, as for any
//     object being moved);
//   - any other unit (mixed, spread over memnodes, or one the memnode
//     refused) is computed here after READing its far chunks into a scratch
//     buffer (no swap-in: the local set is left as it was);
//   - with OffloadMode::kNever every unit is computed here on chunks
//     dereferenced as any scan does (far ones swapped in).
//
// Results are exact and reproducible (offload/kernel.h): each unit's
// partial is computed in row order by the same kernel here or at a memnode,
// and the partials are merged in unit order, so the result depends only on
// the data and unit_rows — offloaded or not, any split, any memnode.
//
// Errors: a spec that fails offload::Validate, columns that do not match the
// spec (type, count) or do not cover `rows`, a unit_rows that is not a
// multiple of every column's rows_per_chunk: kInvalidArgument naming it. A
// group key out of range or an integer overflow: kOutOfRange from the
// kernel. A far chunk lost with its memnode: kDataLoss (as Deref). A
// memnode that dies mid-offload: its units are read from another copy if
// there is one, else the error; the runtime stays usable either way.
//
// Thread-safety: any thread, concurrently with any other use of the
// runtime and of the same columns (the chunks must stay alive: do not
// destroy them meanwhile).
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "base/status.h"
#include "compute/runtime.h"
#include "offload/kernel.h"
#include "offload/spec.h"

namespace sharry::compute {

struct AggregateColumn {
  std::span<const RemoteObject> chunks;  // in row order
  uint32_t rows_per_chunk = 0;           // rows of every chunk but the last
  offload::ElemType type = offload::ElemType::kI64;  // must equal the spec's column type
};

struct AggregateOptions {
  std::optional<OffloadMode> offload;  // unset: the runtime's RuntimeOptions::offload
  // Rows per unit; 0: the smallest multiple of every rows_per_chunk that is
  // at least kDefaultUnitRows. Results are bit-identical across runs with
  // the same unit_rows (use the same for a local reference).
  uint64_t unit_rows = 0;
  // Far units in flight (marked busy) at once, over all memnodes.
  uint32_t window_units = 64;
  // kNever: steps prefetched ahead (a step: the rows of one chunk of the
  // column with the fewest rows per chunk, and the others' chunks for them).
  uint32_t prefetch_steps = 4;
};
inline constexpr uint64_t kDefaultUnitRows = 16384;

// unit_rows as AggregateOptions says for columns of these rows_per_chunk.
uint64_t DefaultUnitRows(std::span<const uint32_t> rows_per_chunk);

StatusOr<offload::Result> Aggregate(Runtime& rt, const offload::Spec& spec, std::span<const AggregateColumn> columns,
                                    uint64_t rows, const AggregateOptions& options = {});

}  // namespace sharry::compute
