// Pieces shared by the transport backends; not part of the public API.
//
// Where the backends are (docs/transport.md has the whole list):
//   tcp    tcp_client.cc; tcp_server_impl.h + tcp_server.cc; tcp_framing.h/.cc
//          (the server's socket-free input parser)
//   verbs  verbs_client_impl.h + verbs_client.cc, verbs_client_data.cc;
//          verbs_server_impl.h + verbs_server.cc, verbs_server_poll.cc
//   both   handshake.h/.cc (EncodeWelcome, CheckWelcome), session.h/.cc
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string_view>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "verbs/transport.h"

namespace sharry::internal {

StatusOr<std::unique_ptr<TransportServer>> StartTcpServer(const ServerOptions& o, RequestHandler* h);
StatusOr<std::unique_ptr<TransportClient>> ConnectTcpClient(const ClientOptions& o);
StatusOr<std::unique_ptr<TransportServer>> StartVerbsServer(const ServerOptions& o, RequestHandler* h);
StatusOr<std::unique_ptr<TransportClient>> ConnectVerbsClient(const ClientOptions& o);
// verbs/transport_loopback.cc: in-process, for tests (verbs/fault_injection.h).
StatusOr<std::unique_ptr<TransportServer>> StartLoopbackServer(const ServerOptions& o, RequestHandler* h);
StatusOr<std::unique_ptr<TransportClient>> ConnectLoopbackClient(const ClientOptions& o);

// Every ServerOptions field in its range (the message names the field, the
// value and the range).
Status CheckServerOptions(const ServerOptions& o);

// Pins `t` to `core` (-1: leave it unpinned). A failure is logged, not fatal:
// on a machine with fewer cores the thread simply runs unpinned.
void PinThread(std::thread& t, int core, const std::string& name);

// Logging that cannot flood: Due() returns how many events happened since
// the last report once per `period_s` (then the caller logs), else nullopt.
// One thread.
class RateLimitedLog {
 public:
  explicit RateLimitedLog(int period_s) : period_(std::chrono::seconds(period_s)) {}
  std::optional<uint64_t> Due() {
    ++count_;
    auto now = std::chrono::steady_clock::now();
    if (now - last_ < period_) return std::nullopt;
    last_ = now;
    uint64_t n = count_;
    count_ = 0;
    return n;
  }

 private:
  std::chrono::steady_clock::duration period_;
  std::chrono::steady_clock::time_point last_{};
  uint64_t count_ = 0;
};

// kError payload: u8 StatusCode, then the message bytes.
std::vector<uint8_t> EncodeError(const Status& s);
Status DecodeError(std::span<const uint8_t> payload);

}  // namespace sharry::internal
