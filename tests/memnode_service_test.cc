// The memnode's request handler, called directly with hand-made requests:
// every malformed request and bad element gets its error and changes nothing.
#include "memnode/service.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <vector>

#include "alloc/sharry_allocator.h"
#include "memnode/rpc.h"

namespace sharry::memnode {
namespace {

constexpr uint64_t kUma = 8u << 20;

class ServiceTest : public ::testing::Test {
 protected:
  ServiceTest() {
    alloc::SharryAllocatorOptions o;
    o.uma_bytes = kUma;
    o.num_sections = 2;
    o.free_batch_threshold = 1000;  // frees stay pending until Flush
    allocator_ = std::make_unique<alloc::SharryAllocator>(o);
    service_ = std::make_unique<MemnodeService>(allocator_.get(), ServiceOptions{});
    service_->OnConnect(1, Peer{1, ""});
    service_->OnConnect(2, Peer{2, ""});
  }
  std::vector<uint8_t> Call(ClientId c, const std::vector<uint8_t>& req) {
    std::vector<uint8_t> out(8192 - 16);
    size_t n = service_->Handle(c, req, out);
    out.resize(n);
    return out;
  }
  // A request-level error: its code.
  StatusCode ErrorOf(ClientId c, const std::vector<uint8_t>& req) {
    auto reply = Call(c, req);
    auto h = DecodeReplyHeader(reply, 0);
    return h.ok() ? StatusCode::kOk : h.status().code();
  }
  std::vector<AllocEntry> Alloc(ClientId c, const std::vector<uint64_t>& sizes) {
    auto reply = Call(c, EncodeAlloc(sizes));
    auto h = DecodeReplyHeader(reply, sizeof(AllocEntry));
    EXPECT_TRUE(h.ok()) << h.status();
    std::vector<AllocEntry> e(sizes.size());
    if (h.ok()) std::memcpy(e.data(), reply.data() + sizeof(ReplyHeader), e.size() * sizeof(AllocEntry));
    return e;
  }
  std::vector<ElementCode> Free(ClientId c, const std::vector<uint64_t>& offsets) {
    auto reply = Call(c, EncodeFree(offsets));
    auto h = DecodeReplyHeader(reply, 1);
    EXPECT_TRUE(h.ok()) << h.status();
    std::vector<ElementCode> codes;
    for (size_t i = 0; i < offsets.size() && h.ok(); ++i)
      codes.push_back(static_cast<ElementCode>(reply[sizeof(ReplyHeader) + i]));
    return codes;
  }
  uint64_t Live() { return service_->CollectStats().head.live_blocks; }

  std::unique_ptr<alloc::SharryAllocator> allocator_;
  std::unique_ptr<MemnodeService> service_;
};

TEST_F(ServiceTest, AllocThenFreeReconciles) {
  auto e = Alloc(1, {64, 4096, 100000, 8});
  std::map<uint64_t, uint64_t> blocks;
  const uint64_t sizes[] = {64, 4096, 100000, 8};
  for (size_t i = 0; i < e.size(); ++i) {
    ASSERT_EQ(e[i].code, ElementCode::kOk) << i;
    ASSERT_LE(e[i].offset + sizes[i], kUma);
    blocks[e[i].offset] = sizes[i];
  }
  // No two blocks overlap.
  uint64_t end = 0;
  for (auto [off, len] : blocks) {
    EXPECT_GE(off, end);
    end = off + len;
  }
  Stats s = service_->CollectStats();
  EXPECT_EQ(s.head.live_blocks, 4u);
  EXPECT_GE(s.head.used_bytes, 64u + 4096 + 100000 + 8);
  EXPECT_EQ(s.head.used_bytes + s.head.free_bytes, s.head.uma_bytes - s.head.uma_bytes % 2);
  EXPECT_EQ(s.head.alloc_requests, 1u);
  ASSERT_EQ(s.clients.size(), 1u);
  EXPECT_EQ(s.clients[0].client_id, 1u);
  EXPECT_EQ(s.clients[0].blocks_held, 4u);
  EXPECT_EQ(s.clients[0].bytes_held, s.head.used_bytes);
  std::vector<uint64_t> offs;
  for (auto& x : e) offs.push_back(x.offset);
  for (ElementCode c : Free(1, offs)) EXPECT_EQ(c, ElementCode::kOk);
  s = service_->CollectStats();
  EXPECT_EQ(s.head.pending_blocks, 4u);  // delayed reclamation: visible as pending
  allocator_->Flush();
  s = service_->CollectStats();
  EXPECT_EQ(s.head.live_blocks, 0u);
  EXPECT_EQ(s.head.used_bytes, 0u);
  EXPECT_TRUE(s.clients.empty());
}

TEST_F(ServiceTest, MalformedRequestsGetErrorsAndChangeNothing) {
  auto keep = Alloc(1, {128});
  const uint64_t live = Live();
  RpcHeader h;
  auto raw = [](const RpcHeader& hh, size_t body_bytes) {
    std::vector<uint8_t> v(sizeof hh + body_bytes, 0);
    std::memcpy(v.data(), &hh, sizeof hh);
    for (size_t i = sizeof hh; i < v.size(); i += 8) v[i] = 64;  // size 64 in each slot
    return v;
  };
  EXPECT_EQ(ErrorOf(1, {1, 1, 0}), StatusCode::kInvalidArgument);  // shorter than a header
  EXPECT_EQ(ErrorOf(1, {}), StatusCode::kInvalidArgument);
  h = RpcHeader{};
  h.version = 9;
  h.count = 1;
  EXPECT_EQ(ErrorOf(1, raw(h, 8)), StatusCode::kProtocol);
  h = RpcHeader{};
  h.count = 1;
  h.reserved = 5;
  EXPECT_EQ(ErrorOf(1, raw(h, 8)), StatusCode::kInvalidArgument);
  h = RpcHeader{};
  h.opcode = static_cast<Opcode>(42);
  h.count = 1;
  EXPECT_EQ(ErrorOf(1, raw(h, 8)), StatusCode::kInvalidArgument);
  h = RpcHeader{};
  h.count = 0;  // empty ALLOC
  EXPECT_EQ(ErrorOf(1, raw(h, 0)), StatusCode::kInvalidArgument);
  h.count = kMaxBatch + 1;  // batch above the limit
  EXPECT_EQ(ErrorOf(1, raw(h, 8 * (kMaxBatch + 1))), StatusCode::kInvalidArgument);
  h.count = 2;  // truncated: one size for two
  EXPECT_EQ(ErrorOf(1, raw(h, 8)), StatusCode::kInvalidArgument);
  h.count = 1;  // trailing bytes
  EXPECT_EQ(ErrorOf(1, raw(h, 12)), StatusCode::kInvalidArgument);
  h.opcode = Opcode::kFree;
  h.count = 3;
  EXPECT_EQ(ErrorOf(1, raw(h, 16)), StatusCode::kInvalidArgument);
  h.opcode = Opcode::kStats;
  h.count = 1;
  EXPECT_EQ(ErrorOf(1, raw(h, 8)), StatusCode::kInvalidArgument);
  // The error message says what was wrong.
  auto reply = Call(1, raw(h, 8));
  auto st = DecodeReplyHeader(reply, 0);
  EXPECT_NE(st.status().message().find("STATS takes no arguments"), std::string::npos) << st.status();
  EXPECT_EQ(Live(), live);
  EXPECT_EQ(service_->CollectStats().head.alloc_requests, 1u);  // only the good one counted
}

TEST_F(ServiceTest, RenewIsAnEmptyOkAndTakesNoArguments) {
  auto reply = Call(1, EncodeRenew());
  auto h = DecodeReplyHeader(reply, 0);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->count, 0u);
  EXPECT_EQ(reply.size(), sizeof(ReplyHeader));
  RpcHeader bad;
  bad.opcode = Opcode::kRenew;
  bad.count = 1;
  std::vector<uint8_t> req(sizeof bad + 8);
  std::memcpy(req.data(), &bad, sizeof bad);
  auto st = DecodeReplyHeader(Call(1, req), 0);
  EXPECT_EQ(st.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.status().message().find("RENEW takes no arguments"), std::string::npos) << st.status();
}

TEST_F(ServiceTest, BadSizesFailAloneInTheirBatch) {
  const uint64_t too_big = allocator_->section_bytes() + 1;
  auto e = Alloc(1, {0, 256, too_big, 512});
  EXPECT_EQ(e[0].code, ElementCode::kInvalidSize);
  EXPECT_EQ(e[1].code, ElementCode::kOk);
  EXPECT_EQ(e[2].code, ElementCode::kInvalidSize);
  EXPECT_EQ(e[3].code, ElementCode::kOk);
  EXPECT_EQ(Live(), 2u);
}

TEST_F(ServiceTest, FarMemoryExhaustedIsAnErrorThenRecovers) {
  std::vector<uint64_t> got;
  ElementCode last = ElementCode::kOk;
  for (int i = 0; i < 100 && last == ElementCode::kOk; ++i) {
    auto e = Alloc(1, {1u << 20});  // 1 MiB each into 8 MiB
    last = e[0].code;
    if (last == ElementCode::kOk) got.push_back(e[0].offset);
  }
  EXPECT_EQ(last, ElementCode::kOutOfMemory);
  EXPECT_GE(got.size(), 6u);
  EXPECT_EQ(Live(), got.size());
  for (ElementCode c : Free(1, got)) EXPECT_EQ(c, ElementCode::kOk);
  allocator_->Flush();
  EXPECT_EQ(Alloc(1, {1u << 20})[0].code, ElementCode::kOk);
}

TEST_F(ServiceTest, BadFreesFreeNothing) {
  auto e = Alloc(1, {4096, 4096});
  auto other = Alloc(2, {4096});
  const uint64_t a = e[0].offset, b = e[1].offset, theirs = other[0].offset;
  auto codes = Free(1, {kUma + 4096, a + 8, theirs, ~uint64_t{0}});
  EXPECT_EQ(codes[0], ElementCode::kOutOfRange);
  EXPECT_EQ(codes[1], ElementCode::kNotAllocated);  // not a block start
  EXPECT_EQ(codes[2], ElementCode::kNotOwner);
  EXPECT_EQ(codes[3], ElementCode::kOutOfRange);
  EXPECT_EQ(Live(), 3u);
  codes = Free(1, {a, a});  // the second is a double free in the same batch
  EXPECT_EQ(codes[0], ElementCode::kOk);
  EXPECT_EQ(codes[1], ElementCode::kNotAllocated);
  EXPECT_EQ(Free(1, {a})[0], ElementCode::kNotAllocated);  // and again later
  allocator_->Flush();
  EXPECT_EQ(Free(1, {a})[0], ElementCode::kNotAllocated);  // after it was applied
  // The other client's block is intact and still its own to free.
  EXPECT_EQ(Free(2, {theirs})[0], ElementCode::kOk);
  EXPECT_EQ(Free(1, {b})[0], ElementCode::kOk);
}

TEST_F(ServiceTest, DisconnectReclaimsEverythingTheClientHeld) {
  std::vector<uint64_t> sizes(50, 1000);
  for (auto& x : Alloc(2, sizes)) ASSERT_EQ(x.code, ElementCode::kOk);
  Alloc(1, {64});
  Stats s = service_->CollectStats();
  ASSERT_EQ(s.clients.size(), 2u);
  EXPECT_EQ(s.clients[0].client_id, 2u);  // holds the most
  EXPECT_EQ(s.clients[0].blocks_held, 50u);
  service_->OnDisconnect(2);
  allocator_->Flush();
  s = service_->CollectStats();
  EXPECT_EQ(s.head.reclaimed_blocks, 50u);
  EXPECT_EQ(s.head.live_blocks, 1u);
  ASSERT_EQ(s.clients.size(), 1u);
  EXPECT_EQ(s.clients[0].client_id, 1u);
  EXPECT_EQ(s.head.clients, 1u);
}

TEST_F(ServiceTest, LargestBatchFitsOneMessage) {
  std::vector<uint64_t> sizes(kMaxBatch, 32);
  auto e = Alloc(1, sizes);
  for (auto& x : e) EXPECT_EQ(x.code, ElementCode::kOk);
  std::vector<uint64_t> offs;
  for (auto& x : e) offs.push_back(x.offset);
  for (auto c : Free(1, offs)) EXPECT_EQ(c, ElementCode::kOk);
}

// Found by fuzz/rpc_service_fuzz (fuzz/corpus/rpc_service_fuzz/small_buffer):
// a FREE batch whose reply does not fit the response buffer wrote past it.
// Every reply must fit whatever buffer the transport hands in, down to none.
TEST_F(ServiceTest, RepliesFitSmallResponseBuffers) {
  auto e = Alloc(1, {64});
  ASSERT_EQ(e[0].code, ElementCode::kOk);
  const std::vector<uint8_t> big_free = EncodeFree(std::vector<uint64_t>(kMaxBatch, e[0].offset));
  const std::vector<uint8_t> requests[] = {big_free, EncodeAlloc(std::vector<uint64_t>(kMaxBatch, 8)),
                                           EncodeStats(), {1, 2, 3}};
  // 143: one byte short of a STATS reply; 263: of a 256-element FREE reply.
  for (size_t cap : {size_t{0}, size_t{1}, size_t{7}, size_t{8}, size_t{64}, size_t{143}, size_t{263}}) {
    for (const auto& req : requests) {
      if (cap == 263 && req != big_free) continue;
      // Exactly `cap` bytes on the heap: ASan sees an overrun; the guard bytes
      // past it catch one in a plain build.
      std::vector<uint8_t> buf(cap + 64, 0xee);
      const size_t n = service_->Handle(1, req, std::span<uint8_t>(buf.data(), cap));
      ASSERT_LE(n, cap) << "cap " << cap;
      for (size_t i = cap; i < buf.size(); ++i) ASSERT_EQ(buf[i], 0xee) << "cap " << cap << " byte " << i;
      auto h = DecodeReplyHeader(std::span<const uint8_t>(buf.data(), n), 0);
      EXPECT_FALSE(h.ok()) << "cap " << cap;  // none of these fits: each is refused
    }
  }
  EXPECT_EQ(Free(1, {e[0].offset})[0], ElementCode::kOk);  // the refused FREEs freed nothing
}

TEST_F(ServiceTest, StatsReplyDecodes) {
  // With nothing allocated (no client records), too.
  auto empty = DecodeStats(Call(1, EncodeStats()));
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(empty->clients.empty());
  EXPECT_EQ(empty->head.live_blocks, 0u);
  Alloc(1, {100, 200});
  auto reply = Call(1, EncodeStats());
  auto s = DecodeStats(reply);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->head.sections, 2u);
  EXPECT_EQ(s->sections.size(), 2u);
  EXPECT_EQ(s->head.live_blocks, 2u);
  EXPECT_EQ(s->head.uma_bytes, kUma);
  EXPECT_NE(FormatStats(*s).find("client 1"), std::string::npos);
  // A corrupted reply is refused, not misread.
  reply.pop_back();
  EXPECT_EQ(DecodeStats(reply).status().code(), StatusCode::kProtocol);
}

}  // namespace
}  // namespace sharry::memnode
