// The verbs client: connect and handshake, teardown, RegisterLocal (see
// verbs_client_impl.h for the map of the client's files).
#include <glog/logging.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <thread>

#include "verbs/error.h"
#include "verbs/handshake.h"
#include "verbs/transport_internal.h"
#include "verbs/verbs_client_impl.h"
#include "verbs/wr_id.h"

namespace sharry::internal {

StatusOr<std::unique_ptr<TransportClient>> VerbsClient::Connect(const ClientOptions& o) {
  Status last;
  for (int attempt = 0; attempt < std::max(1, o.connect_attempts); ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100 << std::min(attempt, 5)));
    std::unique_ptr<VerbsClient> c(new VerbsClient(o));
    last = c->ConnectOnce();
    if (last.ok()) return std::unique_ptr<TransportClient>(std::move(c));
    if (last.code() == StatusCode::kInvalidArgument || last.code() == StatusCode::kProtocol ||
        last.code() == StatusCode::kPermissionDenied)
      break;  // trying again would not change the answer (and counts as another failed authentication)
    VLOG(1) << "verbs connect attempt " << attempt + 1 << " failed: " << last;
  }
  return last.WithContext("connect verbs " + o.server_addr + ":" + std::to_string(o.port) + " (" +
                          std::to_string(o.connect_attempts) + " attempts)");
}

Status VerbsClient::ConnectOnce() {
  where_ = opts_.server_addr + ":" + std::to_string(opts_.port);
  SHARRY_RETURN_IF_ERROR(
      verbs::OpenAndResolve(&channel_, &id_, opts_.server_addr, opts_.port, opts_.connect_timeout_ms));
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
  slot_bytes_ = std::max(opts_.max_message, wire::kMaxAuthMessage);  // authentication's replies fit
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

  // The hello (handshake.h): a join carries its session's token; it fits
  // the 56 B of rdma_cm private data, credentials do not: they follow on
  // the QP (kHelloAuthOnQp; Authenticate below).
  wire::HelloPayload base{};
  base.max_message = info_.max_message;
  base.session = opts_.session;
  if (!opts_.tenant.empty()) base.flags = wire::kHelloAuthOnQp;
  const std::vector<uint8_t> hello =
      internal::EncodeHello(base, "", auth::Nonce{}, opts_.session != 0 ? &opts_.session_token : nullptr);
  rdma_conn_param param{};
  param.private_data = hello.data();
  param.private_data_len = static_cast<uint8_t>(hello.size());
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
  if (welcome.ok() && ev->private_data().size() >= sizeof w + info_.session_token.size())
    std::memcpy(info_.session_token.data(), ev->private_data().data() + sizeof w, info_.session_token.size());
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
  if (!opts_.tenant.empty()) SHARRY_RETURN_IF_ERROR(Authenticate(w));
  if (info_.rkey == 0 && info_.region_size > 0) {
    // The server confines one-sided access: a key per block (remote_keys.h),
    // shared with the rest of the session when the caller passes its table.
    keys_ = opts_.keys ? opts_.keys : std::make_shared<RemoteKeys>();
    keys_->Init(info_.region_size);
  }
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

StatusOr<std::unique_ptr<TransportClient>> ConnectVerbsClient(const ClientOptions& o) {
  return VerbsClient::Connect(o);
}

}  // namespace sharry::internal
