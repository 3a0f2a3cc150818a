// MemnodeService: the memory node's request handler. It serves ALLOC, FREE
// and STATS (memnode/rpc.h) for every client of either transport, over the
// Sharry allocator; the transport calls it from its poller threads.
//
// Ownership: every live block records its owning client (the transport's
// client id). FREE of a block the client does not own frees nothing and
// answers kNotOwner. When a client disconnects or dies, every block it holds
// is reclaimed (FreeAllOf) and logged.
//
// Bad input is answered, never fatal: a malformed request gets a
// request-level error and changes nothing; a bad element gets its own code.
//
// Thread-safety: Handle/OnConnect/OnDisconnect may run concurrently; the
// allocator is reached only through its lock-free front end.
#pragma once

#include <atomic>
#include <cstdint>
#include <set>

#include "base/mutex.h"
#include "memnode/rpc.h"
#include "verbs/transport.h"

namespace sharry::alloc {
class SharryAllocator;  // alloc/sharry_allocator.h: internal to the build, not installed
}  // namespace sharry::alloc

namespace sharry::memnode {

struct ServiceOptions {
  uint64_t max_object_bytes = 0;  // 0: one memory section
  uint16_t max_batch = kMaxBatch;
};

class MemnodeService final : public RequestHandler {
 public:
  MemnodeService(alloc::SharryAllocator* allocator, const ServiceOptions& options);

  void OnConnect(ClientId client, const Peer& peer) override EXCLUDES(clients_mu_);
  void OnDisconnect(ClientId client) override EXCLUDES(clients_mu_);
  size_t Handle(ClientId client, std::span<const uint8_t> request, std::span<uint8_t> response) override;

  // The same numbers STATS returns.
  Stats CollectStats(size_t max_client_records = 64) EXCLUDES(clients_mu_);
  uint64_t max_object_bytes() const { return max_object_; }

 private:
  size_t HandleAlloc(ClientId c, const RpcHeader& h, std::span<const uint8_t> body, std::span<uint8_t> out);
  size_t HandleFree(ClientId c, const RpcHeader& h, std::span<const uint8_t> body, std::span<uint8_t> out);
  size_t HandleStats(std::span<uint8_t> out);

  alloc::SharryAllocator* const allocator_;
  const uint64_t max_object_;
  const uint16_t max_batch_;
  std::atomic<uint64_t> alloc_requests_{0}, free_requests_{0}, reclaimed_blocks_{0};
  // Connect/disconnect and STATS only, never on the data path; a leaf lock
  // (the allocator is called with it released).
  Mutex clients_mu_;
  std::set<ClientId> clients_ GUARDED_BY(clients_mu_);
};

// Writes a request-level error reply into `out`; returns its length.
size_t WriteErrorReply(const Status& s, std::span<uint8_t> out);

}  // namespace sharry::memnode
