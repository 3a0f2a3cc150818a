#include "verbs/resources.h"

#include <glog/logging.h>
#include <poll.h>

#include <cerrno>

#include "verbs/error.h"
#include "verbs/socket_util.h"

namespace sharry::verbs {

StatusOr<DeviceCaps> QueryDeviceCaps(ibv_context* ctx) {
  ibv_device_attr attr{};
  if (int rc = ibv_query_device(ctx, &attr); rc != 0) return VerbFailed("ibv_query_device", rc);
  ibv_port_attr port{};
  if (int rc = ibv_query_port(ctx, 1, &port); rc != 0) return VerbFailed("ibv_query_port", rc);
  DeviceCaps c;
  c.max_qp_wr = attr.max_qp_wr;
  c.max_sge = attr.max_sge;
  c.max_srq_wr = attr.max_srq_wr;
  c.max_cqe = attr.max_cqe;
  c.max_qp_rd_atom = attr.max_qp_rd_atom;
  c.max_qp_init_rd_atom = attr.max_qp_init_rd_atom;
  c.max_mr_size = attr.max_mr_size;
  c.max_msg_sz = port.max_msg_sz;
  c.active_mtu = 128u << port.active_mtu;  // IBV_MTU_256 == 1
  return c;
}

StatusOr<ProtectionDomain> ProtectionDomain::Create(ibv_context* ctx) {
  ibv_pd* pd = ibv_alloc_pd(ctx);
  if (pd == nullptr) return VerbFailed("ibv_alloc_pd", errno ? errno : ENOMEM);
  return ProtectionDomain(pd);
}

void DeallocPd(ibv_pd* pd) {
  if (int rc = ibv_dealloc_pd(pd); rc != 0)
    LOG(ERROR) << VerbFailed("ibv_dealloc_pd", rc) << " (an object still uses the PD)";
}

StatusOr<MemoryRegion> MemoryRegion::Register(ibv_pd* pd, void* addr, size_t len, int access) {
  ibv_mr* mr = ibv_reg_mr(pd, addr, len, access);
  if (mr == nullptr) {
    int err = errno ? errno : ENOMEM;
    Status s = VerbFailed("ibv_reg_mr(" + std::to_string(len) + " B)", err);
    if (err == ENOMEM || err == EPERM)
      s = s.WithContext("cannot pin memory; raise the locked-memory limit (ulimit -l unlimited)");
    return s;
  }
  return MemoryRegion(mr);
}

void DeregMr(ibv_mr* mr) {
  if (int rc = ibv_dereg_mr(mr); rc != 0) LOG(ERROR) << VerbFailed("ibv_dereg_mr", rc);
}

StatusOr<CompletionChannel> CompletionChannel::Create(ibv_context* ctx) {
  ibv_comp_channel* ch = ibv_create_comp_channel(ctx);
  if (ch == nullptr) return VerbFailed("ibv_create_comp_channel", errno);
  // Non-blocking, so that Sleep() never blocks in ibv_get_cq_event.
  if (Status s = net::SetNonBlocking(ch->fd, true); !s.ok()) {
    ibv_destroy_comp_channel(ch);
    return s.WithContext("completion channel, O_NONBLOCK");
  }
  return CompletionChannel(ch);
}

CompletionChannel::~CompletionChannel() {
  if (ch_ != nullptr) {
    if (int rc = ibv_destroy_comp_channel(ch_); rc != 0)
      LOG(ERROR) << VerbFailed("ibv_destroy_comp_channel", rc);
  }
}

StatusOr<CompletionQueue> CompletionQueue::Create(ibv_context* ctx, int depth,
                                                  ibv_comp_channel* channel) {
  ibv_cq* cq = ibv_create_cq(ctx, depth, nullptr, channel, 0);
  if (cq == nullptr) return VerbFailed("ibv_create_cq(depth " + std::to_string(depth) + ")", errno);
  return CompletionQueue(cq);
}

CompletionQueue::~CompletionQueue() {
  if (cq_ != nullptr) {
    if (unacked_ > 0) ibv_ack_cq_events(cq_, unacked_);
    if (int rc = ibv_destroy_cq(cq_); rc != 0) LOG(ERROR) << VerbFailed("ibv_destroy_cq", rc);
  }
}

StatusOr<int> CompletionQueue::Poll(ibv_wc* wc, int n) const {
  int got = ibv_poll_cq(cq_, n, wc);
  if (got < 0) return VerbFailed("ibv_poll_cq", EIO);
  return got;
}

StatusOr<bool> CompletionQueue::Sleep(ibv_comp_channel* channel, int timeout_ms) {
  if (int rc = ibv_req_notify_cq(cq_, 0); rc != 0) return VerbFailed("ibv_req_notify_cq", rc);
  // A completion that arrived before arming raises no event: the caller
  // re-polls after we return, so report "maybe" if one is already there.
  pollfd pfd{channel->fd, POLLIN, 0};
  int pr = ::poll(&pfd, 1, timeout_ms);
  if (pr < 0) {
    if (errno == EINTR) return false;
    return VerbFailed("poll(completion channel)", errno);
  }
  if (pr == 0) return false;
  ibv_cq* ev_cq = nullptr;
  void* ev_ctx = nullptr;
  if (ibv_get_cq_event(channel, &ev_cq, &ev_ctx) != 0) {
    if (errno == EAGAIN) return false;  // channel fd is non-blocking: someone else took it
    return VerbFailed("ibv_get_cq_event", errno);
  }
  if (++unacked_ >= 64 || ev_cq != cq_) {
    ibv_ack_cq_events(ev_cq, ev_cq == cq_ ? unacked_ : 1);
    if (ev_cq == cq_) unacked_ = 0;
  }
  return true;
}

StatusOr<SharedReceiveQueue> SharedReceiveQueue::Create(ibv_pd* pd, uint32_t depth, uint32_t max_sge) {
  ibv_srq_init_attr attr{};
  attr.attr.max_wr = depth;
  attr.attr.max_sge = max_sge;
  ibv_srq* srq = ibv_create_srq(pd, &attr);
  if (srq == nullptr) return VerbFailed("ibv_create_srq(depth " + std::to_string(depth) + ")", errno);
  return SharedReceiveQueue(srq);
}

SharedReceiveQueue::~SharedReceiveQueue() {
  if (srq_ != nullptr) {
    if (int rc = ibv_destroy_srq(srq_); rc != 0) LOG(ERROR) << VerbFailed("ibv_destroy_srq", rc);
  }
}

Status SharedReceiveQueue::PostRecv(uint64_t wr_id, void* addr, uint32_t len, uint32_t lkey) const {
  OneRecv r(wr_id, addr, len, lkey);
  ibv_recv_wr* bad = nullptr;
  if (int rc = ibv_post_srq_recv(srq_, &r.wr, &bad); rc != 0) return VerbFailed("ibv_post_srq_recv", rc);
  return Status::Ok();
}

}  // namespace sharry::verbs
