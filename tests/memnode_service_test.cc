// The memnode's request handler, called directly with hand-made requests:
// every malformed request and bad element gets its error and changes nothing.
#include "memnode/service.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "alloc/sharry_allocator.h"
#include "alloc/size_classes.h"
#include "memnode/rpc.h"
#include "memnode/tenants.h"

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
  // Replaces the service (the allocator stays) with one built from `o`.
  void Rebuild(const ServiceOptions& o) {
    service_ = std::make_unique<MemnodeService>(allocator_.get(), o);
  }
  // An ALLOC's reply note (why an element was refused), "" if none.
  std::string NoteOf(ClientId c, const std::vector<uint64_t>& sizes, std::vector<AllocEntry>* entries) {
    auto reply = Call(c, EncodeAlloc(sizes));
    auto h = DecodeReplyHeader(reply, sizeof(AllocEntry));
    EXPECT_TRUE(h.ok()) << h.status();
    if (!h.ok()) return "";
    entries->resize(sizes.size());
    std::memcpy(entries->data(), reply.data() + sizeof(ReplyHeader), sizes.size() * sizeof(AllocEntry));
    const size_t at = sizeof(ReplyHeader) + sizes.size() * sizeof(AllocEntry);
    return std::string(reinterpret_cast<const char*>(reply.data()) + at, h->msglen);
  }
  Stats StatsAs(ClientId c) {
    auto s = DecodeStats(Call(c, EncodeStats()));
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : Stats{};
  }

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


// ------------------------------------------------------------ quotas (issue #11)

std::shared_ptr<const TenantsConfig> Tenants(std::initializer_list<std::pair<const char*, uint64_t>> quotas) {
  auto cfg = std::make_shared<TenantsConfig>();
  for (auto [name, bytes] : quotas) {
    Tenant t;
    t.name = name;
    t.quota_bytes = bytes;
    t.max_clients = 16;
    cfg->tenants.push_back(std::move(t));
  }
  return cfg;
}

// The per-client cap: an ALLOC element past it is refused with its own code
// and the reply's note names the quota; the elements that fit are served;
// a FREE gives its bytes back; the unit is the rounded (charged) size.
TEST_F(ServiceTest, ClientQuotaRefusesPastTheCapAndFreeGivesBack) {
  ServiceOptions o;
  o.client_quota_bytes = 64 << 10;
  Rebuild(o);
  service_->OnConnect(1, Peer{1, ""});
  service_->OnConnect(2, Peer{2, ""});
  std::vector<AllocEntry> e;
  EXPECT_EQ(NoteOf(1, std::vector<uint64_t>(15, 4096), &e), "");
  for (auto& x : e) ASSERT_EQ(x.code, ElementCode::kOk);
  EXPECT_EQ(service_->QuotaHeldBy(1), 60u << 10);
  // 4 KiB fit, the two elements after it do not; the 8 B one after them does not
  // fit either (64 KiB held exactly).
  const std::string note = NoteOf(1, {4096, 4096, 8192, 8}, &e);
  EXPECT_EQ(e[0].code, ElementCode::kOk);
  EXPECT_EQ(e[1].code, ElementCode::kQuotaExceeded);
  EXPECT_EQ(e[2].code, ElementCode::kQuotaExceeded);
  EXPECT_EQ(e[3].code, ElementCode::kQuotaExceeded);
  EXPECT_EQ(note, "client quota 64.0 KiB: holds 64.0 KiB, asked 4.0 KiB");
  EXPECT_EQ(service_->QuotaHeldBy(1), 64u << 10);
  // The status a client library makes of it.
  Status st = ElementStatus(e[1].code, "ALLOC of 4096 B", note);
  EXPECT_EQ(st.code(), StatusCode::kQuotaExceeded);
  EXPECT_TRUE(IsFarMemoryRefused(st.code()));
  EXPECT_TRUE(IsQuotaExceeded(st)) << st;
  EXPECT_FALSE(IsQuotaExceeded(ElementStatus(ElementCode::kOutOfMemory, "ALLOC of 4096 B")));
  EXPECT_NE(st.message().find("client quota 64.0 KiB"), std::string::npos) << st;
  // Another client has its own cap.
  EXPECT_EQ(Alloc(2, {32 << 10})[0].code, ElementCode::kOk);
  // FREE gives back at once (the allocator's free is still pending).
  EXPECT_EQ(Free(1, {e[0].offset})[0], ElementCode::kOk);
  EXPECT_EQ(service_->QuotaHeldBy(1), 60u << 10);
  EXPECT_EQ(Alloc(1, {4096})[0].code, ElementCode::kOk);
  // Rounded bytes: 3000 B is charged as its size class.
  EXPECT_EQ(Alloc(2, {3000})[0].code, ElementCode::kOk);
  EXPECT_EQ(service_->QuotaHeldBy(2), (32u << 10) + alloc::SizeMap::RoundedSize(3000));
  allocator_->Flush();
  EXPECT_EQ(allocator_->Usage(1).bytes, service_->QuotaHeldBy(1));
  EXPECT_EQ(allocator_->Usage(2).bytes, service_->QuotaHeldBy(2));
  // A single element larger than the cap.
  EXPECT_EQ(Alloc(2, {128 << 10})[0].code, ElementCode::kQuotaExceeded);
  // Refusals are counted in the client's group (the anonymous one).
  Stats s = service_->CollectStats();
  ASSERT_EQ(s.tenants.size(), 1u);
  EXPECT_EQ(s.tenants[0].quota_refusals, 4u);
}

// A tenant's quota is shared by its clients; other tenants and anonymous
// clients are not bound by it; a client's disconnect gives its bytes back.
TEST_F(ServiceTest, TenantQuotaIsSharedByItsClients) {
  ServiceOptions o;
  o.tenants = Tenants({{"alice", 64 << 10}, {"bob", 1 << 20}});
  Rebuild(o);
  service_->OnConnect(1, Peer{1, "alice"});
  service_->OnConnect(2, Peer{2, "alice"});
  service_->OnConnect(3, Peer{3, "bob"});
  service_->OnConnect(4, Peer{4, ""});
  for (auto& x : Alloc(1, std::vector<uint64_t>(10, 4096))) ASSERT_EQ(x.code, ElementCode::kOk);
  std::vector<AllocEntry> e;
  const std::string note = NoteOf(2, std::vector<uint64_t>(8, 4096), &e);
  int ok = 0;
  for (auto& x : e) ok += x.code == ElementCode::kOk;
  EXPECT_EQ(ok, 6);  // 10 + 6 = 16 blocks of 4 KiB: alice's 64 KiB
  EXPECT_EQ(e[7].code, ElementCode::kQuotaExceeded);
  EXPECT_EQ(note, "tenant alice quota 64.0 KiB: holds 64.0 KiB, asked 4.0 KiB");
  EXPECT_EQ(service_->TenantQuotaHeld("alice"), 64u << 10);
  EXPECT_EQ(Alloc(3, {512 << 10})[0].code, ElementCode::kOk);  // bob
  EXPECT_EQ(Alloc(4, {512 << 10})[0].code, ElementCode::kOk);  // anonymous: no group quota
  // Client 1 goes away: its 40 KiB come back to alice.
  service_->OnDisconnect(1);
  EXPECT_EQ(service_->TenantQuotaHeld("alice"), 24u << 10);
  for (auto& x : Alloc(2, std::vector<uint64_t>(10, 4096))) EXPECT_EQ(x.code, ElementCode::kOk);
  EXPECT_EQ(Alloc(2, {8})[0].code, ElementCode::kQuotaExceeded);
  Stats s = service_->CollectStats();
  ASSERT_EQ(s.tenants.size(), 3u);  // anonymous, alice, bob
  EXPECT_EQ(s.tenants[1].tenant(), "alice");
  EXPECT_EQ(s.tenants[1].quota_bytes, 64u << 10);
  EXPECT_EQ(s.tenants[1].bytes_held, 64u << 10);
  EXPECT_EQ(s.tenants[1].blocks_held, 16u);
  EXPECT_EQ(s.tenants[1].clients, 1u);
  EXPECT_EQ(s.tenants[1].quota_refusals, 3u);  // 2 elements of client 2, then 1
  EXPECT_EQ(s.tenants[2].tenant(), "bob");
  EXPECT_EQ(s.tenants[2].bytes_held, 512u << 10);
}

// Several poller threads serving one client (and one tenant) at once never
// take it past its cap: the bytes are reserved before the allocator is asked.
TEST_F(ServiceTest, ConcurrentAllocsNeverPassTheCap) {
  ServiceOptions o;
  o.client_quota_bytes = 1 << 20;
  o.tenants = Tenants({{"alice", 1536 << 10}});
  Rebuild(o);
  service_->OnConnect(1, Peer{1, "alice"});
  service_->OnConnect(2, Peer{2, "alice"});
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> worst_client{0}, worst_tenant{0};
  std::thread watcher([&] {
    while (!stop.load()) {
      worst_client = std::max<uint64_t>(worst_client, service_->QuotaHeldBy(1));
      worst_tenant = std::max<uint64_t>(worst_tenant, service_->TenantQuotaHeld("alice"));
    }
  });
  auto worker = [&](ClientId c, int seed) {
    std::mt19937 rng(seed);
    std::vector<uint64_t> mine;
    for (int round = 0; round < 300; ++round) {
      std::vector<uint64_t> sizes(1 + rng() % 16);
      for (auto& x : sizes) x = 1024 + rng() % (24 << 10);
      for (auto& x : Alloc(c, sizes)) {
        EXPECT_TRUE(x.code == ElementCode::kOk || x.code == ElementCode::kQuotaExceeded)
            << ElementCodeName(x.code);
        if (x.code == ElementCode::kOk) mine.push_back(x.offset);
      }
      if (rng() % 3 == 0 && !mine.empty()) {
        std::vector<uint64_t> some(mine.begin(), mine.begin() + std::min<size_t>(mine.size(), 1 + rng() % 8));
        mine.erase(mine.begin(), mine.begin() + some.size());
        for (auto code : Free(c, some)) EXPECT_EQ(code, ElementCode::kOk);
      }
    }
  };
  // Two threads on client 1 (its cap), one on client 2 (the tenant's quota).
  std::thread a(worker, 1, 1), b(worker, 1, 2), d(worker, 2, 3);
  a.join();
  b.join();
  d.join();
  stop = true;
  watcher.join();
  EXPECT_LE(worst_client.load(), 1u << 20);
  EXPECT_LE(worst_tenant.load(), 1536u << 10);
  allocator_->Flush();
  EXPECT_EQ(allocator_->Usage(1).bytes, service_->QuotaHeldBy(1));
  EXPECT_EQ(allocator_->Usage(2).bytes, service_->QuotaHeldBy(2));
  EXPECT_LE(allocator_->Usage(1).bytes, 1u << 20);
  EXPECT_LE(allocator_->Usage(1).bytes + allocator_->Usage(2).bytes, 1536u << 10);
  EXPECT_GT(service_->CollectStats().tenants[1].quota_refusals, 0u) << "the test never reached a quota";
}

// After random ALLOCs, FREEs, disconnects and reconnects of clients of two
// tenants and anonymous ones, the quota counters equal the allocator's.
TEST_F(ServiceTest, QuotaCountersReconcileWithTheAllocator) {
  ServiceOptions o;
  o.client_quota_bytes = 512 << 10;
  o.tenants = Tenants({{"alice", 1 << 20}, {"bob", 768 << 10}});
  Rebuild(o);
  const char* tenant_of[] = {"", "alice", "alice", "bob", "bob", "", ""};
  constexpr ClientId kN = 6;
  std::map<ClientId, std::vector<uint64_t>> held;
  ClientId next_id[kN + 1];
  for (ClientId c = 1; c <= kN; ++c) {
    next_id[c] = c;
    service_->OnConnect(c, Peer{c, tenant_of[c]});
  }
  std::mt19937 rng(7);
  for (int step = 0; step < 3000; ++step) {
    const ClientId slot = 1 + rng() % kN;
    const ClientId c = next_id[slot];
    const int op = rng() % 20;
    if (op < 11) {
      std::vector<uint64_t> sizes(1 + rng() % 8);
      // Small classes, and large blocks of whole pages (320 KiB, 160 KiB, ...).
      for (auto& x : sizes) x = rng() % 3 == 0 ? ((320u << 10) - rng() % 5000) >> (rng() % 6) : 8 + rng() % 5000;
      for (auto& x : Alloc(c, sizes))
        if (x.code == ElementCode::kOk) held[c].push_back(x.offset);
    } else if (op < 19) {
      auto& mine = held[c];
      if (mine.empty()) continue;
      std::shuffle(mine.begin(), mine.end(), rng);
      std::vector<uint64_t> some(mine.begin(), mine.begin() + std::min<size_t>(mine.size(), 1 + rng() % 6));
      mine.erase(mine.begin(), mine.begin() + some.size());
      for (auto code : Free(c, some)) ASSERT_EQ(code, ElementCode::kOk);
    } else {
      service_->OnDisconnect(c);
      held.erase(c);
      next_id[slot] = c + kN;  // the same tenant reconnects under a new id
      service_->OnConnect(next_id[slot], Peer{next_id[slot], tenant_of[slot]});
    }
  }
  allocator_->Flush();
  std::map<std::string, uint64_t> by_tenant;
  for (ClientId slot = 1; slot <= kN; ++slot) {
    const ClientId c = next_id[slot];
    EXPECT_EQ(service_->QuotaHeldBy(c), allocator_->Usage(c).bytes) << "client " << c;
    EXPECT_LE(service_->QuotaHeldBy(c), 512u << 10);
    by_tenant[tenant_of[slot]] += allocator_->Usage(c).bytes;
  }
  for (const auto& [t, bytes] : by_tenant) EXPECT_EQ(service_->TenantQuotaHeld(t), bytes) << "tenant '" << t << "'";
  EXPECT_LE(by_tenant["alice"], 1u << 20);
  EXPECT_LE(by_tenant["bob"], 768u << 10);
  Stats s = service_->CollectStats(1000);
  uint64_t sum = 0;
  for (const TenantRecord& t : s.tenants) {
    EXPECT_EQ(t.bytes_held, by_tenant[std::string(t.tenant())]) << t.tenant();
    sum += t.bytes_held;
  }
  EXPECT_EQ(sum, s.head.used_bytes);
  for (ClientId slot = 1; slot <= kN; ++slot) service_->OnDisconnect(next_id[slot]);
  for (const auto& [t, bytes] : by_tenant) EXPECT_EQ(service_->TenantQuotaHeld(t), 0u) << t;
  EXPECT_EQ(service_->CollectStats().head.live_blocks, 0u);
}

// ------------------------------------------------------------ STATS visibility

// A client sees the totals, its own record and its tenant's totals; not
// another client's id; the admin sees every record.
TEST_F(ServiceTest, StatsShowAClientOnlyItsOwnRecordAndItsTenant) {
  ServiceOptions o;
  o.tenants = Tenants({{"alice", 1 << 20}, {"bob", 2 << 20}});
  Rebuild(o);
  service_->OnConnect(11, Peer{11, "alice"});
  service_->OnConnect(12, Peer{12, "bob"});
  service_->OnConnect(13, Peer{13, "alice"});
  service_->OnConnect(14, Peer{14, ""});
  service_->OnConnect(15, Peer{15, "", true});  // the admin
  Alloc(11, {4096, 4096});
  Alloc(12, {8192});
  Alloc(13, {4096});
  Alloc(14, {100});
  auto ids = [](const Stats& s) {
    std::vector<uint32_t> v;
    for (const auto& r : s.clients) v.push_back(r.client_id);
    std::sort(v.begin(), v.end());
    return v;
  };
  const Stats a = StatsAs(11);
  EXPECT_EQ(ids(a), std::vector<uint32_t>{11});
  EXPECT_EQ(a.BytesHeldBy(11), 8192u);
  EXPECT_EQ(a.BytesHeldBy(12), 0u);  // B's record is not ours to see
  EXPECT_EQ(a.head.live_blocks, 5u);  // the totals are
  EXPECT_EQ(a.head.clients, 5u);
  ASSERT_EQ(a.tenants.size(), 1u);
  EXPECT_EQ(a.tenants[0].tenant(), "alice");
  EXPECT_EQ(a.tenants[0].blocks_held, 3u);  // 11's and 13's
  EXPECT_EQ(a.tenants[0].bytes_held, 12288u);
  EXPECT_EQ(a.tenants[0].clients, 2u);
  EXPECT_EQ(a.tenants[0].quota_bytes, 1u << 20);
  EXPECT_EQ(FormatStats(a).find("client 12"), std::string::npos) << FormatStats(a);
  EXPECT_EQ(FormatStats(a).find("bob"), std::string::npos) << FormatStats(a);
  EXPECT_NE(FormatStats(a).find("tenant alice"), std::string::npos) << FormatStats(a);

  const Stats b = StatsAs(12);
  EXPECT_EQ(ids(b), std::vector<uint32_t>{12});
  ASSERT_EQ(b.tenants.size(), 1u);
  EXPECT_EQ(b.tenants[0].tenant(), "bob");

  // Anonymous: the anonymous group's totals.
  const Stats anon = StatsAs(14);
  EXPECT_EQ(ids(anon), std::vector<uint32_t>{14});
  ASSERT_EQ(anon.tenants.size(), 1u);
  EXPECT_TRUE(anon.tenants[0].tenant().empty());
  EXPECT_EQ(anon.tenants[0].blocks_held, 1u);
  EXPECT_EQ(anon.tenants[0].clients, 2u);  // 14 and the admin (no tenant)
  EXPECT_NE(FormatStats(anon).find("anonymous clients"), std::string::npos);

  // A client that holds nothing sees no client record, still its tenant's.
  service_->OnConnect(16, Peer{16, "alice"});
  const Stats idle = StatsAs(16);
  EXPECT_TRUE(idle.clients.empty());
  ASSERT_EQ(idle.tenants.size(), 1u);
  EXPECT_EQ(idle.tenants[0].clients, 3u);

  // The admin: everyone.
  const Stats all = StatsAs(15);
  EXPECT_EQ(ids(all), (std::vector<uint32_t>{11, 12, 13, 14}));
  ASSERT_EQ(all.tenants.size(), 3u);
  EXPECT_TRUE(all.tenants[0].tenant().empty());
  EXPECT_EQ(all.tenants[0].clients, 2u);  // 14 and the admin
  EXPECT_EQ(all.tenants[1].tenant(), "alice");
  EXPECT_EQ(all.tenants[2].tenant(), "bob");
  // CollectStats (in-process) returns everything as well.
  EXPECT_EQ(ids(service_->CollectStats()), ids(all));
}

}  // namespace
}  // namespace sharry::memnode
