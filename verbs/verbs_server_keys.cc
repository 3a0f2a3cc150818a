// The verbs server's confinement (see verbs_server_impl.h): each session's
// protection domain, the memory regions of the spans granted to it, and the
// per-page table of their keys that the memnode returns with ALLOCs.
#include <glog/logging.h>

#include <string>

#include "verbs/verbs_server_impl.h"
#include "verbs/wr_id.h"

namespace sharry::internal {

std::shared_ptr<VerbsServer::VSession> VerbsServer::SessionFor(ClientId client_id, ClientId root) {
  if (!opts_.confine) {
    if (!shared_vs_) {
      shared_vs_ = std::make_shared<VSession>();
      shared_vs_->pd = pd_->get();
      for (const auto& p : pollers_) shared_vs_->slot_lkeys.push_back(p->slots_mr->lkey());
    }
    return shared_vs_;
  }
  MutexLock l(&keys_mu_);
  if (root != 0) {  // a member: its root's session (gone: the join was refused before this)
    auto it = owners_.find(root);
    if (it == owners_.end()) return nullptr;
    owners_[client_id] = it->second;
    return it->second;
  }
  auto vs = std::make_shared<VSession>();
  vs->root = client_id;
  auto pd = ProtectionDomain::Create(ctx_);
  if (!pd.ok()) {
    LOG(ERROR) << "verbs: cannot create a protection domain for client " << client_id << ": " << pd.status();
    return nullptr;
  }
  vs->own_pd.emplace(std::move(*pd));
  vs->pd = vs->own_pd->get();
  for (const auto& p : pollers_) {
    auto mr = MemoryRegion::Register(vs->pd, p->slots_buf.get(), p->slots_mr->length(), MemoryRegion::kLocalOnly);
    if (!mr.ok()) {
      LOG(ERROR) << "verbs: cannot register send slots for client " << client_id << ": " << mr.status();
      return nullptr;
    }
    vs->slot_lkeys.push_back(mr->lkey());
    vs->slot_mrs.push_back(std::move(*mr));
  }
  owners_[client_id] = vs;
  return vs;
}

void VerbsServer::ForgetOwner(ClientId client_id) {
  if (!opts_.confine) return;
  MutexLock l(&keys_mu_);
  owners_.erase(client_id);
}

Status VerbsServer::PostConnRecvs(Conn* c, uint32_t n) {
  const size_t bytes = size_t{n} * c->max_message;
  c->recv = AllocBuffer(bytes);
  if (!c->recv) return Status::OutOfMemory("receive buffers of a connection");
  auto mr = MemoryRegion::Register(c->vs->pd, c->recv.get(), bytes, MemoryRegion::kLocalOnly);
  if (!mr.ok()) return mr.status().WithContext("register a connection's receive buffers");
  c->recv_mr.emplace(std::move(*mr));
  for (uint32_t i = 0; i < n; ++i)
    SHARRY_RETURN_IF_ERROR(verbs::PostRecv(c->id.qp(), RecvWrId(c->client_id, i), c->recv_slot(i),
                                           c->max_message, c->recv_mr->lkey()));
  return Status::Ok();
}

void VerbsServer::Grant(ClientId owner, uint64_t offset, uint64_t bytes) {
  std::shared_ptr<VSession> vs;
  {
    MutexLock l(&keys_mu_);
    auto it = owners_.find(owner);
    if (it != owners_.end()) vs = it->second;
  }
  if (!vs || offset > opts_.region_size || bytes > opts_.region_size - offset) {
    // Not a client of this transport (e.g. a test driving the allocator
    // directly): its span gets no key, so nobody reaches it one-sidedly.
    VLOG(1) << "verbs: span at " << offset << " granted to client " << owner << ", which has no session here";
    return;
  }
  auto mr = MemoryRegion::Register(vs->pd, static_cast<uint8_t*>(opts_.region) + offset, bytes,
                                   MemoryRegion::kRemoteReadWrite);
  if (!mr.ok()) {
    // The ALLOC that caused the grant sees key 0 and refuses the block.
    LOG(ERROR) << "verbs: cannot register a span of " << bytes << " B for client " << owner << ": " << mr.status();
    return;
  }
  const uint32_t rkey = mr->rkey();
  MutexLock l(&keys_mu_);
  spans_.insert_or_assign(offset, Span{std::move(vs), std::move(*mr)});
  page_keys_.Learn(offset, bytes, rkey);
}

void VerbsServer::Revoke(ClientId, uint64_t offset, uint64_t bytes) {
  // Deregistered here, before the allocator can grant the pages to anyone
  // else: every key the owner was given for them is dead from now on.
  std::optional<Span> gone;
  {
    MutexLock l(&keys_mu_);
    page_keys_.Learn(offset, bytes, 0);
    auto it = spans_.find(offset);
    if (it == spans_.end()) return;
    gone.emplace(std::move(it->second));
    spans_.erase(it);
  }
  // ~Span outside the lock: ibv_dereg_mr, then maybe the session's PD.
}

uint32_t VerbsServer::RemoteKey(uint64_t offset) const { return page_keys_.Find(offset, 1); }

}  // namespace sharry::internal
