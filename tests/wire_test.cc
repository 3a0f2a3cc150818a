// The transport's wire layouts and shared checks.
#include "verbs/wire.h"

#include <gtest/gtest.h>

#include <cstring>

#include "verbs/transport.h"
#include "verbs/transport_internal.h"

namespace sharry {
namespace {

TEST(WireTest, HeaderBytesAreAsDocumented) {
  wire::MsgHeader h{};
  h.kind = wire::Kind::kResponse;
  h.length = 0x01020304;
  h.tag = 0x1122334455667788ull;
  uint8_t b[16];
  std::memcpy(b, &h, 16);
  EXPECT_EQ(b[0], 0x48);  // 'H' of 0x5348, little-endian
  EXPECT_EQ(b[1], 0x53);
  EXPECT_EQ(b[2], 2);     // version
  EXPECT_EQ(b[3], 2);     // kind
  EXPECT_EQ(b[4], 0x04);
  EXPECT_EQ(b[7], 0x01);
  EXPECT_EQ(b[8], 0x88);
  EXPECT_EQ(b[15], 0x11);
}

TEST(WireTest, ConnectPayloadsFitRdmaCmPrivateData) {
  EXPECT_LE(sizeof(wire::HelloPayload), 56u);     // rdma_connect limit for RC
  EXPECT_LE(sizeof(wire::WelcomePayload), 196u);  // rdma_accept limit
  // A join (hello + its session's token) fits the connect; a root's welcome
  // (+ the token) the accept; a refusal (+ its reason) the reject (148 B).
  EXPECT_LE(sizeof(wire::HelloPayload) + wire::kSessionTokenBytes, 56u);
  EXPECT_LE(sizeof(wire::WelcomePayload) + wire::kSessionTokenBytes, 196u);
  EXPECT_LE(sizeof(wire::WelcomePayload) + wire::kMaxReason, 148u);
}

TEST(WireTest, ErrorPayloadRoundTrips) {
  Status s = Status::PermissionDenied("block 4096 belongs to client 2");
  auto bytes = internal::EncodeError(s);
  Status back = internal::DecodeError(bytes);
  EXPECT_EQ(back.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(back.message().find("block 4096 belongs to client 2"), std::string::npos);
  // Garbage codes become protocol errors, not crashes.
  std::vector<uint8_t> junk = {200, 'x'};
  EXPECT_EQ(internal::DecodeError(junk).code(), StatusCode::kProtocol);
  EXPECT_EQ(internal::DecodeError({}).code(), StatusCode::kProtocol);
}

TEST(WireTest, CheckRangeCatchesOverflowAndEnds) {
  EXPECT_TRUE(CheckRange(0, 100, 100, "read").ok());
  EXPECT_TRUE(CheckRange(100, 0, 100, "read").ok());
  EXPECT_EQ(CheckRange(1, 100, 100, "read").code(), StatusCode::kOutOfRange);
  EXPECT_EQ(CheckRange(101, 0, 100, "read").code(), StatusCode::kOutOfRange);
  EXPECT_EQ(CheckRange(~0ull, 2, 100, "read").code(), StatusCode::kOutOfRange);
  EXPECT_EQ(CheckRange(50, ~0ull - 10, 100, "write").code(), StatusCode::kOutOfRange);
}

TEST(WireTest, TransportNamesParse) {
  EXPECT_EQ(*ParseTransport("verbs"), TransportKind::kVerbs);
  EXPECT_EQ(*ParseTransport("rdma"), TransportKind::kVerbs);
  EXPECT_EQ(*ParseTransport("tcp"), TransportKind::kTcp);
  EXPECT_EQ(ParseTransport("udp").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(TransportName(TransportKind::kTcp), "tcp");
}

TEST(WireTest, ServerRefusesBadOptions) {
  struct Nop : RequestHandler {
    size_t Handle(ClientId, std::span<const uint8_t>, std::span<uint8_t>) override { return 0; }
  } h;
  ServerOptions o;
  o.region_size = 10;  // without a region
  EXPECT_EQ(TransportServer::Start(TransportKind::kTcp, o, &h).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(TransportServer::Start(TransportKind::kTcp, ServerOptions{}, nullptr).status().code(),
            StatusCode::kInvalidArgument);
  ServerOptions tiny;
  tiny.max_message = 20;
  EXPECT_EQ(TransportServer::Start(TransportKind::kTcp, tiny, &h).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sharry
