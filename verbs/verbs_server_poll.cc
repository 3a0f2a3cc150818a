// The verbs server's pollers: request receives from the shared receive
// queue, the handler, response SENDs from per-poller send slots (see
// verbs_server_impl.h for the map of the server's files).
#include <glog/logging.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "verbs/error.h"
#include "verbs/transport_internal.h"
#include "verbs/verbs_server_impl.h"
#include "verbs/wr_id.h"

namespace sharry::internal {

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
  ReaderMutexLock l(&conns_mu_);
  auto it = by_qp_.find(wc.qp_num);
  // A completion of a connection that is gone (its QP number may be reused
  // already): its buffers went with it.
  Conn* c = it == by_qp_.end() || it->second->client_id != RecvClientOf(wc.wr_id) ? nullptr : it->second;
  if (c == nullptr) return;
  const uint32_t buf = RecvSlotOf(wc.wr_id);
  auto repost = [&] {
    if (Status s = verbs::PostRecv(c->id.qp(), wc.wr_id, c->recv_slot(buf), c->max_message, c->recv_mr->lkey());
        !s.ok())
      VLOG(1) << "verbs: client " << c->client_id << " lost a receive buffer (its QP is closing?): " << s;
  };
  if (wc.status != IBV_WC_SUCCESS) {
    if (wc.status != IBV_WC_WR_FLUSH_ERR)
      LOG(WARNING) << verbs::WcFailed(wc, "RECV of a request (client " + std::to_string(c->client_id) + ")");
    rdma_disconnect(c->id.get());  // its QP is in error: drop it
    return;
  }
  if (c->auth != nullptr && c->auth_state.load(std::memory_order_relaxed) != AuthState::kDone) {
    HandleAuthMessage(p, c, c->recv_slot(buf), wc.byte_len);  // not authenticated yet: verbs_server_auth.cc
    repost();
    return;
  }
  c->session->Touch();  // any request renews the session's lease
  const uint8_t* msg = c->recv_slot(buf);
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
  ibv_sge sge{reinterpret_cast<uintptr_t>(resp), len, c->vs->slot_lkeys[p->index]};
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

}  // namespace sharry::internal
