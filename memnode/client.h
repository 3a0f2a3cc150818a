// MemnodeClient: what a compute process uses to reach the memory node —
// ALLOC/FREE/STATS RPCs over a transport client, plus that client's
// one-sided READ/WRITE of the UMA for object data.
//
// Thread-safety: like its TransportClient, owned by one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "memnode/rpc.h"
#include "verbs/transport.h"

namespace sharry::memnode {

inline constexpr uint64_t kNoOffset = ~uint64_t{0};

// A memnode's address ("host:port"; loopback transport: "loopback:port").
struct MemnodeAddress {
  std::string host;
  uint16_t port = 7000;
  std::string ToString() const { return host + ":" + std::to_string(port); }
};
// "host:port[,host:port...]" (a bare host takes default_port): at least one,
// at most max_entries, no duplicates. Errors name the bad entry. Shared by
// the runtime's options, the client binaries' --memnode and memnode_stats.
StatusOr<std::vector<MemnodeAddress>> ParseMemnodeList(std::string_view list, uint16_t default_port,
                                                       size_t max_entries);

// ---- Offloaded operators (issue #13; memnode/rpc.h OFFLOAD) -------------
// Free functions over a TransportClient, so that any connection of a
// session (the runtime's control connection or a thread's data connection)
// can carry them; a job is its connection's (poll it on the same one).

// The largest request payload `t` may send (its max_message less the
// transport's header): the bound for an OffloadRequestBuilder.
size_t MaxRequestBytes(const TransportClient& t);
// Sends one OFFLOAD request (OffloadRequestBuilder::bytes()); the job's id,
// or the memnode's refusal (nothing was queued) or the transport's error.
StatusOr<uint64_t> SubmitOffload(TransportClient& t, std::span<const uint8_t> request);
// Several OFFLOAD requests in flight at once; (*jobs)[i] answers
// requests[i] (a refused one its Status, the others are queued). The result
// is the transport's error (then nothing is known of any), else OK.
Status SubmitOffloads(TransportClient& t, std::span<const std::span<const uint8_t>> requests,
                      std::vector<StatusOr<uint64_t>>* jobs);
// Where the jobs are (any number: kMaxOffloadWait per request, pipelined);
// result[i] answers jobs[i]. Never waits for a job: poll again while
// !done. A done job is forgotten at the memnode once reported.
StatusOr<std::vector<OffloadJobState>> PollOffload(TransportClient& t, std::span<const uint64_t> jobs);

class MemnodeClient {
 public:
  static StatusOr<std::unique_ptr<MemnodeClient>> Connect(TransportKind kind, const ClientOptions& options);
  explicit MemnodeClient(std::unique_ptr<TransportClient> t) : t_(std::move(t)) {}

  TransportClient& transport() { return *t_; }
  ClientId id() const { return t_->info().client_id; }
  uint64_t uma_bytes() const { return t_->info().region_size; }

  // One block per size, in as few RPCs as the batch limit allows (pipelined).
  // offsets[i] is the block's UMA offset, or kNoOffset if element i failed;
  // then the result is the first element's failure (e.g. kOutOfMemory) and
  // `element_status` (if given) says what happened to each.
  Status Alloc(std::span<const uint64_t> sizes, std::vector<uint64_t>* offsets,
               std::vector<Status>* element_status = nullptr);
  StatusOr<uint64_t> AllocOne(uint64_t size);
  // Frees the blocks; a bad element (not ours, not a block, double free)
  // frees nothing for that element and is reported the same way.
  Status Free(std::span<const uint64_t> offsets, std::vector<Status>* element_status = nullptr);
  StatusOr<Stats> GetStats();
  // Renews this client's lease (any request does; this one costs nothing at
  // the memnode). The lease, if any, is transport().info().lease_ms.
  Status Renew();

 private:
  std::unique_ptr<TransportClient> t_;
  std::vector<std::vector<uint8_t>> replies_;  // reused between calls
};

}  // namespace sharry::memnode
