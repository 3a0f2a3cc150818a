#include "verbs/socket_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace sharry::net {

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    Close();
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

void Fd::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Status SetNonBlocking(int fd, bool on) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) return Status::FromErrno("fcntl(F_GETFL)", errno);
  flags = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (fcntl(fd, F_SETFL, flags) < 0) return Status::FromErrno("fcntl(F_SETFL)", errno);
  return Status::Ok();
}

Status SetKeepAlive(int fd, int idle_s) {
  int one = 1, idle = idle_s, intvl = std::max(1, idle_s / 3), cnt = 3;
  if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) < 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) < 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl) < 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt) < 0)
    return Status::FromErrno("setsockopt(keepalive)", errno);
  return Status::Ok();
}

Status SetNoDelay(int fd) {
  int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
    return Status::FromErrno("setsockopt(TCP_NODELAY)", errno);
  return Status::Ok();
}

namespace {

StatusOr<addrinfo*> Resolve(const std::string& host, uint16_t port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  addrinfo* res = nullptr;
  std::string service = std::to_string(port);
  int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &res);
  if (rc != 0) return Status::InvalidArgument("cannot resolve '" + host + "': " + gai_strerror(rc));
  return res;
}

int RemainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, 1 << 30));
}

Status WaitFd(int fd, short events, Clock::time_point deadline, const char* what) {
  for (;;) {
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, RemainingMs(deadline));
    if (rc > 0) return Status::Ok();
    if (rc == 0) return Status::Timeout(std::string(what) + ": peer did not answer in time");
    if (errno != EINTR) return Status::FromErrno("poll", errno);
  }
}

}  // namespace

StatusOr<Fd> ConnectTcp(const std::string& host, uint16_t port, int timeout_ms) {
  auto res = Resolve(host, port, false);
  if (!res.ok()) return res.status();
  std::string where = host + ":" + std::to_string(port);
  Status last = Status::Unavailable("no address for " + where);
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (addrinfo* ai = *res; ai != nullptr; ai = ai->ai_next) {
    Fd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol));
    if (!fd) {
      last = Status::FromErrno("socket", errno);
      continue;
    }
    if (Status s = SetNonBlocking(fd.get(), true); !s.ok()) { last = s; continue; }
    int rc = ::connect(fd.get(), ai->ai_addr, ai->ai_addrlen);
    if (rc < 0 && errno != EINPROGRESS) {
      last = Status::FromErrno("connect(" + where + ")", errno);
      continue;
    }
    if (rc < 0) {
      Status w = WaitFd(fd.get(), POLLOUT, deadline, ("connect " + where).c_str());
      if (!w.ok()) { last = w; continue; }
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        last = Status::FromErrno("connect(" + where + ")", err);
        continue;
      }
    }
    if (Status s = SetNonBlocking(fd.get(), false); !s.ok()) { last = s; continue; }
    if (Status s = SetNoDelay(fd.get()); !s.ok()) { last = s; continue; }
    freeaddrinfo(*res);
    return fd;
  }
  freeaddrinfo(*res);
  return last;
}

StatusOr<Fd> ListenTcp(const std::string& addr, uint16_t port, int backlog, uint16_t* bound_port) {
  auto res = Resolve(addr.empty() ? "0.0.0.0" : addr, port, true);
  if (!res.ok()) return res.status();
  addrinfo* ai = *res;
  Fd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol));
  if (!fd) {
    freeaddrinfo(*res);
    return Status::FromErrno("socket", errno);
  }
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  std::string where = addr + ":" + std::to_string(port);
  if (::bind(fd.get(), ai->ai_addr, ai->ai_addrlen) < 0) {
    int err = errno;
    freeaddrinfo(*res);
    return Status::FromErrno("bind(" + where + ")", err);
  }
  freeaddrinfo(*res);
  if (::listen(fd.get(), backlog) < 0) return Status::FromErrno("listen(" + where + ")", errno);
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len) < 0)
    return Status::FromErrno("getsockname", errno);
  *bound_port = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                               : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return fd;
}

Status SendAll(int fd, iovec* iov, int iovcnt, Clock::time_point deadline) {
  while (iovcnt > 0) {
    msghdr m{};
    m.msg_iov = iov;
    m.msg_iovlen = static_cast<size_t>(std::min(iovcnt, 64));
    ssize_t n = ::sendmsg(fd, &m, MSG_NOSIGNAL);  // a closed peer is an error, never SIGPIPE
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        SHARRY_RETURN_IF_ERROR(WaitFd(fd, POLLOUT, deadline, "send"));
        continue;
      }
      return Status::FromErrno("send", errno);
    }
    auto left = static_cast<size_t>(n);
    while (iovcnt > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --iovcnt;
    }
    if (iovcnt > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  return Status::Ok();
}

Status SendAll(int fd, const void* buf, size_t len, Clock::time_point deadline) {
  iovec iov{const_cast<void*>(buf), len};
  return SendAll(fd, &iov, 1, deadline);
}

Status RecvAll(int fd, void* buf, size_t len, Clock::time_point deadline) {
  auto* p = static_cast<char*>(buf);
  while (len > 0) {
    ssize_t n = ::recv(fd, p, len, MSG_DONTWAIT);
    if (n > 0) {
      p += n;
      len -= static_cast<size_t>(n);
      continue;
    }
    if (n == 0) return Status::Disconnected("the peer closed the connection");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      SHARRY_RETURN_IF_ERROR(WaitFd(fd, POLLIN, deadline, "receive"));
      continue;
    }
    return Status::FromErrno("recv", errno);
  }
  return Status::Ok();
}

StatusOr<size_t> RecvSome(int fd, void* buf, size_t cap, Clock::time_point deadline) {
  for (;;) {
    ssize_t n = ::recv(fd, buf, cap, MSG_DONTWAIT);
    if (n > 0) return static_cast<size_t>(n);
    if (n == 0) return Status::Disconnected("the peer closed the connection");
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return Status::FromErrno("recv", errno);
    SHARRY_RETURN_IF_ERROR(WaitFd(fd, POLLIN, deadline, "receive"));
  }
}

bool ClosedByPeer(int fd) {
  tcp_info ti{};
  socklen_t len = sizeof ti;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_state != TCP_ESTABLISHED &&
      ti.tcpi_state != TCP_SYN_SENT)
    return true;
  pollfd p{fd, POLLRDHUP, 0};
  return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

bool IsLoopback(const sockaddr_storage& ss) {
  if (ss.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(ss).sin_addr;
    return (ntohl(a.s_addr) >> 24) == 127;  // 127.0.0.0/8
  }
  if (ss.ss_family == AF_INET6) {
    const auto& a = reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(&a) || (IN6_IS_ADDR_V4MAPPED(&a) && a.s6_addr[12] == 127);
  }
  return false;
}

StatusOr<bool> IsLoopbackHost(const std::string& host) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res); rc != 0)
    return Status::InvalidArgument("cannot resolve " + host + ": " + gai_strerror(rc));
  bool all = true;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    sockaddr_storage ss{};
    std::memcpy(&ss, ai->ai_addr, std::min<size_t>(ai->ai_addrlen, sizeof ss));
    all = all && IsLoopback(ss);
  }
  ::freeaddrinfo(res);
  return all;
}

std::string AddressString(const sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (sa != nullptr && sa->sa_family == AF_INET)
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, buf, sizeof buf);
  else if (sa != nullptr && sa->sa_family == AF_INET6)
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, buf, sizeof buf);
  return buf;
}

std::string PeerAddress(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  return AddressString(reinterpret_cast<const sockaddr*>(&ss));
}

}  // namespace sharry::net
