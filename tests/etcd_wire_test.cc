// The etcd JSON gateway's wire format (discovery/etcd_wire.h) and the
// registry's value (discovery/memnode_info.h), without an etcd: base64,
// prefix range ends, request bodies, and the reply parsers on replies
// captured from etcd 3.4.23 and on broken ones.
#include <gtest/gtest.h>

#include <string>

#include "discovery/etcd_wire.h"
#include "discovery/memnode_info.h"

namespace sharry::discovery {
namespace {

using namespace wire;

TEST(EtcdWireTest, Base64RoundTripsEveryByteAndLength) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  for (size_t n = 0; n <= all.size(); ++n) {
    const std::string in = all.substr(all.size() - n);
    const std::string enc = Base64Encode(in);
    EXPECT_EQ(enc.size(), (n + 2) / 3 * 4);
    auto dec = Base64Decode(enc);
    ASSERT_TRUE(dec.ok()) << dec.status();
    EXPECT_EQ(*dec, in) << "length " << n;
  }
  EXPECT_EQ(Base64Encode("foo"), "Zm9v");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
  EXPECT_EQ(Base64Encode("f"), "Zg==");
}

TEST(EtcdWireTest, Base64RefusesWhatIsNotBase64) {
  for (std::string bad : {std::string("Zm9"), std::string("Zm9v!"), std::string("Zm9v===="), std::string("Z==="),
                          std::string("Zm=v"), std::string("=Zm9"), std::string("Zm9v\n"), std::string("Zm\0v", 4)}) {
    auto d = Base64Decode(bad);
    EXPECT_FALSE(d.ok()) << bad;
    if (!d.ok()) {
      EXPECT_EQ(d.status().code(), StatusCode::kProtocol);
    }
  }
}

TEST(EtcdWireTest, PrefixRangeEndIsEtcds) {
  EXPECT_EQ(PrefixRangeEnd("/sharry/memnodes/"), "/sharry/memnodes0");
  EXPECT_EQ(PrefixRangeEnd("a"), "b");
  EXPECT_EQ(PrefixRangeEnd("a\xff"), "b");
  EXPECT_EQ(PrefixRangeEnd("a\xfe"), "a\xff");
  EXPECT_EQ(PrefixRangeEnd("\xff\xff"), std::string(1, '\0'));
}

TEST(EtcdWireTest, RequestBodies) {
  EXPECT_EQ(LeaseGrantRequest(5), R"({"TTL":"5"})");
  EXPECT_EQ(LeaseIdRequest(7587), R"({"ID":"7587"})");
  EXPECT_EQ(PutRequest("foo", "bar", 0), R"({"key":"Zm9v","value":"YmFy"})");
  EXPECT_EQ(PutRequest("foo", "bar", 12), R"({"key":"Zm9v","lease":"12","value":"YmFy"})");
  EXPECT_EQ(DeleteRequest("foo"), R"({"key":"Zm9v"})");
  EXPECT_EQ(RangePrefixRequest("foo"), R"({"key":"Zm9v","range_end":"Zm9w"})");
  EXPECT_EQ(WatchCreateRequest("foo", 13),
            R"({"create_request":{"key":"Zm9v","range_end":"Zm9w","start_revision":"13"}})");
}

// Replies as etcd 3.4.23 wrote them.
constexpr char kHeader[] =
    R"("header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952","revision":"4","raft_term":"2"})";

TEST(EtcdWireTest, ParsesEtcdsReplies) {
  auto id = ParseLeaseGrantReply(std::string("{") + kHeader + R"(,"ID":"2324035765028852230","TTL":"5"})");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, 2324035765028852230);
  auto ttl = ParseKeepAliveReply(std::string(R"({"result":{)") + kHeader + R"(,"ID":"123","TTL":"4"}})");
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_EQ(*ttl, 4);
  // An unknown or expired lease: no TTL (0, left out).
  ttl = ParseKeepAliveReply(std::string(R"({"result":{)") + kHeader + R"(,"ID":"123"}})");
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_EQ(*ttl, 0);
  auto rev = ParseHeaderRevision(std::string("{") + kHeader + "}");
  ASSERT_TRUE(rev.ok());
  EXPECT_EQ(*rev, 4);
  auto deleted = ParseDeleteReply(std::string("{") + kHeader + R"(,"deleted":"1"})");
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, 1);
  auto range = ParseRangeReply(std::string("{") + kHeader +
                               R"(,"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1",)"
                               R"("value":"YmFy","lease":"77"},{"key":"Zm9vMQ==","mod_revision":"3"}],"count":"2"})");
  ASSERT_TRUE(range.ok()) << range.status();
  EXPECT_EQ(range->revision, 4);
  ASSERT_EQ(range->kvs.size(), 2u);
  EXPECT_EQ(range->kvs[0].key, "foo");
  EXPECT_EQ(range->kvs[0].value, "bar");
  EXPECT_EQ(range->kvs[0].mod_revision, 2);
  EXPECT_EQ(range->kvs[0].lease, 77);
  EXPECT_EQ(range->kvs[1].key, "foo1");
  EXPECT_EQ(range->kvs[1].value, "");  // empty: left out
  auto empty = ParseRangeReply(std::string("{") + kHeader + "}");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->kvs.empty());
  auto empty_key = ParseRangeReply(std::string("{") + kHeader + R"(,"kvs":[{"key":"","mod_revision":"2"}]})");
  ASSERT_FALSE(empty_key.ok());
  EXPECT_NE(empty_key.status().message().find("\"key\" is empty"), std::string::npos) << empty_key.status();
}

TEST(EtcdWireTest, ParsesWatchLines) {
  auto created = ParseWatchLine(std::string(R"({"result":{)") + kHeader + R"(,"created":true}})");
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_TRUE(created->created);
  EXPECT_TRUE(created->events.empty());
  auto events =
      ParseWatchLine(std::string(R"({"result":{)") + kHeader +
                     R"(,"events":[{"kv":{"key":"Zm9v","create_revision":"2","mod_revision":"2",)"
                     R"("version":"1","value":"YmFy"}},{"type":"DELETE","kv":{"key":"Zm9v","mod_revision":"3"}}]}})");
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->events.size(), 2u);
  EXPECT_EQ(events->events[0].type, WatchEvent::Type::kPut);
  EXPECT_EQ(events->events[0].key, "foo");
  EXPECT_EQ(events->events[0].value, "bar");
  EXPECT_EQ(events->events[1].type, WatchEvent::Type::kDelete);
  EXPECT_EQ(events->events[1].mod_revision, 3);
  // As etcd 3.4.23 cancels a watch of a compacted revision: no header revision.
  auto compacted = ParseWatchLine(
      R"({"result":{"header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952","raft_term":"2"},)"
      R"("canceled":true,"compact_revision":"40"}})");
  ASSERT_TRUE(compacted.ok()) << compacted.status();
  EXPECT_TRUE(compacted->canceled);
  EXPECT_EQ(compacted->compact_revision, 40);
}

// Whatever a broken or hostile etcd sends, the parsers return Protocol (or
// the error it states), and never crash or throw.
TEST(EtcdWireTest, RefusesBrokenReplies) {
  const std::string deep(100000, '[');
  for (std::string body :
       {std::string(""), std::string("garbage"), std::string("[]"), std::string("42"), std::string(R"({"kvs":[]})"),
        std::string(R"({"header":{}})"), std::string(R"({"header":{"revision":{}}})"),
        std::string(R"({"header":{"revision":"x1"}})"), std::string(R"({"header":{"revision":"0"}})"),
        std::string(R"({"header":{"revision":"99999999999999999999"}})"),
        std::string(R"({"header":{"revision":"3"},"kvs":{}})"), std::string(R"({"header":{"revision":"3"},"kvs":[1]})"),
        std::string(R"({"header":{"revision":"3"},"kvs":[{"value":"YmFy"}]})"),
        std::string(R"({"header":{"revision":"3"},"kvs":[{"key":"!!!!"}]})"),
        std::string(R"({"header":{"revision":"3"},"kvs":[{"key":7}]})"),
        std::string(R"({"header":{"revision":"3"},"kvs":[{"key":"Zm9v","mod_revision":true}]})"),
        std::string("{\"header\":{\"revision\":\"3\"},\"kvs\":[{\"key\":\"\xff\xfe\"}]}"), deep}) {
    auto r = ParseRangeReply(body);
    ASSERT_FALSE(r.ok()) << body.substr(0, 80);
    EXPECT_EQ(r.status().code(), StatusCode::kProtocol) << r.status();
    EXPECT_LT(r.status().message().size(), 400u) << "the excerpt is bounded";
  }
  EXPECT_FALSE(ParseLeaseGrantReply(std::string("{") + kHeader + "}").ok());  // no ID
  EXPECT_FALSE(ParseLeaseGrantReply(std::string("{") + kHeader + R"(,"ID":"-3"})").ok());
  EXPECT_FALSE(ParseKeepAliveReply(R"({"result":{"TTL":"-1"}})").ok());
  EXPECT_FALSE(
      ParseWatchLine(std::string(R"({"result":{)") + kHeader + R"(,"events":[{"type":"MOVE","kv":{"key":"Zm9v"}}]}})")
          .ok());
  EXPECT_FALSE(ParseWatchLine(std::string(R"({"result":{)") + kHeader + R"(,"events":[{"type":"PUT"}]}})").ok());
  // An empty key (etcd has none): refused, in a watch event and in a range
  // (etcd_reply_fuzz found a DELETE event with "key":"" accepted).
  auto empty = ParseWatchLine(std::string(R"({"result":{)") + kHeader +
                              R"(,"events":[{"type":"DELETE","kv":{"key":"","mod_revision":"3"}}]}})");
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("\"key\" is empty"), std::string::npos) << empty.status();
  EXPECT_FALSE(ParseWatchLine(R"({"result":7})").ok());
  EXPECT_FALSE(ParseWatchLine(deep).ok());
  // A stream's error line is the error it states.
  auto err = ParseWatchLine(R"({"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader"}})");
  ASSERT_FALSE(err.ok());
  EXPECT_EQ(err.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(err.status().message().find("etcdserver: no leader"), std::string::npos) << err.status();
}

TEST(EtcdWireTest, ErrorRepliesMapTheirCodes) {
  Status s = ParseErrorReply(
      404,
      R"({"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5})");
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "HTTP 404: etcdserver: requested lease not found");
  EXPECT_EQ(ParseErrorReply(400, R"({"error":"x","message":"bad","code":3})").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseErrorReply(503, R"({"message":"no leader","code":14})").code(), StatusCode::kUnavailable);
  s = ParseErrorReply(502, "<html>\x01 bad gateway</html>");
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_EQ(s.message(), "HTTP 502: bad reply: <html>? bad gateway</html>");
  EXPECT_EQ(ParseErrorReply(404, "").code(), StatusCode::kNotFound);
  EXPECT_EQ(ParseErrorReply(418, "teapot").code(), StatusCode::kProtocol);
  EXPECT_EQ(Printable(std::string(500, 'a'), 10), "aaaaaaaaaa...");
}

TEST(MemnodeInfoTest, RoundTripsAndRefusesWhatIsNotOne) {
  MemnodeInfo info{"10.0.0.7:7000", "verbs", uint64_t{1} << 40, 1767261600123};
  const std::string json = EncodeMemnodeInfo(info);
  EXPECT_EQ(json, R"({"addr":"10.0.0.7:7000","transport":"verbs","uma_bytes":1099511627776,"started":1767261600123})");
  auto back = DecodeMemnodeInfo(json);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, info);
  // Unknown fields are ignored (a newer memnode may add some).
  back = DecodeMemnodeInfo(R"({"addr":"a:1","transport":"tcp","uma_bytes":1,"started":2,"zone":"eu"})");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->addr, "a:1");
  for (const char* bad : {"", "x", "[]", R"({"transport":"tcp","uma_bytes":1,"started":2})",
                          R"({"addr":"a:1","transport":"udp","uma_bytes":1,"started":2})",
                          R"({"addr":"a:1","transport":"tcp","uma_bytes":-1,"started":2})",
                          R"({"addr":"a:1","transport":"tcp","uma_bytes":"1","started":2})",
                          R"({"addr":"a:1","transport":"tcp","uma_bytes":1})",
                          R"({"addr":1,"transport":"tcp","uma_bytes":1,"started":2})"}) {
    auto d = DecodeMemnodeInfo(bad);
    EXPECT_FALSE(d.ok()) << bad;
    if (!d.ok()) {
      EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument);
    }
  }
  EXPECT_FALSE(DecodeMemnodeInfo(std::string(5000, ' ')).ok());
  // Bytes that are not UTF-8 (from a flag) are replaced, not thrown.
  info.addr = "h\xff:1";
  EXPECT_FALSE(EncodeMemnodeInfo(info).empty());
}

TEST(HostPortTest, ChecksTheShape) {
  for (const char* ok : {"127.0.0.1:2379", "etcd-1.example:1", "[::1]:2379", "h_x:65535"}) {
    EXPECT_TRUE(CheckHostPort(ok).ok()) << ok;
  }
  for (const char* bad : {"", "127.0.0.1", ":2379", "h:0", "h:65536", "h:x", "h:", "::1:2379", "h/x:1", "h x:1",
                          "http://h:1", "[]:1", "[::1;]:1", "h:-1", "h:1 "}) {
    Status s = CheckHostPort(bad);
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace sharry::discovery
