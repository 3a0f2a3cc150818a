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
