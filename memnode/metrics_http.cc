#include "memnode/metrics_http.h"

#include <arpa/inet.h>
#include <glog/logging.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdarg>
#include <cstdio>
#include <exception>
#include <string_view>

#include "verbs/socket_util.h"

namespace sharry::memnode {

namespace {

// Bytes of libmicrohttpd's per-connection pool: the request line and headers
// must fit (a scraper sends a few hundred bytes); our replies are copied
// into buffers of their own.
constexpr size_t kConnectionMemory = 16 << 10;
constexpr int kListenBacklog = 16;
constexpr const char* kExpositionType = "text/plain; version=0.0.4; charset=utf-8";
constexpr const char* kTextType = "text/plain; charset=utf-8";

// libmicrohttpd's own messages (a peer that breaks the protocol, a failed
// accept): at most one in 100 reaches the log, so a hostile peer cannot fill it.
void LogMhd(void*, const char* fmt, va_list ap) {
  char buf[256];
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  std::string_view msg(buf);
  while (!msg.empty() && msg.back() == '\n') msg.remove_suffix(1);
  LOG_EVERY_N(WARNING, 100) << "metrics endpoint (libmicrohttpd): " << msg;
}

// Queues `body` with status `code`. A refusal (code != 200) also closes the
// connection, so a peer that sends garbage gets one answer, not a session.
MHD_Result Reply(MHD_Connection* conn, unsigned code, const char* type, std::string_view body) {
  MHD_Response* r =
      MHD_create_response_from_buffer(body.size(), const_cast<char*>(body.data()), MHD_RESPMEM_MUST_COPY);
  if (r == nullptr) return MHD_NO;  // out of memory: libmicrohttpd closes the connection
  auto header = [r](const char* name, const char* value) {
    return MHD_add_response_header(r, name, value) == MHD_YES;
  };
  bool ok = header(MHD_HTTP_HEADER_CONTENT_TYPE, type);
  if (code == MHD_HTTP_METHOD_NOT_ALLOWED) ok = ok && header(MHD_HTTP_HEADER_ALLOW, "GET");
  if (code != MHD_HTTP_OK) ok = ok && header(MHD_HTTP_HEADER_CONNECTION, "close");
  const MHD_Result queued = ok ? MHD_queue_response(conn, code, r) : MHD_NO;
  MHD_destroy_response(r);
  return queued;
}

}  // namespace

// libmicrohttpd's callbacks, with access to the server's members.
struct MetricsHttpAccess {
  // Called once the request line and headers are in (*req_cls is still
  // null); we answer at once, so libmicrohttpd never reads a body: a
  // request that announces one is refused and its connection closed.
  static MHD_Result OnRequest(void* cls, MHD_Connection* conn, const char* url, const char* method,
                              const char* /*version*/, const char* /*upload_data*/, size_t* /*upload_data_size*/,
                              void** /*req_cls*/) {
    auto* self = static_cast<MetricsHttpServer*>(cls);
    auto refuse = [&](unsigned code, std::string_view why) {
      self->refused_.fetch_add(1, std::memory_order_relaxed);
      return Reply(conn, code, kTextType, why);
    };
    if (std::string_view(url) != "/metrics") return refuse(MHD_HTTP_NOT_FOUND, "not found: try GET /metrics\n");
    if (std::string_view(method) != MHD_HTTP_METHOD_GET)
      return refuse(MHD_HTTP_METHOD_NOT_ALLOWED, "only GET is served\n");
    const char* length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char* chunked = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    if (chunked != nullptr || (length != nullptr && std::string_view(length) != "0"))
      return refuse(MHD_HTTP_BAD_REQUEST, "a request body is not accepted\n");
    MetricsHttpServer::Counters c;
    c.scrapes = self->scrapes_.fetch_add(1, std::memory_order_relaxed) + 1;
    c.refused = self->refused_.load(std::memory_order_relaxed);
    std::string body;
    try {
      body = self->render_(c);
    } catch (const std::exception& e) {
      LOG_EVERY_N(WARNING, 100) << "metrics endpoint: cannot render a scrape: " << e.what();
      return Reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, kTextType, "cannot render the metrics\n");
    }
    return Reply(conn, MHD_HTTP_OK, kExpositionType, body);
  }
};

StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(const MetricsOptions& o, Render render) {
  if (o.max_connections == 0 || o.max_connections_per_ip == 0 || o.timeout_s == 0)
    return Status::InvalidArgument(
        "metrics endpoint: max_connections, max_connections_per_ip and timeout_s must be > 0");
  const std::string where = o.listen_addr + ":" + std::to_string(o.port);
  std::unique_ptr<MetricsHttpServer> s(new MetricsHttpServer(std::move(render)));
  auto fd = net::ListenTcp(o.listen_addr, o.port, kListenBacklog, &s->port_);
  if (!fd.ok()) {
    // ListenTcp says InvalidArgument for an address it cannot resolve; the
    // rest (in use, no permission) is about the port.
    if (fd.status().code() == StatusCode::kInvalidArgument)
      return Status::InvalidArgument("--metrics_listen=" + o.listen_addr + ": " + fd.status().message());
    return Status::InvalidArgument("--metrics_port=" + std::to_string(o.port) + ": cannot serve metrics on " +
                                   where + ": " + fd.status().message());
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd->get(), reinterpret_cast<sockaddr*>(&ss), &len) < 0)
    return Status::FromErrno("metrics endpoint: getsockname", errno);
  if (!net::IsLoopback(ss)) {
    if (!o.allow_non_loopback)
      return Status::InvalidArgument(
          "--metrics_listen=" + o.listen_addr +
          " is not a loopback address, and the metrics endpoint has no authentication: give --metrics_listen "
          "explicitly (MetricsOptions::allow_non_loopback) to serve it there (docs/security.md)");
    LOG(WARNING) << "metrics endpoint on " << o.listen_addr << " is not loopback: whoever reaches it reads the "
                 << "memnode's usage and per-tenant numbers without authentication (docs/security.md)";
  }
  if (Status st = net::SetNonBlocking(fd->get(), true); !st.ok()) return st.WithContext("metrics endpoint");
  // From here libmicrohttpd owns the socket (it closes it when it stops).
  const int listen_fd = fd->release();
  s->daemon_ = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ITC | MHD_USE_ERROR_LOG, 0, nullptr, nullptr,
      &MetricsHttpAccess::OnRequest, s.get(),
      // The logger first: libmicrohttpd uses its own until it sees this.
      MHD_OPTION_EXTERNAL_LOGGER, &LogMhd, nullptr,  //
      MHD_OPTION_LISTEN_SOCKET, listen_fd,           //
      MHD_OPTION_CONNECTION_LIMIT, static_cast<unsigned>(o.max_connections),
      MHD_OPTION_PER_IP_CONNECTION_LIMIT, static_cast<unsigned>(o.max_connections_per_ip),
      MHD_OPTION_CONNECTION_TIMEOUT, static_cast<unsigned>(o.timeout_s),
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, kConnectionMemory,  //
      MHD_OPTION_STRICT_FOR_CLIENT, 1,                        //
      MHD_OPTION_END);
  if (s->daemon_ == nullptr)
    return Status::Internal("metrics endpoint on " + where + ": libmicrohttpd did not start (see its log line)");
  return s;
}

MetricsHttpServer::~MetricsHttpServer() {
  if (daemon_ != nullptr) MHD_stop_daemon(daemon_);
}

}  // namespace sharry::memnode
