// MemnodeService: the memory node's request handler. It serves ALLOC, FREE
// and STATS (memnode/rpc.h) for every client of either transport, over the
// Sharry allocator; the transport calls it from its poller threads.
//
// Ownership: every live block records its owning client (the transport's
// client id). FREE of a block the client does not own frees nothing and
// answers kNotOwner. When a client disconnects or dies, every block it holds
// is reclaimed (FreeAllOf) and logged.
//
// Quotas (issue #11): each client may hold at most client_quota_bytes, and
// the clients of one tenant together at most the tenant's quota_bytes (the
// tenants file); an ALLOC element past either is refused with
// kQuotaExceeded and the reply's note names the quota. Accounted in the
// bytes the allocator charges (memnode/quota.h: QuotaLedger).
//
// STATS visibility: a client sees the totals, its own ClientRecord and its
// tenant's TenantRecord (anonymous clients: the anonymous group's); a Peer
// authenticated as the admin sees every record. CollectStats (in-process)
// returns every record.
//
// Bad input is answered, never fatal: a malformed request gets a
// request-level error and changes nothing; a bad element gets its own code.
//
// Thread-safety: Handle/OnConnect/OnDisconnect may run concurrently; the
// allocator is reached only through its lock-free front end, the quota
// counters with atomics.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "memnode/rpc.h"
#include "verbs/transport.h"

namespace sharry::alloc {
class SharryAllocator;  // alloc/sharry_allocator.h: internal to the build, not installed
}  // namespace sharry::alloc

namespace sharry {
struct TenantsConfig;  // memnode/tenants.h: internal to the build, not installed
}  // namespace sharry

namespace sharry::memnode {

class QuotaLedger;  // memnode/quota.h: internal to the build, not installed
struct QuotaAccount;
class OffloadWorkers;  // memnode/offload_workers.h: internal to the build, not installed

// The offload workers (issue #13; memnode/offload_workers.h, docs/offload.md).
struct OffloadOptions {
  uint32_t threads = 1;           // --offload_threads; 0: OFFLOAD is refused (FailedPrecondition)
  std::vector<int> cores;         // core of worker i: cores[i % size]; empty or -1: unpinned
  uint32_t queue = 64;            // --offload_queue: jobs waiting for a worker, all clients together
  uint32_t jobs_per_client = 32;  // --offload_client_jobs: a client's jobs not yet collected
  uint64_t max_rows = 4194304;    // --offload_max_rows: rows of one OFFLOAD (all its units)
};

// The offload numbers (the stats log, the metrics endpoint).
struct OffloadStats {
  bool enabled = false;         // workers running (threads > 0 and a region to read)
  uint64_t jobs_total = 0;      // jobs accepted since start
  uint64_t jobs_failed_total = 0;  // of those, ended with an error (not counting dropped ones)
  uint64_t rows_total = 0;      // rows scanned by jobs
  uint64_t cpu_ns_total = 0;    // CPU time of the workers' threads spent on jobs
  uint64_t refused_total = 0;   // OFFLOAD requests refused (malformed, bounds, offload off)
  uint64_t queue_depth = 0;     // jobs waiting for a worker now
  uint64_t running = 0;         // jobs running now
  uint64_t jobs = 0;            // jobs known now: queued, running, or done and not yet collected
};

struct ServiceOptions {
  uint64_t max_object_bytes = 0;  // 0: one memory section
  uint16_t max_batch = kMaxBatch;
  // Far memory one client (connection) may hold, in the bytes the allocator
  // charges (size class or whole pages); 0: no cap. Anonymous clients too.
  uint64_t client_quota_bytes = 0;
  // The tenants (their quota_bytes); nullptr: no tenant quotas. Read at
  // construction only.
  std::shared_ptr<const TenantsConfig> tenants;
  // OFFLOAD (issue #13): the workers, and what they read — the region (the
  // UMA: offsets are relative to `region`) and who owns its pages. Without
  // a region offload is off, whatever offload.threads says.
  OffloadOptions offload;
  uint8_t* region = nullptr;
  uint64_t region_size = 0;
  RegionAccess* region_access = nullptr;
};

class MemnodeService final : public RequestHandler {
 public:
  MemnodeService(alloc::SharryAllocator* allocator, const ServiceOptions& options);
  ~MemnodeService() override;

  void OnConnect(ClientId client, const Peer& peer) override;
  void OnDisconnect(ClientId client) override;
  size_t Handle(ClientId client, std::span<const uint8_t> request, std::span<uint8_t> response) override;

  // Over verbs with confinement: the transport's keys, which each ALLOC
  // reply carries per block (nullptr: none, the default). Set once the
  // transport is up; cleared before it stops.
  void SetRegionKeys(RegionKeys* keys) { keys_.store(keys, std::memory_order_release); }

  // What an admin's STATS returns: every section, the clients holding the
  // most (up to max_client_records), every tenant (and the anonymous group).
  Stats CollectStats(size_t max_client_records = 64);
  uint64_t max_object_bytes() const { return max_object_; }
  // The bytes the quota ledger charges `client` now (pending frees not
  // included); 0 for a client it does not know.
  uint64_t QuotaHeldBy(ClientId client) const;
  // The same for all clients of `tenant` together ("": the anonymous ones).
  uint64_t TenantQuotaHeld(std::string_view tenant) const;
  OffloadStats offload_stats() const;
  // The offload workers (tests: their hooks); null when offload is off.
  OffloadWorkers* offload_workers() { return offload_.get(); }

 private:
  // The client's quota account; one is opened (anonymous) for a client that
  // sends requests without OnConnect (tests driving Handle directly).
  std::shared_ptr<QuotaAccount> AccountOf(ClientId c);
  size_t HandleAlloc(ClientId c, const RpcHeader& h, std::span<const uint8_t> body, std::span<uint8_t> out);
  size_t HandleFree(ClientId c, const RpcHeader& h, std::span<const uint8_t> body, std::span<uint8_t> out);
  size_t HandleStats(ClientId c, std::span<uint8_t> out);
  size_t HandleOffload(ClientId c, const RpcHeader& h, std::span<const uint8_t> body, std::span<uint8_t> out);
  size_t HandleOffloadWait(ClientId c, const RpcHeader& h, std::span<const uint8_t> body, std::span<uint8_t> out);
  // STATS as `viewer` may see it (nullptr: everything), with at most
  // max_client_records ClientRecords and max_tenant_records TenantRecords.
  Stats Collect(const QuotaAccount* viewer, size_t max_client_records, size_t max_tenant_records);

  alloc::SharryAllocator* const allocator_;
  const uint64_t max_object_;
  const uint16_t max_batch_;
  const std::unique_ptr<QuotaLedger> ledger_;
  std::atomic<uint64_t> alloc_requests_{0}, free_requests_{0}, reclaimed_blocks_{0};
  std::atomic<RegionKeys*> keys_{nullptr};
  std::atomic<uint64_t> offload_refused_{0};
  const uint64_t region_size_;
  // Last: destroyed first, so no worker outlives what it reads.
  std::unique_ptr<OffloadWorkers> offload_;
};

// Writes a request-level error reply into `out`; returns its length.
size_t WriteErrorReply(const Status& s, std::span<uint8_t> out);

}  // namespace sharry::memnode
