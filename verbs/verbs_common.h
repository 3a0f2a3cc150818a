// Small pieces both sides of the verbs backend use: the names they share,
// page-aligned message buffers and the RDMA READ depth asked for per QP.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "verbs/cm.h"
#include "verbs/queue_pair.h"
#include "verbs/resources.h"
#include "verbs/wire.h"

namespace sharry::internal {

using verbs::CmEvent;
using verbs::CmEventChannel;
using verbs::CmId;
using verbs::CompletionChannel;
using verbs::CompletionQueue;
using verbs::MemoryRegion;
using verbs::ProtectionDomain;
using verbs::SendChain;
using verbs::SharedReceiveQueue;
using wire::Kind;
using wire::MsgHeader;
using Clock = std::chrono::steady_clock;

constexpr int kRdAtomic = 16;  // outstanding RDMA READs we ask for per QP

// Allocates `n` bytes aligned to a page, zeroed; freed with std::free.
struct FreeDeleter { void operator()(uint8_t* p) const { std::free(p); } };
using Buffer = std::unique_ptr<uint8_t, FreeDeleter>;
inline Buffer AllocBuffer(size_t n) {
  void* p = nullptr;
  if (posix_memalign(&p, 4096, std::max<size_t>(n, 4096)) != 0) return nullptr;
  std::memset(p, 0, n);
  return Buffer(static_cast<uint8_t*>(p));
}

}  // namespace sharry::internal
