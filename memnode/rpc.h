// The memory node's RPCs: ALLOC, FREE, STATS, RENEW, OFFLOAD and
// OFFLOAD_WAIT, carried as the payload of a transport request (verbs/wire.h
// kRequest), the same over verbs and tcp.
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
// OFFLOAD (opcode 5): count = units (1..kMaxOffloadUnits)
//      OffloadHead + spec (spec_bytes, offload::EncodeTo form) + count x Unit
//   -> ReplyHeader{status 0, count 0} + u64 job id (never 0)
//      Queues one job: an offload::Spec run over `count` units of rows of
//      the session's own blocks (issue #13, docs/offload.md). Each unit
//      names, per column of the spec, the pieces of UMA that hold its rows
//      (together exactly rows x the column's element size). When the job
//      ends, the units' partials (offload::PartialBytes each, in unit
//      order) are written at result_offset, a block of the session; a job
//      that fails writes nothing there. The reply comes at once: the job
//      runs on the memnode's offload workers (OFFLOAD_WAIT tells when it
//      is done). A request-level error (nothing queued, nothing changed):
//      malformed, truncated or trailing bytes; a bad spec; a piece or the
//      result block outside the UMA or not the session's pages; piece
//      lengths that do not hold whole elements or do not add up to the
//      unit's rows; more rows than the memnode's --offload_max_rows; a
//      result larger than result_bytes; offload off (FailedPrecondition);
//      the queue full, or the client's jobs at their bound
//      (ResourceExhausted).
// OFFLOAD_WAIT (opcode 6): count = job ids (1..kMaxOffloadWait), count x u64
//   -> ReplyHeader{status 0, count, msglen} + count x JobEntry + messages
//      Never blocks: says of each job whether it is queued, running or done
//      and, when done, its StatusCode, rows and worker CPU time; entry i's
//      message (its msglen bytes, in entry order after the entries; the
//      header's msglen is their sum) is the error of a failed job, cut so
//      the reply fits. A done job (ok or failed) is forgotten once
//      reported; an unknown id, or another client's, is done with NotFound.
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

enum class Opcode : uint8_t { kAlloc = 1, kFree = 2, kStats = 3, kRenew = 4, kOffload = 5, kOffloadWait = 6 };

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

// ---- OFFLOAD and OFFLOAD_WAIT (issue #13) --------------------------------

// Units in one OFFLOAD; job ids in one OFFLOAD_WAIT (64 x JobEntry: 2 KiB).
inline constexpr uint16_t kMaxOffloadUnits = 256;
inline constexpr uint16_t kMaxOffloadWait = 64;

// The head of an OFFLOAD body, right after the RpcHeader.
//   0               8              12             16              24
//   | result_offset | result_bytes | spec_bytes   | reserved (0)  |
// result block: [result_offset, +result_bytes) of the session's far memory.
struct OffloadHead {
  uint64_t result_offset = 0;
  uint32_t result_bytes = 0;
  uint32_t spec_bytes = 0;   // the spec that follows
  uint64_t reserved = 0;
};
static_assert(sizeof(OffloadHead) == 24 && offsetof(OffloadHead, spec_bytes) == 12);

// A unit on the wire (packed, no padding; decode with memcpy):
//   0           8      12
//   | first_row | rows | then for each column of the spec:
//                        u16 pieces (>= 1), pieces x PieceRef (12 B:
//                        u64 offset, u32 length)
// first_row only numbers rows in error messages.
inline constexpr size_t kOffloadUnitHeadBytes = 12;
inline constexpr size_t kOffloadPieceBytes = 12;

// A piece of one column of a unit: UMA bytes [offset, offset+length), whole
// elements of the column, in row order. (In memory; 12 B packed on the wire.)
struct PieceRef {
  uint64_t offset = 0;
  uint32_t length = 0;
};
// One unit: `rows` rows; columns[c] are column c's pieces in row order
// (as many columns as the spec has, each totalling rows x its element size).
struct OffloadUnitRef {
  uint64_t first_row = 0;
  uint32_t rows = 0;
  std::vector<std::vector<PieceRef>> columns;
};

// A job's state in an OFFLOAD_WAIT reply.
enum class OffloadState : uint8_t { kDone = 0, kQueued = 1, kRunning = 2 };

// One entry of an OFFLOAD_WAIT reply (32 B).
//   0     8      9       10         12       16     24       32
//   | job | code | state | reserved | msglen | rows | cpu_ns |
// code: the job's StatusCode (0 OK; only meaningful when done); rows: rows
// the job scanned; cpu_ns: CPU time of the worker thread spent on it.
struct JobEntry {
  uint64_t job = 0;
  uint8_t code = 0;
  OffloadState state = OffloadState::kDone;
  uint16_t reserved = 0;
  uint32_t msglen = 0;
  uint64_t rows = 0;
  uint64_t cpu_ns = 0;
};
static_assert(sizeof(JobEntry) == 32 && offsetof(JobEntry, msglen) == 12 && offsetof(JobEntry, rows) == 16);

// A job as OFFLOAD_WAIT reported it (decoded).
struct OffloadJobState {
  uint64_t job = 0;
  Status status;      // when done: the job's outcome (NotFound: unknown, or already collected)
  OffloadState state = OffloadState::kDone;
  bool done = false;  // state == kDone: the job is forgotten at the memnode
  uint64_t rows = 0;
  uint64_t cpu_ns = 0;
};

// Builds one OFFLOAD request, unit by unit, never past a size bound:
//
//   OffloadRequestBuilder b(MaxRequestBytes(transport));   // memnode/client.h
//   b.Begin(offload::Encode(spec), result_offset, result_bytes);
//   while (more && b.TryAdd(unit)) ...;                    // false: full
//   SubmitOffload(transport, b.bytes());
//
// TryAdd refuses (and changes nothing) a unit that would take the request
// past max_request_bytes or kMaxOffloadUnits; a refused unit goes into the
// next request (Begin again). A unit that does not fit an empty request
// (more pieces than a message holds) never will: split it. The result block
// must hold units() x offload::PartialBytes(spec) bytes: the caller sizes it.
class OffloadRequestBuilder {
 public:
  explicit OffloadRequestBuilder(size_t max_request_bytes) : max_bytes_(max_request_bytes) {}
  void Begin(std::span<const uint8_t> spec, uint64_t result_offset, uint32_t result_bytes);
  [[nodiscard]] bool TryAdd(const OffloadUnitRef& unit);
  uint16_t units() const { return units_; }
  // The request (its header's count is units()).
  std::span<const uint8_t> bytes() const { return buf_; }
  // The bytes `unit` takes in a request.
  static size_t UnitBytes(const OffloadUnitRef& unit);

 private:
  const size_t max_bytes_;
  std::vector<uint8_t> buf_;
  uint16_t units_ = 0;
};

// Encoding and decoding, shared by the memnode and its clients.
std::vector<uint8_t> EncodeAlloc(const std::vector<uint64_t>& sizes);
std::vector<uint8_t> EncodeFree(const std::vector<uint64_t>& offsets);
std::vector<uint8_t> EncodeStats();
std::vector<uint8_t> EncodeRenew();
std::vector<uint8_t> EncodeOffloadWait(std::span<const uint64_t> jobs);
// An OFFLOAD reply: the job id (a request-level error: its Status).
StatusOr<uint64_t> DecodeOffloadReply(std::span<const uint8_t> reply);
// An OFFLOAD_WAIT reply for `jobs` (in that order; entries for other ids, a
// wrong count or inconsistent lengths are a Protocol error).
StatusOr<std::vector<OffloadJobState>> DecodeOffloadWait(std::span<const uint8_t> reply,
                                                         std::span<const uint64_t> jobs);
// Checks a reply's header; a request-level error becomes its Status.
StatusOr<ReplyHeader> DecodeReplyHeader(std::span<const uint8_t> reply, size_t entry_size);
StatusOr<Stats> DecodeStats(std::span<const uint8_t> reply);
// Human-readable stats (the memnode's periodic log and the stats CLI).
std::string FormatStats(const Stats& s);

}  // namespace sharry::memnode
