#include "memnode/uma.h"

#include <glog/logging.h>
#include <sys/mman.h>

#include <cerrno>

namespace sharry::memnode {

StatusOr<Uma> Uma::Map(uint64_t bytes, bool hugepages) {
  if (bytes == 0) return Status::InvalidArgument("UMA size must be positive");
  constexpr uint64_t kHuge = 2u << 20;
  if (hugepages) {
    uint64_t rounded = (bytes + kHuge - 1) / kHuge * kHuge;
    void* p = mmap(nullptr, rounded, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE, -1, 0);
    if (p != MAP_FAILED) return Uma(static_cast<uint8_t*>(p), bytes, "2 MiB hugetlb");
    LOG(WARNING) << "UMA: no explicit hugepages for " << bytes << " B (" << std::strerror(errno)
                 << "; reserve them in /proc/sys/vm/nr_hugepages); using transparent hugepages";
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) return Status::FromErrno("mmap(UMA of " + std::to_string(bytes) + " B)", errno);
  std::string kind = "4 KiB";
  if (hugepages && madvise(p, bytes, MADV_HUGEPAGE) == 0) kind = "THP";
  return Uma(static_cast<uint8_t*>(p), bytes, kind);
}

Uma::~Uma() {
  if (base_ != nullptr) {
    uint64_t len = page_kind_ == "2 MiB hugetlb" ? (size_ + (2u << 20) - 1) / (2u << 20) * (2u << 20) : size_;
    munmap(base_, len);
  }
}

}  // namespace sharry::memnode
