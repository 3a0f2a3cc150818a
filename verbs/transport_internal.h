// Pieces shared by the transport backends; not part of the public API.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "verbs/status.h"
#include "verbs/transport.h"

namespace sharry::internal {

StatusOr<std::unique_ptr<TransportServer>> StartTcpServer(const ServerOptions& o, RequestHandler* h);
StatusOr<std::unique_ptr<TransportClient>> ConnectTcpClient(const ClientOptions& o);
StatusOr<std::unique_ptr<TransportServer>> StartVerbsServer(const ServerOptions& o, RequestHandler* h);
StatusOr<std::unique_ptr<TransportClient>> ConnectVerbsClient(const ClientOptions& o);

// Pins `t` to `core` (-1: leave it unpinned). A failure is logged, not fatal:
// on a machine with fewer cores the thread simply runs unpinned.
void PinThread(std::thread& t, int core, const std::string& name);

// kError payload: u8 StatusCode, then the message bytes.
std::vector<uint8_t> EncodeError(const Status& s);
Status DecodeError(std::span<const uint8_t> payload);

}  // namespace sharry::internal
