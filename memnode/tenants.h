// The tenants file (`memnode --tenants_file`, issue #11): who may use this
// memnode, with which secret, and how much far memory.
//
//   # one entry per line; '#' starts a comment; fields are key=value
//   tenant alice secret=<64+ hex digits> quota_mb=4096 max_clients=16
//   tenant bob   secret=<64+ hex digits> quota_mb=512  max_clients=4
//   admin        secret=<64+ hex digits>      # optional: memnode_stats --admin
//
// The file must be a regular file with mode 0600 or stricter (it holds the
// secrets); anything else is refused at start. Every error names the file,
// the line and what is wrong — never a secret's text. Make a secret with
// `openssl rand -hex 32`. docs/security.md shows how to add tenants and
// rotate secrets.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "verbs/auth.h"

namespace sharry {

struct Tenant {
  std::string name;
  auth::Secret secret;
  uint64_t quota_bytes = 0;  // far memory all of the tenant's clients may hold together
  uint32_t max_clients = 0;  // connected clients (sessions) at once
};

struct TenantsConfig {
  std::vector<Tenant> tenants;
  auth::Secret admin;  // empty: no admin access

  // The tenant called `name`, or nullptr.
  const Tenant* Find(std::string_view name) const;
};

// Limits of the fields (errors name them).
inline constexpr uint64_t kMaxTenantQuotaMb = 1u << 30;  // 1 PiB
inline constexpr uint32_t kMaxTenantClients = 1u << 16;
inline constexpr size_t kMaxTenants = 4096;

// Parses the text of a tenants file; `where` names it in errors.
StatusOr<TenantsConfig> ParseTenants(std::string_view text, std::string_view where);

// Checks the file's mode (0600 or stricter), then parses it.
StatusOr<TenantsConfig> LoadTenantsFile(const std::string& path);

// What the transport checks clients against: each tenant's secret, the
// admin's, and whether anonymous clients are served too.
std::shared_ptr<const auth::ServerCredentials> CredentialsOf(const TenantsConfig& cfg, bool anonymous);

}  // namespace sharry
