// The verbs backend of the transport seam: RDMA RC through rdma_cm.
//
// Server: one listener thread handles rdma_cm events (connect, disconnect);
// each connection's QP has its receives in ONE shared receive queue and its
// completions in the CQ of one poller thread (round robin), so requests of
// many clients share the pollers. The region is registered ONCE as one
// memory region; clients READ and WRITE it one-sidedly at region_addr +
// offset with its rkey. Requests are SENDs: header + payload (wire.h) into a
// posted receive buffer; the poller calls the RequestHandler and SENDs the
// response (inline when the device allows) on the same QP.
//
// Client: one QP and one CQ, owned by one thread. One-sided operations are
// chains of work requests posted with one doorbell and one signalled
// completion; memory not registered with RegisterLocal is staged through a
// registered bounce buffer. A failed completion kills the connection with a
// typed Status; a lost server is noticed through rdma_cm's DISCONNECTED event
// or the op timeout, never by hanging.
#include <glog/logging.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <thread>
#include <unordered_map>

#include "verbs/cm.h"
#include "verbs/error.h"
#include "verbs/handshake.h"
#include "verbs/queue_pair.h"
#include "verbs/resources.h"
#include "verbs/session.h"
#include "verbs/transport.h"
#include "verbs/transport_internal.h"
#include "verbs/wire.h"

namespace sharry {
namespace {

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

// wr_id layout: kind in the top byte, a slot or sequence number below.
enum WrKind : uint64_t { kWrChain = 1, kWrSend = 2, kWrRecv = 3 };
constexpr uint64_t MakeWrId(WrKind k, uint64_t n) { return (uint64_t{k} << 56) | (n & ((1ull << 56) - 1)); }
constexpr WrKind WrKindOf(uint64_t id) { return static_cast<WrKind>(id >> 56); }
constexpr uint64_t WrSlotOf(uint64_t id) { return id & ((1ull << 56) - 1); }

constexpr int kRdAtomic = 16;
constexpr uint64_t kNoSlot = (1ull << 56) - 1;  // a send whose buffer needs no release  // outstanding RDMA READs we ask for per QP

// Allocates `n` bytes aligned to a page, zeroed; freed with std::free.
struct FreeDeleter { void operator()(uint8_t* p) const { std::free(p); } };
using Buffer = std::unique_ptr<uint8_t, FreeDeleter>;
Buffer AllocBuffer(size_t n) {
  void* p = nullptr;
  if (posix_memalign(&p, 4096, std::max<size_t>(n, 4096)) != 0) return nullptr;
  std::memset(p, 0, n);
  return Buffer(static_cast<uint8_t*>(p));
}

// ======================================================================
// Client
// ======================================================================

class VerbsClient final : public TransportClient {
 public:
  static StatusOr<std::unique_ptr<TransportClient>> Connect(const ClientOptions& o);
  ~VerbsClient() override;

  TransportKind kind() const override { return TransportKind::kVerbs; }
  const ConnectionInfo& info() const override { return info_; }
  Status RegisterLocal(void* addr, size_t len) override;
  Status Read(uint64_t offset, void* dst, size_t len) override {
    RemoteOp op{offset, dst, len};
    return Batch({&op, 1}, false);
  }
  Status Write(uint64_t offset, const void* src, size_t len) override {
    RemoteOp op{offset, const_cast<void*>(src), len};
    return Batch({&op, 1}, true);
  }
  Status ReadBatch(std::span<const RemoteOp> ops) override { return Batch(ops, false); }
  Status WriteBatch(std::span<const RemoteOp> ops) override { return Batch(ops, true); }
  Status CallMany(std::span<const std::span<const uint8_t>> requests,
                  std::vector<std::vector<uint8_t>>* responses) override;
  Status Call(std::span<const uint8_t> request, std::vector<uint8_t>* response) override;
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
  // Posts request `tag` from send slot tag % credits.
  Status PostRequest(uint64_t tag, std::span<const uint8_t> request);
  // Waits for the response to `tag`; copies its payload out and reposts the
  // receive. A kError reply becomes its Status (the connection stays up).
  Status TakeResponse(uint64_t tag, std::vector<uint8_t>* out);
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

StatusOr<std::unique_ptr<TransportClient>> VerbsClient::Connect(const ClientOptions& o) {
  Status last;
  for (int attempt = 0; attempt < std::max(1, o.connect_attempts); ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100 << std::min(attempt, 5)));
    std::unique_ptr<VerbsClient> c(new VerbsClient(o));
    last = c->ConnectOnce();
    if (last.ok()) return std::unique_ptr<TransportClient>(std::move(c));
    if (last.code() == StatusCode::kInvalidArgument || last.code() == StatusCode::kProtocol) break;
    VLOG(1) << "verbs connect attempt " << attempt + 1 << " failed: " << last;
  }
  return last.WithContext("connect verbs " + o.server_addr + ":" + std::to_string(o.port) + " (" +
                          std::to_string(o.connect_attempts) + " attempts)");
}

Status VerbsClient::ConnectOnce() {
  where_ = opts_.server_addr + ":" + std::to_string(opts_.port);
  auto ch = CmEventChannel::Create();
  if (!ch.ok()) return ch.status();
  channel_.emplace(std::move(*ch));
  auto id = CmId::Create(*channel_);
  if (!id.ok()) return id.status();
  id_ = std::move(*id);
  SHARRY_RETURN_IF_ERROR(verbs::ResolveRoute(*channel_, id_, opts_.server_addr, opts_.port,
                                             opts_.connect_timeout_ms));
  ibv_context* ctx = id_->verbs;
  auto caps = verbs::QueryDeviceCaps(ctx);
  if (!caps.ok()) return caps.status();
  max_wr_bytes_ = caps->max_msg_sz ? caps->max_msg_sz : (1u << 30);

  auto pd = ProtectionDomain::Create(ctx);
  if (!pd.ok()) return pd.status();
  pd_.emplace(std::move(*pd));
  auto comp = CompletionChannel::Create(ctx);
  if (!comp.ok()) return comp.status();
  comp_.emplace(std::move(*comp));
  const uint32_t credits = std::max<uint32_t>(1, opts_.max_inflight);
  verbs::QpSizes sizes;
  sizes.max_send_wr = std::min<uint32_t>(256, caps->max_qp_wr);
  sizes.max_recv_wr = credits;
  sizes.max_send_sge = std::min<uint32_t>(4, caps->max_sge);
  auto cq = CompletionQueue::Create(ctx, static_cast<int>(sizes.max_send_wr + credits + 16), comp_->get());
  if (!cq.ok()) return cq.status();
  cq_.emplace(std::move(*cq));
  auto qp = verbs::CreateRcQp(id_, pd_->get(), cq_->get(), cq_->get(), nullptr, sizes);
  if (!qp.ok()) return qp.status();
  max_send_wr_ = qp->max_send_wr;
  info_.max_inline = qp->max_inline_data;

  // Message slots: `credits` send slots then `credits` receive slots.
  info_.max_message = opts_.max_message;
  info_.credits = credits;
  slot_bytes_ = opts_.max_message;
  nslots_ = credits;
  size_t msg_bytes = size_t{2} * nslots_ * slot_bytes_;
  msg_buf_ = AllocBuffer(msg_bytes);
  if (!msg_buf_) return Status::OutOfMemory("message buffers");
  auto mr = MemoryRegion::Register(pd_->get(), msg_buf_.get(), msg_bytes, MemoryRegion::kLocalOnly);
  if (!mr.ok()) return mr.status();
  msg_mr_.emplace(std::move(*mr));
  size_t staging = std::max<size_t>(opts_.staging_bytes, 64 << 10);
  staging_buf_ = AllocBuffer(staging);
  if (!staging_buf_) return Status::OutOfMemory("staging buffer");
  auto smr = MemoryRegion::Register(pd_->get(), staging_buf_.get(), staging, MemoryRegion::kLocalOnly);
  if (!smr.ok()) return smr.status();
  staging_mr_.emplace(std::move(*smr));
  for (uint32_t i = 0; i < credits; ++i)
    SHARRY_RETURN_IF_ERROR(verbs::PostRecv(id_.qp(), MakeWrId(kWrRecv, i), recv_slot(i), slot_bytes_,
                                           msg_mr_->lkey()));

  wire::HelloPayload hello{};
  hello.max_message = info_.max_message;
  hello.session = opts_.session;
  rdma_conn_param param{};
  param.private_data = &hello;
  param.private_data_len = sizeof hello;
  param.responder_resources = static_cast<uint8_t>(std::min<uint32_t>(kRdAtomic, caps->max_qp_rd_atom));
  param.initiator_depth = static_cast<uint8_t>(std::min<uint32_t>(kRdAtomic, caps->max_qp_init_rd_atom));
  param.retry_count = 7;
  param.rnr_retry_count = 7;  // infinite: the server reposts receives quickly
  if (rdma_connect(id_.get(), &param) != 0) return verbs::VerbFailed("rdma_connect(" + where_ + ")", errno);
  auto ev = channel_->Next(opts_.connect_timeout_ms);
  if (!ev.ok()) return ev.status().WithContext("connect " + where_ + ": waiting for the server's answer");
  if (ev->type() == RDMA_CM_EVENT_REJECTED) {
    // A Sharry server says why in the private data: Welcome + reason.
    wire::WelcomePayload w{};
    bool refused = false;
    Status s = internal::CheckWelcome(ev->private_data(), where_, &w, &refused);
    if (refused) return s;
    return Status::Unavailable("connect " + where_ + ": the server refused the connection (not listening, or not Sharry)");
  }
  if (ev->type() != RDMA_CM_EVENT_ESTABLISHED || ev->status() != 0)
    return Status::Unavailable("connect " + where_ + ": expected ESTABLISHED, got " + ev->name() + " (status " +
                               std::to_string(ev->status()) + ")");
  wire::WelcomePayload w{};
  bool refused = false;
  Status welcome = internal::CheckWelcome(ev->private_data(), where_, &w, &refused);
  ev->Ack();
  if (!welcome.ok() && !refused) return welcome;  // not a Sharry server (of this version)
  connected_ = true;
  SHARRY_RETURN_IF_ERROR(welcome);  // accepted, yet with a status: a refusal after all
  info_.client_id = w.client_id;
  info_.region_addr = w.region_addr;
  info_.region_size = w.region_size;
  info_.rkey = w.rkey;
  info_.max_message = std::min(info_.max_message, w.max_message);
  info_.credits = std::min(info_.credits, w.credits);
  info_.lease_ms = w.lease_ms;
  info_.session = w.session;
  arrived_.assign(info_.credits, Arrived{});
  VLOG(1) << "verbs client " << info_.client_id << " connected to " << where_ << ", region "
          << info_.region_size << " B, inline " << info_.max_inline;
  return Status::Ok();
}

VerbsClient::~VerbsClient() {
  if (connected_ && id_) rdma_disconnect(id_.get());
  if (id_ && id_->qp) rdma_destroy_qp(id_.get());  // QP before CQ, MRs and PD
  user_mrs_.clear();
  staging_mr_.reset();
  msg_mr_.reset();
  cq_.reset();
  comp_.reset();
  pd_.reset();
  id_.Reset();
  channel_.reset();
}

Status VerbsClient::Kill(Status s) {
  if (dead_.ok()) {
    dead_ = s;
    LOG(WARNING) << "verbs connection to " << where_ << " is dead: " << s;
    if (connected_) rdma_disconnect(id_.get());
    connected_ = false;
  }
  return s;
}

Status VerbsClient::RegisterLocal(void* addr, size_t len) {
  SHARRY_RETURN_IF_ERROR(CheckAlive());
  auto mr = MemoryRegion::Register(pd_->get(), addr, len, MemoryRegion::kLocalOnly);
  if (!mr.ok()) return mr.status();
  user_mrs_.push_back(std::move(*mr));
  return Status::Ok();
}

const MemoryRegion* VerbsClient::FindMr(const void* p, size_t len) const {
  for (const auto& mr : user_mrs_)
    if (mr.Contains(p, len)) return &mr;
  return nullptr;
}

Status VerbsClient::HandleWc(const ibv_wc& wc) {
  if (wc.status != IBV_WC_SUCCESS) {
    std::string what;
    switch (WrKindOf(wc.wr_id)) {
      case kWrChain: what = "RDMA READ/WRITE to " + where_; break;
      case kWrSend: what = "SEND of a request to " + where_; break;
      case kWrRecv: what = "RECV of a response from " + where_; break;
    }
    return Kill(verbs::WcFailed(wc, what));
  }
  switch (WrKindOf(wc.wr_id)) {
    case kWrChain:
      chain_done_ = std::max(chain_done_, WrSlotOf(wc.wr_id));
      break;
    case kWrSend:
      break;
    case kWrRecv: {
      uint32_t slot = static_cast<uint32_t>(WrSlotOf(wc.wr_id));
      const uint8_t* p = recv_slot(slot);
      MsgHeader h;
      if (wc.byte_len < sizeof h) return Kill(Status::Protocol("runt response from " + where_));
      std::memcpy(&h, p, sizeof h);
      if (h.magic != wire::kMagic || h.length != wc.byte_len - sizeof h)
        return Kill(Status::Protocol("malformed response from " + where_));
      if (h.tag < oldest_tag_ || h.tag >= next_tag_ || arrived_[h.tag % info_.credits].tag != 0)
        return Kill(Status::Protocol("response with unexpected tag " + std::to_string(h.tag) + " from " + where_));
      arrived_[h.tag % info_.credits] = Arrived{h.tag, h.kind, slot, h.length};
      break;
    }
  }
  return Status::Ok();
}

template <typename Pred>
Status VerbsClient::WaitUntil(Pred done, std::string_view what) {
  auto deadline = Clock::now() + std::chrono::milliseconds(opts_.op_timeout_ms);
  Backoff backoff(opts_.backoff);
  ibv_wc wc[16];
  while (!done()) {
    auto n = cq_->Poll(wc, 16);
    if (!n.ok()) return Kill(n.status());
    for (int i = 0; i < *n; ++i) SHARRY_RETURN_IF_ERROR(HandleWc(wc[i]));
    if (*n > 0) {
      backoff.Reset();
      continue;
    }
    if (!backoff.Idle()) continue;
    // Slow path: has the server gone away? Then sleep on the CQ a little.
    auto ev = channel_->Next(0);
    if (ev.ok() && (ev->type() == RDMA_CM_EVENT_DISCONNECTED || ev->type() == RDMA_CM_EVENT_DEVICE_REMOVAL))
      return Kill(Status::Disconnected(std::string(what) + ": the server closed the connection"));
    if (Clock::now() > deadline)
      return Kill(Status::Timeout(std::string(what) + ": no completion within " +
                                  std::to_string(opts_.op_timeout_ms) + " ms"));
    auto slept = cq_->Sleep(comp_->get(), std::min(backoff.sleep_ms(), 2));
    if (!slept.ok()) return Kill(slept.status());
  }
  return Status::Ok();
}

Status VerbsClient::RunChain(SendChain& chain, uint64_t seq, std::string_view what) {
  if (chain.empty()) return Status::Ok();
  // Every work request of the chain carries `seq`; only the last is
  // signalled, and RC completes in order, so its completion covers them all.
  if (Status s = chain.Post(id_.qp()); !s.ok()) return Kill(s);
  chain_seq_ = seq;
  return WaitUntil([&] { return chain_done_ >= seq; }, what);
}

Status VerbsClient::Batch(std::span<const RemoteOp> ops, bool write) {
  SHARRY_RETURN_IF_ERROR(CheckAlive());
  const char* verb = write ? "write" : "read";
  for (const RemoteOp& op : ops)
    SHARRY_RETURN_IF_ERROR(CheckRange(op.offset, op.length, info_.region_size, verb));
  const std::string what = std::string(write ? "RDMA WRITE to " : "RDMA READ from ") + where_;
  const size_t staging_cap = staging_mr_->length();
  const size_t max_chain = std::max<uint32_t>(1, max_send_wr_ / 2);
  SendChain chain;
  size_t staged = 0;
  // Reads into the staging buffer are copied out once their chain completed.
  struct CopyOut { uint8_t* dst; size_t staging_off; size_t len; };
  std::vector<CopyOut> copies;
  auto flush = [&]() -> Status {
    if (chain.empty()) return Status::Ok();
    Status s = RunChain(chain, chain_seq_ + 1, what);
    chain.Clear();
    if (!s.ok()) return s;
    for (const CopyOut& c : copies) std::memcpy(c.dst, staging_buf_.get() + c.staging_off, c.len);
    copies.clear();
    staged = 0;
    return Status::Ok();
  };
  for (const RemoteOp& op : ops) {
    auto* local = static_cast<uint8_t*>(op.local);
    const MemoryRegion* mr = FindMr(local, op.length);
    for (uint64_t done = 0; done < op.length;) {
      uint64_t n = std::min<uint64_t>(op.length - done, max_wr_bytes_);
      const uint64_t remote = info_.region_addr + op.offset + done;
      const uint64_t wr_id = MakeWrId(kWrChain, chain_seq_ + 1);
      ibv_sge sge{};
      bool inl = false;
      if (mr != nullptr) {
        sge = {reinterpret_cast<uintptr_t>(local + done), static_cast<uint32_t>(n), mr->lkey()};
      } else if (write && n <= info_.max_inline) {
        sge = {reinterpret_cast<uintptr_t>(local + done), static_cast<uint32_t>(n), 0};
        inl = true;  // copied by the post itself
      } else {
        n = std::min<uint64_t>(n, staging_cap);
        if (staged + n > staging_cap) {
          SHARRY_RETURN_IF_ERROR(flush());
          continue;  // recompute the wr_id for the next chain
        }
        uint8_t* st = staging_buf_.get() + staged;
        if (write) std::memcpy(st, local + done, n);
        else copies.push_back({local + done, staged, n});
        sge = {reinterpret_cast<uintptr_t>(st), static_cast<uint32_t>(n), staging_mr_->lkey()};
        staged += n;
      }
      if (write) chain.Write(wr_id, {&sge, 1}, remote, info_.rkey, inl);
      else chain.Read(wr_id, {&sge, 1}, remote, info_.rkey);
      done += n;
      if (chain.size() >= max_chain) SHARRY_RETURN_IF_ERROR(flush());
    }
  }
  return flush();
}

Status VerbsClient::CheckRequestSize(size_t n) const {
  if (n + sizeof(MsgHeader) > info_.max_message)
    return Status::InvalidArgument("request of " + std::to_string(n) + " B exceeds the largest message (" +
                                   std::to_string(info_.max_message) + " B with header)");
  return Status::Ok();
}

Status VerbsClient::PostRequest(uint64_t tag, std::span<const uint8_t> request) {
  // Request `tag` uses send slot tag % credits; it is reused only after the
  // response to tag - credits was taken, so that SEND has completed.
  const uint32_t slot = static_cast<uint32_t>(tag % info_.credits);
  uint8_t* p = send_slot(slot);
  MsgHeader h{};
  h.kind = Kind::kRequest;
  h.tag = tag;
  h.length = static_cast<uint32_t>(request.size());
  std::memcpy(p, &h, sizeof h);
  if (h.length) std::memcpy(p + sizeof h, request.data(), h.length);
  const uint32_t len = sizeof h + h.length;
  ibv_sge sge{reinterpret_cast<uintptr_t>(p), len, msg_mr_->lkey()};
  ibv_send_wr wr{};
  wr.wr_id = MakeWrId(kWrSend, slot);
  wr.opcode = IBV_WR_SEND;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  if (len <= info_.max_inline) wr.send_flags |= IBV_SEND_INLINE;
  // Selective signalling: one completion per quarter of the send queue
  // retires the unsignalled sends before it.
  if (++unsignalled_ >= std::max<uint32_t>(1, max_send_wr_ / 4)) {
    wr.send_flags |= IBV_SEND_SIGNALED;
    unsignalled_ = 0;
  }
  ibv_send_wr* bad = nullptr;
  if (int rc = ibv_post_send(id_.qp(), &wr, &bad); rc != 0)
    return Kill(verbs::VerbFailed("ibv_post_send(SEND request)", rc));
  return Status::Ok();
}

Status VerbsClient::TakeResponse(uint64_t tag, std::vector<uint8_t>* out) {
  Arrived& a = arrived_[tag % info_.credits];
  SHARRY_RETURN_IF_ERROR(WaitUntil([&] { return a.tag == tag; }, "request to " + where_));
  const uint8_t* payload = recv_slot(a.slot) + sizeof(MsgHeader);
  Status result;
  if (a.kind == Kind::kResponse) {
    out->assign(payload, payload + a.len);
  } else if (a.kind == Kind::kError) {
    result = internal::DecodeError({payload, a.len});
  } else {
    return Kill(Status::Protocol("unexpected reply kind from " + where_));
  }
  const uint32_t slot = a.slot;
  a.tag = 0;
  oldest_tag_ = tag + 1;
  if (Status s = verbs::PostRecv(id_.qp(), MakeWrId(kWrRecv, slot), recv_slot(slot), slot_bytes_,
                                 msg_mr_->lkey());
      !s.ok())
    return Kill(s);
  return result;
}

Status VerbsClient::Call(std::span<const uint8_t> request, std::vector<uint8_t>* response) {
  SHARRY_RETURN_IF_ERROR(CheckAlive());
  SHARRY_RETURN_IF_ERROR(CheckRequestSize(request.size()));
  const uint64_t tag = next_tag_++;
  SHARRY_RETURN_IF_ERROR(PostRequest(tag, request));
  return TakeResponse(tag, response);
}

Status VerbsClient::CallMany(std::span<const std::span<const uint8_t>> requests,
                             std::vector<std::vector<uint8_t>>* responses) {
  SHARRY_RETURN_IF_ERROR(CheckAlive());
  for (const auto& r : requests) SHARRY_RETURN_IF_ERROR(CheckRequestSize(r.size()));
  responses->resize(requests.size());
  const uint64_t base = next_tag_;
  next_tag_ += requests.size();
  size_t sent = 0;
  Status first;
  for (size_t got = 0; got < requests.size(); ++got) {
    while (sent < requests.size() && sent - got < info_.credits) {
      SHARRY_RETURN_IF_ERROR(PostRequest(base + sent, requests[sent]));
      ++sent;
    }
    Status s = TakeResponse(base + got, &(*responses)[got]);
    if (!alive()) return s;
    if (!s.ok() && first.ok()) first = s;
  }
  return first;
}

// ======================================================================
// Server
// ======================================================================

class VerbsServer final : public TransportServer {
 public:
  VerbsServer(const ServerOptions& o, RequestHandler* h) : opts_(o), handler_(h), sessions_(o.lease_ms) {}
  ~VerbsServer() override;
  Status Start();
  uint16_t port() const override { return port_; }
  size_t num_clients() const override { return clients_.load(); }
  TransportKind kind() const override { return TransportKind::kVerbs; }

 private:
  struct Conn {
    CmId id;
    ClientId client_id = 0;
    int poller = 0;
    bool established = false;
    uint32_t max_message = 0;  // min of ours and the client's receive slots
    uint32_t sq_depth = 0;
    uint32_t unsignalled = 0;  // its poller only: inline sends since the last signalled one
    std::shared_ptr<internal::SessionTable::Session> session;
  };
  // One poller thread: its CQ (sends and receives of its connections) and
  // its send slots. Everything here is touched only by that thread, except
  // at creation and destruction.
  struct Poller {
    int index = 0;
    std::optional<CompletionChannel> comp;
    std::optional<CompletionQueue> cq;
    Buffer slots_buf;
    std::optional<MemoryRegion> slots_mr;
    std::vector<uint32_t> free_slots;
    std::deque<ibv_wc> deferred;  // receives seen while waiting for a send slot
    std::thread thread;
  };

  Status InitDevice(ibv_context* ctx);
  void CmLoop();
  void OnConnectRequest(CmEvent& ev);
  void DropConn(rdma_cm_id* id, const std::string& why);
  void Sweep();  // CM thread: connections of sessions that are over (lease, root gone)
  void PollLoop(Poller* p);
  void HandleRecv(Poller* p, const ibv_wc& wc);
  // A free send slot of `p`, reaping send completions if needed.
  std::optional<uint32_t> AcquireSlot(Poller* p);
  void HandleSendWc(Poller* p, const ibv_wc& wc);
  uint8_t* slot(Poller* p, uint32_t i) const { return p->slots_buf.get() + size_t{i} * opts_.max_message; }
  uint8_t* recv_buf(uint32_t i) const { return recv_buf_.get() + size_t{i} * opts_.max_message; }

  ServerOptions opts_;
  RequestHandler* handler_;
  internal::SessionTable sessions_;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> clients_{0};  // established connections
  uint32_t next_client_id_ = 1;  // CM thread only
  std::chrono::steady_clock::time_point next_sweep_{};  // CM thread only
  size_t rr_ = 0;                // CM thread only
  uint32_t slots_per_poller_ = 0;

  // Creation order: listener, then the device's PD, region MR, receive
  // buffers, SRQ, pollers (CQs). Destroyed in reverse by the destructor.
  std::optional<verbs::Listener> listener_;
  ibv_context* ctx_ = nullptr;
  std::optional<ProtectionDomain> pd_;
  std::optional<MemoryRegion> region_mr_;
  Buffer recv_buf_;
  std::optional<MemoryRegion> recv_mr_;
  std::optional<SharedReceiveQueue> srq_;
  std::vector<std::unique_ptr<Poller>> pollers_;
  uint32_t max_inline_ = 0;

  // Connections by QP number (pollers read, the CM thread writes) and by id.
  mutable std::shared_mutex conns_mu_;
  std::unordered_map<uint32_t, Conn*> by_qp_;           // GUARDED_BY(conns_mu_)
  std::unordered_map<rdma_cm_id*, std::unique_ptr<Conn>> by_id_;  // CM thread only
  std::thread cm_thread_;
};

Status VerbsServer::Start() {
  if (opts_.max_message < sizeof(MsgHeader) + 64)
    return Status::InvalidArgument("max_message must be at least 80 bytes");
  auto l = verbs::Listen(opts_.listen_addr, opts_.port, 128);
  if (!l.ok()) return l.status();
  listener_.emplace(std::move(*l));
  port_ = listener_->port;
  // Bound to an RDMA device's address: set up now. Bound to any address:
  // at the first connection, when the device is known.
  if (listener_->id->verbs != nullptr) SHARRY_RETURN_IF_ERROR(InitDevice(listener_->id->verbs));
  cm_thread_ = std::thread([this] { CmLoop(); });
  internal::PinThread(cm_thread_, -1, "verbs cm");
  LOG(INFO) << "verbs transport listening on " << opts_.listen_addr << ":" << port_ << ", region "
            << opts_.region_size << " B";
  return Status::Ok();
}

Status VerbsServer::InitDevice(ibv_context* ctx) {
  ctx_ = ctx;
  auto caps = verbs::QueryDeviceCaps(ctx);
  if (!caps.ok()) return caps.status();
  auto pd = ProtectionDomain::Create(ctx);
  if (!pd.ok()) return pd.status();
  pd_.emplace(std::move(*pd));
  if (opts_.region_size > 0) {
    // The region (the UMA) is registered ONCE, as one memory region.
    auto mr = MemoryRegion::Register(pd_->get(), opts_.region, opts_.region_size, MemoryRegion::kRemoteReadWrite);
    if (!mr.ok()) return mr.status().WithContext("register the region");
    region_mr_.emplace(std::move(*mr));
  }
  const uint32_t depth = std::min<uint32_t>(opts_.recv_depth, caps->max_srq_wr);
  recv_buf_ = AllocBuffer(size_t{depth} * opts_.max_message);
  if (!recv_buf_) return Status::OutOfMemory("receive buffers");
  auto rmr = MemoryRegion::Register(pd_->get(), recv_buf_.get(), size_t{depth} * opts_.max_message,
                                    MemoryRegion::kLocalOnly);
  if (!rmr.ok()) return rmr.status();
  recv_mr_.emplace(std::move(*rmr));
  auto srq = SharedReceiveQueue::Create(pd_->get(), depth);
  if (!srq.ok()) return srq.status();
  srq_.emplace(std::move(*srq));
  for (uint32_t i = 0; i < depth; ++i)
    SHARRY_RETURN_IF_ERROR(srq_->PostRecv(MakeWrId(kWrRecv, i), recv_buf(i), opts_.max_message, recv_mr_->lkey()));

  const int n = std::max(1, opts_.num_pollers);
  slots_per_poller_ = depth + 64;
  for (int i = 0; i < n; ++i) {
    auto p = std::make_unique<Poller>();
    p->index = i;
    auto comp = CompletionChannel::Create(ctx);
    if (!comp.ok()) return comp.status();
    p->comp.emplace(std::move(*comp));
    int cq_depth = static_cast<int>(std::min<uint32_t>(caps->max_cqe, 2 * slots_per_poller_ + depth));
    auto cq = CompletionQueue::Create(ctx, cq_depth, p->comp->get());
    if (!cq.ok()) return cq.status();
    p->cq.emplace(std::move(*cq));
    p->slots_buf = AllocBuffer(size_t{slots_per_poller_} * opts_.max_message);
    if (!p->slots_buf) return Status::OutOfMemory("send slots");
    auto smr = MemoryRegion::Register(pd_->get(), p->slots_buf.get(),
                                      size_t{slots_per_poller_} * opts_.max_message, MemoryRegion::kLocalOnly);
    if (!smr.ok()) return smr.status();
    p->slots_mr.emplace(std::move(*smr));
    for (uint32_t s = slots_per_poller_; s-- > 0;) p->free_slots.push_back(s);
    pollers_.push_back(std::move(p));
  }
  for (auto& p : pollers_) {
    Poller* raw = p.get();
    p->thread = std::thread([this, raw] { PollLoop(raw); });
    int core = raw->index < static_cast<int>(opts_.poller_cores.size()) ? opts_.poller_cores[raw->index] : -1;
    internal::PinThread(p->thread, core, "verbs poller " + std::to_string(raw->index));
  }
  LOG(INFO) << "verbs device " << ibv_get_device_name(ctx->device) << ": region rkey "
            << (region_mr_ ? region_mr_->rkey() : 0) << ", " << depth << " shared receives of "
            << opts_.max_message << " B, " << n << " poller(s)";
  return Status::Ok();
}

VerbsServer::~VerbsServer() {
  stop_ = true;
  if (cm_thread_.joinable()) cm_thread_.join();
  for (auto& p : pollers_)
    if (p->thread.joinable()) p->thread.join();
  // Connections first (their QPs), then CQs, SRQ, MRs, PD, listener.
  for (auto& [id, c] : by_id_) rdma_disconnect(id);
  for (auto& [id, c] : by_id_) {
    if (c->established) clients_--;
    if (!c->session) continue;
    for (ClientId gone : sessions_.Leave(c->session, c->client_id))
      if (gone != c->client_id || c->established) handler_->OnDisconnect(gone);
  }
  by_qp_.clear();
  by_id_.clear();
  pollers_.clear();
  srq_.reset();
  recv_mr_.reset();
  region_mr_.reset();
  pd_.reset();
  listener_.reset();
}

void VerbsServer::CmLoop() {
  while (!stop_) {
    if (std::chrono::steady_clock::now() >= next_sweep_) {
      Sweep();
      next_sweep_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
    }
    auto ev = listener_->channel.Next(50);
    if (!ev.ok()) {
      if (ev.status().code() != StatusCode::kTimeout) LOG(ERROR) << "rdma_cm: " << ev.status();
      continue;
    }
    switch (ev->type()) {
      case RDMA_CM_EVENT_CONNECT_REQUEST:
        OnConnectRequest(*ev);
        break;
      case RDMA_CM_EVENT_ESTABLISHED: {
        auto it = by_id_.find(ev->id());
        if (it == by_id_.end()) break;
        it->second->established = true;
        clients_++;
        VLOG(1) << "verbs client " << it->second->client_id << " connected";
        handler_->OnConnect(it->second->client_id);
        break;
      }
      case RDMA_CM_EVENT_DISCONNECTED:
      case RDMA_CM_EVENT_REJECTED:
      case RDMA_CM_EVENT_CONNECT_ERROR:
      case RDMA_CM_EVENT_UNREACHABLE: {
        rdma_cm_id* id = ev->id();
        const char* why = ev->name();
        ev->Ack();  // before the id is destroyed
        DropConn(id, why);
        break;
      }
      case RDMA_CM_EVENT_DEVICE_REMOVAL:
        LOG(ERROR) << "rdma_cm: the RDMA device was removed; clients will see their connections die";
        break;
      default:
        VLOG(1) << "rdma_cm event " << ev->name();
        break;
    }
  }
}

void VerbsServer::OnConnectRequest(CmEvent& ev) {
  rdma_cm_id* id = ev.id();
  auto reject = [&](StatusCode code, const std::string& why) {
    LOG(WARNING) << "verbs: refusing a connection: " << why;
    // Welcome + the reason, zero-padded (a NUL ends it): what the client reports.
    std::vector<uint8_t> pd =
        internal::EncodeWelcomePayload(code, std::string_view(why).substr(0, wire::kMaxReason - 1));
    pd.resize(sizeof(wire::WelcomePayload) + wire::kMaxReason);
    rdma_reject(id, pd.data(), static_cast<uint8_t>(pd.size()));
    ev.Ack();
    rdma_destroy_id(id);
  };
  auto pdata = ev.private_data();
  wire::HelloPayload hello{};
  if (pdata.size() < sizeof hello) return reject(StatusCode::kProtocol, "no hello in private data");
  std::memcpy(&hello, pdata.data(), sizeof hello);
  if (hello.magic != wire::WelcomePayload{}.magic || hello.version != wire::kVersion)
    return reject(StatusCode::kProtocol, "not a Sharry client of protocol version " + std::to_string(wire::kVersion));
  if (hello.max_message < wire::kMinMessage || hello.max_message > wire::kMaxMessage)
    return reject(StatusCode::kInvalidArgument, "hello max_message " + std::to_string(hello.max_message) +
                                                    " out of range " + std::to_string(wire::kMinMessage) + ".." +
                                                    std::to_string(wire::kMaxMessage));
  if (ctx_ == nullptr) {
    if (Status s = InitDevice(id->verbs); !s.ok()) return reject(StatusCode::kInternal, s.ToString());
  } else if (id->verbs != ctx_) {
    return reject(StatusCode::kUnavailable, "connection on a second RDMA device; listen on one device's address");
  }
  // Counted from the connect request: established ones against max_clients,
  // those still connecting against max_handshakes.
  const size_t established = clients_.load();
  if (established >= static_cast<size_t>(opts_.max_clients))
    return reject(StatusCode::kUnavailable, "memnode full: " + std::to_string(established) + " of " +
                                                std::to_string(opts_.max_clients) + " clients");
  if (by_id_.size() - established >= static_cast<size_t>(opts_.max_handshakes))
    return reject(StatusCode::kUnavailable, "memnode busy: " + std::to_string(by_id_.size() - established) +
                                                " connections still connecting");
  std::shared_ptr<internal::SessionTable::Session> session;
  const ClientId client_id = next_client_id_;
  if (hello.session == 0) {
    session = sessions_.OpenRoot(client_id);
  } else {
    auto joined = sessions_.Join(hello.session);
    if (!joined.ok()) return reject(StatusCode::kUnavailable, joined.status().message());
    session = std::move(*joined);
  }
  wire::WelcomePayload w{};
  auto conn = std::make_unique<Conn>();
  conn->id = CmId::Adopt(id);
  conn->poller = static_cast<int>(rr_++ % pollers_.size());
  Poller* p = pollers_[conn->poller].get();
  verbs::QpSizes sizes;
  sizes.max_send_wr = 2 * opts_.credits + 16;
  sizes.max_send_sge = 1;
  sizes.max_inline_data = 256;
  auto qp = verbs::CreateRcQp(conn->id, pd_->get(), p->cq->get(), p->cq->get(), srq_->get(), sizes);
  if (!qp.ok()) {
    LOG(ERROR) << "verbs: cannot create a QP for a client: " << qp.status();
    sessions_.Leave(session, client_id);  // nobody connected: nothing to reclaim
    w.status = static_cast<uint16_t>(StatusCode::kOutOfMemory);
    rdma_reject(id, &w, sizeof w);
    ev.Ack();
    return;  // conn's CmId destroys the id
  }
  max_inline_ = qp->max_inline_data;
  conn->sq_depth = qp->max_send_wr;
  conn->max_message = std::min(opts_.max_message, std::max<uint32_t>(hello.max_message, sizeof(MsgHeader)));
  conn->client_id = next_client_id_++;
  conn->session = session;
  w.client_id = conn->client_id;
  w.lease_ms = opts_.lease_ms;
  w.session = session->root;
  w.max_message = opts_.max_message;
  w.region_addr = reinterpret_cast<uint64_t>(opts_.region);
  w.region_size = opts_.region_size;
  w.rkey = region_mr_ ? region_mr_->rkey() : 0;
  w.credits = opts_.credits;
  {
    std::unique_lock l(conns_mu_);
    by_qp_[conn->id.qp()->qp_num] = conn.get();
  }
  rdma_conn_param param{};
  param.private_data = &w;
  param.private_data_len = sizeof w;
  const rdma_conn_param& req = ev.conn_param();
  param.responder_resources = std::min<uint8_t>(req.initiator_depth, kRdAtomic);
  param.initiator_depth = std::min<uint8_t>(req.responder_resources, kRdAtomic);
  param.rnr_retry_count = 7;
  if (rdma_accept(id, &param) != 0) {
    LOG(ERROR) << verbs::VerbFailed("rdma_accept", errno);
    sessions_.Leave(session, conn->client_id);
    std::unique_lock l(conns_mu_);
    by_qp_.erase(conn->id.qp()->qp_num);
    ev.Ack();
    return;
  }
  ev.Ack();
  by_id_[id] = std::move(conn);
}

void VerbsServer::DropConn(rdma_cm_id* id, const std::string& why) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return;
  std::unique_ptr<Conn> c = std::move(it->second);
  by_id_.erase(it);
  {
    std::unique_lock l(conns_mu_);
    by_qp_.erase(c->id.qp()->qp_num);
  }
  // The QP goes to error first: no READ or WRITE of this connection can
  // reach the region after this, before any block is reclaimed below.
  rdma_disconnect(id);
  if (c->established) {
    LOG(INFO) << "verbs client " << c->client_id << " gone (" << why << ")";
    clients_--;
  }
  // Members of a session go before its root's OnDisconnect (reclamation).
  for (ClientId gone : sessions_.Leave(c->session, c->client_id))
    if (gone != c->client_id || c->established) handler_->OnDisconnect(gone);
  // ~Conn destroys the QP, then the id. Completions of its sends that are
  // still in a CQ only free their send slots.
}

void VerbsServer::Sweep() {
  const auto now = std::chrono::steady_clock::now();
  std::vector<std::pair<rdma_cm_id*, std::string>> over;
  for (auto& [id, c] : by_id_)
    if (c->established && sessions_.Expired(*c->session, now))
      over.emplace_back(id, "session " + std::to_string(c->session->root) + " over: " + c->session->why.load());
  for (auto& [id, why] : over) {
    LOG(WARNING) << "verbs: dropping client " << by_id_[id]->client_id << ": " << why;
    DropConn(id, why);
  }
}

std::optional<uint32_t> VerbsServer::AcquireSlot(Poller* p) {
  ibv_wc wc[16];
  auto deadline = Clock::now() + std::chrono::seconds(5);
  while (p->free_slots.empty()) {
    auto n = p->cq->Poll(wc, 16);
    if (!n.ok()) return std::nullopt;
    for (int i = 0; i < *n; ++i) {
      if (WrKindOf(wc[i].wr_id) == kWrRecv) p->deferred.push_back(wc[i]);
      else HandleSendWc(p, wc[i]);
    }
    if (Clock::now() > deadline || stop_) return std::nullopt;
  }
  uint32_t s = p->free_slots.back();
  p->free_slots.pop_back();
  return s;
}

void VerbsServer::HandleSendWc(Poller* p, const ibv_wc& wc) {
  if (wc.status != IBV_WC_SUCCESS && wc.status != IBV_WC_WR_FLUSH_ERR)
    LOG(WARNING) << verbs::WcFailed(wc, "SEND of a response (qp " + std::to_string(wc.qp_num) + ")");
  if (WrSlotOf(wc.wr_id) != kNoSlot) p->free_slots.push_back(static_cast<uint32_t>(WrSlotOf(wc.wr_id)));
}

void VerbsServer::HandleRecv(Poller* p, const ibv_wc& wc) {
  const uint32_t buf = static_cast<uint32_t>(WrSlotOf(wc.wr_id));
  auto repost = [&] {
    if (Status s = srq_->PostRecv(wc.wr_id, recv_buf(buf), opts_.max_message, recv_mr_->lkey()); !s.ok())
      LOG(ERROR) << "verbs: lost a shared receive buffer: " << s;
  };
  std::shared_lock l(conns_mu_);
  auto it = by_qp_.find(wc.qp_num);
  Conn* c = it == by_qp_.end() ? nullptr : it->second;
  if (wc.status != IBV_WC_SUCCESS) {
    if (wc.status != IBV_WC_WR_FLUSH_ERR)
      LOG(WARNING) << verbs::WcFailed(wc, "RECV of a request (client " + std::to_string(c ? c->client_id : 0) + ")");
    if (c != nullptr) rdma_disconnect(c->id.get());  // its QP is in error: drop it
    repost();
    return;
  }
  if (c == nullptr) {
    repost();
    return;
  }
  c->session->Touch();  // any request renews the session's lease
  const uint8_t* msg = recv_buf(buf);
  MsgHeader h{};
  Status bad;
  if (wc.byte_len < sizeof h) {
    bad = Status::Protocol("runt message of " + std::to_string(wc.byte_len) + " B");
  } else {
    std::memcpy(&h, msg, sizeof h);
    if (h.magic != wire::kMagic || h.version != wire::kVersion)
      bad = Status::Protocol("bad message header (magic/version)");
    else if (h.length != wc.byte_len - sizeof h)
      bad = Status::Protocol("header says " + std::to_string(h.length) + " B of payload, message has " +
                             std::to_string(wc.byte_len - sizeof h));
    else if (h.kind != Kind::kRequest)
      bad = Status::Protocol("unexpected message kind " + std::to_string(int(h.kind)) + " over verbs");
  }
  auto out = AcquireSlot(p);
  if (!out) {
    LOG(ERROR) << "verbs: no send slot for a response to client " << c->client_id << "; dropping it";
    rdma_disconnect(c->id.get());
    repost();
    return;
  }
  uint8_t* resp = slot(p, *out);
  MsgHeader rh{};
  rh.tag = h.tag;
  size_t n = 0;
  const size_t cap = c->max_message - sizeof(MsgHeader);
  if (bad.ok()) {
    n = handler_->Handle(c->client_id, {msg + sizeof h, h.length}, {resp + sizeof rh, cap});
    CHECK_LE(n, cap) << "handler returned a response longer than its buffer";
    rh.kind = Kind::kResponse;
  } else {
    std::vector<uint8_t> e = internal::EncodeError(bad);
    n = std::min(e.size(), cap);
    std::memcpy(resp + sizeof rh, e.data(), n);
    rh.kind = Kind::kError;
  }
  repost();  // the request was consumed
  rh.length = static_cast<uint32_t>(n);
  std::memcpy(resp, &rh, sizeof rh);
  const uint32_t len = static_cast<uint32_t>(sizeof rh + n);
  ibv_sge sge{reinterpret_cast<uintptr_t>(resp), len, p->slots_mr->lkey()};
  ibv_send_wr wr{};
  wr.opcode = IBV_WR_SEND;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  if (len <= max_inline_) {
    // Inline: the data is copied at post time, so the slot is free at once.
    // Only every (sq_depth/2)-th inline send asks for a completion, which
    // retires the unsignalled ones before it (RC completes in order).
    wr.send_flags = IBV_SEND_INLINE;
    wr.wr_id = MakeWrId(kWrSend, kNoSlot);
    p->free_slots.push_back(*out);
    if (++c->unsignalled >= std::max<uint32_t>(1, c->sq_depth / 2)) {
      wr.send_flags |= IBV_SEND_SIGNALED;
      c->unsignalled = 0;
    }
  } else {
    wr.send_flags = IBV_SEND_SIGNALED;  // the slot is free when this completes
    wr.wr_id = MakeWrId(kWrSend, *out);
    c->unsignalled = 0;
  }
  ibv_send_wr* badwr = nullptr;
  if (int rc = ibv_post_send(c->id.qp(), &wr, &badwr); rc != 0) {
    LOG(WARNING) << verbs::VerbFailed("ibv_post_send(response to client " + std::to_string(c->client_id) + ")", rc);
    if (WrSlotOf(wr.wr_id) != kNoSlot) p->free_slots.push_back(*out);
  }
}

void VerbsServer::PollLoop(Poller* p) {
  Backoff backoff(opts_.backoff);
  ibv_wc wc[32];
  while (!stop_) {
    while (!p->deferred.empty()) {
      ibv_wc w = p->deferred.front();
      p->deferred.pop_front();
      HandleRecv(p, w);
    }
    auto n = p->cq->Poll(wc, 32);
    if (!n.ok()) {
      LOG(ERROR) << "verbs poller " << p->index << ": " << n.status();
      break;
    }
    for (int i = 0; i < *n; ++i) {
      if (WrKindOf(wc[i].wr_id) == kWrRecv) HandleRecv(p, wc[i]);
      else HandleSendWc(p, wc[i]);
    }
    if (*n > 0) {
      backoff.Reset();
      continue;
    }
    if (backoff.Idle()) {
      auto slept = p->cq->Sleep(p->comp->get(), backoff.sleep_ms());
      if (!slept.ok()) LOG(ERROR) << "verbs poller " << p->index << ": " << slept.status();
    }
  }
}

}  // namespace

namespace internal {
StatusOr<std::unique_ptr<TransportServer>> StartVerbsServer(const ServerOptions& o, RequestHandler* h) {
  auto s = std::make_unique<VerbsServer>(o, h);
  SHARRY_RETURN_IF_ERROR(s->Start());
  return std::unique_ptr<TransportServer>(std::move(s));
}
StatusOr<std::unique_ptr<TransportClient>> ConnectVerbsClient(const ClientOptions& o) {
  return VerbsClient::Connect(o);
}
}  // namespace internal
}  // namespace sharry
