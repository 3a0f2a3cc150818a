#include "memnode/page_owners.h"

#include <cstring>
#include <glog/logging.h>
#include <thread>

#include "alloc/types.h"
#include "base/cpu_relax.h"

namespace sharry {

static_assert(PageOwnerMap::kPageShift == alloc::kPageShift, "one page size");
static_assert(PageOwnerMap::kNone == alloc::kNoOwner, "one 'nobody'");

PageOwnerMap::PageOwnerMap(uint8_t* region, uint64_t region_size)
    : region_(region),
      region_size_(region_size),
      pages_(region_size >> kPageShift),
      words_(new std::atomic<uint64_t>[pages_]) {
  for (uint64_t p = 0; p < pages_; ++p) words_[p].store(Word(kNone, 0), std::memory_order_relaxed);
}

void PageOwnerMap::OnGrant(alloc::OwnerId owner, uint64_t offset, uint64_t bytes) {
  CHECK_NE(owner, kNone);
  CHECK(offset % (uint64_t{1} << kPageShift) == 0 && bytes > 0 && offset + bytes <= pages_ << kPageShift)
      << "grant of [" << offset << ", +" << bytes << ")";
  for (uint64_t p = offset >> kPageShift; p < (offset + bytes) >> kPageShift; ++p) {
    const uint64_t old = words_[p].exchange(Word(owner, 0), std::memory_order_release);
    CHECK_EQ(old >> 32, kNone) << "page " << p << " granted to " << owner << " while client " << (old >> 32)
                               << " owns it";
  }
}

void PageOwnerMap::OnRevoke(alloc::OwnerId owner, uint64_t offset, uint64_t bytes) {
  CHECK(offset % (uint64_t{1} << kPageShift) == 0 && offset + bytes <= pages_ << kPageShift);
  for (uint64_t p = offset >> kPageShift; p < (offset + bytes) >> kPageShift; ++p) {
    // Wait until no copy holds the page, then take it from its owner in the
    // same CAS (a pin cannot slip in between).
    uint32_t spins = 0;
    for (uint64_t expected = Word(owner, 0);
         !words_[p].compare_exchange_weak(expected, Word(kNone, 0), std::memory_order_acq_rel);
         expected = Word(owner, 0)) {
      CHECK_EQ(expected >> 32, owner) << "page " << p << " revoked from " << owner << " but owned by "
                                      << (expected >> 32);
      if (++spins < 1000) {
        CpuRelax();
      } else {
        std::this_thread::yield();  // a copy of up to 64 MiB can take milliseconds
      }
    }
  }
  if (region_ != nullptr) {
    std::memset(region_ + offset, 0, bytes);
    zeroed_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  }
}

bool PageOwnerMap::Pin(uint32_t owner, uint64_t offset, uint64_t len) {
  if (len == 0 || owner == kNone || offset >= region_size_ || len > region_size_ - offset) return false;
  const uint64_t first = offset >> kPageShift, last = (offset + len - 1) >> kPageShift;
  if (last >= pages_) return false;
  for (uint64_t p = first; p <= last; ++p) {
    uint64_t w = words_[p].load(std::memory_order_relaxed);
    do {
      if (w >> 32 != owner) {
        UnpinPages(first, p);  // the pages pinned so far
        return false;
      }
    } while (!words_[p].compare_exchange_weak(w, w + 1, std::memory_order_acquire, std::memory_order_relaxed));
  }
  return true;
}

void PageOwnerMap::Unpin(uint64_t offset, uint64_t len) {
  UnpinPages(offset >> kPageShift, ((offset + len - 1) >> kPageShift) + 1);
}

void PageOwnerMap::UnpinPages(uint64_t first, uint64_t end) {
  for (uint64_t p = first; p < end; ++p) {
    const uint64_t old = words_[p].fetch_sub(1, std::memory_order_release);
    DCHECK_GT(old & 0xFFFFFFFFu, 0u) << "unpin of an unpinned page " << p;
  }
}

uint32_t PageOwnerMap::OwnerOf(uint64_t offset) const {
  if (offset >= region_size_ || (offset >> kPageShift) >= pages_) return kNone;
  return static_cast<uint32_t>(words_[offset >> kPageShift].load(std::memory_order_acquire) >> 32);
}

uint64_t PageOwnerMap::GrantedPages() const {
  uint64_t n = 0;
  for (uint64_t p = 0; p < pages_; ++p) n += (words_[p].load(std::memory_order_relaxed) >> 32) != kNone;
  return n;
}

}  // namespace sharry
