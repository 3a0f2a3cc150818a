#include "memnode/service.h"

#include <glog/logging.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <unordered_map>

#include "alloc/sharry_allocator.h"
#include "alloc/size_classes.h"
#include "memnode/offload_job.h"
#include "memnode/offload_workers.h"
#include "memnode/quota.h"
#include "memnode/tenants.h"

namespace sharry::memnode {

namespace {

ElementCode ToElement(alloc::AllocStatus s) {
  switch (s) {
    case alloc::AllocStatus::kOk: return ElementCode::kOk;
    case alloc::AllocStatus::kOutOfMemory: return ElementCode::kOutOfMemory;
    case alloc::AllocStatus::kInvalidSize: return ElementCode::kInvalidSize;
    case alloc::AllocStatus::kNotAllocated: return ElementCode::kNotAllocated;
    case alloc::AllocStatus::kOutOfRange: return ElementCode::kOutOfRange;
    case alloc::AllocStatus::kNotOwner: return ElementCode::kNotOwner;
    case alloc::AllocStatus::kInvalidOwner: break;
  }
  return ElementCode::kInternal;
}

size_t WriteOk(uint16_t count, std::span<uint8_t> out, uint32_t msglen = 0) {
  ReplyHeader r;
  r.count = count;
  r.msglen = msglen;
  std::memcpy(out.data(), &r, sizeof r);
  return sizeof r;
}

// The request-level checks of an ALLOC or FREE batch (`op`, of `elements`):
// 1..max_batch elements of 8 bytes each in the body, and room in the reply
// for entry_bytes per element.
Status CheckBatch(const char* op, const char* elements, const RpcHeader& h, size_t body_bytes, uint16_t max_batch,
                  size_t reply_bytes, size_t entry_bytes) {
  if (h.count == 0 || h.count > max_batch)
    return Status::InvalidArgument(std::string(op) + " batch of " + std::to_string(h.count) + " (allowed 1.." +
                                   std::to_string(max_batch) + ")");
  if (body_bytes != size_t{h.count} * 8)
    return Status::InvalidArgument(std::string(op) + " of " + std::to_string(h.count) + " " + elements + " carries " +
                                   std::to_string(body_bytes) + " B (truncated or trailing bytes)");
  if (reply_bytes < sizeof(ReplyHeader) + size_t{h.count} * entry_bytes)
    return Status::InvalidArgument(std::string(op) + " batch too large for a reply message");
  return Status::Ok();
}

}  // namespace

size_t WriteErrorReply(const Status& s, std::span<uint8_t> out) {
  if (out.size() < sizeof(ReplyHeader)) return 0;  // no room even for the header
  ReplyHeader r;
  r.status = static_cast<uint8_t>(s.code());
  const size_t n = std::min(s.message().size(), out.size() - sizeof r);
  r.msglen = static_cast<uint32_t>(n);
  std::memcpy(out.data(), &r, sizeof r);
  std::memcpy(out.data() + sizeof r, s.message().data(), n);
  return sizeof r + n;
}

MemnodeService::MemnodeService(alloc::SharryAllocator* allocator, const ServiceOptions& o)
    : allocator_(allocator),
      max_object_(o.max_object_bytes ? std::min(o.max_object_bytes, allocator->section_bytes())
                                     : allocator->section_bytes()),
      max_batch_(std::min<uint16_t>(o.max_batch, kMaxBatch)),
      ledger_(std::make_unique<QuotaLedger>(o.client_quota_bytes, o.tenants.get())),
      region_size_(o.region_size) {
  if (o.offload.threads > 0 && o.region != nullptr && o.region_access != nullptr)
    offload_ = std::make_unique<OffloadWorkers>(o.offload, o.region, o.region_size, o.region_access);
}

MemnodeService::~MemnodeService() {
  offload_.reset();  // first: the workers read the region through the page map
}

void MemnodeService::OnConnect(ClientId client, const Peer& peer) {
  ledger_->Open(client, peer);
  LOG(INFO) << "memnode: client " << client << " connected"
            << (peer.session != client ? " to session " + std::to_string(peer.session) : std::string())
            << (peer.admin ? std::string(", admin") : peer.tenant.empty() ? std::string(", anonymous")
                                                                          : ", tenant " + peer.tenant)
            << " (" << ledger_->num_accounts() << " now)";
}

void MemnodeService::OnDisconnect(ClientId client) {
  // Its offload jobs first: queued ones are forgotten, a running one stops
  // at its next unit (before its session's blocks are reclaimed below, for
  // a root; the pins would make it safe anyway).
  if (offload_) offload_->DropClient(client);
  alloc::ReclaimResult r = allocator_->FreeAllOf(client);
  reclaimed_blocks_ += r.blocks;
  // The transport sends no request of this client after OnDisconnect, so
  // what its account still holds is exactly what FreeAllOf reclaimed.
  if (std::shared_ptr<QuotaAccount> a = ledger_->Close(client)) {
    const uint64_t held = a->held.load();
    LOG_IF(WARNING, held != r.bytes) << "memnode: client " << client << " was charged " << held
                                     << " B but held " << r.bytes << " B at disconnect";
    ledger_->Release(*a, held);
  }
  LOG(INFO) << "memnode: client " << client << " gone; reclaimed " << r.blocks << " blocks (" << r.bytes
            << " B); " << ledger_->num_accounts() << " clients left";
}

std::shared_ptr<QuotaAccount> MemnodeService::AccountOf(ClientId c) {
  if (std::shared_ptr<QuotaAccount> a = ledger_->Find(c)) return a;
  return ledger_->Open(c, Peer{c, ""});
}

uint64_t MemnodeService::QuotaHeldBy(ClientId client) const {
  std::shared_ptr<QuotaAccount> a = ledger_->Find(client);
  return a ? a->held.load() : 0;
}

uint64_t MemnodeService::TenantQuotaHeld(std::string_view tenant) const {
  for (const QuotaLedger::GroupView& v : ledger_->Groups())
    if (v.group->name == tenant) return v.group->held.load();
  return 0;
}

size_t MemnodeService::Handle(ClientId client, std::span<const uint8_t> req, std::span<uint8_t> out) {
  // The transports promise at least 64 bytes, but a reply is checked against
  // `out` anyway (the verbs backend sizes it by what the client's hello
  // said). Without room for a header the only answer is an empty one, which
  // the client's DecodeReplyHeader rejects.
  if (out.size() < sizeof(ReplyHeader)) return 0;
  RpcHeader h;
  if (req.size() < sizeof h)
    return WriteErrorReply(Status::InvalidArgument("request of " + std::to_string(req.size()) +
                                                   " B is shorter than the 8-byte RPC header"), out);
  std::memcpy(&h, req.data(), sizeof h);
  if (h.version != kRpcVersion)
    return WriteErrorReply(Status::Protocol("RPC version " + std::to_string(h.version) + " (this memnode speaks " +
                                            std::to_string(kRpcVersion) + ")"), out);
  if (h.reserved != 0) return WriteErrorReply(Status::InvalidArgument("reserved header bits are set"), out);
  auto body = req.subspan(sizeof h);
  switch (h.opcode) {
    case Opcode::kAlloc: return HandleAlloc(client, h, body, out);
    case Opcode::kFree: return HandleFree(client, h, body, out);
    case Opcode::kStats:
      if (h.count != 0 || !body.empty()) return WriteErrorReply(Status::InvalidArgument("STATS takes no arguments"), out);
      return HandleStats(client, out);
    case Opcode::kRenew:
      if (h.count != 0 || !body.empty()) return WriteErrorReply(Status::InvalidArgument("RENEW takes no arguments"), out);
      return WriteOk(0, out);  // arriving was the point: the transport renewed the lease
    case Opcode::kOffload: return HandleOffload(client, h, body, out);
    case Opcode::kOffloadWait: return HandleOffloadWait(client, h, body, out);
  }
  return WriteErrorReply(Status::InvalidArgument("unknown opcode " + std::to_string(static_cast<int>(h.opcode))), out);
}

size_t MemnodeService::HandleAlloc(ClientId c, const RpcHeader& h, std::span<const uint8_t> body, std::span<uint8_t> out) {
  if (Status s = CheckBatch("ALLOC", "sizes", h, body.size(), max_batch_, out.size(), sizeof(AllocEntry)); !s.ok())
    return WriteErrorReply(s, out);
  alloc_requests_++;
  const std::shared_ptr<QuotaAccount> account = AccountOf(c);
  uint64_t sizes[kMaxBatch];
  std::memcpy(sizes, body.data(), body.size());
  // Sizes the allocator must not see, and elements past a quota, are
  // answered here; the rest go in one batch, their bytes reserved first.
  uint64_t pass[kMaxBatch];
  uint16_t where[kMaxBatch];
  uint16_t n = 0;
  AllocEntry entries[kMaxBatch];
  std::string note;  // the first quota refusal's message
  for (uint16_t i = 0; i < h.count; ++i) {
    if (sizes[i] == 0 || sizes[i] > max_object_) {
      entries[i].code = ElementCode::kInvalidSize;
    } else if (Status q = ledger_->Reserve(*account, alloc::SizeMap::RoundedSize(sizes[i])); !q.ok()) {
      entries[i].code = ElementCode::kQuotaExceeded;
      if (note.empty()) note = q.message();
    } else {
      pass[n] = sizes[i];
      where[n++] = i;
    }
  }
  if (n > 0) {
    alloc::AllocResult res[kMaxBatch];
    allocator_->AllocBatch(c, {pass, n}, {res, n});
    uint64_t refused = 0;
    RegionKeys* keys = keys_.load(std::memory_order_acquire);
    uint64_t unkeyed[kMaxBatch];
    uint16_t nunkeyed = 0;
    for (uint16_t k = 0; k < n; ++k) {
      AllocEntry& e = entries[where[k]];
      e.code = ToElement(res[k].status);
      e.offset = res[k].ok() ? res[k].offset : 0;
      if (res[k].ok() && keys != nullptr && (e.rkey = keys->RemoteKey(e.offset)) == 0) {
        // Its span could not be registered with the RDMA device (the log
        // says why): a block the client cannot reach is given back.
        unkeyed[nunkeyed++] = e.offset;
        e.code = ElementCode::kOutOfMemory;
        e.offset = 0;
      }
      if (e.code != ElementCode::kOk) refused += alloc::SizeMap::RoundedSize(pass[k]);
    }
    if (nunkeyed > 0) {
      alloc::AllocStatus fr[kMaxBatch];
      allocator_->FreeBatch(c, {unkeyed, nunkeyed}, {fr, nunkeyed});
    }
    if (refused > 0) ledger_->Release(*account, refused);
  }
  const size_t entry_bytes = size_t{h.count} * sizeof(AllocEntry);
  // The note is cut to fit the reply (it is for people, not for parsing).
  const size_t note_bytes = std::min(note.size(), out.size() - sizeof(ReplyHeader) - entry_bytes);
  size_t len = WriteOk(h.count, out, static_cast<uint32_t>(note_bytes));
  std::memcpy(out.data() + len, entries, entry_bytes);
  len += entry_bytes;
  std::memcpy(out.data() + len, note.data(), note_bytes);
  return len + note_bytes;
}

size_t MemnodeService::HandleFree(ClientId c, const RpcHeader& h, std::span<const uint8_t> body, std::span<uint8_t> out) {
  if (Status s = CheckBatch("FREE", "offsets", h, body.size(), max_batch_, out.size(), 1); !s.ok())
    return WriteErrorReply(s, out);
  free_requests_++;
  const std::shared_ptr<QuotaAccount> account = AccountOf(c);
  uint64_t offsets[kMaxBatch];
  std::memcpy(offsets, body.data(), body.size());
  // The same offset twice in one batch: the second is a double free.
  alloc::AllocStatus res[kMaxBatch];
  uint64_t freed = 0;
  allocator_->FreeBatch(c, {offsets, h.count}, {res, h.count}, &freed);
  if (freed > 0) ledger_->Release(*account, freed);
  size_t len = WriteOk(h.count, out);
  for (uint16_t i = 0; i < h.count; ++i) out[len + i] = static_cast<uint8_t>(ToElement(res[i]));
  return len + h.count;
}

// OFFLOAD: checked and decoded here, on the poller; run by a worker.
size_t MemnodeService::HandleOffload(ClientId c, const RpcHeader& h, std::span<const uint8_t> body,
                                     std::span<uint8_t> out) {
  auto refuse = [&](const Status& s) {
    offload_refused_.fetch_add(1, std::memory_order_relaxed);
    return WriteErrorReply(s, out);
  };
  if (!offload_)
    return refuse(Status::FailedPrecondition("offload is off at this memnode (--offload_threads=0)"));
  if (out.size() < sizeof(ReplyHeader) + sizeof(uint64_t))
    return refuse(Status::InvalidArgument("OFFLOAD reply does not fit a message"));
  const uint32_t session = AccountOf(c)->session;
  auto job = ParseOffloadRequest(h.count, body, session, offload_->limits(), offload_->access(), region_size_);
  if (!job.ok()) return refuse(job.status());
  auto id = offload_->Submit(c, session, std::move(*job));
  if (!id.ok()) return refuse(id.status());
  size_t len = WriteOk(0, out);
  const uint64_t v = *id;
  std::memcpy(out.data() + len, &v, sizeof v);
  return len + sizeof v;
}

// OFFLOAD_WAIT: never blocks; a done job is forgotten once reported.
size_t MemnodeService::HandleOffloadWait(ClientId c, const RpcHeader& h, std::span<const uint8_t> body,
                                         std::span<uint8_t> out) {
  if (Status s = CheckBatch("OFFLOAD_WAIT", "job ids", h, body.size(), kMaxOffloadWait, out.size(), sizeof(JobEntry));
      !s.ok())
    return WriteErrorReply(s, out);
  uint64_t ids[kMaxOffloadWait];
  std::memcpy(ids, body.data(), body.size());
  JobEntry entries[kMaxOffloadWait];
  std::string messages[kMaxOffloadWait];
  for (uint16_t i = 0; i < h.count; ++i) {
    if (offload_) {
      entries[i] = offload_->Collect(c, ids[i], &messages[i]);
    } else {
      entries[i].job = ids[i];
      entries[i].code = static_cast<uint8_t>(StatusCode::kNotFound);
      messages[i] = "offload is off at this memnode (--offload_threads=0)";
    }
  }
  // Messages in entry order, each cut to what is left of the reply.
  size_t len = sizeof(ReplyHeader) + size_t{h.count} * sizeof(JobEntry);
  size_t room = out.size() - len;
  uint32_t total = 0;
  for (uint16_t i = 0; i < h.count; ++i) {
    const size_t n = std::min(messages[i].size(), room);
    entries[i].msglen = static_cast<uint32_t>(n);
    std::memcpy(out.data() + len, messages[i].data(), n);
    len += n;
    room -= n;
    total += static_cast<uint32_t>(n);
  }
  WriteOk(h.count, out, total);
  std::memcpy(out.data() + sizeof(ReplyHeader), entries, size_t{h.count} * sizeof(JobEntry));
  return len;
}

OffloadStats MemnodeService::offload_stats() const {
  OffloadStats s = offload_ ? offload_->Stats() : OffloadStats{};
  s.refused_total = offload_refused_.load(std::memory_order_relaxed);
  return s;
}

Stats MemnodeService::CollectStats(size_t max_client_records) {
  return Collect(nullptr, max_client_records, SIZE_MAX);
}

Stats MemnodeService::Collect(const QuotaAccount* viewer, size_t max_client_records, size_t max_tenant_records) {
  const bool all = viewer == nullptr || viewer->admin;
  alloc::AllocatorStats a = allocator_->Stats();
  Stats s;
  s.head.uma_bytes = allocator_->uma_bytes();
  s.head.used_bytes = a.total.used_bytes;
  s.head.free_bytes = a.total.free_bytes;
  s.head.live_blocks = a.total.live_blocks;
  s.head.pending_blocks = a.total.pending_blocks;
  s.head.pending_bytes = a.total.pending_bytes;
  s.head.alloc_requests = alloc_requests_.load();
  s.head.free_requests = free_requests_.load();
  s.head.reclaimed_blocks = reclaimed_blocks_.load();
  for (const auto& sec : a.sections) {
    SectionRecord r;
    r.used_bytes = sec.stats.used_bytes;
    r.free_bytes = sec.stats.free_bytes;
    r.live_blocks = sec.stats.live_blocks;
    r.pending_blocks = sec.stats.pending_blocks;
    r.ring_depth = sec.ring_depth;
    r.requests_per_second = sec.requests_per_second;
    s.sections.push_back(r);
  }
  // Tenant totals: the owners' usage summed by their group (an owner the
  // ledger no longer knows, going away right now, counts as anonymous).
  const std::vector<QuotaLedger::GroupView> groups = ledger_->Groups();
  const std::unordered_map<ClientId, const QuotaGroup*> group_of = ledger_->GroupOfClients();
  std::unordered_map<const QuotaGroup*, TenantRecord> totals;
  for (const auto& o : a.owners) {
    auto it = group_of.find(o.owner);
    const QuotaGroup* g = it != group_of.end() ? it->second : groups[0].group;
    if (!all && g != viewer->group) continue;
    totals[g].bytes_held += o.bytes;
    totals[g].blocks_held += o.blocks;
    const bool visible = all || o.owner == viewer->id;
    if (visible && s.clients.size() < max_client_records) {
      ClientRecord r;
      r.client_id = o.owner;
      r.bytes_held = o.bytes;
      r.blocks_held = o.blocks;
      s.clients.push_back(r);
    }
  }
  for (const QuotaLedger::GroupView& v : groups) {
    if (s.tenants.size() >= max_tenant_records) break;
    if (!all && v.group != viewer->group) continue;
    TenantRecord r = totals[v.group];
    std::memcpy(r.name, v.group->name.data(), std::min(v.group->name.size(), sizeof r.name));
    r.quota_bytes = v.group->quota_bytes;
    r.quota_refusals = v.group->refusals.load();
    r.clients = v.sessions;
    s.tenants.push_back(r);
  }
  s.head.clients = static_cast<uint32_t>(ledger_->num_accounts());
  s.head.sections = static_cast<uint32_t>(s.sections.size());
  s.head.client_records = static_cast<uint32_t>(s.clients.size());
  s.head.tenant_records = static_cast<uint32_t>(s.tenants.size());
  return s;
}

size_t MemnodeService::HandleStats(ClientId c, std::span<uint8_t> out) {
  const std::shared_ptr<QuotaAccount> viewer = AccountOf(c);
  const size_t fixed = sizeof(ReplyHeader) + sizeof(StatsHead);
  const size_t sec_bytes = size_t{allocator_->num_sections()} * sizeof(SectionRecord);
  if (out.size() < fixed + sec_bytes) return WriteErrorReply(Status::Internal("STATS does not fit a message"), out);
  // Room for the tenants first (one for a non-admin), then the clients.
  size_t room = out.size() - fixed - sec_bytes;
  const size_t max_tenants = viewer->admin ? room / 2 / sizeof(TenantRecord) : std::min<size_t>(1, room / sizeof(TenantRecord));
  Stats s = Collect(viewer.get(), SIZE_MAX, max_tenants);
  room -= s.tenants.size() * sizeof(TenantRecord);
  s.clients.resize(std::min(s.clients.size(), room / sizeof(ClientRecord)));  // the largest first
  s.head.client_records = static_cast<uint32_t>(s.clients.size());
  size_t len = WriteOk(static_cast<uint16_t>(s.sections.size()), out);
  auto put = [&](const void* p, size_t n) {
    if (n != 0) std::memcpy(out.data() + len, p, n);
    len += n;
  };
  put(&s.head, sizeof s.head);
  put(s.sections.data(), s.sections.size() * sizeof(SectionRecord));
  put(s.clients.data(), s.clients.size() * sizeof(ClientRecord));
  put(s.tenants.data(), s.tenants.size() * sizeof(TenantRecord));
  return len;
}

}  // namespace sharry::memnode
