#include "verbs/remote_keys.h"

namespace sharry {

void RemoteKeys::Init(uint64_t region_size) {
  std::call_once(once_, [&] {
    pages_ = (region_size + (uint64_t{1} << kPageShift) - 1) >> kPageShift;
    keys_ = std::make_unique<std::atomic<uint32_t>[]>(pages_);  // value-initialised: 0
  });
}

void RemoteKeys::Learn(uint64_t offset, uint64_t len, uint32_t rkey) {
  if (len == 0 || pages_ == 0) return;
  const uint64_t first = offset >> kPageShift;
  const uint64_t last = (offset + len - 1) >> kPageShift;
  for (uint64_t p = first; p <= last && p < pages_; ++p) keys_[p].store(rkey, std::memory_order_relaxed);
}

uint32_t RemoteKeys::Find(uint64_t offset, uint64_t len) const {
  if (len == 0 || pages_ == 0) return 0;
  const uint64_t first = offset >> kPageShift;
  const uint64_t last = (offset + len - 1) >> kPageShift;
  if (last >= pages_ || last < first) return 0;
  const uint32_t k = keys_[first].load(std::memory_order_relaxed);
  return k == keys_[last].load(std::memory_order_relaxed) ? k : 0;
}

}  // namespace sharry
