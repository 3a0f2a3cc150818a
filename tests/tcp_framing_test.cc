// The TCP server's input parser (verbs/tcp_framing.h) without a socket: fed
// byte by byte and in arbitrary splits, it must ask for the same things as
// when fed whole, keep the stream in sync after every recoverable error, and
// stop at the ones that close.
#include "verbs/tcp_framing.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "verbs/wire.h"

namespace sharry::internal {
namespace {

using wire::Kind;
using wire::MsgHeader;

constexpr uint32_t kMaxMessage = 4096;
constexpr uint64_t kRegion = 1 << 16;

// Records every call as one line; holds frames when asked to.
class Recorder : public TcpFraming::Sink {
 public:
  std::vector<std::string> events;
  int hold_next = 0;           // TakeFrame() answers false this many times
  std::string refuse_hellos;   // non-empty: OnHello refuses with this reason

  bool TakeFrame() override {
    if (hold_next == 0) return true;
    --hold_next;
    events.push_back("hold");
    return false;
  }
  Status OnHello(uint64_t tag, const Hello& hello, uint32_t max_message, bool* challenged) override {
    const wire::HelloPayload& h = hello.base;
    events.push_back("hello " + std::to_string(tag) + " " + std::to_string(h.max_message) + " " +
                     std::to_string(max_message) + " session " + std::to_string(h.session) +
                     (hello.authenticates ? " tenant " + hello.tenant : std::string()) +
                     (hello.has_token ? " token " + std::to_string(hello.token[0]) : std::string()));
    if (!refuse_hellos.empty()) return Status::Unavailable(refuse_hellos);
    *challenged = hello.authenticates;
    return Status::Ok();
  }
  Status OnAuth(uint64_t tag, std::span<const uint8_t> proof) override {
    events.push_back("auth " + std::to_string(tag) + " " + std::to_string(proof.size()) + " B");
    if (proof[0] != 0xAA) return Status::PermissionDenied("authentication failed for tenant 't'");
    return Status::Ok();
  }
  void OnRequest(uint64_t tag, std::span<const uint8_t> p) override {
    events.push_back("request " + std::to_string(tag) + " " + std::string(p.begin(), p.end()));
  }
  void OnRead(uint64_t tag, uint64_t off, uint64_t len) override {
    events.push_back("read " + std::to_string(tag) + " " + std::to_string(off) + "+" + std::to_string(len));
  }
  void OnWrite(uint64_t tag, uint64_t off, uint64_t len) override {
    events.push_back("write " + std::to_string(tag) + " " + std::to_string(off) + "+" + std::to_string(len));
  }
  void OnError(uint64_t tag, const Status& s) override {
    events.push_back("error " + std::to_string(tag) + " " + std::string(StatusCodeName(s.code())) + ": " +
                     s.message());
  }
  void OnRefuse(uint64_t tag, StatusCode code, const std::string& reason) override {
    events.push_back("refuse " + std::to_string(tag) + " " + std::string(StatusCodeName(code)) + ": " + reason);
  }
  void OnClose(const std::string& why) override { events.push_back("close " + why); }
};

// Frame builders.
void Put(std::vector<uint8_t>* s, const void* p, size_t n) {
  auto* b = static_cast<const uint8_t*>(p);
  s->insert(s->end(), b, b + n);
}
void Frame(std::vector<uint8_t>* s, Kind k, uint64_t tag, const std::vector<uint8_t>& payload) {
  MsgHeader h{};
  h.kind = k;
  h.tag = tag;
  h.length = static_cast<uint32_t>(payload.size());
  Put(s, &h, sizeof h);
  Put(s, payload.data(), payload.size());
}
std::vector<uint8_t> Bytes(const std::string& s) { return {s.begin(), s.end()}; }
void Hello(std::vector<uint8_t>* s, uint64_t tag, uint32_t max_message = 8192, uint32_t session = 0) {
  wire::HelloPayload h{};
  h.max_message = max_message;
  h.session = session;
  std::vector<uint8_t> p(sizeof h);
  std::memcpy(p.data(), &h, sizeof h);
  Frame(s, Kind::kHello, tag, p);
}
void Range(std::vector<uint8_t>* s, Kind k, uint64_t tag, uint64_t off, uint64_t len, const std::string& data = "") {
  wire::RangePayload r{off, len};
  std::vector<uint8_t> p(sizeof r);
  std::memcpy(p.data(), &r, sizeof r);
  p.insert(p.end(), data.begin(), data.end());
  Frame(s, k, tag, p);
}

struct Parsed {
  std::vector<std::string> events;
  size_t consumed = 0;
  std::vector<uint8_t> region = std::vector<uint8_t>(kRegion);
  bool greeted = false;
};

// Feeds `stream` in pieces of the given sizes (the rest in one piece).
Parsed Feed(const std::vector<uint8_t>& stream, const std::vector<size_t>& pieces = {}, Recorder rec = {}) {
  Parsed r;
  TcpFraming f({kMaxMessage, r.region.data(), kRegion});
  size_t pos = 0;
  auto feed = [&](size_t n) {
    size_t used = f.Feed({stream.data() + pos, n}, rec);
    r.consumed += used;
    pos += used;
  };
  for (size_t n : pieces) {
    if (f.closed()) break;
    feed(std::min(n, stream.size() - pos));
  }
  if (!f.closed()) feed(stream.size() - pos);
  r.events = rec.events;
  r.greeted = f.greeted();
  return r;
}

TEST(TcpFraming, HelloThenRequests) {
  std::vector<uint8_t> s;
  Hello(&s, 7);
  Frame(&s, Kind::kRequest, 8, Bytes("abc"));
  Frame(&s, Kind::kRequest, 9, {});
  Parsed r = Feed(s);
  EXPECT_TRUE(r.greeted);
  EXPECT_EQ(r.consumed, s.size());
  EXPECT_EQ(r.events, (std::vector<std::string>{"hello 7 8192 4096 session 0", "request 8 abc", "request 9 "}));
}

TEST(TcpFraming, NegotiatesTheSmallerMaxMessage) {
  Recorder rec;
  std::vector<uint8_t> region(kRegion);
  TcpFraming f({kMaxMessage, region.data(), kRegion});
  std::vector<uint8_t> s;
  Hello(&s, 1, 1024);
  Frame(&s, Kind::kRequest, 2, std::vector<uint8_t>(1024 - sizeof(MsgHeader) + 1, 'x'));
  EXPECT_EQ(f.Feed(s, rec), s.size());
  EXPECT_EQ(f.max_message(), 1024u);
  ASSERT_EQ(rec.events.size(), 2u);
  EXPECT_EQ(rec.events[1],
            "error 2 InvalidArgument: request of 1009 B exceeds the largest message payload (1008 B)");
}

TEST(TcpFraming, EachFrameKind) {
  std::vector<uint8_t> s;
  Hello(&s, 1);
  Range(&s, Kind::kWrite, 2, 100, 5, "hello");
  Range(&s, Kind::kRead, 3, 100, 5);
  Range(&s, Kind::kWrite, 4, 7, 0);
  Range(&s, Kind::kRead, 5, 0, 0);
  Frame(&s, Kind::kResponse, 6, Bytes("xy"));    // a server's kind from a client
  Frame(&s, Kind::kRead, 7, Bytes("short"));     // a read without its range
  Frame(&s, Kind::kHello, 8, std::vector<uint8_t>(16));  // a second hello
  Frame(&s, Kind::kRequest, 9, Bytes("after"));
  Parsed r = Feed(s);
  EXPECT_EQ(r.consumed, s.size());
  EXPECT_EQ(std::string(r.region.begin() + 100, r.region.begin() + 105), "hello");
  EXPECT_EQ(r.events, (std::vector<std::string>{
                          "hello 1 8192 4096 session 0",
                          "write 2 100+5",
                          "read 3 100+5",
                          "write 4 7+0",
                          "read 5 0+0",
                          "error 6 Protocol: unexpected frame kind 2 with 2 B payload",
                          "error 7 Protocol: unexpected frame kind 4 with 5 B payload",
                          "error 8 Protocol: unexpected frame kind 8 with 16 B payload",
                          "request 9 after",
                      }));
}

TEST(TcpFraming, BadMagicSaysWhyThenCloses) {
  std::vector<uint8_t> s;
  Hello(&s, 1);
  const size_t good = s.size();
  MsgHeader h{};
  h.magic = 0x1234;
  h.tag = 5;
  Put(&s, &h, sizeof h);
  Frame(&s, Kind::kRequest, 6, Bytes("never"));
  Parsed r = Feed(s);
  EXPECT_EQ(r.consumed, good + sizeof h);  // nothing after the bad header
  EXPECT_EQ(r.events, (std::vector<std::string>{"hello 1 8192 4096 session 0",
                                                "error 5 Protocol: bad frame header (magic/version); closing",
                                                "close bad frame header"}));
}

TEST(TcpFraming, BadVersionBeforeHelloCloses) {
  std::vector<uint8_t> s;
  MsgHeader h{};
  h.version = wire::kVersion + 1;
  h.kind = Kind::kHello;
  Put(&s, &h, sizeof h);
  Parsed r = Feed(s);
  EXPECT_FALSE(r.greeted);
  EXPECT_EQ(r.events, (std::vector<std::string>{"error 0 Protocol: bad frame header (magic/version); closing",
                                                "close bad frame header"}));
}

TEST(TcpFraming, RequestBeforeHelloIsRefusedWithAReason) {
  std::vector<uint8_t> s;
  Frame(&s, Kind::kRequest, 3, Bytes("hi"));
  Hello(&s, 4);
  Parsed r = Feed(s);
  EXPECT_FALSE(r.greeted);
  EXPECT_EQ(r.consumed, sizeof(MsgHeader));
  EXPECT_EQ(r.events, (std::vector<std::string>{"refuse 3 Protocol: the first frame must be a hello of 16..113 B",
                                                "close no hello"}));
}

TEST(TcpFraming, HelloRefusals) {
  {
    std::vector<uint8_t> s;
    wire::HelloPayload h{};
    h.magic = 1;
    h.max_message = 8192;
    std::vector<uint8_t> p(sizeof h);
    std::memcpy(p.data(), &h, sizeof h);
    Frame(&s, Kind::kHello, 1, p);
    EXPECT_EQ(Feed(s).events, (std::vector<std::string>{
                                  "refuse 1 Protocol: not a Sharry client of protocol version 2",
                                  "close refused: not a Sharry client of protocol version 2"}));
  }
  {
    std::vector<uint8_t> s;
    Hello(&s, 2, wire::kMinMessage - 1);
    EXPECT_EQ(Feed(s).events, (std::vector<std::string>{
                                  "refuse 2 InvalidArgument: hello max_message 79 out of range 80..16777216",
                                  "close refused: hello max_message 79 out of range 80..16777216"}));
  }
  {
    std::vector<uint8_t> s;
    Hello(&s, 3, 8192);
    Frame(&s, Kind::kRequest, 4, Bytes("never"));
    Recorder rec;
    rec.refuse_hellos = "memnode full: 1 of 1 clients";
    Parsed r = Feed(s, {}, rec);
    EXPECT_FALSE(r.greeted);
    EXPECT_EQ(r.events, (std::vector<std::string>{"hello 3 8192 4096 session 0",
                                                  "refuse 3 Unavailable: memnode full: 1 of 1 clients",
                                                  "close refused: memnode full: 1 of 1 clients"}));
  }
}

// Credentials: the hello names a tenant, the sink challenges it, and only
// an answer (kAuth) may follow; the connection is greeted when the answer
// verifies, refused when it does not or when anything else comes instead.
TEST(TcpFraming, AuthenticatingHelloIsChallengedAndOnlyAnAnswerMayFollow) {
  auto auth_hello = [](std::vector<uint8_t>* s, uint64_t tag) {
    wire::HelloPayload base{};
    base.max_message = 8192;
    Frame(s, Kind::kHello, tag, EncodeHello(base, "t", auth::Nonce{}, nullptr));
  };
  {  // the right answer: greeted, and requests flow
    std::vector<uint8_t> s;
    auth_hello(&s, 1);
    Frame(&s, Kind::kAuth, 2, std::vector<uint8_t>(wire::kProofBytes, 0xAA));
    Frame(&s, Kind::kRequest, 3, Bytes("hi"));
    Parsed r = Feed(s);
    EXPECT_TRUE(r.greeted);
    EXPECT_EQ(r.events, (std::vector<std::string>{"hello 1 8192 4096 session 0 tenant t", "auth 2 32 B",
                                                  "request 3 hi"}));
  }
  {  // a wrong answer: refused and closed, nothing after it is parsed
    std::vector<uint8_t> s;
    auth_hello(&s, 1);
    Frame(&s, Kind::kAuth, 2, std::vector<uint8_t>(wire::kProofBytes, 0xBB));
    Frame(&s, Kind::kRequest, 3, Bytes("never"));
    Parsed r = Feed(s);
    EXPECT_FALSE(r.greeted);
    EXPECT_EQ(r.events, (std::vector<std::string>{
                            "hello 1 8192 4096 session 0 tenant t", "auth 2 32 B",
                            "refuse 2 PermissionDenied: authentication failed for tenant 't'",
                            "close refused: authentication failed for tenant 't'"}));
  }
  {  // a request instead of the answer
    std::vector<uint8_t> s;
    auth_hello(&s, 1);
    Frame(&s, Kind::kRequest, 2, Bytes("never"));
    Parsed r = Feed(s);
    EXPECT_FALSE(r.greeted);
    EXPECT_EQ(r.events, (std::vector<std::string>{
                            "hello 1 8192 4096 session 0 tenant t",
                            "refuse 2 Protocol: after a challenge the next frame must be an answer of 32 B",
                            "close no answer to the challenge"}));
  }
}

// A join must carry its session's token; flags, names and lengths must agree.
TEST(TcpFraming, MalformedHellosAreRefused) {
  auto refusal = [](const std::vector<uint8_t>& payload) {
    std::vector<uint8_t> s;
    Frame(&s, Kind::kHello, 1, payload);
    Parsed r = Feed(s);
    EXPECT_FALSE(r.greeted);
    return r.events.empty() ? std::string() : r.events[0];
  };
  wire::HelloPayload base{};
  base.max_message = 8192;
  base.session = 42;
  std::vector<uint8_t> p(sizeof base);
  std::memcpy(p.data(), &base, sizeof base);
  EXPECT_EQ(refusal(p), "refuse 1 PermissionDenied: joining session 42 needs its token (from the session's welcome)");
  SessionToken token{};
  token[0] = 7;
  {
    std::vector<uint8_t> s;
    Frame(&s, Kind::kHello, 1, EncodeHello(base, "", auth::Nonce{}, &token));
    EXPECT_EQ(Feed(s).events[0], "hello 1 8192 4096 session 42 token 7");
  }
  base.session = 0;
  base.flags = 8;
  std::memcpy(p.data(), &base, sizeof base);
  EXPECT_EQ(refusal(p), "refuse 1 InvalidArgument: hello flags 8 have unknown bits");
  // kHelloAuthOnQp is verbs' (credentials after the connect), and alone.
  base.flags = wire::kHelloAuthOnQp;
  std::memcpy(p.data(), &base, sizeof base);
  EXPECT_EQ(refusal(p),
            "refuse 1 InvalidArgument: a tcp hello carries its credentials itself (kHelloAuthOnQp is verbs')");
  EXPECT_TRUE(ParseHello(p)->auth_on_qp);
  const std::string alone =
      "refuse 1 InvalidArgument: a hello that authenticates on the QP carries no credentials, token or session";
  base.session = 3;
  std::memcpy(p.data(), &base, sizeof base);
  EXPECT_EQ(refusal(p), alone);
  base.session = 0;
  EXPECT_EQ(refusal(EncodeHello(base, "alice", auth::Nonce{}, nullptr)), alone);  // EncodeHello keeps the flag
  base.flags = wire::kHelloAuth;  // credentials announced, none there
  std::memcpy(p.data(), &base, sizeof base);
  EXPECT_NE(refusal(p).find("hello credentials malformed"), std::string::npos);
  base.flags = 0;
  EXPECT_NE(refusal(EncodeHello(base, "a b", auth::Nonce{}, nullptr)).find("tenant name 'a b'"), std::string::npos);
  std::vector<uint8_t> extra = EncodeHello(base, "", auth::Nonce{}, nullptr);
  extra.push_back(1);
  EXPECT_EQ(refusal(extra), "refuse 1 InvalidArgument: hello of 17 B has 1 B more than its flags say");
}

TEST(TcpFraming, OversizeRequestIsRefusedAndSkipped) {
  std::vector<uint8_t> s;
  Hello(&s, 1);
  Frame(&s, Kind::kRequest, 2, std::vector<uint8_t>(kMaxMessage, 'z'));
  Frame(&s, Kind::kRequest, 3, Bytes("next"));
  Parsed r = Feed(s);
  EXPECT_EQ(r.consumed, s.size());
  EXPECT_EQ(r.events, (std::vector<std::string>{
                          "hello 1 8192 4096 session 0",
                          "error 2 InvalidArgument: request of 4096 B exceeds the largest message payload (4080 B)",
                          "request 3 next"}));
}

TEST(TcpFraming, RangesAbove64MiBAreRefusedInSync) {
  std::vector<uint8_t> s;
  Hello(&s, 1);
  Range(&s, Kind::kRead, 2, 0, wire::kMaxTcpChunk + 1);
  Range(&s, Kind::kWrite, 3, 0, wire::kMaxTcpChunk + 1, "abcd");  // announces more than it carries
  Range(&s, Kind::kRead, 4, kRegion - 1, 2);                      // past the region
  Frame(&s, Kind::kRequest, 5, Bytes("ok"));
  Parsed r = Feed(s);
  EXPECT_EQ(r.consumed, s.size());
  ASSERT_EQ(r.events.size(), 5u);
  EXPECT_EQ(r.events[1],
            "error 2 InvalidArgument: read of 67108865 B exceeds the largest tcp frame (67108864 B); split it "
            "(the client library does)");
  EXPECT_EQ(r.events[2].rfind("error 3 InvalidArgument: write of 67108865 B", 0), 0u) << r.events[2];
  EXPECT_EQ(r.events[3].rfind("error 4 ", 0), 0u) << r.events[3];
  EXPECT_EQ(r.events[4], "request 5 ok");
}

TEST(TcpFraming, WriteWithMismatchedLengthIsRefusedInSync) {
  std::vector<uint8_t> s;
  Hello(&s, 1);
  Range(&s, Kind::kWrite, 2, 0, 8, "four");
  Range(&s, Kind::kWrite, 3, 0, 2, "four");
  Frame(&s, Kind::kRequest, 4, Bytes("ok"));
  Parsed r = Feed(s);
  EXPECT_EQ(r.consumed, s.size());
  EXPECT_EQ(r.region[0], 0);  // nothing written
  EXPECT_EQ(r.events, (std::vector<std::string>{"hello 1 8192 4096 session 0",
                                                "error 2 Protocol: write frame carries 4 B for a range of 8 B",
                                                "error 3 Protocol: write frame carries 4 B for a range of 2 B",
                                                "request 4 ok"}));
}

TEST(TcpFraming, BackpressureHoldsBetweenFramesOnly) {
  std::vector<uint8_t> s;
  Hello(&s, 1);
  const size_t hello = s.size();
  Range(&s, Kind::kWrite, 2, 0, 3, "abc");
  Frame(&s, Kind::kRequest, 3, Bytes("r"));
  Recorder rec;
  std::vector<uint8_t> region(kRegion);
  TcpFraming f({kMaxMessage, region.data(), kRegion});
  rec.hold_next = 1;
  // Held at the hello's complete header: nothing after it consumed.
  EXPECT_EQ(f.Feed(s, rec), sizeof(MsgHeader));
  EXPECT_EQ(rec.events, (std::vector<std::string>{"hold"}));
  // Resumed with no new bytes: the held header is acted on.
  EXPECT_EQ(f.Feed({}, rec), 0u);
  size_t pos = sizeof(MsgHeader);
  rec.hold_next = 1;
  pos += f.Feed({s.data() + pos, s.size() - pos}, rec);
  EXPECT_EQ(pos, hello + sizeof(MsgHeader));  // the write's header, held
  pos += f.Feed({s.data() + pos, s.size() - pos}, rec);
  EXPECT_EQ(pos, s.size());
  EXPECT_EQ(rec.events, (std::vector<std::string>{"hold", "hello 1 8192 4096 session 0", "hold", "write 2 0+3",
                                                  "request 3 r"}));
}

// A stream with every kind of frame and recoverable error.
std::vector<uint8_t> Mixed() {
  std::vector<uint8_t> s;
  Hello(&s, 1);
  Frame(&s, Kind::kRequest, 2, Bytes("first"));
  Range(&s, Kind::kWrite, 3, 10, 6, "region");
  Range(&s, Kind::kRead, 4, 10, 6);
  Frame(&s, Kind::kRequest, 5, std::vector<uint8_t>(kMaxMessage, 'z'));
  Range(&s, Kind::kRead, 6, 0, wire::kMaxTcpChunk + 1);
  Range(&s, Kind::kWrite, 7, 0, 8, "four");
  Frame(&s, Kind::kRequest, 8, {});
  Frame(&s, Kind::kWriteAck, 9, Bytes("junk"));
  Frame(&s, Kind::kRequest, 10, Bytes("last"));
  MsgHeader bad{};
  bad.magic = 0;
  bad.tag = 11;
  Put(&s, &bad, sizeof bad);
  return s;
}

TEST(TcpFraming, SplitAtEveryOffsetGivesTheSameEvents) {
  const std::vector<uint8_t> s = Mixed();
  const Parsed whole = Feed(s);
  ASSERT_EQ(whole.events.size(), 12u);
  EXPECT_EQ(whole.events.back(), "close bad frame header");
  for (size_t k = 0; k <= s.size(); ++k) {
    Parsed r = Feed(s, {k});
    ASSERT_EQ(r.events, whole.events) << "split at " << k;
    ASSERT_EQ(r.region, whole.region) << "split at " << k;
    ASSERT_EQ(r.consumed, whole.consumed) << "split at " << k;
  }
}

TEST(TcpFraming, ByteByByteAndUnevenSplits) {
  const std::vector<uint8_t> s = Mixed();
  const Parsed whole = Feed(s);
  Parsed bytes = Feed(s, std::vector<size_t>(s.size(), 1));
  EXPECT_EQ(bytes.events, whole.events);
  EXPECT_EQ(bytes.region, whole.region);
  std::vector<size_t> uneven;
  for (size_t i = 0, total = 0; total < s.size(); ++i) {
    uneven.push_back((i * 7919) % 37);  // includes empty pieces
    total += uneven.back();
  }
  Parsed r = Feed(s, uneven);
  EXPECT_EQ(r.events, whole.events);
  EXPECT_EQ(r.region, whole.region);
}

}  // namespace
}  // namespace sharry::internal
