#include "offload/local.h"

#include <algorithm>
#include <string>
#include <vector>

namespace sharry::offload {

StatusOr<Result> AggregateLocal(const Spec& spec, std::span<const std::span<const uint8_t>> columns, uint64_t rows,
                                uint64_t unit_rows) {
  SHARRY_RETURN_IF_ERROR(Validate(spec));
  if (columns.size() != spec.columns.size())
    return Status::InvalidArgument("aggregate over " + std::to_string(columns.size()) + " columns; the spec has " +
                                   std::to_string(spec.columns.size()));
  if (unit_rows == 0) return Status::InvalidArgument("unit_rows 0");
  for (size_t c = 0; c < columns.size(); ++c)
    if (columns[c].size() / ElemSize(spec.columns[c]) < rows)
      return Status::InvalidArgument("column " + std::to_string(c) + " holds fewer than " + std::to_string(rows) +
                                     " rows");
  Result r(spec);
  std::vector<uint8_t> partial(PartialBytes(spec));
  std::vector<std::span<const uint8_t>> piece(columns.size());
  std::vector<Pieces> cols(columns.size());
  for (uint64_t first = 0; first < rows; first += unit_rows) {
    const uint64_t n = std::min(unit_rows, rows - first);
    for (size_t c = 0; c < columns.size(); ++c) {
      const size_t es = ElemSize(spec.columns[c]);
      piece[c] = columns[c].subspan(first * es, n * es);
      cols[c] = Pieces(&piece[c], 1);
    }
    SHARRY_RETURN_IF_ERROR(RunUnit(spec, n, cols, partial, first));
    SHARRY_RETURN_IF_ERROR(r.Add(partial));
    r.units++;
    r.rows += n;
  }
  return r;
}

}  // namespace sharry::offload
