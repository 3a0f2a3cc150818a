// Work-request ids of the verbs backend: the kind of a work request in the
// top byte, a slot or sequence number below. Both sides tell completions
// apart by it (client: chains, request SENDs, response RECVs; server:
// response SENDs and request RECVs).
#pragma once

#include <cstdint>

namespace sharry::internal {

enum WrKind : uint64_t { kWrChain = 1, kWrSend = 2, kWrRecv = 3 };
constexpr uint64_t MakeWrId(WrKind k, uint64_t n) { return (uint64_t{k} << 56) | (n & ((1ull << 56) - 1)); }
constexpr WrKind WrKindOf(uint64_t id) { return static_cast<WrKind>(id >> 56); }
constexpr uint64_t WrSlotOf(uint64_t id) { return id & ((1ull << 56) - 1); }

constexpr uint64_t kNoSlot = (1ull << 56) - 1;  // a send whose buffer needs no release

}  // namespace sharry::internal
