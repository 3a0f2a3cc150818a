// What rpc_service_fuzz and tcp_server_fuzz run their inputs against: a real
// MemnodeService over a one-section SharryAllocator of `uma_bytes` (the first
// drives it directly, the second behind a tcp server).
#pragma once

#include <cstdint>
#include <memory>

#include "alloc/sharry_allocator.h"
#include "memnode/service.h"

namespace sharry::fuzz {

struct ServiceEnv {
  ServiceEnv(uint64_t uma_bytes, uint32_t free_batch_threshold) {
    alloc::SharryAllocatorOptions o;
    o.uma_bytes = uma_bytes;
    o.num_sections = 1;
    o.free_batch_threshold = free_batch_threshold;
    allocator = std::make_unique<alloc::SharryAllocator>(o);
    service = std::make_unique<memnode::MemnodeService>(allocator.get(), memnode::ServiceOptions{});
  }
  std::unique_ptr<alloc::SharryAllocator> allocator;
  std::unique_ptr<memnode::MemnodeService> service;
};

}  // namespace sharry::fuzz
