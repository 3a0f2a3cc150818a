// MetricsHttpServer: the memnode's Prometheus endpoint, `GET /metrics` over
// HTTP/1.1, served by libmicrohttpd (Debian libmicrohttpd-dev) — not an HTTP
// server of our own. Memnode starts one when MetricsOptions::enabled is set
// and stops it first when it stops.
//
// Exposure (docs/security.md): it binds MetricsOptions::listen_addr only,
// loopback unless allow_non_loopback; it has no authentication and shows
// totals and per-tenant usage, never client ids.
//
// Hostile peers: at most max_connections at once (max_connections_per_ip
// from one address; more are closed at accept), each closed after timeout_s
// without progress, 16 KiB of memory per connection for its request; only
// GET /metrics is answered (404 for another path, 405 with `Allow: GET` for
// another method, 400 for a request with a body), a refusal closes the
// connection.
//
// Threads: one, libmicrohttpd's internal polling thread (epoll on Linux); it
// sleeps in epoll_wait while nobody scrapes. It calls `render` for each
// scrape; render must not block for long (Memnode's takes the service's leaf
// stats lock, never a lock of the data path).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "base/status.h"
#include "memnode/metrics.h"

struct MHD_Daemon;  // <microhttpd.h>, included by the .cc only

namespace sharry::memnode {

class MetricsHttpServer {
 public:
  // What the server counted so far (a scrape counts itself).
  struct Counters {
    uint64_t scrapes = 0;
    uint64_t refused = 0;
  };
  // Returns the body of one scrape (Prometheus text format 0.0.4).
  using Render = std::function<std::string(const Counters&)>;

  // Binds and starts the thread, or says why not: an InvalidArgument naming
  // --metrics_listen (cannot resolve, not loopback and not allowed) or
  // --metrics_port (cannot bind: in use, no permission), or libmicrohttpd's
  // failure. `options.enabled` is not looked at.
  static StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const MetricsOptions& options, Render render);
  // Stops the thread, closes every connection and the listening socket.
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  uint16_t port() const { return port_; }
  Counters counters() const { return {scrapes_.load(), refused_.load()}; }

 private:
  explicit MetricsHttpServer(Render render) : render_(std::move(render)) {}
  friend struct MetricsHttpAccess;  // the .cc's libmicrohttpd callbacks

  const Render render_;
  uint16_t port_ = 0;
  std::atomic<uint64_t> scrapes_{0};
  std::atomic<uint64_t> refused_{0};
  MHD_Daemon* daemon_ = nullptr;
};

}  // namespace sharry::memnode
