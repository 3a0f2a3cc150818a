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
