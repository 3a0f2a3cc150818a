// RAII owners of libibverbs objects: protection domain, memory region,
// completion channel, completion queue, shared receive queue.
//
// Creation order (as in rdma-core's rc_pingpong.c):
//   device context -> PD -> MR -> CQ -> (SRQ) -> QP
// and destruction in the reverse order. Holders that own several of these
// must declare their members in creation order so that C++ destroys them in
// reverse. Each object is move-only; a destructor whose verb fails logs the
// verb and errno (it cannot return it) and leaks the object rather than
// crash.
//
// Thread-safety: these wrappers add none. libibverbs objects may be used from
// several threads (posting and polling are thread-safe in rdma-core), but the
// owner decides who destroys them.
#pragma once

#include <infiniband/verbs.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "base/status.h"

namespace sharry::verbs {

// What a device supports, asked from the device instead of assumed.
struct DeviceCaps {
  uint32_t max_qp_wr = 0;        // work requests per queue
  uint32_t max_sge = 0;          // scatter/gather entries per work request
  uint32_t max_srq_wr = 0;
  uint32_t max_cqe = 0;
  uint32_t max_qp_rd_atom = 0;   // outstanding RDMA READs per QP (responder)
  uint32_t max_qp_init_rd_atom = 0;
  uint64_t max_mr_size = 0;
  uint32_t max_msg_sz = 0;       // largest message of one work request (port 1)
  uint32_t active_mtu = 0;       // bytes
};
StatusOr<DeviceCaps> QueryDeviceCaps(ibv_context* ctx);

// The verbs that destroy a PD and an MR, logging a failure (a destructor
// cannot return it), and the deleter that calls one: ProtectionDomain and
// MemoryRegion are movable owners through it.
void DeallocPd(ibv_pd* pd);
void DeregMr(ibv_mr* mr);
template <typename T, void (*Destroy)(T*)>
struct VerbsDeleter {
  void operator()(T* p) const { Destroy(p); }
};

class ProtectionDomain {
 public:
  static StatusOr<ProtectionDomain> Create(ibv_context* ctx);
  ibv_pd* get() const { return pd_.get(); }

 private:
  explicit ProtectionDomain(ibv_pd* pd) : pd_(pd) {}
  std::unique_ptr<ibv_pd, VerbsDeleter<ibv_pd, DeallocPd>> pd_;
};

// A registered memory region. Large regions (the UMA) are registered ONCE;
// per-operation registration is never done on a data path.
class MemoryRegion {
 public:
  static constexpr int kLocalOnly = IBV_ACCESS_LOCAL_WRITE;
  static constexpr int kRemoteReadWrite =
      IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE;

  static StatusOr<MemoryRegion> Register(ibv_pd* pd, void* addr, size_t len, int access);

  ibv_mr* get() const { return mr_.get(); }
  uint32_t lkey() const { return mr_->lkey; }
  uint32_t rkey() const { return mr_->rkey; }
  uint8_t* addr() const { return static_cast<uint8_t*>(mr_->addr); }
  size_t length() const { return mr_->length; }
  // True if [p, p+len) lies inside this region.
  bool Contains(const void* p, size_t len) const {
    auto a = reinterpret_cast<uintptr_t>(p), b = reinterpret_cast<uintptr_t>(mr_->addr);
    return a >= b && len <= mr_->length && a - b <= mr_->length - len;
  }

 private:
  explicit MemoryRegion(ibv_mr* mr) : mr_(mr) {}
  std::unique_ptr<ibv_mr, VerbsDeleter<ibv_mr, DeregMr>> mr_;
};

class CompletionChannel {
 public:
  static StatusOr<CompletionChannel> Create(ibv_context* ctx);
  CompletionChannel(CompletionChannel&& o) noexcept : ch_(o.ch_) { o.ch_ = nullptr; }
  ~CompletionChannel();
  ibv_comp_channel* get() const { return ch_; }
  int fd() const { return ch_->fd; }

 private:
  explicit CompletionChannel(ibv_comp_channel* ch) : ch_(ch) {}
  ibv_comp_channel* ch_ = nullptr;
};

// A completion queue, optionally bound to a completion channel so that an
// idle poller can sleep until the next completion (see CqWaiter).
class CompletionQueue {
 public:
  static StatusOr<CompletionQueue> Create(ibv_context* ctx, int depth,
                                          ibv_comp_channel* channel = nullptr);
  CompletionQueue(CompletionQueue&& o) noexcept : cq_(o.cq_), unacked_(o.unacked_) { o.cq_ = nullptr; }
  ~CompletionQueue();
  ibv_cq* get() const { return cq_; }

  // Polls up to n completions; returns how many, or an error if the verb failed.
  StatusOr<int> Poll(ibv_wc* wc, int n) const;

  // Blocks until the CQ's channel reports an event or `timeout_ms` passes.
  // Arms the CQ first and re-polls once, so no completion is missed: if a
  // completion is already queued it returns immediately. Returns true if an
  // event (or a queued completion) may be there.
  StatusOr<bool> Sleep(ibv_comp_channel* channel, int timeout_ms);

 private:
  explicit CompletionQueue(ibv_cq* cq) : cq_(cq) {}
  ibv_cq* cq_ = nullptr;
  unsigned unacked_ = 0;  // CQ events got but not yet acknowledged
};

// A receive work request for one buffer, as SharedReceiveQueue::PostRecv
// and PostRecv (queue_pair.h) post it. Not copyable: wr points at sge.
struct OneRecv {
  OneRecv(uint64_t wr_id, void* addr, uint32_t len, uint32_t lkey)
      : sge{reinterpret_cast<uintptr_t>(addr), len, lkey} {
    wr.wr_id = wr_id;
    wr.sg_list = &sge;
    wr.num_sge = 1;
  }
  OneRecv(const OneRecv&) = delete;
  OneRecv& operator=(const OneRecv&) = delete;
  ibv_sge sge;
  ibv_recv_wr wr{};
};

class SharedReceiveQueue {
 public:
  static StatusOr<SharedReceiveQueue> Create(ibv_pd* pd, uint32_t depth, uint32_t max_sge = 1);
  SharedReceiveQueue(SharedReceiveQueue&& o) noexcept : srq_(o.srq_) { o.srq_ = nullptr; }
  ~SharedReceiveQueue();
  ibv_srq* get() const { return srq_; }
  // Posts one receive of [addr, addr+len) with `lkey`, identified by wr_id.
  Status PostRecv(uint64_t wr_id, void* addr, uint32_t len, uint32_t lkey) const;

 private:
  explicit SharedReceiveQueue(ibv_srq* srq) : srq_(srq) {}
  ibv_srq* srq_ = nullptr;
};

}  // namespace sharry::verbs
