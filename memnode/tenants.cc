#include "memnode/tenants.h"

#include <charconv>
#include <openssl/crypto.h>

namespace sharry {

namespace {

std::vector<std::string_view> Fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t' && line[j] != '\r') ++j;
    if (j > i) out.push_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

template <class T>
bool ParseNumber(std::string_view s, T* out) {
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

// `key`=`value` as a whole number in [1, max] into *out; else the error.
template <class T>
Status ParseCount(std::string_view key, std::string_view value, T max, T* out) {
  if (ParseNumber(value, out) && *out >= 1 && *out <= max) return Status::Ok();
  return Status::InvalidArgument(std::string(key) + "=" + std::string(value.substr(0, 24)) +
                                 " is not a whole number in [1, " + std::to_string(max) + "]");
}

}  // namespace

const Tenant* TenantsConfig::Find(std::string_view name) const {
  for (const Tenant& t : tenants) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

StatusOr<TenantsConfig> ParseTenants(std::string_view text, std::string_view where) {
  TenantsConfig cfg;
  bool have_admin = false;
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (const size_t hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    const std::vector<std::string_view> f = Fields(line);
    if (f.empty()) continue;
    const std::string at = std::string(where) + " line " + std::to_string(line_no) + ": ";
    auto bad = [&](const std::string& what) { return Status::InvalidArgument(at + what); };

    const bool is_admin = f[0] == "admin";
    if (f[0] != "tenant" && !is_admin) {
      return bad("'" + std::string(f[0].substr(0, 32)) + "' is neither 'tenant <name> key=value...' nor 'admin secret=...'");
    }
    Tenant t;
    size_t first_kv = 1;
    if (!is_admin) {
      if (f.size() < 2 || f[1].find('=') != std::string_view::npos) return bad("'tenant' wants a name first");
      if (Status s = auth::CheckTenantName(f[1]); !s.ok()) return bad(s.message());
      if (f[1] == auth::kAdminName) return bad("'admin' is the admin's name, not a tenant's (use an 'admin' line)");
      if (cfg.Find(f[1]) != nullptr) return bad("tenant '" + std::string(f[1]) + "' is defined twice");
      t.name = std::string(f[1]);
      first_kv = 2;
    } else if (have_admin) {
      return bad("a second 'admin' line");
    }
    bool have_secret = false, have_quota = false, have_clients = false;
    for (size_t i = first_kv; i < f.size(); ++i) {
      const size_t eq = f[i].find('=');
      if (eq == std::string_view::npos) return bad("'" + std::string(f[i].substr(0, 32)) + "' is not key=value");
      const std::string_view key = f[i].substr(0, eq), value = f[i].substr(eq + 1);
      if (key == "secret") {
        StatusOr<auth::Secret> s = auth::ParseSecret(value);
        if (!s.ok()) return bad(s.status().message());
        t.secret = std::move(*s);
        have_secret = true;
      } else if (key == "quota_mb" && !is_admin) {
        uint64_t mb = 0;
        if (Status st = ParseCount(key, value, kMaxTenantQuotaMb, &mb); !st.ok()) return bad(st.message());
        t.quota_bytes = mb << 20;
        have_quota = true;
      } else if (key == "max_clients" && !is_admin) {
        uint32_t n = 0;
        if (Status st = ParseCount(key, value, kMaxTenantClients, &n); !st.ok()) return bad(st.message());
        t.max_clients = n;
        have_clients = true;
      } else {
        return bad("unknown key '" + std::string(key.substr(0, 32)) + "' (" +
                   (is_admin ? "admin takes secret=" : "tenant takes secret=, quota_mb=, max_clients=") + ")");
      }
    }
    if (!have_secret) return bad("no secret=");
    if (is_admin) {
      cfg.admin = std::move(t.secret);
      have_admin = true;
      continue;
    }
    if (!have_quota) return bad("tenant '" + t.name + "' has no quota_mb=");
    if (!have_clients) return bad("tenant '" + t.name + "' has no max_clients=");
    if (cfg.tenants.size() == kMaxTenants) return bad("more than " + std::to_string(kMaxTenants) + " tenants");
    cfg.tenants.push_back(std::move(t));
  }
  if (cfg.tenants.empty()) return Status::InvalidArgument(std::string(where) + ": no tenant defined");
  return cfg;
}

StatusOr<TenantsConfig> LoadTenantsFile(const std::string& path) {
  StatusOr<std::string> text = auth::ReadPrivateFile(path, "--tenants_file");
  if (!text.ok()) return text.status();
  StatusOr<TenantsConfig> cfg = ParseTenants(*text, "--tenants_file " + path);
  OPENSSL_cleanse(text->data(), text->size());
  return cfg;
}

std::shared_ptr<const auth::ServerCredentials> CredentialsOf(const TenantsConfig& cfg, bool anonymous) {
  auto c = std::make_shared<auth::ServerCredentials>();
  for (const Tenant& t : cfg.tenants) {
    c->tenants.emplace(t.name, t.secret);
    c->max_sessions.emplace(t.name, t.max_clients);
  }
  c->admin = cfg.admin;
  c->anonymous = anonymous;
  return c;
}

}  // namespace sharry
