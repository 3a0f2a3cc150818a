// libFuzzer target: the decoders a client runs on bytes that come from the
// network, fed arbitrary bytes. They must never crash or read past the
// buffer (ASan), must reject what they cannot account for, and what they
// accept must re-encode to the same bytes:
//   memnode::DecodeReplyHeader   with every entry size in use (0, 1, 16) and a few others
//   memnode::DecodeStats         and FormatStats of what it returns
//   internal::DecodeError        the transport's kError payload
// and the encoders' round trips: EncodeError -> DecodeError,
// WriteErrorReply -> DecodeReplyHeader, EncodeAlloc/EncodeFree -> the header
// and items a memnode parses.
#include <glog/logging.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "memnode/rpc.h"
#include "memnode/service.h"
#include "verbs/transport_internal.h"

namespace {

using namespace sharry;
using namespace sharry::memnode;

std::vector<uint8_t> EncodeStatsReply(const ReplyHeader& h, const Stats& s) {
  std::vector<uint8_t> out(sizeof h + sizeof s.head + s.sections.size() * sizeof(SectionRecord) +
                           s.clients.size() * sizeof(ClientRecord) + s.tenants.size() * sizeof(TenantRecord));
  size_t off = 0;
  auto put = [&](const void* p, size_t n) {
    if (n) std::memcpy(out.data() + off, p, n);
    off += n;
  };
  put(&h, sizeof h);
  put(&s.head, sizeof s.head);
  put(s.sections.data(), s.sections.size() * sizeof(SectionRecord));
  put(s.clients.data(), s.clients.size() * sizeof(ClientRecord));
  put(s.tenants.data(), s.tenants.size() * sizeof(TenantRecord));
  return out;
}

void Replies(std::span<const uint8_t> in) {
  for (size_t es : {size_t{0}, size_t{1}, sizeof(AllocEntry), size_t{8}, sizeof(SectionRecord)}) {
    auto h = DecodeReplyHeader(in, es);
    if (!h.ok()) {
      CHECK(h.status().code() != StatusCode::kOk);
      continue;
    }
    CHECK_GE(in.size(), sizeof(ReplyHeader));
    CHECK_EQ(h->status, 0);
    CHECK_EQ(h->version, kRpcVersion);
    if (es != 0) CHECK_EQ(in.size(), sizeof(ReplyHeader) + size_t{h->count} * es + h->msglen);  // entries, note
    CHECK_EQ(std::memcmp(&*h, in.data(), sizeof(ReplyHeader)), 0) << "header does not re-encode";
  }
  auto s = DecodeStats(in);
  if (!s.ok()) return;
  CHECK_EQ(s->sections.size(), s->head.sections);
  CHECK_EQ(s->clients.size(), s->head.client_records);
  CHECK_EQ(s->tenants.size(), s->head.tenant_records);
  for (const TenantRecord& t : s->tenants) CHECK_LE(t.tenant().size(), sizeof t.name);
  ReplyHeader h;
  std::memcpy(&h, in.data(), sizeof h);
  std::vector<uint8_t> again = EncodeStatsReply(h, *s);
  CHECK(again.size() == in.size() && std::memcmp(again.data(), in.data(), in.size()) == 0)
      << "STATS reply does not re-encode";
  (void)FormatStats(*s);
}

void Errors(std::span<const uint8_t> in) {
  Status s = internal::DecodeError(in);
  CHECK(!s.ok()) << "an error payload decoded as OK";
  if (!in.empty()) {
    CHECK_EQ(s.message(), "server: " + std::string(reinterpret_cast<const char*>(in.data()) + 1, in.size() - 1));
    Status again = internal::DecodeError(internal::EncodeError(s));
    CHECK(again.code() == s.code());
    CHECK_EQ(again.message(), "server: " + s.message());
  }
  // Encoder first: any code, any message.
  if (!in.empty()) {
    auto code = static_cast<StatusCode>(in[0] % (uint8_t(kLastStatusCode) + 1));
    std::string msg(reinterpret_cast<const char*>(in.data()) + 1, in.size() - 1);
    Status d = internal::DecodeError(internal::EncodeError(Status(code, msg)));
    CHECK(d.code() == (code == StatusCode::kOk ? StatusCode::kProtocol : code));
    CHECK_EQ(d.message(), "server: " + msg);

    // The memnode's request-level error reply, into buffers of every size the
    // transport may hand it (at least 64 B) and smaller ones down to a header.
    if (code != StatusCode::kOk) {
      const size_t cap = sizeof(ReplyHeader) + (in.size() > 1 ? in[1] : 0) * 3 % 600;
      std::vector<uint8_t> out(cap);
      const size_t n = WriteErrorReply(Status(code, msg), out);
      CHECK_LE(n, cap);
      out.resize(n);
      auto h = DecodeReplyHeader(out, sizeof(AllocEntry));
      CHECK(!h.ok());
      CHECK(h.status().code() == code);
      const std::string& m = h.status().message();
      CHECK_EQ(m.rfind("memnode: ", 0), 0u);
      CHECK_EQ(m.substr(9), msg.substr(0, std::min(msg.size(), cap - sizeof(ReplyHeader))));
    }
  }
}

void Requests(std::span<const uint8_t> in) {
  std::vector<uint64_t> items(std::min<size_t>(in.size() / 8, kMaxBatch));
  if (!items.empty()) std::memcpy(items.data(), in.data(), items.size() * 8);
  for (Opcode op : {Opcode::kAlloc, Opcode::kFree}) {
    std::vector<uint8_t> req = op == Opcode::kAlloc ? EncodeAlloc(items) : EncodeFree(items);
    RpcHeader h;
    CHECK_EQ(req.size(), sizeof h + items.size() * 8);
    std::memcpy(&h, req.data(), sizeof h);
    CHECK(h.opcode == op);
    CHECK_EQ(h.version, kRpcVersion);
    CHECK_EQ(h.reserved, 0u);
    CHECK_EQ(h.count, items.size());
    if (!items.empty()) CHECK_EQ(std::memcmp(req.data() + sizeof h, items.data(), items.size() * 8), 0);
  }
  if (!in.empty()) {
    auto c = static_cast<ElementCode>(in[0]);
    Status s = ElementStatus(c, "x");
    CHECK_EQ(s.ok(), c == ElementCode::kOk);
    (void)ElementCodeName(c);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  FLAGS_minloglevel = 2;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  Replies(in);
  Errors(in);
  Requests(in);
  return 0;
}
