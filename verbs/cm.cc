#include "verbs/cm.h"

#include <arpa/inet.h>
#include <glog/logging.h>
#include <netdb.h>
#include <poll.h>

#include <cerrno>
#include <cstring>

#include "verbs/error.h"
#include "verbs/socket_util.h"

namespace sharry::verbs {

StatusOr<CmEventChannel> CmEventChannel::Create() {
  rdma_event_channel* ch = rdma_create_event_channel();
  if (ch == nullptr) {
    int err = errno;
    Status s = VerbFailed("rdma_create_event_channel", err);
    if (err == ENODEV || err == ENOENT)
      s = s.WithContext("no RDMA device (is rdma_rxe or a NIC driver loaded? see scripts/rxe-setup.sh)");
    return s;
  }
  if (Status s = net::SetNonBlocking(ch->fd, true); !s.ok()) {
    rdma_destroy_event_channel(ch);
    return s.WithContext("rdma event channel, O_NONBLOCK");
  }
  return CmEventChannel(ch);
}

CmEventChannel::~CmEventChannel() {
  if (ch_ != nullptr) rdma_destroy_event_channel(ch_);
}

StatusOr<CmEvent> CmEventChannel::Next(int timeout_ms) {
  for (;;) {
    rdma_cm_event* ev = nullptr;
    if (rdma_get_cm_event(ch_, &ev) == 0) return CmEvent(ev);
    if (errno != EAGAIN && errno != EWOULDBLOCK) return VerbFailed("rdma_get_cm_event", errno);
    pollfd pfd{ch_->fd, POLLIN, 0};
    int pr = ::poll(&pfd, 1, timeout_ms);
    if (pr < 0 && errno != EINTR) return VerbFailed("poll(rdma event channel)", errno);
    if (pr == 0) return Status::Timeout("no rdma_cm event within " + std::to_string(timeout_ms) + " ms");
  }
}

StatusOr<CmEvent> CmEventChannel::Expect(rdma_cm_event_type expected, int timeout_ms,
                                         std::string_view what) {
  auto ev = Next(timeout_ms);
  if (!ev.ok()) return ev.status().WithContext(std::string(what) + ": waiting for " + rdma_event_str(expected));
  if (ev->type() != expected || ev->status() != 0) {
    std::string m = std::string(what) + ": expected " + rdma_event_str(expected) + ", got " +
                    ev->name() + " (status " + std::to_string(ev->status()) + ")";
    switch (ev->type()) {
      case RDMA_CM_EVENT_REJECTED:
        return Status::Unavailable(m + ": the server refused the connection (not listening, or full)");
      case RDMA_CM_EVENT_UNREACHABLE:
      case RDMA_CM_EVENT_ADDR_ERROR:
      case RDMA_CM_EVENT_ROUTE_ERROR:
        return Status::Unavailable(m + ": no RDMA route to the peer");
      case RDMA_CM_EVENT_CONNECT_ERROR:
        return Status::Unavailable(m);
      default:
        return Status::Protocol(m);
    }
  }
  return ev;
}

StatusOr<CmId> CmId::Create(CmEventChannel& ch, void* context) {
  rdma_cm_id* id = nullptr;
  if (rdma_create_id(ch.get(), &id, context, RDMA_PS_TCP) != 0) return VerbFailed("rdma_create_id", errno);
  return CmId(id);
}

void CmId::Reset() {
  if (id_ == nullptr) return;
  if (id_->qp != nullptr) rdma_destroy_qp(id_);
  if (rdma_destroy_id(id_) != 0) LOG(ERROR) << VerbFailed("rdma_destroy_id", errno);
  id_ = nullptr;
}

Status ResolveAddress(const std::string& host, uint16_t port, sockaddr_storage* out) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string service = std::to_string(port);
  int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &res);
  if (rc != 0)
    return Status::InvalidArgument("cannot resolve '" + host + "': " + gai_strerror(rc));
  std::memcpy(out, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  return Status::Ok();
}

Status ResolveRoute(CmEventChannel& ch, CmId& id, const std::string& host, uint16_t port,
                    int timeout_ms) {
  sockaddr_storage dst{};
  SHARRY_RETURN_IF_ERROR(ResolveAddress(host, port, &dst));
  std::string where = host + ":" + std::to_string(port);
  if (rdma_resolve_addr(id.get(), nullptr, reinterpret_cast<sockaddr*>(&dst), timeout_ms) != 0)
    return VerbFailed("rdma_resolve_addr(" + where + ")", errno);
  {
    auto ev = ch.Expect(RDMA_CM_EVENT_ADDR_RESOLVED, timeout_ms + 1000, "resolve address " + where);
    if (!ev.ok()) return ev.status();
  }
  if (rdma_resolve_route(id.get(), timeout_ms) != 0)
    return VerbFailed("rdma_resolve_route(" + where + ")", errno);
  auto ev = ch.Expect(RDMA_CM_EVENT_ROUTE_RESOLVED, timeout_ms + 1000, "resolve route " + where);
  if (!ev.ok()) return ev.status();
  return Status::Ok();
}

Status OpenAndResolve(std::optional<CmEventChannel>* ch, CmId* id, const std::string& host, uint16_t port,
                      int timeout_ms) {
  auto c = CmEventChannel::Create();
  if (!c.ok()) return c.status();
  ch->emplace(std::move(*c));
  auto i = CmId::Create(**ch);
  if (!i.ok()) return i.status();
  *id = std::move(*i);
  return ResolveRoute(**ch, *id, host, port, timeout_ms);
}

StatusOr<Listener> Listen(const std::string& addr, uint16_t port, int backlog) {
  auto ch = CmEventChannel::Create();
  if (!ch.ok()) return ch.status();
  auto id = CmId::Create(*ch);
  if (!id.ok()) return id.status();
  sockaddr_storage sa{};
  SHARRY_RETURN_IF_ERROR(ResolveAddress(addr.empty() ? "0.0.0.0" : addr, port, &sa));
  std::string where = addr + ":" + std::to_string(port);
  if (rdma_bind_addr(id->get(), reinterpret_cast<sockaddr*>(&sa)) != 0)
    return VerbFailed("rdma_bind_addr(" + where + ")", errno);
  if (rdma_listen(id->get(), backlog) != 0) return VerbFailed("rdma_listen(" + where + ")", errno);
  Listener l{std::move(*ch), std::move(*id), 0};
  l.port = ntohs(rdma_get_src_port(l.id.get()));
  return l;
}

}  // namespace sharry::verbs
