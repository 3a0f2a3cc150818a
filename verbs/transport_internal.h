// Pieces shared by the transport backends; not part of the public API.
//
// Where the backends are (docs/transport.md has the whole list):
//   tcp    tcp_client.cc; tcp_server_impl.h + tcp_server.cc; tcp_framing.h/.cc
//          (the server's socket-free input parser)
//   verbs  verbs_client_impl.h + verbs_client.cc, verbs_client_data.cc,
//          verbs_client_auth.cc; verbs_server_impl.h + verbs_server.cc,
//          verbs_server_poll.cc, verbs_server_auth.cc
//   both   handshake.h/.cc (EncodeWelcome, CheckHello, CheckWelcome), session.h/.cc;
//          NetServer, CopyingClient and CheckRequestSize below
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string_view>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "verbs/auth_guard.h"
#include "verbs/session.h"
#include "verbs/transport.h"

namespace sharry::internal {

StatusOr<std::unique_ptr<TransportServer>> StartTcpServer(const ServerOptions& o, RequestHandler* h);
StatusOr<std::unique_ptr<TransportClient>> ConnectTcpClient(const ClientOptions& o);
StatusOr<std::unique_ptr<TransportServer>> StartVerbsServer(const ServerOptions& o, RequestHandler* h);
StatusOr<std::unique_ptr<TransportClient>> ConnectVerbsClient(const ClientOptions& o);
// verbs/transport_loopback.cc: in-process, for tests (verbs/fault_injection.h).
StatusOr<std::unique_ptr<TransportServer>> StartLoopbackServer(const ServerOptions& o, RequestHandler* h);
StatusOr<std::unique_ptr<TransportClient>> ConnectLoopbackClient(const ClientOptions& o);

// What the network servers (TcpServer, VerbsServer) share: their options,
// handler and sessions, the port they listen on, the stop flag of their
// threads and the count num_clients() reports (greeted connections over tcp,
// established ones over verbs). The members outlive the derived server's,
// whose destructor stops its threads.
class NetServer : public TransportServer {
 public:
  uint16_t port() const override { return port_; }
  size_t num_clients() const override { return clients_.load(); }
  TransportKind kind() const override { return kind_; }
  AuthCounters auth_counters() const override { return auth_guard_.counters(); }

 protected:
  NetServer(TransportKind kind, const ServerOptions& o, RequestHandler* h)
      : kind_(kind), opts_(o), handler_(h), sessions_(o.lease_ms), auth_guard_(AuthGuard::OptionsOf(o)) {}

  const TransportKind kind_;
  const ServerOptions opts_;
  RequestHandler* const handler_;
  SessionTable sessions_;
  AuthGuard auth_guard_;  // failed authentications per source address
  uint16_t port_ = 0;  // set by Start
  std::atomic<bool> stop_{false};
  std::atomic<size_t> clients_{0};
};

// What the tcp and loopback clients share: their data path copies bytes
// (over a socket, or in process), so there is nothing to register; READ and
// WRITE batches both go through Batch(ops, write); the ConnectionInfo is
// set at connect.
class CopyingClient : public TransportClient {
 public:
  const ConnectionInfo& info() const override { return info_; }
  Status RegisterLocal(void*, size_t) override { return Status::Ok(); }
  Status ReadBatch(std::span<const RemoteOp> ops) override { return Batch(ops, false); }
  Status WriteBatch(std::span<const RemoteOp> ops) override { return Batch(ops, true); }

 protected:
  explicit CopyingClient(const ConnectionInfo& info = {}) : info_(info) {}
  virtual Status Batch(std::span<const RemoteOp> ops, bool write) = 0;

  ConnectionInfo info_;
};

// A request of n bytes fits one message of max_message bytes with its
// header; else kInvalidArgument naming both (every backend's client checks).
Status CheckRequestSize(size_t n, uint32_t max_message);

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
