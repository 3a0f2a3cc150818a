// The verbs client's side of authentication on the QP (kHelloAuthOnQp; the
// exchange is drawn in wire.h): the credentials do not fit the connect's
// private data, so after the accept — which gives no key and no session —
// the hello goes as a message, the server's proof is checked before the
// client answers, and the welcome brings the key and the session token.
// See verbs_client_impl.h for the map of the client's files.
#include <cstring>
#include <string>
#include <vector>

#include "verbs/handshake.h"
#include "verbs/transport_internal.h"
#include "verbs/verbs_client_impl.h"

namespace sharry::internal {

Status VerbsClient::Authenticate(const wire::WelcomePayload& accepted) {
  if (accepted.session != 0)
    return Status::Protocol(where_ + " opened a session without authenticating: not a memnode that "
                                     "authenticates over verbs (of this version)");
  ClientAuth auth(opts_.tenant, opts_.secret);
  // One message and its reply (same tag); a kError reply is its Status.
  std::vector<uint8_t> reply;
  Kind kind = Kind::kError;
  auto exchange = [&](Kind send, std::span<const uint8_t> payload, std::string_view what) -> Status {
    const uint64_t tag = next_tag_++;
    SHARRY_RETURN_IF_ERROR(PostRequest(tag, payload, send));
    Status s = TakeMessage(tag, &kind, &reply);
    if (s.ok() && kind == Kind::kError) s = DecodeError(reply);
    return s.WithContext(std::string(what) + " (authenticating as tenant '" + opts_.tenant + "')");
  };
  wire::HelloPayload base{};
  base.max_message = info_.max_message;
  SHARRY_RETURN_IF_ERROR(exchange(Kind::kHello, EncodeHello(base, opts_.tenant, auth.nonce(), nullptr), "hello"));
  wire::WelcomePayload w{};
  if (kind == Kind::kChallenge) {
    // The server proves it knows the secret first: an impostor stops here,
    // and gets no proof of ours.
    auth::Proof proof;
    SHARRY_RETURN_IF_ERROR(auth.Answer(reply, where_, &proof));
    SHARRY_RETURN_IF_ERROR(exchange(Kind::kAuth, proof, "answer to the challenge"));
  }
  if (kind != Kind::kWelcome)
    return Status::Protocol(where_ + " answered the authentication with message kind " + std::to_string(int(kind)));
  SHARRY_RETURN_IF_ERROR(CheckWelcome(reply, where_, &w));  // a refusal: its code and reason
  if (w.session == 0 || w.client_id != info_.client_id || reply.size() < sizeof w + info_.session_token.size())
    return Status::Protocol(where_ + " sent a welcome without a session after authentication");
  std::memcpy(info_.session_token.data(), reply.data() + sizeof w, info_.session_token.size());
  info_.region_addr = w.region_addr;
  info_.region_size = w.region_size;
  info_.rkey = w.rkey;
  info_.lease_ms = w.lease_ms;
  info_.session = w.session;
  return Status::Ok();
}

}  // namespace sharry::internal
