// RC queue pairs and the work requests posted on them.
//
// Data moves with one-sided RDMA READ/WRITE straight between a registered
// local buffer and a remote address; small control messages move with
// two-sided SEND/RECV. Many work requests go out as one chain with ONE
// doorbell (one ibv_post_send), and only the last one is signalled, so the
// whole chain costs one completion to poll (selective signalling). Since an
// RC queue completes in order, the last completion proves all earlier ones.
//
// Thread-safety: a SendChain is a builder owned by one thread. Posting on a
// QP from several threads is safe in rdma-core, but Sharry's transports give
// every QP one owner.
#pragma once

#include <infiniband/verbs.h>

#include <cstdint>
#include <span>
#include <vector>

#include "base/status.h"
#include "verbs/cm.h"

namespace sharry::verbs {

// Queue sizes asked for at QP creation.
struct QpSizes {
  uint32_t max_send_wr = 128;
  uint32_t max_recv_wr = 128;      // ignored when an SRQ is given
  uint32_t max_send_sge = 4;
  uint32_t max_recv_sge = 1;
  uint32_t max_inline_data = 256;  // asked; the device may grant less (or 0)
};

// What the device granted.
struct QpCaps {
  uint32_t max_send_wr = 0;
  uint32_t max_send_sge = 0;
  uint32_t max_inline_data = 0;
};

// Creates an RC QP on `id` (rdma_create_qp) with the given CQs and optional
// SRQ. If the device refuses the inline size it is retried without inline
// data, so the caller learns from QpCaps what it may inline.
StatusOr<QpCaps> CreateRcQp(CmId& id, ibv_pd* pd, ibv_cq* send_cq, ibv_cq* recv_cq, ibv_srq* srq,
                            const QpSizes& sizes);

// Posts one receive on a QP without SRQ.
Status PostRecv(ibv_qp* qp, uint64_t wr_id, void* addr, uint32_t len, uint32_t lkey);

// A chain of send-queue work requests, posted with one doorbell.
class SendChain {
 public:
  SendChain() = default;

  // RDMA READ of the remote [remote_addr, +sum of sge lengths) into the sges.
  void Read(uint64_t wr_id, std::span<const ibv_sge> local, uint64_t remote_addr, uint32_t rkey);
  // RDMA WRITE of the sges to remote_addr.
  void Write(uint64_t wr_id, std::span<const ibv_sge> local, uint64_t remote_addr, uint32_t rkey,
             bool inline_data = false);
  // Two-sided SEND of the sges (inline: the data is copied at post time and
  // the buffer may be reused at once).
  void Send(uint64_t wr_id, std::span<const ibv_sge> local, bool inline_data = false);

  // By default only the last work request is signalled. SignalAll() asks a
  // completion for every one; Signal(i) for one more.
  void SignalAll() { signal_all_ = true; }
  void Signal(size_t i) { wrs_[i].send_flags |= IBV_SEND_SIGNALED; }

  size_t size() const { return wrs_.size(); }
  bool empty() const { return wrs_.empty(); }
  void Clear();

  // One ibv_post_send for the whole chain. On failure, names the first work
  // request that was refused and says how many were not posted.
  Status Post(ibv_qp* qp);

 private:
  void Add(ibv_wr_opcode op, uint64_t wr_id, std::span<const ibv_sge> local, uint64_t remote_addr,
           uint32_t rkey, bool inline_data);
  std::vector<ibv_send_wr> wrs_;
  std::vector<ibv_sge> sges_;
  std::vector<uint32_t> first_sge_;
  bool signal_all_ = false;
};

}  // namespace sharry::verbs
