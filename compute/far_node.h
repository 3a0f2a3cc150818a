// FarNode: one memnode as a runtime sees it — our control connection to it,
// the far blocks we no longer need there, its health and the numbers that
// place new blocks on it. Private to compute/ (not installed).
//
// A runtime has up to kMaxMemnodes of them (RuntimeImpl::nodes_, fixed at
// Init, indexed as in RuntimeOptions). A far address names one:
//
//   47 ........ 40  39 ................................................ 0
//  +---------------+----------------------------------------------------+
//  |  node (8 bits)|  UMA offset at that memnode (40 bits: 1 TiB)       |
//  +---------------+----------------------------------------------------+
//
// (node 255 is never used: kLostFar, all 48 bits set, is no far address).
// A memnode whose UMA is larger than 1 TiB is refused at connect.
//
// Thread safety: control under control_mu (held across an RPC); the health
// fields under health_mu (a leaf); the rest is atomic or fixed at Init. The
// runtime's lock order (runtime_impl.h) puts control_mu after the runtime's
// epoch_mu_, and no thread holds two nodes' control_mu at once.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"
#include "compute/far_block_queue.h"
#include "compute/runtime.h"
#include "memnode/client.h"

namespace sharry::compute {

namespace far {
inline constexpr int kNodeShift = 40;
inline constexpr uint64_t kOffsetMask = (uint64_t{1} << kNodeShift) - 1;
inline constexpr uint64_t kMaxUma = uint64_t{1} << kNodeShift;
constexpr uint64_t Make(uint32_t node, uint64_t offset) { return (uint64_t{node} << kNodeShift) | offset; }
constexpr uint32_t NodeOf(uint64_t addr) { return static_cast<uint32_t>(addr >> kNodeShift) & 0xFF; }
constexpr uint64_t OffsetOf(uint64_t addr) { return addr & kOffsetMask; }
static_assert(kMaxMemnodes < 255);
}  // namespace far

// Placement affinity (docs/redundancy.md, "Affinity"): the weight of memnode
// `node` (its index) for affinity key `key`. A key's home is the eligible
// memnode of the highest weight (rendezvous hashing): stable while the set
// is the same, and when a memnode leaves only its keys move (each to its
// own next choice, spread over the others); a memnode that joins takes
// about 1/N of the keys. splitmix64's finalizer, over the key, then the pair.
constexpr uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
constexpr uint64_t AffinityWeight(uint32_t key, uint32_t node) {
  return SplitMix64(SplitMix64(key) ^ (uint64_t{node} << 32));
}

struct FarNode {
  enum Health : int { kHealthy = 0, kReconnecting = 1, kDead = 2 };

  FarNode(uint32_t i, MemnodeAddress a) : index(i), addr(std::move(a)), name(addr.ToString()) {}
  bool healthy() const { return health.load(std::memory_order_acquire) == kHealthy; }
  // Placement: the memnode's use at its last STATS plus what we placed
  // there since (least first).
  uint64_t Score() const {
    const int64_t since = placed_since_stats.load(std::memory_order_relaxed);
    const uint64_t base = used_at_stats.load(std::memory_order_relaxed);
    return since < 0 && static_cast<uint64_t>(-since) > base ? 0 : base + since;
  }

  const uint32_t index;
  const MemnodeAddress addr;
  const std::string name;  // host:port

  Mutex control_mu;
  std::unique_ptr<memnode::MemnodeClient> control GUARDED_BY(control_mu);
  std::atomic<ClientId> control_id{0};
  ClientOptions conn_opts;  // set by Init, then read only
  FarBlockQueue free_queue;  // UMA offsets at this memnode
  std::atomic<uint64_t> conn_epoch{1};  // bumped (epoch_mu_ exclusive) when its data connections go

  std::atomic<int> health{kHealthy};
  mutable Mutex health_mu;
  Status health_status GUARDED_BY(health_mu);  // why not healthy
  std::chrono::steady_clock::time_point unhealthy_since GUARDED_BY(health_mu);
  std::thread reconnector GUARDED_BY(health_mu);
  std::atomic<bool> far_exhausted{false};

  std::atomic<uint64_t> used_at_stats{0};
  std::atomic<int64_t> placed_since_stats{0};
  std::atomic<uint64_t> copies{0}, copy_bytes{0}, alloc_rpcs{0}, free_rpcs{0};
};

// The runtime's memnodes, in the order they came (the options' list, then
// etcd joins): appended, never removed, so a reader iterates or indexes
// [0, size()) without a lock. One writer at a time (the caller serializes).
class FarNodes {
 public:
  size_t size() const { return n_.load(std::memory_order_acquire); }
  FarNode* operator[](size_t i) const { return slots_[i]; }
  FarNode* const* begin() const { return slots_; }
  FarNode* const* end() const { return slots_ + size(); }
  FarNode* Add(std::unique_ptr<FarNode> n) {
    const size_t i = n_.load(std::memory_order_relaxed);
    slots_[i] = n.get();
    owned_.push_back(std::move(n));
    n_.store(i + 1, std::memory_order_release);
    return slots_[i];
  }

 private:
  FarNode* slots_[kMaxMemnodes] = {};
  std::vector<std::unique_ptr<FarNode>> owned_;  // the writer's
  std::atomic<size_t> n_{0};
};

}  // namespace sharry::compute
