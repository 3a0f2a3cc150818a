// The OFFLOAD and OFFLOAD_WAIT RPCs and the memnode's offload workers
// (issue #13; docs/offload.md, "The OFFLOAD RPC and the offload workers"),
// end to end over the loopback transport: an in-process Memnode, clients
// that ALLOC blocks, WRITE column data into them and offload aggregates
// over them. Results are compared bit for bit with offload::RunUnit run
// here on the same bytes; every malformed request gets its error and
// changes nothing; the bounds (queue, per-client jobs) refuse with
// ResourceExhausted while ALLOC/FREE/STATS are still served; a client that
// disconnects leaves no job behind; a block freed under a running job fails
// it with PermissionDenied. Orders between threads are made by the
// workers' test hooks (OffloadWorkers::PauseForTest, SetUnitHookForTest),
// never by sleeps.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "memnode/client.h"
#include "memnode/memnode.h"
#include "memnode/offload_workers.h"
#include "memnode/rpc.h"
#include "offload/kernel.h"
#include "offload/spec.h"
#include "tests/test_util.h"

namespace sharry::memnode {
namespace {

using offload::AggKind;
using offload::ElemType;
using sharry::testing::Eventually;
using sharry::testing::Pattern;

constexpr uint64_t kUma = 64u << 20;

// A column of `rows` values held in far blocks of chunk_rows rows each (the
// last one shorter), and the same bytes here.
struct FarColumn {
  ElemType type = ElemType::kI64;
  size_t elem = 8;
  size_t chunk_rows = 0;
  std::vector<uint64_t> chunks;  // UMA offsets
  std::vector<uint8_t> local;    // every row's bytes, in row order

  // The pieces of rows [first, first + rows): far, and the same bytes here.
  std::vector<PieceRef> Far(uint64_t first, uint32_t rows) const {
    std::vector<PieceRef> out;
    for (uint64_t r = first; r < first + rows;) {
      const uint64_t chunk = r / chunk_rows, at = r % chunk_rows;
      const uint64_t n = std::min<uint64_t>(chunk_rows - at, first + rows - r);
      out.push_back({chunks[chunk] + at * elem, static_cast<uint32_t>(n * elem)});
      r += n;
    }
    return out;
  }
  std::vector<std::span<const uint8_t>> Here(uint64_t first, uint32_t rows) const {
    std::vector<std::span<const uint8_t>> out;
    for (uint64_t r = first; r < first + rows;) {
      const uint64_t at = r % chunk_rows;
      const uint64_t n = std::min<uint64_t>(chunk_rows - at, first + rows - r);
      out.emplace_back(local.data() + r * elem, n * elem);
      r += n;
    }
    return out;
  }
};

struct UnitRows {
  uint64_t first;
  uint32_t rows;
};

class OffloadServiceTest : public ::testing::Test {
 protected:
  void Start(const OffloadOptions& off) {
    node_.reset();
    MemnodeOptions o;
    o.transport = TransportKind::kLoopback;
    o.uma_bytes = kUma;
    o.sections = 1;
    o.free_batch = 1;  // a FREE is applied (and its span revoked) at once
    o.server.lease_ms = 0;
    o.offload = off;
    auto m = Memnode::Start(o);
    ASSERT_TRUE(m.ok()) << m.status();
    node_ = std::move(*m);
  }
  std::unique_ptr<MemnodeClient> Connect() {
    ClientOptions o;
    o.port = node_->port();
    auto c = MemnodeClient::Connect(TransportKind::kLoopback, o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }
  OffloadWorkers& workers() { return *node_->service().offload_workers(); }
  OffloadStats Stats() { return node_->service().offload_stats(); }

  // Writes `bytes` (rows of `type`) into far blocks of chunk_rows rows.
  FarColumn PutColumn(MemnodeClient& c, ElemType type, std::vector<uint8_t> bytes, size_t chunk_rows) {
    FarColumn col;
    col.type = type;
    col.elem = offload::ElemSize(type);
    col.chunk_rows = chunk_rows;
    col.local = std::move(bytes);
    const size_t chunk_bytes = chunk_rows * col.elem;
    for (size_t at = 0; at < col.local.size(); at += chunk_bytes) {
      const size_t n = std::min(chunk_bytes, col.local.size() - at);
      auto off = c.AllocOne(n);
      EXPECT_TRUE(off.ok()) << off.status();
      if (!off.ok()) return col;
      EXPECT_TRUE(c.transport().Write(*off, col.local.data() + at, n).ok());
      col.chunks.push_back(*off);
    }
    return col;
  }
  // A block of `bytes` filled with a pattern (what "untouched" means).
  uint64_t PatternBlock(MemnodeClient& c, size_t bytes, uint64_t seed) {
    auto off = c.AllocOne(bytes);
    EXPECT_TRUE(off.ok()) << off.status();
    const auto p = Pattern(bytes, seed);
    EXPECT_TRUE(c.transport().Write(*off, p.data(), bytes).ok());
    return *off;
  }
  std::vector<uint8_t> ReadBack(MemnodeClient& c, uint64_t off, size_t bytes) {
    std::vector<uint8_t> b(bytes);
    EXPECT_TRUE(c.transport().Read(off, b.data(), bytes).ok());
    return b;
  }
  static OffloadUnitRef Unit(const std::vector<const FarColumn*>& cols, UnitRows u) {
    OffloadUnitRef r;
    r.first_row = u.first;
    r.rows = u.rows;
    for (const FarColumn* c : cols) r.columns.push_back(c->Far(u.first, u.rows));
    return r;
  }
  // One OFFLOAD of `units` over `cols`.
  std::vector<uint8_t> Request(MemnodeClient& c, const offload::Spec& spec, const std::vector<const FarColumn*>& cols,
                               const std::vector<UnitRows>& units, uint64_t result_off, uint32_t result_bytes) {
    OffloadRequestBuilder b(MaxRequestBytes(c.transport()));
    b.Begin(offload::Encode(spec), result_off, result_bytes);
    for (const UnitRows& u : units) EXPECT_TRUE(b.TryAdd(Unit(cols, u)));
    return {b.bytes().begin(), b.bytes().end()};
  }
  // Polls until every job is done (bounded): their final states.
  std::vector<OffloadJobState> WaitDone(MemnodeClient& c, std::vector<uint64_t> jobs) {
    std::vector<OffloadJobState> done;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!jobs.empty() && std::chrono::steady_clock::now() < deadline) {
      auto st = PollOffload(c.transport(), jobs);
      EXPECT_TRUE(st.ok()) << st.status();
      if (!st.ok()) break;
      std::vector<uint64_t> left;
      for (const OffloadJobState& j : *st) {
        if (j.done) done.push_back(j);
        else left.push_back(j.job);
      }
      jobs = std::move(left);
      if (!jobs.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    EXPECT_TRUE(jobs.empty()) << jobs.size() << " jobs not done in 20 s";
    return done;
  }
  OffloadJobState WaitOne(MemnodeClient& c, uint64_t job) {
    auto d = WaitDone(c, {job});
    return d.empty() ? OffloadJobState{} : d[0];
  }

  std::unique_ptr<Memnode> node_;
};

// i64 values 0..rows-1.
std::vector<uint8_t> Iota64(size_t rows) {
  std::vector<uint8_t> b(rows * 8);
  for (size_t i = 0; i < rows; ++i) {
    const int64_t v = static_cast<int64_t>(i);
    std::memcpy(b.data() + i * 8, &v, 8);
  }
  return b;
}

template <typename T, typename F>
std::vector<uint8_t> Values(size_t rows, F f) {
  std::vector<uint8_t> b(rows * sizeof(T));
  for (size_t i = 0; i < rows; ++i) {
    const T v = f(i);
    std::memcpy(b.data() + i * sizeof(T), &v, sizeof(T));
  }
  return b;
}

// The group-by of Fig. 8's kind: per hour of a unix time, over rows with
// passengers > 0: count, sum/min of the fare, max passengers, sum of squares
// of the fare, sum of fare x passengers, sum of the time (an exact integer).
offload::Spec HourlySpec() {
  offload::Spec s;
  const uint8_t t = s.Column(ElemType::kI64);
  const uint8_t fare = s.Column(ElemType::kF64);
  const uint8_t pass = s.Column(ElemType::kI32);
  s.key.column = t;
  s.key.div = 3600;
  s.key.mod = 24;
  s.groups = 24;
  offload::Filter f;
  f.column = pass;
  f.cmp = offload::Cmp::kGt;
  f.int_value = 0;
  s.filters.push_back(f);
  const uint8_t ef = s.ColumnExpr(fare), ep = s.ColumnExpr(pass), et = s.ColumnExpr(t);
  s.Aggregate(AggKind::kCount);
  s.Aggregate(AggKind::kSum, ef);
  s.Aggregate(AggKind::kMin, ef);
  s.Aggregate(AggKind::kMax, ep);
  s.Aggregate(AggKind::kSumSq, ef);
  s.Aggregate(AggKind::kSumProd, ef, ep);
  s.Aggregate(AggKind::kSum, et);
  EXPECT_TRUE(offload::Validate(s).ok()) << offload::Validate(s);
  return s;
}

// count and sum of one i64 column.
offload::Spec CountSumSpec() {
  offload::Spec s;
  const uint8_t c = s.Column(ElemType::kI64);
  const uint8_t e = s.ColumnExpr(c);
  s.Aggregate(AggKind::kCount);
  s.Aggregate(AggKind::kSum, e);
  return s;
}

TEST_F(OffloadServiceTest, ResultsEqualTheLocalKernelBitForBit) {
  OffloadOptions off;
  off.threads = 2;
  Start(off);
  auto c = Connect();
  ASSERT_TRUE(c);
  constexpr size_t kRows = 5000;
  // Chunks of different lengths per column, so units cross chunk borders
  // at different rows in each column (several pieces per column).
  const FarColumn time = PutColumn(*c, ElemType::kI64,
                                   Values<int64_t>(kRows, [](size_t i) { return int64_t{1700000000} + int64_t(i) * 937; }),
                                   1024);
  const FarColumn fare = PutColumn(
      *c, ElemType::kF64, Values<double>(kRows, [](size_t i) { return double((i * 7919) % 10007) / 100.0 - 3.3; }),
      600);
  const FarColumn pass = PutColumn(*c, ElemType::kI32, Values<int32_t>(kRows, [](size_t i) { return int32_t(i % 7); }),
                                   2048);
  const offload::Spec spec = HourlySpec();
  const size_t pb = offload::PartialBytes(spec);
  std::vector<UnitRows> units;
  for (uint64_t r = 0; r < kRows; r += 700) units.push_back({r, static_cast<uint32_t>(std::min<uint64_t>(700, kRows - r))});
  const size_t result_bytes = units.size() * pb;
  const uint64_t result = PatternBlock(*c, result_bytes, 1);
  const std::vector<const FarColumn*> cols = {&time, &fare, &pass};

  auto job = SubmitOffload(c->transport(), Request(*c, spec, cols, units, result, result_bytes));
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_NE(*job, 0u);
  const OffloadJobState st = WaitOne(*c, *job);
  ASSERT_TRUE(st.status.ok()) << st.status;
  EXPECT_EQ(st.rows, kRows);
  const std::vector<uint8_t> far = ReadBack(*c, result, result_bytes);

  // The same units here, on the same bytes.
  offload::Result here(spec), there(spec);
  for (size_t u = 0; u < units.size(); ++u) {
    std::vector<std::vector<std::span<const uint8_t>>> spans;
    for (const FarColumn* col : cols) spans.push_back(col->Here(units[u].first, units[u].rows));
    std::vector<offload::Pieces> pieces(spans.begin(), spans.end());
    std::vector<uint8_t> partial(pb);
    ASSERT_TRUE(offload::RunUnit(spec, units[u].rows, pieces, partial, units[u].first).ok());
    EXPECT_EQ(0, std::memcmp(partial.data(), far.data() + u * pb, pb)) << "unit " << u << "'s partial differs";
    ASSERT_TRUE(here.Add(partial).ok());
    ASSERT_TRUE(there.Add(std::span<const uint8_t>(far.data() + u * pb, pb)).ok());
  }
  EXPECT_EQ(0, std::memcmp(here.bytes().data(), there.bytes().data(), here.bytes().size()));
  // And the numbers are not trivially equal: rows were counted and grouped.
  int64_t counted = 0;
  for (uint32_t g = 0; g < spec.groups; ++g) counted += there.Int(g, 0);
  EXPECT_EQ(counted, int64_t(kRows - (kRows + 6) / 7));  // rows with passengers > 0
  const OffloadStats s = Stats();
  EXPECT_EQ(s.jobs_total, 1u);
  EXPECT_EQ(s.rows_total, kRows);
  EXPECT_GT(s.cpu_ns_total, 0u);
  EXPECT_EQ(s.jobs, 0u) << "a collected job is forgotten";
  // Collected once: asked again, it is unknown.
  auto again = PollOffload(c->transport(), std::vector<uint64_t>{*job});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE((*again)[0].done);
  EXPECT_EQ((*again)[0].status.code(), StatusCode::kNotFound) << (*again)[0].status;
}

TEST_F(OffloadServiceTest, TheBuilderStopsAtTheMessageAndUnitBounds) {
  OffloadRequestBuilder b(1000);
  b.Begin(offload::Encode(CountSumSpec()), 0, 64);
  OffloadUnitRef u;
  u.rows = 1;
  u.columns = {{{0, 8}}};
  size_t added = 0;
  while (b.TryAdd(u)) ++added;
  EXPECT_EQ(b.units(), added);
  EXPECT_LE(b.bytes().size(), 1000u);
  EXPECT_GT(b.bytes().size() + OffloadRequestBuilder::UnitBytes(u), 1000u);
  RpcHeader h;
  std::memcpy(&h, b.bytes().data(), sizeof h);
  EXPECT_EQ(h.count, added);
  OffloadRequestBuilder big(1 << 20);
  big.Begin(offload::Encode(CountSumSpec()), 0, 64);
  while (big.TryAdd(u)) {
  }
  EXPECT_EQ(big.units(), kMaxOffloadUnits);
}

// Each malformed OFFLOAD (and OFFLOAD_WAIT) is answered with its error and
// changes nothing: no job queued, the result block untouched, the blocks
// as they were. The one well-formed request whose data is bad (a group key
// out of range) is accepted and fails its job, the result block untouched.
TEST_F(OffloadServiceTest, MalformedRequestsGetTheirErrorAndChangeNothing) {
  OffloadOptions off;
  off.max_rows = 1500;
  Start(off);
  auto a = Connect();
  auto b = Connect();
  auto lone = Connect();
  ASSERT_TRUE(a && b && lone);
  const FarColumn col = PutColumn(*a, ElemType::kI64, Iota64(1000), 1000);  // one 8000-B block
  const FarColumn theirs = PutColumn(*b, ElemType::kI64, Iota64(1000), 1000);
  const uint64_t result = PatternBlock(*a, 4096, 2);
  const uint64_t b_result = PatternBlock(*b, 4096, 3);
  const offload::Spec spec = CountSumSpec();
  const std::vector<uint8_t> spec_bytes = offload::Encode(spec);
  ASSERT_EQ(spec_bytes.size(), 16u + 1 + 17 + 8);  // head, a column, one expression of one node, two aggs
  ASSERT_EQ(spec_bytes[18], uint8_t(offload::ExprOp::kColumn));
  ASSERT_EQ(spec_bytes[34], uint8_t(AggKind::kCount));
  const size_t kSpecAt = sizeof(RpcHeader) + sizeof(OffloadHead);
  const uint64_t live = node_->service().CollectStats().head.live_blocks;

  auto request = [&](const std::vector<uint8_t>& spec_b, std::vector<std::vector<PieceRef>> pieces, uint32_t rows,
                     uint64_t res, uint32_t res_bytes) {
    OffloadRequestBuilder bld(MaxRequestBytes(a->transport()));
    bld.Begin(spec_b, res, res_bytes);
    OffloadUnitRef u;
    u.rows = rows;
    u.columns = std::move(pieces);
    EXPECT_TRUE(bld.TryAdd(u));
    return std::vector<uint8_t>(bld.bytes().begin(), bld.bytes().end());
  };
  const std::vector<uint8_t> good = request(spec_bytes, {col.Far(0, 1000)}, 1000, result, 4096);
  struct Case {
    std::string name;
    std::vector<uint8_t> req;
    StatusCode code;
    std::string says;
  };
  std::vector<Case> cases;
  {
    auto s = spec_bytes;
    s[34] = 99;  // an AggKind that does not exist
    cases.push_back({"unknown aggregate", request(s, {col.Far(0, 1000)}, 1000, result, 4096),
                     StatusCode::kInvalidArgument, "OFFLOAD spec"});
    s = spec_bytes;
    s[18] = 99;  // an ExprOp that does not exist
    cases.push_back({"unknown expression op", request(s, {col.Far(0, 1000)}, 1000, result, 4096),
                     StatusCode::kInvalidArgument, "OFFLOAD spec"});
  }
  cases.push_back({"piece not of whole elements", request(spec_bytes, {{{col.chunks[0], 7996}}}, 1000, result, 4096),
                   StatusCode::kInvalidArgument, "is not whole elements of i64 (8 B each)"});
  cases.push_back({"wrong column width", request(spec_bytes, {{{col.chunks[0], 4000}}}, 1000, result, 4096),
                   StatusCode::kInvalidArgument, "pieces of 4000 B for 1000 rows of i64 (want 8000 B)"});
  cases.push_back({"another client's block", request(spec_bytes, {theirs.Far(0, 1000)}, 1000, result, 4096),
                   StatusCode::kPermissionDenied, "OFFLOAD unit 0, column 0, piece 0: [" +
                                                      std::to_string(theirs.chunks[0]) +
                                                      ", +8000) is not this session's far memory"});
  cases.push_back({"outside the UMA", request(spec_bytes, {{{kUma - 4000, 8000}}}, 1000, result, 4096),
                   StatusCode::kOutOfRange, "is outside the UMA"});
  cases.push_back({"offset that wraps", request(spec_bytes, {{{~uint64_t{0} - 7, 8000}}}, 1000, result, 4096),
                   StatusCode::kOutOfRange, "is outside the UMA"});
  {
    // A client holding one 1-MiB block (whole pages, a span of its own):
    // a piece running 8 KiB past it reaches pages that are not its own.
    auto big = lone->AllocOne(1 << 20);
    ASSERT_TRUE(big.ok()) << big.status();
    OffloadRequestBuilder bld(MaxRequestBytes(lone->transport()));
    bld.Begin(spec_bytes, *big, 4096);
    OffloadUnitRef u;
    u.rows = ((1 << 20) + 8192) / 8;
    u.columns = {{{*big, (1 << 20) + 8192}}};
    ASSERT_TRUE(bld.TryAdd(u));
    std::vector<uint8_t> reply;
    ASSERT_TRUE(lone->transport().Call(bld.bytes(), &reply).ok());
    auto r = DecodeOffloadReply(reply);
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status() << " (rows over --offload_max_rows first)";
    // Within the row bound:
    OffloadRequestBuilder bld2(MaxRequestBytes(lone->transport()));
    bld2.Begin(spec_bytes, *big, 4096);
    u.rows = 1026;  // the last 8200 B of the block and 8 B past it
    u.columns = {{{*big + (1 << 20) - 8200, 8208}}};
    ASSERT_TRUE(bld2.TryAdd(u));
    ASSERT_TRUE(lone->transport().Call(bld2.bytes(), &reply).ok());
    r = DecodeOffloadReply(reply);
    EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied) << r.status();
    EXPECT_NE(r.status().message().find("is not this session's far memory"), std::string::npos) << r.status();
  }
  cases.push_back({"oversized result", request(spec_bytes, {col.Far(0, 1000)}, 1000, result, 8),
                   StatusCode::kInvalidArgument, "result of 16 B does not fit the result block of 8 B"});
  cases.push_back({"result block of another client", request(spec_bytes, {col.Far(0, 1000)}, 1000, b_result, 4096),
                   StatusCode::kPermissionDenied, "result block [" + std::to_string(b_result) +
                                                      ", +4096) is not this session's far memory"});
  cases.push_back({"result block outside the UMA", request(spec_bytes, {col.Far(0, 1000)}, 1000, kUma - 8, 4096),
                   StatusCode::kOutOfRange, "outside the UMA"});
  {
    auto t = good;
    t.pop_back();
    cases.push_back({"truncated", t, StatusCode::kInvalidArgument, "is truncated"});
    t = good;
    t.push_back(0);
    cases.push_back({"trailing byte", t, StatusCode::kInvalidArgument, "1 trailing bytes after unit 0"});
    t = good;
    RpcHeader h;
    std::memcpy(&h, t.data(), sizeof h);
    h.count = 0;
    std::memcpy(t.data(), &h, sizeof h);
    cases.push_back({"count 0", t, StatusCode::kInvalidArgument, "OFFLOAD of 0 units (allowed 1..256)"});
    h.count = 257;
    std::memcpy(t.data(), &h, sizeof h);
    cases.push_back({"count 257", t, StatusCode::kInvalidArgument, "OFFLOAD of 257 units (allowed 1..256)"});
    t = good;
    t[kSpecAt - 1] = 1;  // OffloadHead::reserved
    cases.push_back({"reserved head bytes", t, StatusCode::kInvalidArgument, "reserved"});
    t = std::vector<uint8_t>(good.begin(), good.begin() + 12);
    cases.push_back({"shorter than its head", t, StatusCode::kInvalidArgument, "shorter than its 24-byte head"});
  }
  {
    // Two units of 1000 rows: over --offload_max_rows=1500.
    OffloadRequestBuilder bld(MaxRequestBytes(a->transport()));
    bld.Begin(spec_bytes, result, 4096);
    OffloadUnitRef u;
    u.rows = 1000;
    u.columns = {col.Far(0, 1000)};
    ASSERT_TRUE(bld.TryAdd(u) && bld.TryAdd(u));
    cases.push_back({"rows over --offload_max_rows", {bld.bytes().begin(), bld.bytes().end()},
                     StatusCode::kInvalidArgument, "--offload_max_rows=1500"});
  }
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    std::vector<uint8_t> reply;
    ASSERT_TRUE(a->transport().Call(k.req, &reply).ok());
    auto r = DecodeOffloadReply(reply);
    ASSERT_FALSE(r.ok()) << "accepted as job " << *r;
    EXPECT_EQ(r.status().code(), k.code) << r.status();
    EXPECT_NE(r.status().message().find(k.says), std::string::npos) << r.status() << "\n  wanted: " << k.says;
  }
  OffloadStats s = Stats();
  EXPECT_EQ(s.jobs_total, 0u) << "a malformed request queued a job";
  EXPECT_EQ(s.refused_total, cases.size() + 2);  // and the lone client's two
  EXPECT_EQ(ReadBack(*a, result, 4096), Pattern(4096, 2));
  EXPECT_EQ(ReadBack(*b, b_result, 4096), Pattern(4096, 3));
  EXPECT_EQ(node_->service().CollectStats().head.live_blocks, live + 1);  // the lone client's block

  // Well formed, but a row's group key is outside the groups: the job fails
  // with OutOfRange, the result block untouched.
  offload::Spec keyed = spec;
  keyed.key.column = 0;
  keyed.groups = 4;
  ASSERT_TRUE(offload::Validate(keyed).ok()) << offload::Validate(keyed);
  auto job = SubmitOffload(a->transport(), request(offload::Encode(keyed), {col.Far(0, 1000)}, 1000, result, 4096));
  ASSERT_TRUE(job.ok()) << job.status();
  const OffloadJobState st = WaitOne(*a, *job);
  EXPECT_EQ(st.status.code(), StatusCode::kOutOfRange) << st.status;
  EXPECT_NE(st.status.message().find("group key 4 of row 4 outside [0, 4)"), std::string::npos) << st.status;
  EXPECT_EQ(ReadBack(*a, result, 4096), Pattern(4096, 2));
  s = Stats();
  EXPECT_EQ(s.jobs_failed_total, 1u);
  EXPECT_EQ(s.jobs, 0u);

  // OFFLOAD_WAIT: an unknown job, another client's job, bad counts.
  auto unknown = PollOffload(a->transport(), std::vector<uint64_t>{987654321});
  ASSERT_TRUE(unknown.ok()) << unknown.status();
  EXPECT_TRUE((*unknown)[0].done);
  EXPECT_EQ((*unknown)[0].status.code(), StatusCode::kNotFound);
  auto bjob = SubmitOffload(b->transport(), request(spec_bytes, {theirs.Far(0, 1000)}, 1000, b_result, 4096));
  ASSERT_TRUE(bjob.ok()) << bjob.status();
  auto peek = PollOffload(a->transport(), std::vector<uint64_t>{*bjob});
  ASSERT_TRUE(peek.ok()) << peek.status();
  EXPECT_EQ((*peek)[0].status.code(), StatusCode::kNotFound) << "A saw B's job";
  EXPECT_TRUE(WaitOne(*b, *bjob).status.ok()) << "B's job was disturbed by A's look";
  std::vector<uint8_t> reply;
  for (uint16_t n : {uint16_t{0}, uint16_t{kMaxOffloadWait + 1}}) {
    std::vector<uint64_t> ids(n, 1);
    auto req = EncodeOffloadWait(ids);
    RpcHeader h;
    std::memcpy(&h, req.data(), sizeof h);
    EXPECT_EQ(h.count, n);
    ASSERT_TRUE(a->transport().Call(req, &reply).ok());
    EXPECT_EQ(DecodeReplyHeader(reply, 0).status().code(), StatusCode::kInvalidArgument) << n;
  }
}

// The queue bound: with the only worker held inside a job and the queue
// full, the next OFFLOAD is refused with ResourceExhausted naming the flag,
// and ALLOC, FREE and STATS are answered meanwhile.
TEST_F(OffloadServiceTest, AFullQueueRefusesWhileAllocFreeAndStatsAreServed) {
  OffloadOptions off;
  off.threads = 1;
  off.queue = 3;
  off.jobs_per_client = 100;
  Start(off);
  auto c = Connect();
  ASSERT_TRUE(c);
  const FarColumn col = PutColumn(*c, ElemType::kI64, Iota64(1000), 1000);
  const uint64_t result = PatternBlock(*c, 4096, 4);
  std::atomic<bool> inside{false}, release{false};
  workers().SetUnitHookForTest([&](uint64_t, size_t) {
    inside = true;
    Eventually([&] { return release.load(); }, std::chrono::seconds(20));
  });
  const auto req = Request(*c, CountSumSpec(), {&col}, {{0, 1000}}, result, 4096);
  std::vector<uint64_t> jobs;
  auto first = SubmitOffload(c->transport(), req);
  ASSERT_TRUE(first.ok()) << first.status();
  jobs.push_back(*first);
  ASSERT_TRUE(Eventually([&] { return inside.load(); })) << "the worker never started the job";
  for (int i = 0; i < 3; ++i) {
    auto j = SubmitOffload(c->transport(), req);
    ASSERT_TRUE(j.ok()) << j.status();
    jobs.push_back(*j);
  }
  auto refused = SubmitOffload(c->transport(), req);
  EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted) << refused.status();
  EXPECT_NE(refused.status().message().find("offload queue full (--offload_queue=3)"), std::string::npos)
      << refused.status();
  // Not stalled by the scan:
  const auto t0 = std::chrono::steady_clock::now();
  auto blk = c->AllocOne(4096);
  ASSERT_TRUE(blk.ok()) << blk.status();
  EXPECT_TRUE(c->Free(std::vector<uint64_t>{*blk}).ok());
  auto stats = c->GetStats();
  EXPECT_TRUE(stats.ok()) << stats.status();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  auto where = PollOffload(c->transport(), jobs);
  ASSERT_TRUE(where.ok()) << where.status();
  EXPECT_EQ((*where)[0].state, OffloadState::kRunning);
  for (size_t i = 1; i < jobs.size(); ++i) EXPECT_EQ((*where)[i].state, OffloadState::kQueued) << i;
  EXPECT_EQ(Stats().queue_depth, 3u);
  release = true;
  for (const OffloadJobState& j : WaitDone(*c, jobs)) EXPECT_TRUE(j.status.ok()) << j.status;
  const OffloadStats s = Stats();
  EXPECT_EQ(s.jobs_total, 4u);
  EXPECT_EQ(s.refused_total, 1u);
  EXPECT_EQ(s.jobs, 0u);
  EXPECT_EQ(s.rows_total, 4000u);
  // Each result: count 1000, sum 0+..+999.
  const auto r = ReadBack(*c, result, 16);
  int64_t count = 0, sum = 0;
  std::memcpy(&count, r.data(), 8);
  std::memcpy(&sum, r.data() + 8, 8);
  EXPECT_EQ(count, 1000);
  EXPECT_EQ(sum, 999 * 1000 / 2);
}

// A client's jobs not yet collected (queued, running or done) are bounded;
// other clients are not held up by it; collecting frees the slots.
TEST_F(OffloadServiceTest, AClientsUncollectedJobsAreBounded) {
  OffloadOptions off;
  off.jobs_per_client = 2;
  Start(off);
  auto a = Connect();
  auto b = Connect();
  ASSERT_TRUE(a && b);
  const FarColumn ca = PutColumn(*a, ElemType::kI64, Iota64(100), 100);
  const FarColumn cb = PutColumn(*b, ElemType::kI64, Iota64(100), 100);
  const uint64_t ra = PatternBlock(*a, 64, 5), rb = PatternBlock(*b, 64, 6);
  const auto req_a = Request(*a, CountSumSpec(), {&ca}, {{0, 100}}, ra, 64);
  const auto req_b = Request(*b, CountSumSpec(), {&cb}, {{0, 100}}, rb, 64);
  workers().PauseForTest(true);
  std::vector<uint64_t> jobs;
  for (int i = 0; i < 2; ++i) {
    auto j = SubmitOffload(a->transport(), req_a);
    ASSERT_TRUE(j.ok()) << j.status();
    jobs.push_back(*j);
  }
  auto refused = SubmitOffload(a->transport(), req_a);
  EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted) << refused.status();
  EXPECT_NE(refused.status().message().find("has 2 offload jobs not yet collected (at most 2 per client"),
            std::string::npos)
      << refused.status();
  auto other = SubmitOffload(b->transport(), req_b);
  ASSERT_TRUE(other.ok()) << "B was refused for A's jobs: " << other.status();
  workers().PauseForTest(false);
  // Done but not collected: still counted.
  ASSERT_TRUE(Eventually([&] { return Stats().running == 0 && Stats().queue_depth == 0; }));
  EXPECT_EQ(Stats().jobs, 3u);
  EXPECT_EQ(SubmitOffload(a->transport(), req_a).status().code(), StatusCode::kResourceExhausted);
  for (const OffloadJobState& j : WaitDone(*a, jobs)) EXPECT_TRUE(j.status.ok()) << j.status;
  auto again = SubmitOffload(a->transport(), req_a);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(WaitOne(*a, *again).status.ok());
  EXPECT_TRUE(WaitOne(*b, *other).status.ok());
  EXPECT_EQ(Stats().jobs, 0u);
}

// A client that goes away with a running job and queued ones: the queued
// ones are forgotten, the running one stops at its next unit, and no job
// is left behind (the jobs counter returns to 0).
TEST_F(OffloadServiceTest, ADisconnectDropsQueuedJobsAndStopsTheRunningOne) {
  OffloadOptions off;
  off.threads = 1;
  Start(off);
  auto a = Connect();
  auto keep = Connect();  // another client's job is not disturbed
  ASSERT_TRUE(a && keep);
  const FarColumn col = PutColumn(*a, ElemType::kI64, Iota64(3000), 1000);
  const uint64_t result = PatternBlock(*a, 4096, 7);
  const FarColumn kcol = PutColumn(*keep, ElemType::kI64, Iota64(100), 100);
  const uint64_t kresult = PatternBlock(*keep, 64, 8);
  const auto three_units = Request(*a, CountSumSpec(), {&col}, {{0, 1000}, {1000, 1000}, {2000, 1000}}, result, 4096);
  const auto one_unit = Request(*a, CountSumSpec(), {&col}, {{0, 1000}}, result, 4096);
  std::atomic<uint64_t> first_job{0};
  std::atomic<bool> reached{false};
  // Holds the first job before its unit 1 until the client's queued jobs
  // are gone (DropClient removes them, then waits for this job); the other
  // client's job stays queued behind it.
  workers().SetUnitHookForTest([&](uint64_t job, size_t unit) {
    if (job != first_job.load() || unit != 1) return;
    reached = true;
    Eventually([&] { return node_->service().offload_stats().queue_depth == 1; }, std::chrono::seconds(20));
  });
  workers().PauseForTest(true);
  auto j1 = SubmitOffload(a->transport(), three_units);
  ASSERT_TRUE(j1.ok()) << j1.status();
  first_job = *j1;
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(SubmitOffload(a->transport(), one_unit).ok());
  auto kj = SubmitOffload(keep->transport(), Request(*keep, CountSumSpec(), {&kcol}, {{0, 100}}, kresult, 64));
  ASSERT_TRUE(kj.ok()) << kj.status();
  workers().PauseForTest(false);
  ASSERT_TRUE(Eventually([&] { return reached.load(); }));
  EXPECT_EQ(Stats().queue_depth, 3u);
  a.reset();  // OnDisconnect: returns once the running job has stopped
  OffloadStats s = Stats();
  EXPECT_LE(s.jobs, 1u) << "only the other client's job is left (queued, running or done)";
  EXPECT_TRUE(WaitOne(*keep, *kj).status.ok());
  s = Stats();
  EXPECT_EQ(s.jobs, 0u) << "a job of the departed client was left behind";
  EXPECT_EQ(s.running, 0u);
  EXPECT_EQ(s.queue_depth, 0u);
  EXPECT_EQ(s.jobs_total, 4u);
  EXPECT_EQ(s.rows_total, 1000u + 100u) << "the dropped job ran past its unit 0";
  EXPECT_EQ(s.jobs_failed_total, 0u) << "a dropped job is not a failed one";

  // With every job still queued (workers paused), the disconnect forgets
  // them at once.
  auto b = Connect();
  ASSERT_TRUE(b);
  const FarColumn bcol = PutColumn(*b, ElemType::kI64, Iota64(100), 100);
  const uint64_t bresult = PatternBlock(*b, 64, 9);
  workers().PauseForTest(true);
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(SubmitOffload(b->transport(), Request(*b, CountSumSpec(), {&bcol}, {{0, 100}}, bresult, 64)).ok());
  EXPECT_EQ(Stats().jobs, 5u);
  b.reset();
  EXPECT_EQ(Stats().jobs, 0u);
  EXPECT_EQ(Stats().queue_depth, 0u);
  workers().PauseForTest(false);
  ASSERT_TRUE(Eventually([&] { return node_->service().CollectStats().head.live_blocks == 2; }))
      << "the departed clients' blocks were not reclaimed";
}

TEST_F(OffloadServiceTest, OffloadThreadsZeroRefusesNamingTheFlag) {
  OffloadOptions off;
  off.threads = 0;
  Start(off);
  EXPECT_EQ(node_->service().offload_workers(), nullptr);
  auto c = Connect();
  ASSERT_TRUE(c);
  const FarColumn col = PutColumn(*c, ElemType::kI64, Iota64(100), 100);
  const uint64_t result = PatternBlock(*c, 64, 10);
  auto j = SubmitOffload(c->transport(), Request(*c, CountSumSpec(), {&col}, {{0, 100}}, result, 64));
  EXPECT_EQ(j.status().code(), StatusCode::kFailedPrecondition) << j.status();
  EXPECT_NE(j.status().message().find("--offload_threads=0"), std::string::npos) << j.status();
  auto w = PollOffload(c->transport(), std::vector<uint64_t>{1});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ((*w)[0].status.code(), StatusCode::kNotFound);
  EXPECT_FALSE(Stats().enabled);
  EXPECT_EQ(Stats().refused_total, 1u);
  EXPECT_EQ(ReadBack(*c, result, 64), Pattern(64, 10));
}

// A block freed by its client while a job reads it: the job's pin of the
// next unit fails (the pages were revoked, zeroed, maybe given to another
// client), so the job fails with PermissionDenied naming the piece and
// never reads the new owner's bytes; the result block is untouched.
TEST_F(OffloadServiceTest, ABlockFreedUnderARunningJobFailsItWithPermissionDenied) {
  OffloadOptions off;
  off.threads = 1;
  Start(off);
  auto a = Connect();
  auto b = Connect();
  ASSERT_TRUE(a && b);
  constexpr size_t kBlockRows = 65536;  // 512 KiB of i64: whole pages, a span of its own
  const FarColumn x = PutColumn(*a, ElemType::kI64, Iota64(kBlockRows), kBlockRows);
  const FarColumn y = PutColumn(*a, ElemType::kI64, Iota64(kBlockRows), kBlockRows);
  const uint64_t result = PatternBlock(*a, 4096, 11);
  std::atomic<bool> at_unit1{false}, go{false};
  workers().SetUnitHookForTest([&](uint64_t, size_t unit) {
    if (unit != 1) return;
    at_unit1 = true;
    Eventually([&] { return go.load(); }, std::chrono::seconds(20));
  });
  // Unit 0 reads X, unit 1 reads Y.
  OffloadRequestBuilder bld(MaxRequestBytes(a->transport()));
  bld.Begin(offload::Encode(CountSumSpec()), result, 4096);
  OffloadUnitRef u0, u1;
  u0.rows = u1.rows = 1000;
  u0.columns = {x.Far(0, 1000)};
  u1.first_row = 1000;
  u1.columns = {y.Far(0, 1000)};
  ASSERT_TRUE(bld.TryAdd(u0) && bld.TryAdd(u1));
  auto job = SubmitOffload(a->transport(), bld.bytes());
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_TRUE(Eventually([&] { return at_unit1.load(); }));
  const uint64_t zeroed = node_->zeroed_bytes();
  ASSERT_TRUE(a->Free(std::vector<uint64_t>{y.chunks[0]}).ok());
  ASSERT_TRUE(Eventually([&] { return node_->zeroed_bytes() >= zeroed + kBlockRows * 8; }))
      << "Y's pages were not revoked";
  // B may now be given Y's pages: it writes its secret there if it is.
  std::vector<uint64_t> held;
  for (int i = 0; i < 8; ++i) {
    auto o = b->AllocOne(kBlockRows * 8);
    ASSERT_TRUE(o.ok()) << o.status();
    held.push_back(*o);
    if (*o == y.chunks[0]) {
      const auto secret = Pattern(kBlockRows * 8, 12);
      ASSERT_TRUE(b->transport().Write(*o, secret.data(), secret.size()).ok());
      break;
    }
  }
  go = true;
  const OffloadJobState st = WaitOne(*a, *job);
  EXPECT_EQ(st.status.code(), StatusCode::kPermissionDenied) << st.status;
  EXPECT_NE(st.status.message().find("OFFLOAD unit 1, column 0, piece 0: [" + std::to_string(y.chunks[0]) +
                                     ", +8000) is no longer this session's far memory"),
            std::string::npos)
      << st.status;
  EXPECT_EQ(st.rows, 1000u) << "unit 0 ran, unit 1 did not";
  EXPECT_EQ(ReadBack(*a, result, 4096), Pattern(4096, 11));
  EXPECT_EQ(Stats().jobs, 0u);
}

}  // namespace
}  // namespace sharry::memnode
