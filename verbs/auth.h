// Authentication primitives of the connect-time handshake (issue #11):
// tenant secrets, nonces and the HMAC-SHA256 proofs of the mutual
// challenge-response. Both backends run the same exchange (docs/security.md
// "Authentication"); this file holds the cryptography once, on OpenSSL's
// libcrypto — nothing here is hand-written crypto.
//
// The exchange, for tenant T with secret K (cn, sn: 32-byte nonces from
// RAND_bytes, fresh per connection on each side):
//   client -> server   hello: T, cn
//   server -> client   challenge: sn, HMAC(K, "sharry-v1 server" | T | cn | sn)
//   client -> server   response:  HMAC(K, "sharry-v1 client" | T | cn | sn)
//   server -> client   welcome (or a refusal with its reason)
// The client checks the server's proof before it answers (an impostor
// memnode that does not know K is detected and learns nothing it can replay:
// the client's proof covers the server's fresh nonce). The server checks the
// client's proof against the nonce it just drew (a recorded response does
// not verify again). The two proofs differ by their role label, so a proof
// reflected back to its sender does not verify either. Comparisons are
// constant-time (CRYPTO_memcmp).
#pragma once

#include <array>
#include <map>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace sharry::auth {

inline constexpr size_t kNonceBytes = 32;
inline constexpr size_t kProofBytes = 32;      // HMAC-SHA256
inline constexpr size_t kMinSecretBytes = 32;  // 256 bits, as the issue asks
inline constexpr size_t kMaxSecretBytes = 128;
inline constexpr size_t kMaxTenantName = 32;   // [A-Za-z0-9_.-], 1..32 bytes

using Nonce = std::array<uint8_t, kNonceBytes>;
using Proof = std::array<uint8_t, kProofBytes>;

// A tenant's shared secret. Its bytes are wiped (OPENSSL_cleanse) when it is
// destroyed; it is never printed (no operator<<, no ToString).
class Secret {
 public:
  Secret() = default;
  explicit Secret(std::vector<uint8_t> bytes) : bytes_(std::move(bytes)) {}
  Secret(const Secret&) = default;
  Secret& operator=(const Secret&) = default;
  Secret(Secret&&) noexcept = default;
  Secret& operator=(Secret&&) noexcept = default;
  ~Secret();

  bool empty() const { return bytes_.empty(); }
  std::span<const uint8_t> bytes() const { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

// A secret written as hexadecimal (surrounding whitespace ignored): 64 to
// 256 hex digits. Errors name what is wrong, never the secret's text.
StatusOr<Secret> ParseSecret(std::string_view hex);

// Checks that `path` is a regular file that group and others cannot read or
// write (mode 0600 or stricter), then returns its contents. `what` names the
// file in errors ("--secret_file", "--tenants_file").
StatusOr<std::string> ReadPrivateFile(const std::string& path, std::string_view what);

// ReadPrivateFile + ParseSecret: the client's --secret_file.
StatusOr<Secret> ReadSecretFile(const std::string& path);

// Ok if `name` is a valid tenant name (1..kMaxTenantName bytes of
// [A-Za-z0-9_.-]); else InvalidArgument naming the rule.
Status CheckTenantName(std::string_view name);

// A fresh random nonce (RAND_bytes; aborts if the CSPRNG fails: no
// authentication is possible without it).
Nonce NewNonce();

// A fresh random secret of `bytes` bytes, as lowercase hex (for scripts and
// tests that create tenants files).
std::string NewSecretHex(size_t bytes = kMinSecretBytes);

enum class Role : uint8_t { kServer, kClient };

// HMAC-SHA256(secret, "sharry-v1 <role>" | tenant | client_nonce | server_nonce),
// the tenant name length-prefixed so that no two inputs concatenate alike.
Proof ComputeProof(const Secret& secret, Role role, std::string_view tenant, const Nonce& client_nonce,
                   const Nonce& server_nonce);

// Constant-time comparison of a received proof with the expected one.
bool ProofMatches(std::span<const uint8_t> received, const Proof& expected);

// A server's credentials (ServerOptions::credentials): the secret of each
// tenant that may connect, the admin's, and whether clients that do not
// authenticate are served too. The tenant name "admin" is the admin's.
struct ServerCredentials {
  std::map<std::string, Secret, std::less<>> tenants;
  Secret admin;            // empty: nobody authenticates as the admin
  bool anonymous = false;  // also serve clients that give no credentials
  // Sessions (client processes) a tenant may have connected at once; a
  // tenant not listed, or 0: no limit.
  std::map<std::string, uint32_t, std::less<>> max_sessions;
  uint32_t MaxSessions(std::string_view tenant) const {
    auto it = max_sessions.find(tenant);
    return it == max_sessions.end() ? 0 : it->second;
  }
};
inline constexpr std::string_view kAdminName = "admin";

}  // namespace sharry::auth
