// Writes the seed corpora of the fuzz targets with the real encoders:
//   fuzz_make_corpus <dir>      (scripts/fuzz.sh --make-corpus runs it on fuzz/corpus)
// creates <dir>/<target>/<name> for each seed below. The input layouts are
// described at the top of each target's source.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "discovery/memnode_info.h"
#include "memnode/rpc.h"
#include "memnode/service.h"
#include "offload/spec.h"
#include "verbs/handshake.h"
#include "verbs/transport_internal.h"
#include "verbs/wire.h"

namespace fs = std::filesystem;
using namespace sharry;
using namespace sharry::memnode;
using Bytes = std::vector<uint8_t>;

namespace {

fs::path root;

void Write(const std::string& target, const std::string& name, const Bytes& b) {
  fs::create_directories(root / target);
  std::ofstream(root / target / name, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), b.size());
}

template <typename T>
void Put(Bytes& b, const T& v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  b.insert(b.end(), p, p + sizeof v);
}
void Append(Bytes& b, const Bytes& x) { b.insert(b.end(), x.begin(), x.end()); }

// rpc_service_fuzz record: [client byte if multi] [u16 length] [request]
void Record(Bytes& b, const Bytes& req, int client = -1) {
  if (client >= 0) b.push_back(static_cast<uint8_t>(client));
  Put(b, static_cast<uint16_t>(req.size()));
  Append(b, req);
}
// Reply bodies as the memnode writes them: the header, then the entries.
Bytes AllocReply(const std::vector<AllocEntry>& entries) {
  ReplyHeader h;
  h.count = static_cast<uint16_t>(entries.size());
  Bytes b;
  Put(b, h);
  for (const AllocEntry& e : entries) Put(b, e);
  return b;
}
Bytes FreeReply(const Bytes& codes) {
  ReplyHeader h;
  h.count = static_cast<uint16_t>(codes.size());
  Bytes b;
  Put(b, h);
  Append(b, codes);
  return b;
}
Bytes StatsReply(const Stats& s) {
  ReplyHeader h;
  h.count = 1;
  Bytes b;
  Put(b, h);
  Put(b, s.head);
  for (const SectionRecord& r : s.sections) Put(b, r);
  for (const ClientRecord& r : s.clients) Put(b, r);
  for (const TenantRecord& r : s.tenants) Put(b, r);
  return b;
}

constexpr uint64_t H(uint64_t i) { return (uint64_t{1} << 63) | i; }  // history[i] in resolve mode

Bytes Raw(Opcode op, uint8_t version, uint16_t count, uint32_t reserved, size_t body) {
  RpcHeader h;
  h.opcode = op;
  h.version = version;
  h.count = count;
  h.reserved = reserved;
  Bytes b;
  Put(b, h);
  b.resize(b.size() + body, 0);
  return b;
}

void ServiceSeeds() {
  const std::string t = "rpc_service_fuzz";
  Bytes b{0x20};  // client 1, default buffer, resolve
  Record(b, EncodeAlloc({64, 4096, 100000, 8}));
  Record(b, EncodeStats());
  Record(b, EncodeFree({H(0), H(1), H(2), H(3)}));
  Record(b, EncodeStats());
  Write(t, "alloc_stats_free", b);

  b = {0x21};  // client 2: double free, interior pointer, out of range
  Record(b, EncodeAlloc({128, 128}));
  Record(b, EncodeFree({H(0), H(0)}));
  Record(b, EncodeFree({H(0), H(1) + (1u << 16), 4u << 20, ~uint64_t{0}}));
  Write(t, "double_free", b);

  b = {0x24};  // several clients: foreign free, then the owner's
  Record(b, EncodeAlloc({256}), 0);
  Record(b, EncodeFree({H(0)}), 1);
  Record(b, EncodeFree({H(0)}), 0);
  Record(b, EncodeAlloc({512, 0, 5u << 20}), 3);  // left to the disconnect
  Write(t, "foreign_free", b);

  b = {0x08};  // the smallest response buffer (64 B)
  Record(b, EncodeAlloc({8, 8, 8}));
  Record(b, EncodeFree(std::vector<uint64_t>(64, 8)));
  Record(b, EncodeStats());
  Write(t, "small_buffer", b);

  b = {0x02};  // malformed requests
  Record(b, {1, 1, 0});
  Record(b, Raw(Opcode::kAlloc, 9, 1, 0, 8));
  Record(b, Raw(Opcode::kAlloc, 1, 1, 5, 8));
  Record(b, Raw(Opcode::kAlloc, 1, 2, 0, 8));
  Record(b, Raw(Opcode::kFree, 1, 0, 0, 0));
  Record(b, Raw(Opcode::kStats, 1, 1, 0, 8));
  Record(b, Raw(static_cast<Opcode>(42), 1, 1, 0, 8));
  Write(t, "malformed", b);

  b = {0x03};  // far memory exhausted
  Record(b, EncodeAlloc({1u << 20, 1u << 20, 1u << 20, 1u << 20, 1u << 20}));
  Record(b, EncodeStats());
  Write(t, "exhaust", b);
}

void CodecSeeds() {
  const std::string t = "rpc_codec_fuzz";
  Write(t, "alloc_reply", AllocReply({{.offset = 4096}, {.offset = 0, .code = ElementCode::kOutOfMemory}}));
  Write(t, "free_reply", FreeReply({0, 4, 5}));

  Stats s;
  s.head.uma_bytes = 4u << 20;
  s.head.sections = 1;
  s.head.client_records = 1;
  s.sections.resize(1);
  s.clients.resize(1);
  s.clients[0].client_id = 7;
  Write(t, "stats_reply", StatsReply(s));
  s.head.tenant_records = 1;
  s.tenants.resize(1);
  std::memcpy(s.tenants[0].name, "alice", 5);
  s.tenants[0].quota_bytes = 1u << 20;
  Write(t, "stats_reply_tenant", StatsReply(s));

  Bytes b(64, 0);
  b.resize(WriteErrorReply(Status::InvalidArgument("STATS takes no arguments"), b));
  Write(t, "error_reply", b);

  Write(t, "transport_error", internal::EncodeError(Status::Protocol("bad frame header")));
}

// tcp_server_fuzz chunk: [ctl] [len] [bytes]
void Chunk(Bytes& b, uint8_t ctl, const Bytes& x) {
  b.push_back(ctl);
  b.push_back(static_cast<uint8_t>(x.size()));
  Append(b, x);
}
Bytes Frame(wire::Kind k, uint64_t tag, const Bytes& payload) {
  wire::MsgHeader h{};
  h.kind = k;
  h.tag = tag;
  h.length = static_cast<uint32_t>(payload.size());
  Bytes b;
  Put(b, h);
  Append(b, payload);
  return b;
}
Bytes Range(uint64_t off, uint64_t len) {
  Bytes b;
  Put(b, wire::RangePayload{off, len});
  return b;
}

void TcpSeeds() {
  const std::string t = "tcp_server_fuzz";
  Bytes b{0x00};  // hello, then STATS, ALLOC, FREE as framed requests
  Chunk(b, 0x20, EncodeStats());
  Chunk(b, 0x21, EncodeAlloc({64, 64}));
  Chunk(b, 0x22, EncodeFree({0}));
  Write(t, "rpc", b);

  b = {0x00};  // one-sided read and write frames, by hand
  Chunk(b, 0x00, Frame(wire::Kind::kRead, 5, Range(0, 4096)));
  Bytes w = Range(64, 8);
  w.resize(w.size() + 8, 0xab);
  Chunk(b, 0x02, Frame(wire::Kind::kWrite, 6, w));
  Chunk(b, 0x00, Frame(wire::Kind::kRead, 7, Range(1u << 20, 1)));  // out of range
  Write(t, "read_write", b);

  b = {0x01};  // no automatic hello: credentials for tenant-a, a wrong answer (refused), then a request
  wire::HelloPayload base{};
  base.max_message = 8192;
  Chunk(b, 0x00, Frame(wire::Kind::kHello, 1, internal::EncodeHello(base, "tenant-a", auth::Nonce{}, nullptr)));
  Chunk(b, 0x00, Frame(wire::Kind::kAuth, 2, Bytes(wire::kProofBytes, 0x07)));
  Chunk(b, 0x20, EncodeStats());
  Write(t, "auth_wrong_answer", b);

  b = {0x04};  // a 1 MiB read, and the peer closes without reading (mid-reply)
  Chunk(b, 0x08, Frame(wire::Kind::kRead, 1, Range(0, 1u << 20)));
  Write(t, "close_mid_reply", b);

  b = {0x01};  // no hello: something else speaking
  Chunk(b, 0x00, Bytes{'G', 'E', 'T', ' ', '/', ' ', 'H', 'T', 'T', 'P', '/', '1', '.', '1', '\r', '\n', '\r', '\n'});
  Write(t, "not_sharry", b);

  b = {0x02};  // hello, then a request whose header announces more than arrives; stays open
  Bytes f = Frame(wire::Kind::kRequest, 1, EncodeAlloc({8}));
  f[offsetof(wire::MsgHeader, length)] = 64;
  Chunk(b, 0x00, f);
  Write(t, "truncated_open", b);
}

// tcp_client_fuzz: what a server answers after the welcome (byte 0 even).
void ClientSeeds() {
  const std::string t = "tcp_client_fuzz";
  Stats st;
  st.head.uma_bytes = 1u << 20;
  st.head.sections = 1;
  st.sections.resize(1);
  Bytes b{0x00};
  Append(b, Frame(wire::Kind::kResponse, 1, StatsReply(st)));
  Append(b, Frame(wire::Kind::kResponse, 2, AllocReply({{.offset = 4096}, {.offset = 8192}})));
  Append(b, Frame(wire::Kind::kResponse, 3, FreeReply({0, 0})));
  Append(b, Frame(wire::Kind::kReadData, 4, Bytes(64, 0x5a)));
  Append(b, Frame(wire::Kind::kWriteAck, 5, {}));
  Write(t, "well_behaved", b);

  b = {0x00};  // every call refused with a transport error
  for (uint64_t tag = 1; tag <= 5; ++tag)
    Append(b, Frame(wire::Kind::kError, tag, internal::EncodeError(Status::Unavailable("busy"))));
  Write(t, "errors", b);

  b = {0x00};  // a memnode error reply, then an ALLOC reply with the wrong count
  Bytes err(64);
  err.resize(WriteErrorReply(Status::OutOfMemory("full"), err));
  Append(b, Frame(wire::Kind::kResponse, 1, err));
  Append(b, Frame(wire::Kind::kResponse, 2, AllocReply({{.offset = 8192}})));
  Write(t, "bad_replies", b);

  b = {0x01};  // no welcome: the server refuses (status kUnavailable)
  wire::MsgHeader h{};
  h.kind = wire::Kind::kWelcome;
  h.length = sizeof(wire::WelcomePayload);
  wire::WelcomePayload w{};
  w.status = static_cast<uint16_t>(StatusCode::kUnavailable);
  Put(b, h);
  Put(b, w);
  Write(t, "refused", b);
}

// tcp_framing_fuzz: [k | hold bit] [k piece sizes] [stream].
void FramingSeeds() {
  const std::string t = "tcp_framing_fuzz";
  wire::HelloPayload hello{};
  hello.max_message = 1024;
  Bytes hp;
  Put(hp, hello);
  Bytes b{0x00};  // byte by byte: hello, a request, a write, a read
  Append(b, Frame(wire::Kind::kHello, 1, hp));
  Append(b, Frame(wire::Kind::kRequest, 2, Bytes{'h', 'i'}));
  Bytes w = Range(64, 4);
  w.insert(w.end(), {1, 2, 3, 4});
  Append(b, Frame(wire::Kind::kWrite, 3, w));
  Append(b, Frame(wire::Kind::kRead, 4, Range(64, 4)));
  Write(t, "hello_requests", b);

  b = {0x00};  // credentials: a challenged hello, the answer, then requests
  wire::HelloPayload base{};
  base.max_message = 1024;
  Append(b, Frame(wire::Kind::kHello, 1, internal::EncodeHello(base, "tenant-a", auth::Nonce{}, nullptr)));
  Append(b, Frame(wire::Kind::kAuth, 2, Bytes(wire::kProofBytes, 0x01)));
  Append(b, Frame(wire::Kind::kRequest, 3, Bytes{'h', 'i'}));
  Write(t, "auth_hello", b);

  b = {0x00};  // a join with its token, then a read
  base.session = 7;
  internal::SessionToken token{};
  token.fill(0x5a);
  Append(b, Frame(wire::Kind::kHello, 1, internal::EncodeHello(base, "", auth::Nonce{}, &token)));
  Append(b, Frame(wire::Kind::kRead, 2, Range(64, 4)));
  Write(t, "join_token", b);

  b = {0x00};  // verbs' hello (credentials to follow on the QP): refused over tcp
  base.session = 0;
  base.flags = wire::kHelloAuthOnQp;
  Append(b, Frame(wire::Kind::kHello, 1, internal::EncodeHello(base, "", auth::Nonce{}, nullptr)));
  Append(b, Frame(wire::Kind::kRequest, 2, Bytes{'h', 'i'}));
  Write(t, "auth_on_qp_hello", b);
  base.flags = 0;

  b = {0x13, 5, 0, 17};  // uneven pieces, backpressure: every recoverable error, then a bad header
  hello.max_message = wire::kMinMessage;  // requests of more than 64 B are too long
  hp.clear();
  Put(hp, hello);
  Append(b, Frame(wire::Kind::kHello, 1, hp));
  Append(b, Frame(wire::Kind::kRequest, 2, Bytes(65, 'z')));
  Append(b, Frame(wire::Kind::kRead, 3, Range(0, wire::kMaxTcpChunk + 1)));
  Append(b, Frame(wire::Kind::kWrite, 4, Range(0, 8)));
  Append(b, Frame(wire::Kind::kWriteAck, 5, Bytes{1, 2}));
  b.insert(b.end(), 16, 0xee);
  Write(t, "errors_split", b);

  b = {0x01, 7};  // a request before the hello
  Append(b, Frame(wire::Kind::kRequest, 1, Bytes{'x'}));
  Write(t, "no_hello", b);
}

}  // namespace

// etcd_reply_fuzz: [selector] [text], replies as etcd 3.4.23 wrote them.
void EtcdSeeds() {
  const std::string header =
      R"("header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952","revision":"4","raft_term":"2"})";
  auto seed = [](const std::string& name, uint8_t selector, const std::string& text) {
    Bytes b{selector};
    b.insert(b.end(), text.begin(), text.end());
    Write("etcd_reply_fuzz", name, b);
  };
  seed("range", 0, "{" + header + R"(,"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1",)"
                   R"("value":"YmFy","lease":"77"}],"count":"1"})");
  seed("watch_created", 1, R"({"result":{)" + header + R"(,"created":true}})");
  seed("watch_events", 1, R"({"result":{)" + header +
                              R"(,"events":[{"kv":{"key":"Zm9v","mod_revision":"2","value":"YmFy"}},)"
                              R"({"type":"DELETE","kv":{"key":"Zm9v","mod_revision":"3"}}]}})");
  seed("watch_compacted", 1, R"({"result":{"header":{"raft_term":"2"},"canceled":true,"compact_revision":"3"}})");
  seed("lease_grant", 2, "{" + header + R"(,"ID":"2324035765028852230","TTL":"5"})");
  seed("keepalive", 3, R"({"result":{)" + header + R"(,"ID":"123","TTL":"5"}})");
  seed("delete", 4, "{" + header + R"(,"deleted":"1"})");
  seed("error", 5, R"({"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5})");
  seed("memnode_info", 6, discovery::EncodeMemnodeInfo({"10.0.0.7:7000", "tcp", 1 << 30, 1767261600123}));
  seed("base64", 7, "Zm9vYg==");
}

// offload_spec_fuzz: [spec][layout byte][column bytes]: the Fig. 8 hour
// query, a filtered least-squares spec over small columns, and a spec
// without a key; each with a few hundred rows of data.
void OffloadSeeds() {
  using namespace sharry::offload;
  const std::string t = "offload_spec_fuzz";
  auto data = [](Bytes b, uint8_t layout, size_t bytes) {
    b.push_back(layout);
    for (size_t i = 0; i < bytes; ++i) b.push_back(static_cast<uint8_t>((i * 131 + 7) ^ (i >> 3)));
    return b;
  };
  const Node col0{ExprOp::kColumn, 0, 0}, col1{ExprOp::kColumn, 1, 0}, col2{ExprOp::kColumn, 2, 0};
  const Node sub{ExprOp::kSub, 0, 0}, div{ExprOp::kDiv, 0, 0};
  {
    Spec s;
    s.Column(ElemType::kI64);
    s.Column(ElemType::kI64);
    s.Column(ElemType::kF32);
    s.key = {.column = 0, .add = 0, .div = 3600, .mod = 24};
    s.groups = 24;
    s.Aggregate(AggKind::kCount);
    s.Aggregate(AggKind::kSum, s.AddExpr({col1, col0, sub}));
    s.Aggregate(AggKind::kSum, s.AddExpr({col2, col1, col0, sub, {ExprOp::kConst, 0, 3600}, div, div}));
    Write(t, "taxi_hour", data(Encode(s), 3, 300 * 20));
  }
  {
    Spec s;
    s.Column(ElemType::kU8);
    s.Column(ElemType::kI16);
    s.Column(ElemType::kF64);
    s.key = {.column = 0, .add = 0, .div = 1, .mod = 7};
    s.groups = 7;
    s.filters.push_back({.column = 1, .cmp = Cmp::kGt, .int_value = -100});
    s.filters.push_back({.column = 2, .cmp = Cmp::kLe, .float_value = 1e6});
    const uint8_t x = s.ColumnExpr(1), y = s.ColumnExpr(2);
    s.Aggregate(AggKind::kCount);
    s.Aggregate(AggKind::kSum, x);
    s.Aggregate(AggKind::kSumSq, x);
    s.Aggregate(AggKind::kSumProd, x, y);
    s.Aggregate(AggKind::kMin, y);
    s.Aggregate(AggKind::kMax, s.AddExpr({col2, {ExprOp::kDup, 0, 0}, {ExprOp::kMul, 0, 0}, {ExprOp::kSqrt, 0, 0},
                                          col1, {ExprOp::kConst, 0, 0.5}, col2, {ExprOp::kSelectGt, 0, 0}}));
    Write(t, "least_squares", data(Encode(s), 0, 400 * 11));
  }
  {
    Spec s;
    s.Column(ElemType::kU64);
    s.Aggregate(AggKind::kSum, s.ColumnExpr(0));
    s.Aggregate(AggKind::kMax, 0);
    Write(t, "no_key", data(Encode(s), 6, 50 * 8));
  }
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
    return 2;
  }
  root = argv[1];
  ServiceSeeds();
  CodecSeeds();
  TcpSeeds();
  ClientSeeds();
  FramingSeeds();
  EtcdSeeds();
  OffloadSeeds();
  return 0;
}
