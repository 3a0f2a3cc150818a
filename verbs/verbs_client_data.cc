// The verbs client's data path: completions, chains of RDMA READ/WRITE
// (registered memory, inline writes, staging through the bounce buffer),
// request SENDs within the credits and their responses (see
// verbs_client_impl.h for the map of the client's files).
#include <glog/logging.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "verbs/error.h"
#include "verbs/transport_internal.h"
#include "verbs/verbs_client_impl.h"
#include "verbs/wr_id.h"

namespace sharry::internal {

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
  // A confining server: each block's key, learned with its ALLOC. None:
  // not a block of this session; refused here, before anything is posted
  // (the device would refuse it with a remote access error, which kills the
  // connection).
  auto key_of = [&](const RemoteOp& op) { return keys_ ? keys_->Find(op.offset, op.length) : info_.rkey; };
  for (const RemoteOp& op : ops) {
    SHARRY_RETURN_IF_ERROR(CheckRange(op.offset, op.length, info_.region_size, verb));
    if (keys_ && op.length > 0 && key_of(op) == 0)
      return Status::PermissionDenied(std::string(verb) + " of [" + std::to_string(op.offset) + ", +" +
                                      std::to_string(op.length) + ") at " + where_ +
                                      ": no key for it (not a block this session allocated)");
  }
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
    const uint32_t rkey = key_of(op);
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
      if (write) chain.Write(wr_id, {&sge, 1}, remote, rkey, inl);
      else chain.Read(wr_id, {&sge, 1}, remote, rkey);
      done += n;
      if (chain.size() >= max_chain) SHARRY_RETURN_IF_ERROR(flush());
    }
  }
  return flush();
}

Status VerbsClient::CheckRequestSize(size_t n) const { return internal::CheckRequestSize(n, info_.max_message); }

Status VerbsClient::PostRequest(uint64_t tag, std::span<const uint8_t> request, Kind kind) {
  // Request `tag` uses send slot tag % credits; it is reused only after the
  // response to tag - credits was taken, so that SEND has completed.
  const uint32_t slot = static_cast<uint32_t>(tag % info_.credits);
  uint8_t* p = send_slot(slot);
  MsgHeader h{};
  h.kind = kind;
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
  Kind kind = Kind::kResponse;
  SHARRY_RETURN_IF_ERROR(TakeMessage(tag, &kind, out));
  if (kind == Kind::kError) return internal::DecodeError(*out);
  if (kind != Kind::kResponse) return Kill(Status::Protocol("unexpected reply kind from " + where_));
  return Status::Ok();
}

Status VerbsClient::TakeMessage(uint64_t tag, Kind* kind, std::vector<uint8_t>* out) {
  Arrived& a = arrived_[tag % info_.credits];
  SHARRY_RETURN_IF_ERROR(WaitUntil([&] { return a.tag == tag; }, "request to " + where_));
  const uint8_t* payload = recv_slot(a.slot) + sizeof(MsgHeader);
  out->assign(payload, payload + a.len);
  *kind = a.kind;
  const uint32_t slot = a.slot;
  a.tag = 0;
  oldest_tag_ = tag + 1;
  if (Status s = verbs::PostRecv(id_.qp(), MakeWrId(kWrRecv, slot), recv_slot(slot), slot_bytes_,
                                 msg_mr_->lkey());
      !s.ok())
    return Kill(s);
  return Status::Ok();
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

}  // namespace sharry::internal
