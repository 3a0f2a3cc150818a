// The connect-time handshake, shared by both backends: the client's hello
// (wire::HelloPayload) and the server's welcome (wire::WelcomePayload, then
// on a refusal a reason). Over TCP they are the payloads of kHello/kWelcome
// frames; over verbs the rdma_cm private data of connect and accept/reject.
// Encoding and checking live here once, so the backends cannot diverge.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "verbs/wire.h"

namespace sharry::internal {

// A welcome payload refusing a client with `code`: WelcomePayload (status =
// code), then the reason cut to wire::kMaxReason bytes.
std::vector<uint8_t> EncodeWelcomePayload(StatusCode code, std::string_view reason);

// A kWelcome frame (header + EncodeWelcomePayload) refusing a client.
std::vector<uint8_t> EncodeWelcome(StatusCode code, std::string_view reason);

// The server's checks of a client's hello: the magic and version are ours
// (else kProtocol) and max_message is in [kMinMessage, kMaxMessage] (else
// kInvalidArgument); the message is the reason the client is told.
Status CheckHello(const wire::HelloPayload& hello);

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
