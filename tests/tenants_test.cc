// The tenants file (memnode/tenants.h) and the authentication primitives
// (verbs/auth.h): every error of the file is a clear message; proofs verify
// only with the right secret, role, tenant and nonces.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <gtest/gtest.h>
#include <string>

#include "memnode/tenants.h"
#include "verbs/auth.h"

namespace sharry {
namespace {

const std::string kSecretA(64, 'a');
const std::string kSecretB = std::string(62, 'b') + "0f";

class TempFile {
 public:
  TempFile(const std::string& text, mode_t mode) {
    char tmpl[] = "/tmp/sharry_tenants_XXXXXX";
    const int fd = mkstemp(tmpl);
    EXPECT_GE(fd, 0);
    path_ = tmpl;
    EXPECT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    EXPECT_EQ(fchmod(fd, mode), 0);
    close(fd);
  }
  ~TempFile() { unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string ErrorOf(std::string_view text) {
  StatusOr<TenantsConfig> c = ParseTenants(text, "t.conf");
  EXPECT_FALSE(c.ok()) << text;
  return c.ok() ? "" : c.status().ToString();
}

TEST(TenantsFileTest, ParsesTenantsAndAdmin) {
  const std::string text = "# comment\n\ntenant alice secret=" + kSecretA +
                           " quota_mb=64 max_clients=4  # trailing\n"
                           "tenant bob.2 secret=" + kSecretB + " max_clients=1 quota_mb=1\n"
                           "admin secret=" + kSecretA + "\n";
  StatusOr<TenantsConfig> c = ParseTenants(text, "t.conf");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->tenants.size(), 2u);
  const Tenant* a = c->Find("alice");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->quota_bytes, 64u << 20);
  EXPECT_EQ(a->max_clients, 4u);
  EXPECT_EQ(a->secret.bytes().size(), 32u);
  EXPECT_EQ(a->secret.bytes()[0], 0xaa);
  const Tenant* b = c->Find("bob.2");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->secret.bytes()[31], 0x0f);
  EXPECT_EQ(c->Find("carol"), nullptr);
  EXPECT_FALSE(c->admin.empty());
}

TEST(TenantsFileTest, EachErrorSaysWhatAndWhere) {
  const std::string s = " secret=" + kSecretA;
  EXPECT_NE(ErrorOf("").find("no tenant defined"), std::string::npos);
  EXPECT_NE(ErrorOf("admin" + s + "\n").find("no tenant defined"), std::string::npos);
  EXPECT_NE(ErrorOf("tenant a" + s + " quota_mb=1 max_clients=1\ntenant a" + s + " quota_mb=1 max_clients=1\n")
                .find("line 2: tenant 'a' is defined twice"),
            std::string::npos);
  EXPECT_NE(ErrorOf("tenant a secret=abcd quota_mb=1 max_clients=1\n").find("line 1: secret: 2 bytes"),
            std::string::npos);
  EXPECT_NE(ErrorOf("tenant a secret=" + std::string(63, 'a') + " quota_mb=1 max_clients=1").find("odd number"),
            std::string::npos);
  EXPECT_NE(ErrorOf("tenant a secret=" + std::string(62, 'a') + "zz quota_mb=1 max_clients=1")
                .find("character 63 is not a hex digit"),
            std::string::npos);
  EXPECT_NE(ErrorOf("tenant a" + s + " max_clients=1").find("has no quota_mb="), std::string::npos);
  EXPECT_NE(ErrorOf("tenant a" + s + " quota_mb=1").find("has no max_clients="), std::string::npos);
  EXPECT_NE(ErrorOf("tenant a quota_mb=1 max_clients=1").find("no secret="), std::string::npos);
  EXPECT_NE(ErrorOf("tenant a" + s + " quota_mb=0 max_clients=1").find("quota_mb=0 is not a whole number in [1, "),
            std::string::npos);
  EXPECT_NE(ErrorOf("tenant a" + s + " quota_mb=1 max_clients=x").find("max_clients=x"), std::string::npos);
  EXPECT_NE(ErrorOf("tenant a" + s + " quota_mb=1 max_clients=1 color=red").find("unknown key 'color'"),
            std::string::npos);
  EXPECT_NE(ErrorOf("tenant a/b" + s + " quota_mb=1 max_clients=1").find("only letters"), std::string::npos);
  EXPECT_NE(ErrorOf("tenant" + s).find("wants a name"), std::string::npos);
  EXPECT_NE(ErrorOf("user a" + s).find("'user' is neither"), std::string::npos);
  EXPECT_NE(ErrorOf("tenant a" + s + " quota_mb=1 max_clients=1\nadmin" + s + "\nadmin" + s)
                .find("line 3: a second 'admin' line"),
            std::string::npos);
  EXPECT_NE(ErrorOf("tenant a" + s + " quota_mb=1 max_clients=1 junk").find("'junk' is not key=value"),
            std::string::npos);
  // No error message carries a secret's text.
  EXPECT_EQ(ErrorOf("tenant a" + s + " quota_mb=1 max_clients=1\ntenant a" + s + " quota_mb=1 max_clients=1\n")
                .find(kSecretA),
            std::string::npos);
}

TEST(TenantsFileTest, FileModeAndPresence) {
  const std::string text = "tenant a secret=" + kSecretA + " quota_mb=1 max_clients=1\n";
  {
    TempFile f(text, 0600);
    EXPECT_TRUE(LoadTenantsFile(f.path()).ok());
  }
  {
    TempFile f(text, 0400);
    EXPECT_TRUE(LoadTenantsFile(f.path()).ok());
  }
  for (const mode_t open_mode : {0640, 0604, 0660, 0644}) {
    TempFile f(text, open_mode);
    StatusOr<TenantsConfig> c = LoadTenantsFile(f.path());
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), StatusCode::kPermissionDenied);
    EXPECT_NE(c.status().message().find("lets others read or change it"), std::string::npos);
    EXPECT_NE(c.status().message().find("chmod 600"), std::string::npos);
  }
  StatusOr<TenantsConfig> missing = LoadTenantsFile("/nonexistent/tenants");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("--tenants_file /nonexistent/tenants: cannot open"), std::string::npos);
  EXPECT_FALSE(LoadTenantsFile("/tmp").ok());  // a directory
}

TEST(AuthTest, SecretFile) {
  const std::string hex = auth::NewSecretHex();
  EXPECT_EQ(hex.size(), 64u);
  TempFile good(hex + "\n", 0600);
  StatusOr<auth::Secret> s = auth::ReadSecretFile(good.path());
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->bytes().size(), 32u);
  TempFile open_file(hex, 0644);
  EXPECT_EQ(auth::ReadSecretFile(open_file.path()).status().code(), StatusCode::kPermissionDenied);
  TempFile short_file("abcd", 0600);
  StatusOr<auth::Secret> bad = auth::ReadSecretFile(short_file.path());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("--secret_file " + short_file.path() + ": secret: 2 bytes"),
            std::string::npos);
}

TEST(AuthTest, ProofsBindSecretRoleTenantAndBothNonces) {
  const auth::Secret k = *auth::ParseSecret(kSecretA);
  const auth::Secret other = *auth::ParseSecret(kSecretB);
  const auth::Nonce cn = auth::NewNonce(), sn = auth::NewNonce();
  EXPECT_NE(cn, sn);  // 2^-256 to fail
  const auth::Proof p = auth::ComputeProof(k, auth::Role::kClient, "alice", cn, sn);
  EXPECT_TRUE(auth::ProofMatches(p, auth::ComputeProof(k, auth::Role::kClient, "alice", cn, sn)));
  EXPECT_FALSE(auth::ProofMatches(p, auth::ComputeProof(other, auth::Role::kClient, "alice", cn, sn)));
  EXPECT_FALSE(auth::ProofMatches(p, auth::ComputeProof(k, auth::Role::kServer, "alice", cn, sn)));  // reflection
  EXPECT_FALSE(auth::ProofMatches(p, auth::ComputeProof(k, auth::Role::kClient, "alicf", cn, sn)));
  EXPECT_FALSE(auth::ProofMatches(p, auth::ComputeProof(k, auth::Role::kClient, "alice", sn, cn)));
  const auth::Nonce sn2 = auth::NewNonce();  // a replay against a fresh server nonce
  EXPECT_FALSE(auth::ProofMatches(p, auth::ComputeProof(k, auth::Role::kClient, "alice", cn, sn2)));
  EXPECT_FALSE(auth::ProofMatches(std::span<const uint8_t>(p.data(), 31), p));
  // Known answer (Python: hmac.new(bytes(32), b"sharry-v1 server" + bytes(65),
  // hashlib.sha256)): the message layout of docs/security.md is what is MACed.
  const auth::Secret zeros = *auth::ParseSecret(std::string(64, '0'));
  const auth::Nonce z{};
  const auth::Proof kat = auth::ComputeProof(zeros, auth::Role::kServer, "", z, z);
  std::string hex;
  for (const uint8_t b : kat) {
    static constexpr char kHex[] = "0123456789abcdef";
    hex += kHex[b >> 4];
    hex += kHex[b & 15];
  }
  EXPECT_EQ(hex, "1db580e48ca0de40499aa6b3d21d16ce5b3eef3ff5b33d4922c5cbfc3e5c8256");
}

}  // namespace
}  // namespace sharry
