// The connect-time handshake shared by both backends (see handshake.h).
#include "verbs/handshake.h"

#include <algorithm>
#include <cstring>
#include <string>

namespace sharry::internal {

std::vector<uint8_t> EncodeWelcomePayload(StatusCode code, std::string_view reason) {
  const size_t rlen = std::min<size_t>(reason.size(), wire::kMaxReason);
  std::vector<uint8_t> p(sizeof(wire::WelcomePayload) + rlen);
  wire::WelcomePayload w{};
  w.status = static_cast<uint16_t>(code);
  std::memcpy(p.data(), &w, sizeof w);
  std::memcpy(p.data() + sizeof w, reason.data(), rlen);
  return p;
}

std::vector<uint8_t> EncodeWelcome(StatusCode code, std::string_view reason) {
  std::vector<uint8_t> payload = EncodeWelcomePayload(code, reason);
  std::vector<uint8_t> f(sizeof(wire::MsgHeader) + payload.size());
  wire::MsgHeader h{};
  h.kind = wire::Kind::kWelcome;
  h.length = static_cast<uint32_t>(payload.size());
  std::memcpy(f.data(), &h, sizeof h);
  std::memcpy(f.data() + sizeof h, payload.data(), payload.size());
  return f;
}

Status CheckHello(const wire::HelloPayload& hello) {
  if (hello.magic != wire::WelcomePayload{}.magic || hello.version != wire::kVersion)
    return Status::Protocol("not a Sharry client of protocol version " + std::to_string(wire::kVersion));
  if (hello.max_message < wire::kMinMessage || hello.max_message > wire::kMaxMessage)
    return Status::InvalidArgument("hello max_message " + std::to_string(hello.max_message) + " out of range " +
                                   std::to_string(wire::kMinMessage) + ".." + std::to_string(wire::kMaxMessage));
  return Status::Ok();
}

std::vector<uint8_t> EncodeHello(wire::HelloPayload base, std::string_view tenant, const auth::Nonce& client_nonce,
                                 const SessionToken* token) {
  base.flags = (base.flags & wire::kHelloAuthOnQp) | (tenant.empty() ? 0 : wire::kHelloAuth) |
               (token != nullptr ? wire::kHelloJoin : 0);
  std::vector<uint8_t> p(sizeof base);
  std::memcpy(p.data(), &base, sizeof base);
  if (!tenant.empty()) {
    p.push_back(static_cast<uint8_t>(tenant.size()));
    p.insert(p.end(), tenant.begin(), tenant.end());
    p.insert(p.end(), client_nonce.begin(), client_nonce.end());
  }
  if (token != nullptr) p.insert(p.end(), token->begin(), token->end());
  return p;
}

StatusOr<Hello> ParseHello(std::span<const uint8_t> payload) {
  Hello h;
  if (payload.size() < sizeof h.base)
    return Status::Protocol("hello of " + std::to_string(payload.size()) + " B is shorter than " +
                            std::to_string(sizeof h.base) + " B");
  std::memcpy(&h.base, payload.data(), sizeof h.base);
  SHARRY_RETURN_IF_ERROR(CheckHello(h.base));
  if (h.base.flags & ~(wire::kHelloAuth | wire::kHelloJoin | wire::kHelloAuthOnQp))
    return Status::InvalidArgument("hello flags " + std::to_string(h.base.flags) + " have unknown bits");
  if (h.base.flags & wire::kHelloAuthOnQp) {
    if (h.base.flags != wire::kHelloAuthOnQp || h.base.session != 0)
      return Status::InvalidArgument("a hello that authenticates on the QP carries no credentials, token or session");
    h.auth_on_qp = true;
  }
  size_t pos = sizeof h.base;
  if (h.base.flags & wire::kHelloAuth) {
    h.authenticates = true;
    const size_t n = pos < payload.size() ? payload[pos] : 0;
    if (n == 0 || n > wire::kMaxTenantName || payload.size() < pos + 1 + n + wire::kNonceBytes)
      return Status::InvalidArgument("hello credentials malformed: want a 1.." + std::to_string(wire::kMaxTenantName) +
                                     "-byte tenant name and a " + std::to_string(wire::kNonceBytes) + "-byte nonce");
    h.tenant.assign(reinterpret_cast<const char*>(payload.data()) + pos + 1, n);
    SHARRY_RETURN_IF_ERROR(auth::CheckTenantName(h.tenant));
    std::memcpy(h.client_nonce.data(), payload.data() + pos + 1 + n, wire::kNonceBytes);
    pos += 1 + n + wire::kNonceBytes;
  }
  if (h.base.flags & wire::kHelloJoin) {
    if (h.base.session == 0) return Status::InvalidArgument("hello has a join token but names no session");
    if (payload.size() < pos + wire::kSessionTokenBytes)
      return Status::InvalidArgument("hello's join token is cut short");
    h.has_token = true;
    std::memcpy(h.token.data(), payload.data() + pos, wire::kSessionTokenBytes);
    pos += wire::kSessionTokenBytes;
  } else if (h.base.session != 0) {
    return Status::PermissionDenied("joining session " + std::to_string(h.base.session) +
                                    " needs its token (from the session's welcome)");
  }
  if (h.authenticates && h.has_token)
    return Status::InvalidArgument("a hello either authenticates (a new session) or joins one, not both");
  // rdma_cm pads private data with zeros: trailing zero bytes are allowed.
  while (pos < payload.size() && payload[pos] == 0) ++pos;
  if (pos != payload.size())
    return Status::InvalidArgument("hello of " + std::to_string(payload.size()) + " B has " +
                                   std::to_string(payload.size() - pos) + " B more than its flags say");
  return h;
}

ClientAuth::ClientAuth(std::string tenant, const auth::Secret& secret)
    : tenant_(std::move(tenant)), secret_(secret), nonce_(auth::NewNonce()) {}

Status ClientAuth::Answer(std::span<const uint8_t> challenge, std::string_view where, auth::Proof* proof) const {
  if (challenge.size() != wire::kChallengeBytes)
    return Status::Protocol(std::string(where) + " sent a challenge of " + std::to_string(challenge.size()) +
                            " B (want " + std::to_string(wire::kChallengeBytes) + ")");
  auth::Nonce sn;
  std::memcpy(sn.data(), challenge.data(), sn.size());
  const auth::Proof server = auth::ComputeProof(secret_, auth::Role::kServer, tenant_, nonce_, sn);
  if (!auth::ProofMatches(challenge.subspan(sn.size()), server))
    return Status::PermissionDenied("memnode " + std::string(where) + " could not prove it knows tenant '" + tenant_ +
                                    "''s secret: a wrong --secret_file, a tenant that memnode does not have, "
                                    "or not the memnode you meant");
  *proof = auth::ComputeProof(secret_, auth::Role::kClient, tenant_, nonce_, sn);
  return Status::Ok();
}

Status ServerAuth::Start(const Hello& hello, std::vector<uint8_t>* challenge) {
  challenge->clear();
  if (!hello.authenticates) {
    if (creds_ == nullptr || creds_->anonymous) return Status::Ok();
    log_reason_ = "no credentials";
    return Status::PermissionDenied(
        "this memnode serves tenants only: give a tenant and its secret (--tenant, --secret_file)");
  }
  if (creds_ == nullptr || (creds_->tenants.empty() && creds_->admin.empty())) {
    log_reason_ = "credentials given to a memnode without tenants";
    return Status::PermissionDenied("this memnode has no tenants (no --tenants_file): connect without --tenant");
  }
  const auth::Secret* secret = nullptr;
  if (hello.tenant == auth::kAdminName) {
    if (!creds_->admin.empty()) secret = &creds_->admin;
  } else if (auto it = creds_->tenants.find(hello.tenant); it != creds_->tenants.end()) {
    secret = &it->second;
  }
  // An unknown name is challenged under a secret nobody knows (fresh random
  // bytes): the client learns nothing about which tenants exist, and its
  // proof cannot verify.
  known_ = secret != nullptr;
  auth::Secret unknown;
  if (!known_) {
    const auth::Nonce random = auth::NewNonce();
    unknown = auth::Secret(std::vector<uint8_t>(random.begin(), random.end()));
    secret = &unknown;
  }
  tenant_ = hello.tenant;
  const auth::Nonce sn = auth::NewNonce();
  const auth::Proof server = auth::ComputeProof(*secret, auth::Role::kServer, tenant_, hello.client_nonce, sn);
  expected_ = auth::ComputeProof(*secret, auth::Role::kClient, tenant_, hello.client_nonce, sn);
  challenge->insert(challenge->end(), sn.begin(), sn.end());
  challenge->insert(challenge->end(), server.begin(), server.end());
  pending_ = true;
  return Status::Ok();
}

Status ServerAuth::Verify(std::span<const uint8_t> proof) {
  if (!pending_) return Status::Protocol("an authentication answer without a challenge");
  pending_ = false;
  if (!known_ || !auth::ProofMatches(proof, expected_)) {
    log_reason_ = known_ ? "wrong proof (wrong secret or a replayed answer)" : "unknown tenant";
    return Status::PermissionDenied("authentication failed for tenant '" + tenant_ + "'");
  }
  if (tenant_ == auth::kAdminName) {
    admin_ = true;
    tenant_.clear();
  }
  return Status::Ok();
}

Status CheckWelcome(std::span<const uint8_t> payload, std::string_view where, wire::WelcomePayload* out,
                    bool* refused) {
  if (refused != nullptr) *refused = false;
  const std::string from(where);
  wire::WelcomePayload w{};
  if (payload.size() < sizeof w) return Status::Protocol(from + " is not a Sharry server (no welcome)");
  std::memcpy(&w, payload.data(), sizeof w);
  if (w.magic != wire::WelcomePayload{}.magic || w.version != wire::kVersion)
    return Status::Protocol(from + " is not a Sharry server of this version");
  if (w.status != 0) {
    if (refused != nullptr) *refused = true;
    std::string reason(reinterpret_cast<const char*>(payload.data()) + sizeof w, payload.size() - sizeof w);
    reason.resize(std::strlen(reason.c_str()));  // verbs private data is zero-padded
    return Status(static_cast<StatusCode>(w.status),
                  "server " + from + " refused the connection: " + (reason.empty() ? "no reason given" : reason));
  }
  *out = w;
  return Status::Ok();
}

}  // namespace sharry::internal
