#include "memnode/rpc.h"

#include <cstring>
#include <sstream>

namespace sharry::memnode {

std::string_view ElementCodeName(ElementCode c) {
  switch (c) {
    case ElementCode::kOk: return "OK";
    case ElementCode::kOutOfMemory: return "OUT_OF_MEMORY";
    case ElementCode::kInvalidSize: return "INVALID_SIZE";
    case ElementCode::kOutOfRange: return "OUT_OF_RANGE";
    case ElementCode::kNotAllocated: return "NOT_ALLOCATED";
    case ElementCode::kNotOwner: return "NOT_OWNER";
    case ElementCode::kInternal: return "INTERNAL";
    case ElementCode::kQuotaExceeded: return "QUOTA_EXCEEDED";
  }
  return "UNKNOWN";
}

Status ElementStatus(ElementCode c, std::string_view what, std::string_view note) {
  std::string w(what);
  switch (c) {
    case ElementCode::kOk: return Status::Ok();
    case ElementCode::kOutOfMemory: return Status::OutOfMemory(w + ": far memory is exhausted");
    case ElementCode::kInvalidSize: return Status::InvalidArgument(w + ": size is 0 or above the largest object");
    case ElementCode::kOutOfRange: return Status::OutOfRange(w + ": offset is outside the UMA");
    case ElementCode::kNotAllocated:
      return Status::NotFound(w + ": not the start of a live block (never allocated, or already freed)");
    case ElementCode::kNotOwner: return Status::PermissionDenied(w + ": the block belongs to another client");
    case ElementCode::kQuotaExceeded:
      return Status::QuotaExceeded(w + ": " + std::string(kQuotaExceededText) +
                                 (note.empty() ? std::string() : " (" + std::string(note) + ")"));
    case ElementCode::kInternal: break;
  }
  return Status::Internal(w + ": memnode internal error");
}

bool IsQuotaExceeded(const Status& s) {
  return s.code() == StatusCode::kQuotaExceeded;
}

namespace {
std::vector<uint8_t> Encode(Opcode op, const std::vector<uint64_t>& items) {
  std::vector<uint8_t> out(sizeof(RpcHeader) + items.size() * 8);
  RpcHeader h;
  h.opcode = op;
  h.count = static_cast<uint16_t>(items.size());
  std::memcpy(out.data(), &h, sizeof h);
  if (!items.empty()) std::memcpy(out.data() + sizeof h, items.data(), items.size() * 8);
  return out;
}
}  // namespace

std::vector<uint8_t> EncodeAlloc(const std::vector<uint64_t>& sizes) { return Encode(Opcode::kAlloc, sizes); }
std::vector<uint8_t> EncodeFree(const std::vector<uint64_t>& offsets) { return Encode(Opcode::kFree, offsets); }
std::vector<uint8_t> EncodeStats() { return Encode(Opcode::kStats, {}); }
std::vector<uint8_t> EncodeRenew() { return Encode(Opcode::kRenew, {}); }

namespace {
template <typename T>
void Put(std::vector<uint8_t>& b, const T& v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  b.insert(b.end(), p, p + sizeof v);
}
}  // namespace

void OffloadRequestBuilder::Begin(std::span<const uint8_t> spec, uint64_t result_offset, uint32_t result_bytes) {
  buf_.clear();
  units_ = 0;
  RpcHeader h;
  h.opcode = Opcode::kOffload;
  Put(buf_, h);
  OffloadHead head;
  head.result_offset = result_offset;
  head.result_bytes = result_bytes;
  head.spec_bytes = static_cast<uint32_t>(spec.size());
  Put(buf_, head);
  buf_.insert(buf_.end(), spec.begin(), spec.end());
}

size_t OffloadRequestBuilder::UnitBytes(const OffloadUnitRef& u) {
  size_t n = kOffloadUnitHeadBytes;
  for (const auto& col : u.columns) n += 2 + col.size() * kOffloadPieceBytes;
  return n;
}

bool OffloadRequestBuilder::TryAdd(const OffloadUnitRef& u) {
  if (units_ >= kMaxOffloadUnits || buf_.size() + UnitBytes(u) > max_bytes_) return false;
  for (const auto& col : u.columns)
    if (col.size() > UINT16_MAX) return false;
  Put(buf_, u.first_row);
  Put(buf_, u.rows);
  for (const auto& col : u.columns) {
    Put(buf_, static_cast<uint16_t>(col.size()));
    for (const PieceRef& p : col) {
      Put(buf_, p.offset);
      Put(buf_, p.length);
    }
  }
  ++units_;
  RpcHeader h;
  std::memcpy(&h, buf_.data(), sizeof h);
  h.count = units_;
  std::memcpy(buf_.data(), &h, sizeof h);
  return true;
}

std::vector<uint8_t> EncodeOffloadWait(std::span<const uint64_t> jobs) {
  return Encode(Opcode::kOffloadWait, std::vector<uint64_t>(jobs.begin(), jobs.end()));
}

StatusOr<uint64_t> DecodeOffloadReply(std::span<const uint8_t> reply) {
  auto h = DecodeReplyHeader(reply, 0);
  if (!h.ok()) return h.status();
  uint64_t job = 0;
  if (h->count != 0 || h->msglen != 0 || reply.size() != sizeof(ReplyHeader) + sizeof job)
    return Status::Protocol("OFFLOAD reply of " + std::to_string(reply.size()) + " B (want " +
                            std::to_string(sizeof(ReplyHeader) + sizeof job) + ")");
  std::memcpy(&job, reply.data() + sizeof(ReplyHeader), sizeof job);
  if (job == 0) return Status::Protocol("OFFLOAD reply with job id 0");
  return job;
}

StatusOr<std::vector<OffloadJobState>> DecodeOffloadWait(std::span<const uint8_t> reply,
                                                         std::span<const uint64_t> jobs) {
  auto h = DecodeReplyHeader(reply, sizeof(JobEntry));
  if (!h.ok()) return h.status();
  if (h->count != jobs.size())
    return Status::Protocol("OFFLOAD_WAIT reply with " + std::to_string(h->count) + " entries for " +
                            std::to_string(jobs.size()) + " jobs");
  std::vector<OffloadJobState> out(jobs.size());
  size_t msg = sizeof(ReplyHeader) + jobs.size() * sizeof(JobEntry);
  for (size_t i = 0; i < jobs.size(); ++i) {
    JobEntry e;
    std::memcpy(&e, reply.data() + sizeof(ReplyHeader) + i * sizeof e, sizeof e);
    if (e.job != jobs[i])
      return Status::Protocol("OFFLOAD_WAIT reply entry " + std::to_string(i) + " is job " + std::to_string(e.job) +
                              ", asked " + std::to_string(jobs[i]));
    if (e.state != OffloadState::kDone && e.state != OffloadState::kQueued && e.state != OffloadState::kRunning)
      return Status::Protocol("OFFLOAD_WAIT reply: job " + std::to_string(e.job) + " in unknown state " +
                              std::to_string(static_cast<int>(e.state)));
    if (e.msglen > reply.size() - msg)
      return Status::Protocol("OFFLOAD_WAIT reply: messages longer than the reply");
    OffloadJobState& j = out[i];
    j.job = e.job;
    j.state = e.state;
    j.done = e.state == OffloadState::kDone;
    j.rows = e.rows;
    j.cpu_ns = e.cpu_ns;
    const std::string text(reinterpret_cast<const char*>(reply.data()) + msg, e.msglen);
    msg += e.msglen;
    if (e.code != 0) {
      auto code = static_cast<StatusCode>(e.code);
      if (e.code > static_cast<uint8_t>(kLastStatusCode)) code = StatusCode::kProtocol;
      j.status = Status(code, "memnode offload job " + std::to_string(e.job) + ": " + text);
    }
  }
  if (msg != reply.size())
    return Status::Protocol("OFFLOAD_WAIT reply: messages of " + std::to_string(h->msglen) +
                            " B do not add up to the entries'");
  return out;
}

StatusOr<ReplyHeader> DecodeReplyHeader(std::span<const uint8_t> reply, size_t entry_size) {
  ReplyHeader h;
  if (reply.size() < sizeof h) return Status::Protocol("memnode reply shorter than its header");
  std::memcpy(&h, reply.data(), sizeof h);
  if (h.version != kRpcVersion) return Status::Protocol("memnode reply of another RPC version");
  if (h.status != 0) {
    auto code = static_cast<StatusCode>(h.status);
    if (h.status > static_cast<uint8_t>(kLastStatusCode)) code = StatusCode::kProtocol;
    size_t n = std::min<size_t>(h.msglen, reply.size() - sizeof h);
    return Status(code, "memnode: " + std::string(reinterpret_cast<const char*>(reply.data()) + sizeof h, n));
  }
  // A status-0 reply may end in a note of msglen bytes (ALLOC: which quota).
  if (entry_size != 0 && reply.size() != sizeof h + size_t{h.count} * entry_size + h.msglen)
    return Status::Protocol("memnode reply of " + std::to_string(reply.size()) + " B for " +
                            std::to_string(h.count) + " entries and a note of " + std::to_string(h.msglen) + " B");
  return h;
}

StatusOr<Stats> DecodeStats(std::span<const uint8_t> reply) {
  auto h = DecodeReplyHeader(reply, 0);
  if (!h.ok()) return h.status();
  Stats s;
  size_t off = sizeof(ReplyHeader);
  if (reply.size() < off + sizeof(StatsHead)) return Status::Protocol("STATS reply too short");
  std::memcpy(&s.head, reply.data() + off, sizeof s.head);
  off += sizeof s.head;
  size_t need = off + size_t{s.head.sections} * sizeof(SectionRecord) +
                size_t{s.head.client_records} * sizeof(ClientRecord) + size_t{s.head.tenant_records} * sizeof(TenantRecord);
  if (reply.size() != need) return Status::Protocol("STATS reply of unexpected length");
  s.sections.resize(s.head.sections);
  if (!s.sections.empty()) std::memcpy(s.sections.data(), reply.data() + off, s.sections.size() * sizeof(SectionRecord));
  off += s.sections.size() * sizeof(SectionRecord);
  s.clients.resize(s.head.client_records);
  if (!s.clients.empty()) std::memcpy(s.clients.data(), reply.data() + off, s.clients.size() * sizeof(ClientRecord));
  off += s.clients.size() * sizeof(ClientRecord);
  s.tenants.resize(s.head.tenant_records);
  if (!s.tenants.empty()) std::memcpy(s.tenants.data(), reply.data() + off, s.tenants.size() * sizeof(TenantRecord));
  return s;
}

std::string FormatStats(const Stats& s) {
  std::ostringstream o;
  auto mib = [](uint64_t b) { return static_cast<double>(b) / (1 << 20); };
  o.setf(std::ios::fixed);
  o.precision(1);
  o << "UMA " << mib(s.head.uma_bytes) << " MiB: used " << mib(s.head.used_bytes) << " MiB, free "
    << mib(s.head.free_bytes) << " MiB, " << s.head.live_blocks << " live blocks, " << s.head.pending_blocks
    << " pending frees (" << mib(s.head.pending_bytes) << " MiB); " << s.head.clients << " clients; "
    << s.head.alloc_requests << " ALLOC / " << s.head.free_requests << " FREE RPCs; "
    << s.head.reclaimed_blocks << " blocks reclaimed from departed clients\n";
  for (size_t i = 0; i < s.sections.size(); ++i) {
    const auto& r = s.sections[i];
    o << "  section " << i << ": used " << mib(r.used_bytes) << " MiB, free " << mib(r.free_bytes) << " MiB, "
      << r.live_blocks << " live, " << r.pending_blocks << " pending, " << r.requests_per_second
      << " req/s, ring depth " << r.ring_depth << "\n";
  }
  for (const auto& c : s.clients)
    o << "  client " << c.client_id << ": " << mib(c.bytes_held) << " MiB in " << c.blocks_held << " blocks\n";
  for (const auto& t : s.tenants) {
    if (t.tenant().empty()) o << "  anonymous clients: ";
    else o << "  tenant " << t.tenant() << ": ";
    o << mib(t.bytes_held) << " MiB in " << t.blocks_held << " blocks, " << t.clients << " clients, quota ";
    if (t.quota_bytes == 0) o << "none";
    else o << mib(t.quota_bytes) << " MiB";
    o << ", " << t.quota_refusals << " quota refusals\n";
  }
  return o.str();
}

}  // namespace sharry::memnode
