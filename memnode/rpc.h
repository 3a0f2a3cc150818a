// The memory node's RPCs: ALLOC, FREE and STATS, carried as the payload of a
// transport request (verbs/wire.h kRequest), the same over verbs and tcp.
//
// All integers little-endian. Every request starts with an 8-byte RpcHeader;
// every response with an 8-byte ReplyHeader.
//
//   RpcHeader                         ReplyHeader
//   0      1      2       4       8   0      1      2       4       8
//   +------+------+-------+-------+   +------+------+-------+-------+
//   |opcode|ver=1 | count | 0     |   |status|ver=1 | count | msglen|
//   +------+------+-------+-------+   +------+------+-------+-------+
//
// ALLOC (opcode 1): count x u64 size (bytes, 1 .. max object size)
//   -> ReplyHeader{status 0, count, msglen} + count x AllocEntry{u64 offset, u8 code, 3 pad, u32 rkey}
//      + msglen bytes of UTF-8 note
//      entry i answers size i; code is an ElementCode (offset valid iff kOk);
//      rkey: over verbs to a confining memnode, the key of the block's
//      memory region (the client's READ/WRITE use it), else 0.
//      msglen is 0 unless an element was refused with kQuotaExceeded: then
//      the note says which quota and how much is held ("client quota
//      64.0 MiB: holds 63.9 MiB, asked 0.5 MiB", "tenant alice quota ...").
// FREE (opcode 2): count x u64 UMA offset (the start of a block this client owns)
//   -> ReplyHeader{status 0, count} + count x u8 ElementCode
//      A block freed by another client, an offset that is not a live block
//      start, a double free, an offset outside the UMA: an error code, and
//      nothing is freed for that element. Frees are delayed (paper 4.2) but
//      checked at once.
// STATS (opcode 3): count 0
//   -> ReplyHeader{status 0, count = sections} + StatsReply (see below)
//      What a client sees (issue #11): the totals (StatsHead, sections) and
//      only its own ClientRecord and its tenant's TenantRecord (anonymous
//      clients: the anonymous group's); a client authenticated as the admin
//      sees every client's and every tenant's record.
// RENEW (opcode 4): count 0, no body -> ReplyHeader{status 0, count 0}
//      Does nothing but arrive: any request renews the client's lease
//      (docs/security.md); a runtime sends RENEW when it has been quiet
//      for a third of the lease the memnode announced at connect time.
//
// A request the memnode cannot parse (truncated, trailing bytes, unknown
// opcode, version, count 0 or above kMaxBatch, reserved bits set) gets
// ReplyHeader{status = StatusCode (InvalidArgument or Protocol), count 0,
// msglen} followed by a UTF-8 message of msglen bytes, and changes nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <span>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace sharry::memnode {

inline constexpr uint8_t kRpcVersion = 1;
// Elements in one ALLOC or FREE: fits an 8 KiB message both ways.
inline constexpr uint16_t kMaxBatch = 256;

enum class Opcode : uint8_t { kAlloc = 1, kFree = 2, kStats = 3, kRenew = 4 };

struct RpcHeader {
  Opcode opcode = Opcode::kAlloc;
  uint8_t version = kRpcVersion;
  uint16_t count = 0;
  uint32_t reserved = 0;
};
static_assert(sizeof(RpcHeader) == 8);

struct ReplyHeader {
  uint8_t status = 0;  // StatusCode of the whole request; 0 = OK
  uint8_t version = kRpcVersion;
  uint16_t count = 0;  // elements that follow
  uint32_t msglen = 0; // bytes of message that follow: the error (status != 0),
                       // or an ALLOC's note after its entries (status 0)
};
static_assert(sizeof(ReplyHeader) == 8);

// Outcome of one element of a batch.
enum class ElementCode : uint8_t {
  kOk = 0,
  kOutOfMemory = 1,   // far memory exhausted: no section could serve it
  kInvalidSize = 2,   // 0, or above the largest object
  kOutOfRange = 3,    // offset outside the UMA
  kNotAllocated = 4,  // not the start of a live block (includes double free)
  kNotOwner = 5,      // the block belongs to another client; nothing freed
  kInternal = 6,
  kQuotaExceeded = 7, // the block would take its client past --client_quota_mb,
                      // or its tenant past the tenants file's quota; the
                      // reply's note says which (ALLOC above)
};
std::string_view ElementCodeName(ElementCode c);
// The Status a client library reports for a failed element; `note` is the
// reply's note (kQuotaExceeded: which quota). kQuotaExceeded becomes
// a Status of its own code, kQuotaExceeded, with kQuotaExceededText and the
// note in its message: a caller handles it as far memory exhausted
// (IsFarMemoryRefused), and tells the two apart by the code.
Status ElementStatus(ElementCode c, std::string_view what, std::string_view note = {});
inline constexpr std::string_view kQuotaExceededText = "far-memory quota exceeded";
bool IsQuotaExceeded(const Status& s);

// One element of an ALLOC reply: the block's offset, its code, and over
// verbs to a confining memnode the key (rkey) of the memory region that
// covers the block (0 otherwise; verbs/remote_keys.h).
//   0        8      9       12       16
//   | offset | code | pad(3) | rkey   |
struct AllocEntry {
  uint64_t offset = 0;
  ElementCode code = ElementCode::kOk;
  uint8_t pad[3] = {};
  uint32_t rkey = 0;
};
static_assert(sizeof(AllocEntry) == 16 && offsetof(AllocEntry, rkey) == 12);

// STATS reply body: StatsHead, then `sections` x SectionRecord, then
// `client_records` x ClientRecord (the clients holding the most bytes, as
// many as fit; a non-admin client: only its own), then `tenant_records` x
// TenantRecord (a non-admin client: only its own tenant's or the anonymous
// group's; the admin and CollectStats: every group).
struct StatsHead {
  uint64_t uma_bytes = 0;
  uint64_t used_bytes = 0;       // rounded sizes of live blocks, incl. pending frees
  uint64_t free_bytes = 0;
  uint64_t live_blocks = 0;
  uint64_t pending_blocks = 0;   // frees accepted, not yet applied
  uint64_t pending_bytes = 0;
  uint64_t alloc_requests = 0;   // RPCs served since start
  uint64_t free_requests = 0;
  uint64_t reclaimed_blocks = 0; // freed because their client went away
  uint32_t sections = 0;
  uint32_t clients = 0;          // connected now
  uint32_t client_records = 0;   // ClientRecords that follow
  uint32_t tenant_records = 0;   // TenantRecords that follow the ClientRecords
};
static_assert(sizeof(StatsHead) == 88);

struct SectionRecord {
  uint64_t used_bytes = 0;
  uint64_t free_bytes = 0;
  uint64_t live_blocks = 0;
  uint64_t pending_blocks = 0;
  uint64_t ring_depth = 0;
  double requests_per_second = 0;
};
static_assert(sizeof(SectionRecord) == 48);

struct ClientRecord {
  uint32_t client_id = 0;
  uint32_t reserved = 0;
  uint64_t bytes_held = 0;   // rounded bytes of its live blocks (size class or whole
                             // pages, as the allocator charges them), pending frees included
  uint64_t blocks_held = 0;
};
static_assert(sizeof(ClientRecord) == 24);

// A tenant's totals, or (name empty) those of the anonymous clients.
//
//   0                32        40          48          56        64       68     72
//   +----------------+---------+-----------+-----------+---------+--------+------+
//   | name (NUL-pad) | bytes   | blocks    | quota     | refused | clients| 0    |
//   +----------------+---------+-----------+-----------+---------+--------+------+
struct TenantRecord {
  char name[32] = {};           // NUL-padded (auth::kMaxTenantName); all NUL: anonymous
  uint64_t bytes_held = 0;      // as ClientRecord::bytes_held, summed over its clients
  uint64_t blocks_held = 0;
  uint64_t quota_bytes = 0;     // 0: no quota
  uint64_t quota_refusals = 0;  // ALLOC elements refused with kQuotaExceeded (either quota)
  uint32_t clients = 0;         // connected now
  uint32_t reserved = 0;

  std::string_view tenant() const { return {name, strnlen(name, sizeof name)}; }
};
static_assert(sizeof(TenantRecord) == 72);

struct Stats {
  StatsHead head;
  std::vector<SectionRecord> sections;
  std::vector<ClientRecord> clients;
  std::vector<TenantRecord> tenants;
  // Bytes the client holds (ClientRecord::bytes_held); 0 if it has no record
  // (none, past the records the memnode sent, or not ours to see).
  uint64_t BytesHeldBy(uint32_t client_id) const {
    for (const ClientRecord& c : clients)
      if (c.client_id == client_id) return c.bytes_held;
    return 0;
  }
};

// Encoding and decoding, shared by the memnode and its clients.
std::vector<uint8_t> EncodeAlloc(const std::vector<uint64_t>& sizes);
std::vector<uint8_t> EncodeFree(const std::vector<uint64_t>& offsets);
std::vector<uint8_t> EncodeStats();
std::vector<uint8_t> EncodeRenew();
// Checks a reply's header; a request-level error becomes its Status.
StatusOr<ReplyHeader> DecodeReplyHeader(std::span<const uint8_t> reply, size_t entry_size);
StatusOr<Stats> DecodeStats(std::span<const uint8_t> reply);
// Human-readable stats (the memnode's periodic log and the stats CLI).
std::string FormatStats(const Stats& s);

}  // namespace sharry::memnode
