// The transport's message framing, shared by the verbs and TCP backends.
//
// Every message (a SEND over verbs, a frame over TCP) starts with this
// 16-byte header, little-endian (the only byte order Sharry runs on; checked
// below):
//
//    0      2      3      4            8                          16
//    +------+------+------+------------+--------------------------+
//    |magic |ver   |kind  | length     | tag                      |
//    |0x5348|  1   |      | (payload B)| echoed in the reply      |
//    +------+------+------+------------+--------------------------+
//    | payload: `length` bytes                                     |
//
// kinds:
//   kRequest   (1) client -> server: an RPC request; payload is opaque to
//                  the transport and handed to the RequestHandler.
//   kResponse  (2) server -> client: the handler's reply, same tag.
//   kError     (3) server -> client: the transport refused the message with
//                  tag (bad header, too long, unknown kind). Payload:
//                  u8 StatusCode, then a UTF-8 message.
//   kRead      (4) TCP only, client -> server: payload = u64 offset, u64 len.
//   kReadData  (5) TCP only: payload = the `len` bytes read.
//   kWrite     (6) TCP only: payload = u64 offset, then the bytes to write.
//   kWriteAck  (7) TCP only: empty payload.
//   kHello     (8) client -> server, the first message: HelloPayload, then
//                  what its flags say (below). TCP: the first frame. Verbs:
//                  only after a connect with kHelloAuthOnQp (authentication
//                  on the QP, below), the full hello with kHelloAuth.
//   kWelcome   (9) server -> client, the answer: WelcomePayload, then (when
//                  status != 0) a UTF-8 reason of length - 48 bytes (at most
//                  kMaxReason), e.g. "memnode full: 256 of 256 clients";
//                  when it accepts a root connection, the session token
//                  (kSessionTokenBytes) that the session's other connections
//                  must show to join it.
//   kChallenge (10) server -> client, after a hello with kHelloAuth: the
//                  server's nonce (32 B), then its proof
//                  HMAC(K, "sharry-v1 server" | tenant | cn | sn) (32 B).
//   kAuth      (11) client -> server, the answer to a challenge: the
//                  client's proof (32 B). verbs/auth.h has the exchange.
// kHello .. kAuth carry the tag of the client's message they answer.
// Over verbs, READ and WRITE are one-sided and need no message; the hello
// and the welcome (+ reason) travel as rdma_cm private data (connect /
// accept or reject) — except authentication, which does not fit the 56 B
// of private data and runs on the new QP before any key is given:
//
//   client                                     server
//   rdma_connect, private data: HelloPayload
//     (flags kHelloAuthOnQp, session 0)  --->  lockout check (per address);
//                                              no session opened yet
//                                        <---  rdma_accept, private data:
//                                              WelcomePayload status 0,
//                                              client_id, max_message,
//                                              credits, region_addr/size,
//                                              rkey 0, session 0 (= "auth
//                                              follows"), no token
//   SEND kHello: HelloPayload (kHelloAuth)
//     + tenant + client nonce            --->  ServerAuth::Start
//                                        <---  SEND kChallenge (sn + proof)
//   checks the server's proof (an impostor
//   stops here); SEND kAuth: its proof   --->  ServerAuth::Verify; opens
//                                              the root session, OnConnect
//                                        <---  SEND kWelcome: WelcomePayload
//                                              (rkey, session) + the session
//                                              token; or a refusal + reason
//                                              (then the connection is closed)
// Until then a kRequest is answered kError (kPermissionDenied,
// "authenticate first") and the connection is closed; one that has not
// authenticated within ServerOptions::handshake_timeout_ms is closed.
//
// Limits, checked on both sides (docs/transport.md):
//   - a kRead or kWrite frame moves at most kMaxTcpChunk bytes of data; the
//     client library splits larger operations, the server refuses a larger
//     range with kError (kInvalidArgument) and keeps the stream in sync;
//   - a hello's max_message is in [kMinMessage, kMaxMessage]; the server
//     refuses anything else (status kInvalidArgument + reason).
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace sharry::wire {

static_assert(std::endian::native == std::endian::little, "Sharry's wire format is little-endian");

inline constexpr uint16_t kMagic = 0x5348;  // "SH"
// 2: the hello carries credentials and a session's join token (issue #11).
inline constexpr uint8_t kVersion = 2;

inline constexpr uint32_t kMinMessage = 80;         // header + the smallest RPC reply
inline constexpr uint32_t kMaxMessage = 16u << 20;  // header + payload of a request/response
inline constexpr uint64_t kMaxTcpChunk = 64u << 20; // data bytes of one kRead/kWrite frame
inline constexpr uint32_t kMaxReason = 96;          // bytes of a refusal's reason text

enum class Kind : uint8_t {
  kRequest = 1,
  kResponse = 2,
  kError = 3,
  kRead = 4,
  kReadData = 5,
  kWrite = 6,
  kWriteAck = 7,
  kHello = 8,
  kWelcome = 9,
  kChallenge = 10,
  kAuth = 11,
};

struct MsgHeader {
  uint16_t magic = kMagic;
  uint8_t version = kVersion;
  Kind kind = Kind::kRequest;
  uint32_t length = 0;  // payload bytes after the header
  uint64_t tag = 0;
};
static_assert(sizeof(MsgHeader) == 16);
static_assert(offsetof(MsgHeader, length) == 4 && offsetof(MsgHeader, tag) == 8);

// Payload of kRead, and the head of kWrite's payload.
struct RangePayload {
  uint64_t offset = 0;
  uint64_t length = 0;
};
static_assert(sizeof(RangePayload) == 16);

// Client's greeting: over TCP as a kHello frame, over verbs as the private
// data of rdma_connect (limit 56 B for RC).
struct HelloPayload {
  uint32_t magic = 0x53485259;  // "SHRY"
  uint16_t version = kVersion;
  uint16_t flags = 0;           // kHelloAuth | kHelloJoin | kHelloAuthOnQp; other bits 0
  uint32_t max_message = 0;     // largest message the client will send or accept,
                                // in [kMinMessage, kMaxMessage]
  uint32_t session = 0;         // 0: this connection starts a session of its own;
                                // else the client id of the connection whose session it
                                // joins (a runtime's data connections join its control
                                // connection's): they live and die together, and the
                                // session's far memory is reclaimed when the last goes.
};
static_assert(sizeof(HelloPayload) == 16);

// HelloPayload::flags. What follows the 16 bytes, in this order:
//   kHelloAuth  u8 tenant name length (1..32), the name ([A-Za-z0-9_.-];
//               "admin" for the tenants file's admin), the client's nonce
//               (32 B): the client authenticates (kChallenge, kAuth follow);
//   kHelloJoin  the token of session `session` (32 B), from its root's
//               welcome: required to join a session (a joining connection
//               is its session's tenant; it does not authenticate again).
//   kHelloAuthOnQp  verbs only, nothing follows: the client will
//               authenticate on the QP once connected (the exchange above);
//               not with kHelloAuth or kHelloJoin, session must be 0.
// Over verbs the hello is rdma_cm private data (56 B at most): a join
// fits (16 + 32), credentials do not (hence kHelloAuthOnQp).
inline constexpr uint16_t kHelloAuth = 1;
inline constexpr uint16_t kHelloJoin = 2;
inline constexpr uint16_t kHelloAuthOnQp = 4;
inline constexpr size_t kSessionTokenBytes = 32;
inline constexpr size_t kNonceBytes = 32;
inline constexpr size_t kProofBytes = 32;
inline constexpr size_t kMaxTenantName = 32;
inline constexpr size_t kMaxHello = sizeof(HelloPayload) + 1 + kMaxTenantName + kNonceBytes + kSessionTokenBytes;
inline constexpr size_t kChallengeBytes = kNonceBytes + kProofBytes;

// Server's answer: what a client learns at connect time.
struct WelcomePayload {
  uint32_t magic = 0x53485259;
  uint16_t version = kVersion;
  uint16_t status = 0;          // 0 = accepted; else a StatusCode
  uint32_t client_id = 0;       // unique for the server's lifetime, never 0
  uint32_t max_message = 0;     // largest payload+header the server accepts
  uint64_t region_addr = 0;     // base virtual address of the region (verbs)
  uint64_t region_size = 0;     // bytes; remote offsets are in [0, region_size)
  uint32_t rkey = 0;            // rkey of the region's one memory region (verbs)
  uint32_t credits = 0;         // requests a client may have in flight
  uint32_t lease_ms = 0;        // 0: no lease; else a session that sends nothing for this
                                // long is closed and its far memory reclaimed
  uint32_t session = 0;         // the session this connection belongs to (its root's id);
                                // 0 in a verbs accept: authentication follows on the QP
};
static_assert(sizeof(WelcomePayload) == 48);

// The largest message of authentication on a verbs QP (a refusal: header,
// welcome, reason); a client that authenticates there posts receives of at
// least this size, and the server's replies before the welcome fit it.
inline constexpr uint32_t kMaxAuthMessage = sizeof(MsgHeader) + sizeof(WelcomePayload) + kMaxReason;
static_assert(kMaxAuthMessage >= sizeof(MsgHeader) + sizeof(WelcomePayload) + kSessionTokenBytes &&
              kMaxAuthMessage >= sizeof(MsgHeader) + kChallengeBytes);

}  // namespace sharry::wire
