#include "memnode/client.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "verbs/remote_keys.h"
#include "verbs/wire.h"

namespace sharry::memnode {

StatusOr<std::unique_ptr<MemnodeClient>> MemnodeClient::Connect(TransportKind kind, const ClientOptions& o) {
  auto t = TransportClient::Connect(kind, o);
  if (!t.ok()) return t.status();
  return std::make_unique<MemnodeClient>(std::move(*t));
}

namespace {
// Splits `items` into requests of at most kMaxBatch elements.
std::vector<std::vector<uint8_t>> Chunk(std::span<const uint64_t> items, Opcode op) {
  std::vector<std::vector<uint8_t>> reqs;
  for (size_t i = 0; i < items.size(); i += kMaxBatch) {
    size_t n = std::min<size_t>(kMaxBatch, items.size() - i);
    std::vector<uint64_t> part(items.begin() + i, items.begin() + i + n);
    reqs.push_back(op == Opcode::kAlloc ? EncodeAlloc(part) : EncodeFree(part));
  }
  return reqs;
}

// ALLOC or FREE of `items`: sends them in requests of at most kMaxBatch
// elements, checks each reply's header and count, and calls
// entry(j, bytes, note) with the reply's entry (entry_bytes long) for
// items[j] and the reply's note (ALLOC: which quota refused; usually empty).
// The first failed call or malformed reply is returned; element errors are
// the caller's to collect.
template <typename Entry>
Status CallBatched(TransportClient& t, Opcode op, std::span<const uint64_t> items, size_t entry_bytes,
                   std::vector<std::vector<uint8_t>>* replies, Entry entry) {
  if (items.empty()) return Status::Ok();
  auto reqs = Chunk(items, op);
  std::vector<std::span<const uint8_t>> views(reqs.begin(), reqs.end());
  SHARRY_RETURN_IF_ERROR(t.CallMany(views, replies));
  size_t base = 0;
  for (size_t r = 0; r < reqs.size(); ++r) {
    const std::vector<uint8_t>& reply = (*replies)[r];
    auto h = DecodeReplyHeader(reply, entry_bytes);
    if (!h.ok()) return h.status();
    const size_t n = std::min<size_t>(kMaxBatch, items.size() - base);
    if (h->count != n)
      return Status::Protocol(std::string(op == Opcode::kAlloc ? "ALLOC" : "FREE") + " reply with " +
                              std::to_string(h->count) + " entries for " + std::to_string(n));
    const std::string_view note(reinterpret_cast<const char*>(reply.data()) + sizeof(ReplyHeader) + n * entry_bytes,
                                h->msglen);
    for (size_t i = 0; i < n; ++i) entry(base + i, reply.data() + sizeof(ReplyHeader) + i * entry_bytes, note);
    base += n;
  }
  return Status::Ok();
}
}  // namespace

Status MemnodeClient::Alloc(std::span<const uint64_t> sizes, std::vector<uint64_t>* offsets,
                            std::vector<Status>* element_status) {
  offsets->assign(sizes.size(), kNoOffset);
  if (element_status) element_status->assign(sizes.size(), Status::Ok());
  Status first;
  // Over verbs to a confining memnode: each block's key, for this session's
  // READ and WRITE (verbs/remote_keys.h).
  RemoteKeys* keys = t_->keys().get();
  SHARRY_RETURN_IF_ERROR(
      CallBatched(*t_, Opcode::kAlloc, sizes, sizeof(AllocEntry), &replies_,
                  [&](size_t j, const uint8_t* entry, std::string_view note) {
        AllocEntry e;
        std::memcpy(&e, entry, sizeof e);
        Status s;
        if (e.code == ElementCode::kOk) {
          // A block must lie inside the UMA: anything else is a broken or
          // hostile memnode, never an offset to hand to the application.
          s = CheckRange(e.offset, sizes[j], uma_bytes(), "ALLOC reply");
          if (s.ok()) {
            (*offsets)[j] = e.offset;
            if (keys != nullptr) keys->Learn(e.offset, sizes[j], e.rkey);
            return;
          }
          s = Status::Protocol("memnode answered ALLOC of " + std::to_string(sizes[j]) + " B with offset " +
                               std::to_string(e.offset) + " outside its UMA of " + std::to_string(uma_bytes()) + " B");
        } else {
          s = ElementStatus(e.code, "ALLOC of " + std::to_string(sizes[j]) + " B", note);
        }
        if (element_status) (*element_status)[j] = s;
        if (first.ok()) first = s;
      }));
  return first;
}

StatusOr<uint64_t> MemnodeClient::AllocOne(uint64_t size) {
  std::vector<uint64_t> off;
  uint64_t s = size;
  SHARRY_RETURN_IF_ERROR(Alloc({&s, 1}, &off));
  return off[0];
}

Status MemnodeClient::Free(std::span<const uint64_t> offsets, std::vector<Status>* element_status) {
  if (element_status) element_status->assign(offsets.size(), Status::Ok());
  Status first;
  SHARRY_RETURN_IF_ERROR(CallBatched(*t_, Opcode::kFree, offsets, 1, &replies_,
                                     [&](size_t j, const uint8_t* entry, std::string_view) {
    const auto code = static_cast<ElementCode>(*entry);
    if (code == ElementCode::kOk) return;
    Status s = ElementStatus(code, "FREE of offset " + std::to_string(offsets[j]));
    if (element_status) (*element_status)[j] = s;
    if (first.ok()) first = s;
  }));
  return first;
}

Status MemnodeClient::Renew() {
  std::vector<uint8_t> reply;
  SHARRY_RETURN_IF_ERROR(t_->Call(EncodeRenew(), &reply));
  return DecodeReplyHeader(reply, 0).status();
}

StatusOr<Stats> MemnodeClient::GetStats() {
  std::vector<uint8_t> reply;
  SHARRY_RETURN_IF_ERROR(t_->Call(EncodeStats(), &reply));
  return DecodeStats(reply);
}

size_t MaxRequestBytes(const TransportClient& t) {
  const size_t m = t.info().max_message;
  return m > sizeof(wire::MsgHeader) ? m - sizeof(wire::MsgHeader) : 0;
}

StatusOr<uint64_t> SubmitOffload(TransportClient& t, std::span<const uint8_t> request) {
  std::vector<uint8_t> reply;
  SHARRY_RETURN_IF_ERROR(t.Call(request, &reply));
  return DecodeOffloadReply(reply);
}

Status SubmitOffloads(TransportClient& t, std::span<const std::span<const uint8_t>> requests,
                      std::vector<StatusOr<uint64_t>>* jobs) {
  jobs->clear();
  if (requests.empty()) return Status::Ok();
  std::vector<std::vector<uint8_t>> replies;
  SHARRY_RETURN_IF_ERROR(t.CallMany(requests, &replies));
  for (const auto& r : replies) jobs->push_back(DecodeOffloadReply(r));
  return Status::Ok();
}

StatusOr<std::vector<OffloadJobState>> PollOffload(TransportClient& t, std::span<const uint64_t> jobs) {
  std::vector<OffloadJobState> out;
  if (jobs.empty()) return out;
  std::vector<std::vector<uint8_t>> reqs;
  for (size_t i = 0; i < jobs.size(); i += kMaxOffloadWait)
    reqs.push_back(EncodeOffloadWait(jobs.subspan(i, std::min<size_t>(kMaxOffloadWait, jobs.size() - i))));
  std::vector<std::span<const uint8_t>> views(reqs.begin(), reqs.end());
  std::vector<std::vector<uint8_t>> replies;
  SHARRY_RETURN_IF_ERROR(t.CallMany(views, &replies));
  out.reserve(jobs.size());
  for (size_t r = 0; r < replies.size(); ++r) {
    const size_t first = r * kMaxOffloadWait;
    auto part = DecodeOffloadWait(replies[r], jobs.subspan(first, std::min<size_t>(kMaxOffloadWait, jobs.size() - first)));
    if (!part.ok()) return part.status();
    out.insert(out.end(), part->begin(), part->end());
  }
  return out;
}

StatusOr<std::vector<MemnodeAddress>> ParseMemnodeList(std::string_view list, uint16_t default_port,
                                                       size_t max_entries) {
  std::vector<MemnodeAddress> out;
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t comma = list.find(',', pos);
    if (comma == std::string_view::npos) comma = list.size();
    std::string_view e = list.substr(pos, comma - pos);
    pos = comma + 1;
    const std::string what = "memnode '" + std::string(e) + "' in '" + std::string(list) + "'";
    if (e.empty()) return Status::InvalidArgument("empty " + what + " (use host:port[,host:port...])");
    MemnodeAddress a;
    a.port = default_port;
    const size_t colon = e.rfind(':');
    a.host = std::string(e.substr(0, colon));
    if (colon != std::string_view::npos) {
      const std::string_view p = e.substr(colon + 1);
      uint32_t port = 0;
      bool ok = !p.empty() && p.size() <= 5;
      for (char c : p) {
        ok = ok && c >= '0' && c <= '9';
        port = port * 10 + static_cast<uint32_t>(c - '0');
      }
      if (!ok || port == 0 || port > 65535) return Status::InvalidArgument("bad port in " + what + " (1..65535)");
      a.port = static_cast<uint16_t>(port);
    }
    if (a.host.empty()) return Status::InvalidArgument("no host in " + what);
    for (const MemnodeAddress& o : out)
      if (o.host == a.host && o.port == a.port) return Status::InvalidArgument("duplicate " + what);
    out.push_back(std::move(a));
    if (out.size() > max_entries)
      return Status::InvalidArgument("more than " + std::to_string(max_entries) + " memnodes in '" +
                                     std::string(list) + "'");
  }
  return out;
}

}  // namespace sharry::memnode
