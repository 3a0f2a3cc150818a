#include "memnode/client.h"

#include <cstring>

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
}  // namespace

Status MemnodeClient::Alloc(std::span<const uint64_t> sizes, std::vector<uint64_t>* offsets,
                            std::vector<Status>* element_status) {
  offsets->assign(sizes.size(), kNoOffset);
  if (element_status) element_status->assign(sizes.size(), Status::Ok());
  if (sizes.empty()) return Status::Ok();
  auto reqs = Chunk(sizes, Opcode::kAlloc);
  std::vector<std::span<const uint8_t>> views(reqs.begin(), reqs.end());
  SHARRY_RETURN_IF_ERROR(t_->CallMany(views, &replies_));
  Status first;
  size_t base = 0;
  for (size_t r = 0; r < reqs.size(); ++r) {
    auto h = DecodeReplyHeader(replies_[r], sizeof(AllocEntry));
    if (!h.ok()) return h.status();
    const size_t n = std::min<size_t>(kMaxBatch, sizes.size() - base);
    if (h->count != n) return Status::Protocol("ALLOC reply with " + std::to_string(h->count) + " entries for " + std::to_string(n));
    for (size_t i = 0; i < n; ++i) {
      AllocEntry e;
      std::memcpy(&e, replies_[r].data() + sizeof(ReplyHeader) + i * sizeof e, sizeof e);
      Status s;
      if (e.code == ElementCode::kOk) {
        // A block must lie inside the UMA: anything else is a broken or
        // hostile memnode, never an offset to hand to the application.
        s = CheckRange(e.offset, sizes[base + i], uma_bytes(), "ALLOC reply");
        if (s.ok()) {
          (*offsets)[base + i] = e.offset;
          continue;
        }
        s = Status::Protocol("memnode answered ALLOC of " + std::to_string(sizes[base + i]) + " B with offset " +
                             std::to_string(e.offset) + " outside its UMA of " + std::to_string(uma_bytes()) + " B");
      } else {
        s = ElementStatus(e.code, "ALLOC of " + std::to_string(sizes[base + i]) + " B");
      }
      if (element_status) (*element_status)[base + i] = s;
      if (first.ok()) first = s;
    }
    base += n;
  }
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
  if (offsets.empty()) return Status::Ok();
  auto reqs = Chunk(offsets, Opcode::kFree);
  std::vector<std::span<const uint8_t>> views(reqs.begin(), reqs.end());
  SHARRY_RETURN_IF_ERROR(t_->CallMany(views, &replies_));
  Status first;
  size_t base = 0;
  for (size_t r = 0; r < reqs.size(); ++r) {
    auto h = DecodeReplyHeader(replies_[r], 1);
    if (!h.ok()) return h.status();
    const size_t n = std::min<size_t>(kMaxBatch, offsets.size() - base);
    if (h->count != n) return Status::Protocol("FREE reply with wrong entry count");
    for (size_t i = 0; i < n; ++i) {
      auto code = static_cast<ElementCode>(replies_[r][sizeof(ReplyHeader) + i]);
      if (code == ElementCode::kOk) continue;
      Status s = ElementStatus(code, "FREE of offset " + std::to_string(offsets[base + i]));
      if (element_status) (*element_status)[base + i] = s;
      if (first.ok()) first = s;
    }
    base += n;
  }
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

}  // namespace sharry::memnode
