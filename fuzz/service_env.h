// What rpc_service_fuzz and tcp_server_fuzz run their inputs against: a real
// MemnodeService over a one-section SharryAllocator of `uma_bytes` (the first
// drives it directly, the second behind a tcp server), with the memnode's
// page-owner map over a plain region of that size, so that OFFLOAD requests
// are checked against real page owners and run on one offload worker.
#pragma once

#include <cstdint>
#include <memory>

#include "alloc/sharry_allocator.h"
#include "memnode/page_owners.h"
#include "memnode/service.h"

namespace sharry::fuzz {

struct ServiceEnv {
  ServiceEnv(uint64_t uma_bytes, uint32_t free_batch_threshold)
      : region(new uint8_t[uma_bytes]()), pages(std::make_unique<PageOwnerMap>(region.get(), uma_bytes)) {
    alloc::SharryAllocatorOptions o;
    o.uma_bytes = uma_bytes;
    o.num_sections = 1;
    o.free_batch_threshold = free_batch_threshold;
    o.observer = pages.get();
    allocator = std::make_unique<alloc::SharryAllocator>(o);
    memnode::ServiceOptions so;
    so.offload.threads = 1;
    so.offload.queue = 8;
    so.offload.jobs_per_client = 4;
    so.offload.max_rows = 1 << 16;
    so.region = region.get();
    so.region_size = uma_bytes;
    so.region_access = pages.get();
    service = std::make_unique<memnode::MemnodeService>(allocator.get(), so);
  }
  // Destroyed in reverse: the service (its offload worker) first, the region last.
  std::unique_ptr<uint8_t[]> region;
  std::unique_ptr<PageOwnerMap> pages;
  std::unique_ptr<alloc::SharryAllocator> allocator;
  std::unique_ptr<memnode::MemnodeService> service;
};

}  // namespace sharry::fuzz
