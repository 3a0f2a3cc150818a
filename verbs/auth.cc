#include "verbs/auth.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <glog/logging.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

namespace sharry::auth {

namespace {

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::strchr(" \t\r\n", s.front()) != nullptr) s.remove_prefix(1);
  while (!s.empty() && std::strchr(" \t\r\n", s.back()) != nullptr) s.remove_suffix(1);
  return s;
}

}  // namespace

Secret::~Secret() {
  if (!bytes_.empty()) OPENSSL_cleanse(bytes_.data(), bytes_.size());
}

StatusOr<Secret> ParseSecret(std::string_view hex) {
  hex = Trim(hex);
  if (hex.size() % 2 != 0) {
    return Status::InvalidArgument("secret: an odd number of hex digits (" + std::to_string(hex.size()) + ")");
  }
  const size_t n = hex.size() / 2;
  if (n < kMinSecretBytes || n > kMaxSecretBytes) {
    return Status::InvalidArgument("secret: " + std::to_string(n) + " bytes; a secret has " +
                                   std::to_string(kMinSecretBytes) + " to " + std::to_string(kMaxSecretBytes) +
                                   " random bytes (" + std::to_string(2 * kMinSecretBytes) +
                                   "+ hex digits; make one with `openssl rand -hex 32`)");
  }
  std::vector<uint8_t> bytes(n);
  for (size_t i = 0; i < n; ++i) {
    const int hi = HexDigit(hex[2 * i]), lo = HexDigit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      OPENSSL_cleanse(bytes.data(), bytes.size());
      return Status::InvalidArgument("secret: character " + std::to_string(hi < 0 ? 2 * i + 1 : 2 * i + 2) +
                                     " is not a hex digit");
    }
    bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return Secret(std::move(bytes));
}

StatusOr<std::string> ReadPrivateFile(const std::string& path, std::string_view what) {
  const std::string name = std::string(what) + " " + path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    const int e = errno;
    return Status(e == ENOENT ? StatusCode::kNotFound : StatusCode::kPermissionDenied,
                  name + ": cannot open: " + std::strerror(e));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::InvalidArgument(name + ": not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Status::PermissionDenied(name + ": mode " + mode +
                                    " lets others read or change it; it holds secrets: chmod 600 " + path);
  }
  if (st.st_size > (1 << 20)) {
    ::close(fd);
    return Status::InvalidArgument(name + ": larger than 1 MiB");
  }
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < text.size()) {
    const ssize_t r = ::read(fd, text.data() + got, text.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += static_cast<size_t>(r);
  }
  ::close(fd);
  text.resize(got);
  return text;
}

StatusOr<Secret> ReadSecretFile(const std::string& path) {
  StatusOr<std::string> text = ReadPrivateFile(path, "--secret_file");
  if (!text.ok()) return text.status();
  StatusOr<Secret> s = ParseSecret(*text);
  OPENSSL_cleanse(text->data(), text->size());
  if (!s.ok()) return Status(s.status().code(), "--secret_file " + path + ": " + s.status().message());
  return s;
}

Status CheckTenantName(std::string_view name) {
  if (name.empty() || name.size() > kMaxTenantName) {
    return Status::InvalidArgument("tenant name '" + std::string(name.substr(0, kMaxTenantName)) + "': 1 to " +
                                   std::to_string(kMaxTenantName) + " characters");
  }
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '-' || c == '.';
    if (!ok) {
      return Status::InvalidArgument("tenant name '" + std::string(name) +
                                     "': only letters, digits, '_', '-' and '.'");
    }
  }
  return Status::Ok();
}

Nonce NewNonce() {
  Nonce n;
  CHECK_EQ(RAND_bytes(n.data(), static_cast<int>(n.size())), 1) << "RAND_bytes failed: no nonce, no authentication";
  return n;
}

std::string NewSecretHex(size_t bytes) {
  std::vector<uint8_t> raw(bytes);
  CHECK_EQ(RAND_bytes(raw.data(), static_cast<int>(raw.size())), 1) << "RAND_bytes failed";
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * bytes);
  for (const uint8_t b : raw) {
    hex.push_back(kHex[b >> 4]);
    hex.push_back(kHex[b & 15]);
  }
  OPENSSL_cleanse(raw.data(), raw.size());
  return hex;
}

Proof ComputeProof(const Secret& secret, Role role, std::string_view tenant, const Nonce& client_nonce,
                   const Nonce& server_nonce) {
  const std::string_view label = role == Role::kServer ? "sharry-v1 server" : "sharry-v1 client";
  std::vector<uint8_t> msg;
  msg.reserve(label.size() + 1 + tenant.size() + 2 * kNonceBytes);
  msg.insert(msg.end(), label.begin(), label.end());
  msg.push_back(static_cast<uint8_t>(tenant.size()));
  msg.insert(msg.end(), tenant.begin(), tenant.end());
  msg.insert(msg.end(), client_nonce.begin(), client_nonce.end());
  msg.insert(msg.end(), server_nonce.begin(), server_nonce.end());
  Proof out{};
  unsigned int len = 0;
  const auto key = secret.bytes();
  CHECK(HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), msg.data(), msg.size(), out.data(), &len) !=
        nullptr)
      << "HMAC-SHA256 failed";
  CHECK_EQ(len, kProofBytes);
  return out;
}

bool ProofMatches(std::span<const uint8_t> received, const Proof& expected) {
  if (received.size() != expected.size()) return false;
  return CRYPTO_memcmp(received.data(), expected.data(), expected.size()) == 0;
}

}  // namespace sharry::auth
