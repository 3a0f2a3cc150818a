// The verbs backend's client: RDMA RC through rdma_cm. Private to the build.
//
// One QP and one CQ, owned by one thread. One-sided operations are chains
// of work requests posted with one doorbell and one signalled completion;
// memory not registered with RegisterLocal is staged through a registered
// bounce buffer. A failed completion kills the connection with a typed
// Status; a lost server is noticed through rdma_cm's DISCONNECTED event or
// the op timeout, never by hanging.
//
// Where the code is:
//   verbs_client.cc       connect and handshake (hello, welcome via
//                         handshake.h), teardown, RegisterLocal
//   verbs_client_data.cc  the data path: completions, chains of READ/WRITE
//                         with staging and inline sends, request SENDs
//                         within the credits, responses
//   verbs_client_auth.cc  authentication on the QP after the connect
//                         (kHelloAuthOnQp, wire.h)
//   wr_id.h               work-request id packing
//   verbs_common.h        page-aligned buffers, the RDMA READ depth
// The server is in verbs_server_impl.h.
#pragma once

#include <chrono>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "verbs/cm.h"
#include "verbs/queue_pair.h"
#include "verbs/remote_keys.h"
#include "verbs/resources.h"
#include "verbs/transport.h"
#include "verbs/verbs_common.h"
#include "verbs/wire.h"

namespace sharry::internal {

class VerbsClient final : public TransportClient {
 public:
  static StatusOr<std::unique_ptr<TransportClient>> Connect(const ClientOptions& o);
  ~VerbsClient() override;

  TransportKind kind() const override { return TransportKind::kVerbs; }
  const ConnectionInfo& info() const override { return info_; }
  Status RegisterLocal(void* addr, size_t len) override;
  Status ReadBatch(std::span<const RemoteOp> ops) override { return Batch(ops, false); }
  Status WriteBatch(std::span<const RemoteOp> ops) override { return Batch(ops, true); }
  Status CallMany(std::span<const std::span<const uint8_t>> requests,
                  std::vector<std::vector<uint8_t>>* responses) override;
  Status Call(std::span<const uint8_t> request, std::vector<uint8_t>* response) override;
  std::shared_ptr<RemoteKeys> keys() const override { return keys_; }
  bool alive() const override { return dead_.ok(); }
  Status dead_reason() const override { return dead_; }

 private:
  explicit VerbsClient(const ClientOptions& o) : opts_(o) {}
  Status ConnectOnce();
  Status Kill(Status s);
  Status CheckAlive() const {
    return dead_.ok() ? Status::Ok() : Status::Disconnected("connection is dead: " + dead_.ToString());
  }
  // Polls completions until `done()` or the op deadline; handles receives
  // (responses) and send completions on the way.
  template <typename Pred>
  Status WaitUntil(Pred done, std::string_view what);
  Status HandleWc(const ibv_wc& wc);
  Status Batch(std::span<const RemoteOp> ops, bool write);
  // Posts the chain, waits for its one signalled completion.
  Status RunChain(SendChain& chain, uint64_t seq, std::string_view what);
  Status CheckRequestSize(size_t n) const;
  // Posts request `tag` (a message of `kind`) from send slot tag % credits.
  Status PostRequest(uint64_t tag, std::span<const uint8_t> request, Kind kind = Kind::kRequest);
  // Waits for the response to `tag`; copies its payload out and reposts the
  // receive. A kError reply becomes its Status (the connection stays up).
  Status TakeResponse(uint64_t tag, std::vector<uint8_t>* out);
  // TakeResponse's first half: the reply to `tag`, whatever its kind.
  Status TakeMessage(uint64_t tag, Kind* kind, std::vector<uint8_t>* out);
  // After a connect with kHelloAuthOnQp whose accept was `accepted`: the
  // exchange on the QP (verbs_client_auth.cc); fills the rest of info_.
  Status Authenticate(const wire::WelcomePayload& accepted);
  const MemoryRegion* FindMr(const void* p, size_t len) const;
  // Message slots, laid out at connect time (before negotiation may shrink
  // credits or max_message): nslots_ send slots, then nslots_ receive slots.
  uint8_t* send_slot(uint32_t i) const { return msg_buf_.get() + size_t{i} * slot_bytes_; }
  uint8_t* recv_slot(uint32_t i) const { return msg_buf_.get() + size_t{nslots_ + i} * slot_bytes_; }
  uint32_t slot_bytes_ = 0;
  uint32_t nslots_ = 0;

  ClientOptions opts_;
  ConnectionInfo info_;
  Status dead_;
  std::string where_;
  uint32_t max_wr_bytes_ = 1u << 30;  // largest message of one work request
  uint32_t max_send_wr_ = 0;
  // Declared in creation order; the destructor removes the QP first.
  std::optional<CmEventChannel> channel_;
  CmId id_;
  std::optional<ProtectionDomain> pd_;
  std::optional<CompletionChannel> comp_;
  std::optional<CompletionQueue> cq_;
  Buffer msg_buf_;
  std::optional<MemoryRegion> msg_mr_;
  Buffer staging_buf_;
  std::optional<MemoryRegion> staging_mr_;
  std::vector<MemoryRegion> user_mrs_;
  bool connected_ = false;
  std::shared_ptr<RemoteKeys> keys_;  // a confining server's (info_.rkey == 0)

  // Progress state.
  uint64_t chain_seq_ = 0;
  uint64_t chain_done_ = 0;   // highest chain sequence completed
  uint32_t unsignalled_ = 0;  // sends posted since the last signalled one
  uint64_t next_tag_ = 1;
  // Responses that arrived and are not yet taken, indexed by tag % credits
  // (the tags in flight are consecutive, fewer than credits). The payload
  // stays in its receive slot until taken; the slot is reposted then.
  struct Arrived { uint64_t tag = 0; Kind kind = Kind::kResponse; uint32_t slot = 0; uint32_t len = 0; };
  std::vector<Arrived> arrived_;
  uint64_t oldest_tag_ = 1;  // tags below this were all answered
};

}  // namespace sharry::internal
