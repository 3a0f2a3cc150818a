// The aggregate kernel: runs an offload::Spec over the rows of one unit and
// merges unit partials. The memnode's offload workers and the compute
// runtime (local units, and the plain-local reference) run this same code.
//
// Exact, reproducible results. A unit is a fixed run of rows (the caller
// fixes its length from the columns' chunk layout, the same for every run
// of the same arrays). A unit's partial starts from the identities and
// takes its rows in row order; the total starts from the identities and
// takes the units' partials in row order (Merge). So the result depends
// only on the data and the unit length — not on which units ran here and
// which at a memnode, in which order the partials arrived, or how many
// threads ran them — and floating sums are bit-identical to a local run
// with the same unit length. Integer aggregates are exact int64 and fail
// with OutOfRange on overflow.
//
// Partial layout (also on the wire, in the OFFLOAD result block):
// groups x aggs slots of 8 bytes, group-major (slot g * aggs + a), each an
// int64 (integer aggregates and kCount) or an IEEE double, little-endian.
// Identities: 0 for counts and sums, INT64_MAX / +inf for min, INT64_MIN /
// -inf for max (a group with no rows keeps them).
//
// Min and max keep the first of equal values (a later value replaces the
// slot only when strictly smaller/larger; NaN never does), so -0.0/+0.0 and
// NaNs do not depend on the unit boundaries either. The library is built
// with -ffp-contract=off (no fused multiply-add on any host).
//
// Speed: rows are evaluated in batches of kBatch (vectorised interpretation,
// one tight loop per expression node and batch), not one node per row.
//
// Thread-safety: free functions on values; RunUnit keeps per-thread scratch,
// so any number of threads may run units at once. A Result is a value (one
// thread at a time). docs/offload.md has the whole contract.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/status.h"
#include "offload/spec.h"

namespace sharry::offload {

inline constexpr size_t kBatch = 256;

// One column of a unit: its bytes as contiguous pieces in row order (the
// chunks of a RemoteArray, or slices of them), together exactly
// rows x ElemSize bytes; a piece holds whole elements.
using Pieces = std::span<const std::span<const uint8_t>>;

// Bytes of one partial (and of a Result's accumulator): groups x aggs x 8.
size_t PartialBytes(const Spec& s);
// Fills `partial` (PartialBytes) with the identities.
void InitPartial(const Spec& s, std::span<uint8_t> partial);

// Computes the partial of a unit of `rows` rows; columns[i] are column i's
// pieces. Checks the spec (Validate: InvalidArgument), the pieces (count and
// sizes against rows and the element size: InvalidArgument "column 1: pieces
// hold 4092 B, 1024 rows of f32 need 4096 B"), the partial's size, and while
// it runs the group keys and integer overflow (OutOfRange, naming the row);
// on an error `partial` is unspecified. first_row numbers rows in error
// messages (the unit's first row in the array).
Status RunUnit(const Spec& s, uint64_t rows, std::span<const Pieces> columns, std::span<uint8_t> partial,
               uint64_t first_row = 0);

// As RunUnit, but goes on from `partial` (the partial of the unit's rows
// before these, or InitPartial's identities): RunUnit over rows [0, a+b) is
// bit-identical to RunUnit over [0, a) then RunRows over [a, a+b). Lets a
// caller walk a unit a few chunks at a time.
Status RunRows(const Spec& s, uint64_t rows, std::span<const Pieces> columns, std::span<uint8_t> partial,
               uint64_t first_row = 0);

// acc := acc (+) partial, slot by slot (sum: +, count: +, min, max);
// integer overflow is OutOfRange naming the aggregate and group.
Status Merge(const Spec& s, std::span<uint8_t> acc, std::span<const uint8_t> partial);

// The total of an aggregate: the spec and its accumulator.
class Result {
 public:
  Result() = default;
  // REQUIRES: Validate(s) ok (the accumulator is PartialBytes(s)).
  explicit Result(Spec s);
  const Spec& spec() const { return spec_; }
  uint32_t groups() const { return spec_.groups; }
  // Aggregate `agg` of group `g`: as int64 (integer aggregates; a double
  // aggregate truncated and saturated, NaN as 0), as double (either kind:
  // integers converted). REQUIRES: g < groups(), agg < spec().aggs.size().
  int64_t Int(uint32_t g, size_t agg) const;
  double Value(uint32_t g, size_t agg) const;
  // Merges one unit's partial in (units in row order); counts it in units.
  Status Add(std::span<const uint8_t> partial) {
    Status st = Merge(spec_, acc_, partial);
    if (st.ok()) ++units;
    return st;
  }
  std::span<uint8_t> bytes() { return acc_; }
  std::span<const uint8_t> bytes() const { return acc_; }
  uint64_t units = 0;  // partials merged
  uint64_t rows = 0;   // rows of those units (filtered or not)

 private:
  Spec spec_;
  std::vector<uint8_t> acc_;
};

}  // namespace sharry::offload
