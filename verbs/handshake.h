// The connect-time handshake, shared by both backends: the client's hello
// (wire::HelloPayload) and the server's welcome (wire::WelcomePayload, then
// on a refusal a reason). Over TCP they are the payloads of kHello/kWelcome
// frames; over verbs the rdma_cm private data of connect and accept/reject.
// Encoding and checking live here once, so the backends cannot diverge.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "verbs/auth.h"
#include "verbs/wire.h"

namespace sharry::internal {

// A welcome payload refusing a client with `code`: WelcomePayload (status =
// code), then the reason cut to wire::kMaxReason bytes.
std::vector<uint8_t> EncodeWelcomePayload(StatusCode code, std::string_view reason);

// A kWelcome frame (header + EncodeWelcomePayload) refusing a client.
std::vector<uint8_t> EncodeWelcome(StatusCode code, std::string_view reason);

using SessionToken = std::array<uint8_t, wire::kSessionTokenBytes>;

// A hello as the server parsed it (wire.h: HelloPayload, then what its flags
// say follows).
struct Hello {
  wire::HelloPayload base;
  bool authenticates = false;  // kHelloAuth: tenant and client_nonce are set
  std::string tenant;
  auth::Nonce client_nonce{};
  bool has_token = false;      // kHelloJoin: token is set
  SessionToken token{};
  bool auth_on_qp = false;     // kHelloAuthOnQp (verbs): credentials follow on the QP
};

// The client's hello payload: `base`, then the credentials part when
// `tenant` is not empty, then the join token when `token` is not null. Its
// flags are set here from those; of base.flags only kHelloAuthOnQp is kept
// (a verbs connect that authenticates on the QP: no tenant, no token).
std::vector<uint8_t> EncodeHello(wire::HelloPayload base, std::string_view tenant, const auth::Nonce& client_nonce,
                                 const SessionToken* token);

// The server's checks of a client's hello payload: the magic and version
// are ours (else kProtocol), max_message is in [kMinMessage, kMaxMessage]
// and the flags, tenant name and length agree (else kInvalidArgument or
// kProtocol; trailing zero bytes are allowed: rdma_cm pads private data;
// kHelloAuthOnQp only alone, with session 0);
// the message is the reason the client is told.
StatusOr<Hello> ParseHello(std::span<const uint8_t> payload);
Status CheckHello(const wire::HelloPayload& hello);

// The client's side of authentication, for one connection attempt: draws
// its nonce; checks the server's challenge and answers it.
class ClientAuth {
 public:
  ClientAuth(std::string tenant, const auth::Secret& secret);
  const std::string& tenant() const { return tenant_; }
  const auth::Nonce& nonce() const { return nonce_; }
  // Checks the server's proof in `challenge` (kChallengeBytes); Ok: *proof
  // is the client's answer. A wrong server proof is kPermissionDenied
  // naming `where`: the memnode does not know this tenant's secret (a wrong
  // --secret_file, a tenant it does not have, or not the memnode meant).
  Status Answer(std::span<const uint8_t> challenge, std::string_view where, auth::Proof* proof) const;

 private:
  std::string tenant_;
  const auth::Secret& secret_;
  auth::Nonce nonce_;
};

// The server's side, one per connection. `creds` may be null (anonymous
// clients only, the bare transport's default) and must outlive it.
class ServerAuth {
 public:
  explicit ServerAuth(const auth::ServerCredentials* creds) : creds_(creds) {}
  // Decides on a parsed hello that starts a session (a join is checked by
  // its token instead): Ok with *challenge empty: served anonymously; Ok
  // with a challenge (kChallengeBytes) to send, then Verify the answer; an
  // error: refuse the connection with its reason. A tenant this server does
  // not know gets a challenge all the same (its proof can never verify), so
  // a client cannot probe which tenants exist.
  Status Start(const Hello& hello, std::vector<uint8_t>* challenge);
  // The client's proof: Ok, or kPermissionDenied ("authentication failed
  // for tenant T"; log_reason() says more, for the server's log only).
  Status Verify(std::span<const uint8_t> proof);
  bool pending() const { return pending_; }
  const std::string& tenant() const { return tenant_; }  // after Verify: who (empty if admin/anonymous)
  bool admin() const { return admin_; }
  bool known() const { return known_; }  // the tenant named is one of this server's
  const std::string& log_reason() const { return log_reason_; }

 private:
  const auth::ServerCredentials* creds_;
  bool pending_ = false, admin_ = false, known_ = false;
  std::string tenant_, log_reason_;
  auth::Proof expected_{};
};

// Checks the welcome payload `payload` (WelcomePayload, then the reason of a
// refusal; trailing zero padding is ignored) that server `where` sent:
//   - too short, or the magic or version is not ours: kProtocol, "<where> is
//     not a Sharry server ...";
//   - status != 0 (a refusal): Status(status, "server <where> refused the
//     connection: <reason>"), and *refused = true when refused != nullptr;
//   - else Ok, and *out holds the welcome.
Status CheckWelcome(std::span<const uint8_t> payload, std::string_view where, wire::WelcomePayload* out,
                    bool* refused = nullptr);

}  // namespace sharry::internal
