// PageOwnerMap: which client owns each page of the UMA, and how many server
// threads are copying to or from it right now — the server side of
// confinement over TCP (issue #11, docs/security.md "Confinement").
//
// The allocator grants and revokes whole spans (alloc/span_observer.h); this
// map mirrors that per 8 KiB page, one 64-bit atomic word each:
//
//   63            32 31             0
//   +---------------+----------------+
//   |  owner (32)   |  pins (32)     |     owner kNone: granted to nobody
//   +---------------+----------------+
//
// A TCP READ or WRITE of [offset, offset+len) for client C runs between
// Pin(C, offset, len) — true only if every page of the range is C's, and
// then no page of it can be revoked — and Unpin(offset, len). A pin is held
// only while the server copies bytes (a memcpy, or one non-blocking recv
// into the region), never while it waits for a client, so a revoke waits at
// most for those copies: a client that stops reading cannot hold memory
// that was taken from it.
//
// OnRevoke clears the owner of every page (waiting for pins to drain), then
// zeroes the pages, before the allocator can grant them to anyone else: a
// new owner reads zeros (no remanence), and an old owner's later access
// fails its Pin.
//
// Costs: Pin/Unpin are one CAS / one fetch_sub per page touched (a 4 KiB
// access: one or two pages), no lock, no search; memory: 8 B per 8 KiB page
// (1 MiB per GiB of UMA).
//
// Thread-safety: all methods may be called concurrently; OnGrant/OnRevoke
// of overlapping ranges never are (the allocator serialises them per
// section, and sections do not overlap).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "alloc/span_observer.h"
#include "verbs/transport.h"

namespace sharry {

class PageOwnerMap final : public alloc::SpanObserver, public RegionAccess {
 public:
  static constexpr uint32_t kPageShift = 13;  // alloc::kPageSize, 8 KiB
  static constexpr uint32_t kNone = 0xFFFFFFFFu;  // alloc::kNoOwner

  // `region` (region_size bytes) is what revoked pages are zeroed in; null:
  // no zeroing (tests of the map alone).
  PageOwnerMap(uint8_t* region, uint64_t region_size);

  void OnGrant(alloc::OwnerId owner, uint64_t offset, uint64_t bytes) override;
  void OnRevoke(alloc::OwnerId owner, uint64_t offset, uint64_t bytes) override;

  // True, with every page of [offset, offset+len) pinned, if len > 0, the
  // range lies in the region and every page of it is granted to `owner`;
  // false, with nothing pinned, otherwise.
  [[nodiscard]] bool Pin(uint32_t owner, uint64_t offset, uint64_t len) override;
  // REQUIRES: a successful Pin of the same range.
  void Unpin(uint64_t offset, uint64_t len) override;

  // The owner of the page holding `offset` (kNone if none or out of range).
  uint32_t OwnerOf(uint64_t offset) const;
  // Pages currently granted (for tests and stats; O(pages)).
  uint64_t GrantedPages() const;
  uint64_t zeroed_bytes() const { return zeroed_bytes_.load(std::memory_order_relaxed); }

 private:
  static uint64_t Word(uint32_t owner, uint32_t pins) { return uint64_t{owner} << 32 | pins; }
  void UnpinPages(uint64_t first, uint64_t end);  // pages [first, end)

  uint8_t* const region_;
  const uint64_t region_size_;
  const uint64_t pages_;
  std::unique_ptr<std::atomic<uint64_t>[]> words_;
  std::atomic<uint64_t> zeroed_bytes_{0};
};

// RAII pin: ok() tells whether the range was pinned.
class PagePin {
 public:
  PagePin(PageOwnerMap* map, uint32_t owner, uint64_t offset, uint64_t len)
      : map_(map), offset_(offset), len_(len), ok_(map->Pin(owner, offset, len)) {}
  ~PagePin() {
    if (ok_) map_->Unpin(offset_, len_);
  }
  PagePin(const PagePin&) = delete;
  PagePin& operator=(const PagePin&) = delete;
  bool ok() const { return ok_; }

 private:
  PageOwnerMap* const map_;
  const uint64_t offset_, len_;
  const bool ok_;
};

}  // namespace sharry
