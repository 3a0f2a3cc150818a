// libFuzzer target: each input is a short session of requests from up to four
// clients to a real MemnodeService over a real SharryAllocator (one section,
// 4 MiB of plain memory), called in-process as a transport poller would.
//
// Input layout (everything past the end is simply absent):
//   byte 0    bits 0-1  the client id (1..4) of every request
//             bit  2    several clients: each record starts with a byte that
//                       picks its client id (1 + b % 4)
//             bits 3-4  the response buffer's size: 8176 (the transport's
//                       default), 64 (the smallest the transport allows), 271, 4104
//             bit  5    FREE offsets with the top bit set name an offset this
//                       input already got from ALLOC (any client, freed or not):
//                       history[v % n] + 8 * ((v >> 16) & 7), so double frees,
//                       foreign frees and interior pointers are easy to reach
//   records   [client byte if bit 2] [u16 length, little-endian] [length bytes]
//             each record's bytes are one request.
//
// After every call: the reply fits its buffer, decodes with memnode's own
// decoders, and agrees with a model of who owns which block (ALLOC entries
// are aligned, inside the UMA and disjoint from live blocks; FREE codes are
// exactly what the model predicts; STATS reconciles with the model). At the
// end of the input every client disconnects and the allocator must hold
// nothing: no leak carries over to the next input.
#include <glog/logging.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "fuzz/service_env.h"
#include "memnode/rpc.h"

namespace {

using namespace sharry;
using namespace sharry::memnode;

constexpr uint64_t kUma = 4u << 20;
constexpr ClientId kClients = 4;
constexpr size_t kCaps[4] = {8192 - 16, 64, 271, sizeof(ReplyHeader) + kMaxBatch * sizeof(AllocEntry)};

// free_batch_threshold 8: pending frees get applied within an input.
struct Env : fuzz::ServiceEnv {
  Env() : ServiceEnv(kUma, 8), limit(allocator->section_bytes() * allocator->num_sections()) {}
  const uint64_t limit;  // offsets at or past this are outside every section
};

Env& env() {
  static Env* e = new Env;
  return *e;
}

struct Block {
  ClientId owner;
  uint64_t size;
};

// What the harness expects of a request: OK, or a request-level error.
bool WellFormed(const std::vector<uint8_t>& req, size_t cap) {
  if (req.size() < sizeof(RpcHeader)) return false;
  RpcHeader h;
  std::memcpy(&h, req.data(), sizeof h);
  const size_t body = req.size() - sizeof h;
  if (h.version != kRpcVersion || h.reserved != 0) return false;
  switch (h.opcode) {
    case Opcode::kAlloc:
      return h.count >= 1 && h.count <= kMaxBatch && body == size_t{h.count} * 8 &&
             cap >= sizeof(ReplyHeader) + size_t{h.count} * sizeof(AllocEntry);
    case Opcode::kFree:
      return h.count >= 1 && h.count <= kMaxBatch && body == size_t{h.count} * 8 &&
             cap >= sizeof(ReplyHeader) + h.count;
    case Opcode::kStats:
      return h.count == 0 && body == 0 && cap >= sizeof(ReplyHeader) + sizeof(StatsHead) + sizeof(SectionRecord);
    case Opcode::kRenew:
      return h.count == 0 && body == 0 && cap >= sizeof(ReplyHeader);
  }
  return false;
}

uint64_t Load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

class Session {
 public:
  Session(Env& e, size_t cap, bool resolve) : e_(e), cap_(cap), resolve_(resolve) {}

  void Call(ClientId c, std::vector<uint8_t> req) {
    if (resolve_ && !history_.empty() && req.size() >= sizeof(RpcHeader) && req[0] == uint8_t(Opcode::kFree)) {
      for (size_t off = sizeof(RpcHeader); off + 8 <= req.size(); off += 8) {
        uint64_t v = Load64(&req[off]);
        if (!(v >> 63)) continue;
        v = history_[(v & 0xffff) % history_.size()] + 8 * ((v >> 16) & 7);
        std::memcpy(&req[off], &v, 8);
      }
    }
    // The buffer is exactly `cap_` bytes on the heap: ASan sees any overrun.
    std::vector<uint8_t> out(cap_);
    const size_t n = e_.service->Handle(c, req, out);
    CHECK_LE(n, out.size()) << "response longer than its buffer";
    out.resize(n);
    const bool ok = WellFormed(req, cap_);
    auto head = DecodeReplyHeader(out, 0);
    if (!ok) {
      CHECK(!head.ok()) << "malformed request of " << req.size() << " B answered OK";
      ReplyHeader rh;
      CHECK_GE(out.size(), sizeof rh);
      std::memcpy(&rh, out.data(), sizeof rh);
      CHECK(rh.status >= 1 && rh.status <= uint8_t(kLastStatusCode)) << int(rh.status);
      CHECK_EQ(rh.count, 0);
      CHECK_EQ(out.size(), sizeof rh + rh.msglen) << "error reply length";
      return;
    }
    CHECK(head.ok()) << "well-formed request refused: " << head.status();
    RpcHeader h;
    std::memcpy(&h, req.data(), sizeof h);
    switch (h.opcode) {
      case Opcode::kAlloc: return CheckAlloc(c, h, req, out);
      case Opcode::kFree: return CheckFree(c, h, req, out);
      case Opcode::kStats: return CheckStats(c, out);
      case Opcode::kRenew: {
        auto rh = DecodeReplyHeader(out, 0);
        CHECK(rh.ok()) << rh.status();
        CHECK_EQ(rh->count, 0u) << "RENEW reply count";
        CHECK_EQ(out.size(), sizeof(ReplyHeader)) << "RENEW reply length";
        return;
      }
    }
  }

  size_t live() const { return live_.size(); }

 private:
  void CheckAlloc(ClientId c, const RpcHeader& h, const std::vector<uint8_t>& req, const std::vector<uint8_t>& out) {
    auto rh = DecodeReplyHeader(out, sizeof(AllocEntry));
    CHECK(rh.ok()) << rh.status();
    CHECK_EQ(rh->count, h.count) << "ALLOC reply count";
    for (uint16_t i = 0; i < h.count; ++i) {
      const uint64_t size = Load64(&req[sizeof(RpcHeader) + 8 * i]);
      AllocEntry a;
      std::memcpy(&a, &out[sizeof(ReplyHeader) + i * sizeof a], sizeof a);
      const bool bad_size = size == 0 || size > e_.service->max_object_bytes();
      if (bad_size) {
        CHECK(a.code == ElementCode::kInvalidSize) << "size " << size << " got " << ElementCodeName(a.code);
        continue;
      }
      CHECK(a.code == ElementCode::kOk || a.code == ElementCode::kOutOfMemory)
          << "ALLOC of " << size << ": " << ElementCodeName(a.code);
      if (a.code != ElementCode::kOk) continue;
      CHECK_EQ(a.offset % 8, 0u) << "unaligned block";
      CHECK_LE(a.offset, e_.limit);
      CHECK_LE(size, e_.limit - a.offset) << "block past the UMA";
      // Disjoint from every live block.
      auto it = live_.upper_bound(a.offset);
      if (it != live_.end()) CHECK_LE(a.offset + size, it->first) << "overlaps the next live block";
      if (it != live_.begin()) {
        --it;
        CHECK_LE(it->first + it->second.size, a.offset) << "overlaps block at " << it->first;
      }
      live_[a.offset] = {c, size};
      history_.push_back(a.offset);
    }
  }

  void CheckFree(ClientId c, const RpcHeader& h, const std::vector<uint8_t>& req, const std::vector<uint8_t>& out) {
    auto rh = DecodeReplyHeader(out, 1);
    CHECK(rh.ok()) << rh.status();
    CHECK_EQ(rh->count, h.count) << "FREE reply count";
    for (uint16_t i = 0; i < h.count; ++i) {
      const uint64_t off = Load64(&req[sizeof(RpcHeader) + 8 * i]);
      const auto got = static_cast<ElementCode>(out[sizeof(ReplyHeader) + i]);
      ElementCode want;
      auto it = live_.find(off);
      if (it != live_.end()) {
        want = it->second.owner == c ? ElementCode::kOk : ElementCode::kNotOwner;
        if (want == ElementCode::kOk) live_.erase(it);
      } else {
        want = off >= e_.limit ? ElementCode::kOutOfRange : ElementCode::kNotAllocated;
      }
      CHECK(got == want) << "FREE of " << off << " by client " << c << ": got " << ElementCodeName(got)
                         << ", model says " << ElementCodeName(want);
    }
  }

  void CheckStats(ClientId c, const std::vector<uint8_t>& out) {
    auto s = DecodeStats(out);
    CHECK(s.ok()) << s.status();
    CHECK_EQ(s->head.sections, 1u);
    CHECK_EQ(s->sections.size(), 1u);
    CHECK_EQ(s->head.uma_bytes, kUma);
    CHECK_EQ(s->head.used_bytes + s->head.free_bytes, e_.limit);
    CHECK_GE(s->head.live_blocks, s->head.pending_blocks);
    CHECK_EQ(s->head.live_blocks - s->head.pending_blocks, live_.size()) << "live blocks vs the model";
    CHECK_EQ(s->head.clients, kClients);
    CHECK_EQ(size_t{s->head.client_records}, s->clients.size());
    uint64_t blocks = 0;
    for (const auto& r : s->clients) {
      CHECK_EQ(r.client_id, c) << "an anonymous client sees only its own record";
      blocks += r.blocks_held;
    }
    CHECK_LE(blocks, s->head.live_blocks);
    if (!s->tenants.empty()) {  // the anonymous group's, when it fits the reply
      CHECK_EQ(s->tenants.size(), 1u);
      CHECK(s->tenants[0].tenant().empty());
      CHECK_EQ(s->tenants[0].clients, kClients);
      CHECK_GE(s->tenants[0].blocks_held, blocks);
    }
    (void)FormatStats(*s);
  }

  Env& e_;
  const size_t cap_;
  const bool resolve_;
  std::map<uint64_t, Block> live_;  // offset -> block, as the model sees it
  std::vector<uint64_t> history_;   // every offset ALLOC returned in this input
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  FLAGS_minloglevel = 2;  // connect/disconnect lines would drown the fuzzer's output
  FLAGS_logtostderr = true;
  env();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Env& e = env();
  const uint8_t mode = data[0];
  const ClientId fixed = 1 + (mode & 3);
  const bool multi = mode & 4;
  Session s(e, kCaps[(mode >> 3) & 3], mode & 0x20);
  for (ClientId c = 1; c <= kClients; ++c) e.service->OnConnect(c, Peer{c, ""});

  size_t pos = 1;
  while (pos < size) {
    ClientId c = fixed;
    if (multi) c = 1 + data[pos++] % kClients;
    if (pos + 2 > size) break;
    size_t len = data[pos] | size_t{data[pos + 1]} << 8;
    pos += 2;
    len = std::min(len, size - pos);
    s.Call(c, std::vector<uint8_t>(data + pos, data + pos + len));
    pos += len;
  }

  // Every client goes away: nothing may stay allocated.
  for (ClientId c = 1; c <= kClients; ++c) e.service->OnDisconnect(c);
  for (ClientId c = 1; c <= kClients; ++c) {
    alloc::OwnerUsage u = e.allocator->Usage(c);
    CHECK_EQ(u.blocks, 0u) << "client " << c << " still holds blocks after disconnecting";
    CHECK_EQ(u.bytes, 0u);
  }
  // FreeAllOf applies the pending frees too (alloc/sharry_allocator.h).
  alloc::AllocatorStats st = e.allocator->Stats();
  CHECK(st.owners.empty()) << st.owners.size() << " owners left";
  CHECK_EQ(st.total.live_blocks, 0u) << "blocks outlive every client";
  CHECK_EQ(st.total.pending_blocks, 0u);
  CHECK_EQ(st.total.used_bytes, 0u);
  return 0;
}
