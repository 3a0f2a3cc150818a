// The Unified Memory Address Space (paper 4.1): one mapping of the memory
// node's far memory, shared by every compute process. A UMA offset becomes
// an address by ONE addition (flat mapping); the whole UMA is registered
// once as one RDMA memory region by the transport.
//
// The mapping is populated up front (MAP_POPULATE, or touched page by page),
// so no request ever waits for a page fault, and the numbers the memnode
// reports are resident memory. Hugepages: explicit ones (MAP_HUGETLB) when
// asked and available, else transparent hugepages (madvise), else 4 KiB
// pages — the choice is logged.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "base/status.h"

namespace sharry::memnode {

class Uma {
 public:
  static StatusOr<Uma> Map(uint64_t bytes, bool hugepages);
  Uma(Uma&& o) noexcept : base_(o.base_), size_(o.size_), page_kind_(o.page_kind_) { o.base_ = nullptr; }
  Uma& operator=(Uma&&) = delete;
  ~Uma();

  uint8_t* base() const { return base_; }
  uint64_t size() const { return size_; }
  const std::string& page_kind() const { return page_kind_; }  // "2 MiB hugetlb", "THP", "4 KiB"
  // Flat translation. REQUIRES: offset < size().
  uint8_t* Translate(uint64_t offset) const { return base_ + offset; }

 private:
  Uma(uint8_t* b, uint64_t s, std::string kind) : base_(b), size_(s), page_kind_(std::move(kind)) {}
  uint8_t* base_;
  uint64_t size_;
  std::string page_kind_;
};

}  // namespace sharry::memnode
