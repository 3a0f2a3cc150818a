// Small POSIX socket helpers for the TCP transport and its baselines.
#pragma once

#include <sys/socket.h>

#include <sys/uio.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "base/status.h"

namespace sharry::net {

using Clock = std::chrono::steady_clock;

// A file descriptor that closes itself.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept;
  ~Fd() { Close(); }
  void Close();
  int get() const { return fd_; }
  int release() { int f = fd_; fd_ = -1; return f; }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// Connects to host:port within timeout_ms (TCP_NODELAY set, blocking mode).
StatusOr<Fd> ConnectTcp(const std::string& host, uint16_t port, int timeout_ms);
// Listens on addr:port (0: any free port); returns the fd and the bound port.
StatusOr<Fd> ListenTcp(const std::string& addr, uint16_t port, int backlog, uint16_t* bound_port);

Status SetNonBlocking(int fd, bool on);
Status SetNoDelay(int fd);
// True for 127.0.0.0/8, ::1 and IPv4-mapped 127.x (what only this host reaches).
bool IsLoopback(const sockaddr_storage& ss);
// Whether `host` (an address or a name) resolves to loopback addresses
// only; kInvalidArgument if it does not resolve.
StatusOr<bool> IsLoopbackHost(const std::string& host);

// The address (no port) in `sa`, e.g. "192.0.2.7" or "2001:db8::1"; "?"
// for null or another family.
std::string AddressString(const sockaddr* sa);

// The address (no port) of the peer of connected socket fd, e.g.
// "192.0.2.7" or "2001:db8::1"; "?" if it cannot be told.
std::string PeerAddress(int fd);
// TCP keepalive: first probe after idle_s, then every max(1, idle_s/3) s, 3 probes.
Status SetKeepAlive(int fd, int idle_s);

// Sends/receives exactly the given bytes on a blocking or non-blocking fd,
// waiting with poll() until `deadline`. EOF is kDisconnected, the deadline
// kTimeout.
Status SendAll(int fd, iovec* iov, int iovcnt, Clock::time_point deadline);
Status SendAll(int fd, const void* buf, size_t len, Clock::time_point deadline);
Status RecvAll(int fd, void* buf, size_t len, Clock::time_point deadline);
// Receives at least one and at most `cap` bytes (whatever is there), waiting
// until `deadline`.
StatusOr<size_t> RecvSome(int fd, void* buf, size_t cap, Clock::time_point deadline);

// True if the peer closed (FIN or RST) connection `fd` or it failed; looks
// at TCP_INFO and polls for POLLRDHUP without reading anything. For tests
// and benchmarks that watch what a server does to a connection.
bool ClosedByPeer(int fd);

}  // namespace sharry::net
