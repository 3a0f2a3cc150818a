// An aggregate over columns in plain local memory: the same units, kernel
// and merge order as compute/aggregate.h, so its result is bit-identical to
// an offloaded or split run with the same unit_rows (the reference the
// data-frame benchmark and the tests check against).
#pragma once

#include <cstdint>
#include <span>

#include "base/status.h"
#include "offload/kernel.h"
#include "offload/spec.h"

namespace sharry::offload {

// columns[i]: column i's bytes, at least rows x ElemSize(spec.columns[i]).
StatusOr<Result> AggregateLocal(const Spec& spec, std::span<const std::span<const uint8_t>> columns, uint64_t rows,
                                uint64_t unit_rows);

}  // namespace sharry::offload
