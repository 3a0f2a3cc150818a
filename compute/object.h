// The per-object metadata of the compute runtime.
//
// Every remoteable object has one ObjectHeader, owned by the Runtime at a
// stable address. Its 64-bit metadata word says where the object is and who
// is using it; the local-hit path reads and updates it with one CAS — no
// lock, no system call.
//
//  63  62  61  60  59  58 ........ 48  47 ............................... 0
// +---+---+---+---+---+---------------+------------------------------------+
// | P | D | H | B | F |  pin count    | P=1: local address of the data      |
// |   |   |   |   |   |  (11 bits)    | P=0, F=1: far address of the copy   |
// +---+---+---+---+---+---------------+------------------------------------+
//   P present  the data is in local memory
//   D dirty    written since it became local (Multi-Copy writes back only
//              dirty objects; a new object is dirty)
//   H hot      dereferenced since the CLOCK hand last passed
//   B busy     a swap-in or swap-out owns the object; pins wait for it
//   F far      a far copy exists. Unique-Copy: only while P=0 (swap-in frees
//              it). Multi-Copy: kept from the first swap-out until the
//              object is destroyed; its offset is also in far_offset.
//   pin count  live DerefScopes holding the object; the evictor never
//              touches an object with pins
//
// Addresses are user-space virtual addresses (x86-64: 47 bits); a far
// address names a memnode and a UMA offset there (runtime_impl.h, namespace
// far: node in bits 40..47, offset in bits 0..39); both fit the low 48 bits.
//
// The rest of the header (32 bytes in all, pinned below):
//   size        bytes of the object's data
//   live        1 while a RemoteObject owns the slot
//   far_offset  Multi-Copy: the far address kept while the object is present
//   index       the slot's number in the slab (its side tables: replicas)
//   affinity    the placement key given to Runtime::New (0: none), fixed for
//               the object's life: objects with the same key put their first
//               far copy on the same memnode (docs/redundancy.md, "Affinity")
#pragma once

#include <atomic>
#include <cstdint>

namespace sharry::compute {

namespace meta {
inline constexpr uint64_t kPresent = uint64_t{1} << 63;
inline constexpr uint64_t kDirty = uint64_t{1} << 62;
inline constexpr uint64_t kHot = uint64_t{1} << 61;
inline constexpr uint64_t kBusy = uint64_t{1} << 60;
inline constexpr uint64_t kFar = uint64_t{1} << 59;
inline constexpr int kPinShift = 48;
inline constexpr uint64_t kPinOne = uint64_t{1} << kPinShift;
inline constexpr uint64_t kPinMask = uint64_t{0x7FF} << kPinShift;
inline constexpr uint64_t kMaxPins = 0x7FF;
inline constexpr uint64_t kAddrMask = (uint64_t{1} << 48) - 1;

static_assert((kPresent | kDirty | kHot | kBusy | kFar) == (uint64_t{0x1F} << 59));
static_assert((kPinMask & (kPresent | kDirty | kHot | kBusy | kFar)) == 0);
static_assert((kPinMask & kAddrMask) == 0);
static_assert((kPinMask | kAddrMask | (uint64_t{0x1F} << 59)) == ~uint64_t{0});

constexpr uint64_t Pins(uint64_t m) { return (m & kPinMask) >> kPinShift; }
constexpr uint64_t Addr(uint64_t m) { return m & kAddrMask; }
constexpr bool Is(uint64_t m, uint64_t bit) { return (m & bit) != 0; }
}  // namespace meta

inline constexpr uint64_t kNoFarOffset = ~uint64_t{0};

struct ObjectHeader {
  std::atomic<uint64_t> word{0};
  uint32_t size = 0;        // bytes of the object's data
  std::atomic<uint32_t> live{0};  // 1 while a handle owns it (the CLOCK hand skips free slots)
  uint64_t far_offset = kNoFarOffset;  // Multi-Copy: the far address of the copy kept while present
  uint32_t index = 0;       // the header's slot in the runtime's slab (its side tables: replicas)
  uint32_t affinity = 0;    // placement key (0: none); set by New, then read only
};
static_assert(sizeof(ObjectHeader) == 32);

}  // namespace sharry::compute
