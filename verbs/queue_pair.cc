#include "verbs/queue_pair.h"

#include <glog/logging.h>

#include <cerrno>

#include "verbs/error.h"
#include "verbs/resources.h"

namespace sharry::verbs {

StatusOr<QpCaps> CreateRcQp(CmId& id, ibv_pd* pd, ibv_cq* send_cq, ibv_cq* recv_cq, ibv_srq* srq,
                            const QpSizes& sizes) {
  ibv_qp_init_attr attr{};
  attr.qp_type = IBV_QPT_RC;
  attr.send_cq = send_cq;
  attr.recv_cq = recv_cq;
  attr.srq = srq;
  attr.sq_sig_all = 0;  // selective signalling
  attr.cap.max_send_wr = sizes.max_send_wr;
  attr.cap.max_recv_wr = srq ? 0 : sizes.max_recv_wr;
  attr.cap.max_send_sge = sizes.max_send_sge;
  attr.cap.max_recv_sge = srq ? 0 : sizes.max_recv_sge;
  attr.cap.max_inline_data = sizes.max_inline_data;
  if (rdma_create_qp(id.get(), pd, &attr) != 0) {
    int err = errno;
    if (sizes.max_inline_data == 0) return VerbFailed("rdma_create_qp", err);
    LOG(INFO) << "device refused " << sizes.max_inline_data
              << " B of inline data; creating the QP without inline sends";
    attr.cap.max_inline_data = 0;
    if (rdma_create_qp(id.get(), pd, &attr) != 0) return VerbFailed("rdma_create_qp", errno);
  }
  QpCaps caps;
  caps.max_send_wr = attr.cap.max_send_wr;
  caps.max_send_sge = attr.cap.max_send_sge;
  caps.max_inline_data = attr.cap.max_inline_data;
  return caps;
}

Status PostRecv(ibv_qp* qp, uint64_t wr_id, void* addr, uint32_t len, uint32_t lkey) {
  OneRecv r(wr_id, addr, len, lkey);
  ibv_recv_wr* bad = nullptr;
  if (int rc = ibv_post_recv(qp, &r.wr, &bad); rc != 0) return VerbFailed("ibv_post_recv", rc);
  return Status::Ok();
}

void SendChain::Add(ibv_wr_opcode op, uint64_t wr_id, std::span<const ibv_sge> local,
                    uint64_t remote_addr, uint32_t rkey, bool inline_data) {
  ibv_send_wr wr{};
  wr.wr_id = wr_id;
  wr.opcode = op;
  wr.num_sge = static_cast<int>(local.size());
  if (inline_data) wr.send_flags |= IBV_SEND_INLINE;
  wr.wr.rdma.remote_addr = remote_addr;
  wr.wr.rdma.rkey = rkey;
  first_sge_.push_back(static_cast<uint32_t>(sges_.size()));
  sges_.insert(sges_.end(), local.begin(), local.end());
  wrs_.push_back(wr);
}

void SendChain::Read(uint64_t wr_id, std::span<const ibv_sge> local, uint64_t remote_addr, uint32_t rkey) {
  Add(IBV_WR_RDMA_READ, wr_id, local, remote_addr, rkey, false);
}

void SendChain::Write(uint64_t wr_id, std::span<const ibv_sge> local, uint64_t remote_addr,
                      uint32_t rkey, bool inline_data) {
  Add(IBV_WR_RDMA_WRITE, wr_id, local, remote_addr, rkey, inline_data);
}

void SendChain::Send(uint64_t wr_id, std::span<const ibv_sge> local, bool inline_data) {
  Add(IBV_WR_SEND, wr_id, local, 0, 0, inline_data);
}

void SendChain::Clear() {
  wrs_.clear();
  sges_.clear();
  first_sge_.clear();
  signal_all_ = false;
}

Status SendChain::Post(ibv_qp* qp) {
  if (wrs_.empty()) return Status::Ok();
  // Link the chain now: the vectors no longer move.
  for (size_t i = 0; i < wrs_.size(); ++i) {
    wrs_[i].sg_list = wrs_[i].num_sge ? &sges_[first_sge_[i]] : nullptr;
    wrs_[i].next = i + 1 < wrs_.size() ? &wrs_[i + 1] : nullptr;
    if (signal_all_) wrs_[i].send_flags |= IBV_SEND_SIGNALED;
  }
  wrs_.back().send_flags |= IBV_SEND_SIGNALED;
  ibv_send_wr* bad = nullptr;
  int rc = ibv_post_send(qp, wrs_.data(), &bad);
  if (rc != 0) {
    size_t idx = bad ? static_cast<size_t>(bad - wrs_.data()) : 0;
    return VerbFailed("ibv_post_send (work request " + std::to_string(idx) + " of " +
                          std::to_string(wrs_.size()) + " refused; the ones before it were posted)",
                      rc);
  }
  return Status::Ok();
}

}  // namespace sharry::verbs
