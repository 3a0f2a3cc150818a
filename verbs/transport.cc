#include "verbs/transport.h"

#include <glog/logging.h>
#include <pthread.h>
#include <sched.h>

#include <cstring>

#include "verbs/transport_internal.h"
#include "verbs/wire.h"

namespace sharry {

std::string_view TransportName(TransportKind k) {
  switch (k) {
    case TransportKind::kVerbs: return "verbs";
    case TransportKind::kTcp: return "tcp";
    case TransportKind::kLoopback: return "loopback";
  }
  return "unknown";
}

StatusOr<TransportKind> ParseTransport(std::string_view name) {
  if (name == "verbs" || name == "rdma") return TransportKind::kVerbs;
  if (name == "tcp") return TransportKind::kTcp;
  if (name == "loopback") return TransportKind::kLoopback;
  return Status::InvalidArgument("unknown transport '" + std::string(name) + "' (use verbs, tcp or loopback)");
}

Status CheckRange(uint64_t offset, uint64_t len, uint64_t size, std::string_view what) {
  if (offset > size || len > size - offset) {
    return Status::OutOfRange(std::string(what) + " of " + std::to_string(len) + " B at offset " +
                              std::to_string(offset) + " runs past the end of the remote region (" +
                              std::to_string(size) + " B)");
  }
  return Status::Ok();
}

StatusOr<std::unique_ptr<TransportServer>> TransportServer::Start(TransportKind kind,
                                                                  const ServerOptions& o,
                                                                  RequestHandler* handler) {
  if (handler == nullptr) return Status::InvalidArgument("a server needs a RequestHandler");
  if (o.region == nullptr && o.region_size != 0)
    return Status::InvalidArgument("region_size given without a region");
  SHARRY_RETURN_IF_ERROR(internal::CheckServerOptions(o));
  switch (kind) {
    case TransportKind::kVerbs: return internal::StartVerbsServer(o, handler);
    case TransportKind::kTcp: return internal::StartTcpServer(o, handler);
    case TransportKind::kLoopback: return internal::StartLoopbackServer(o, handler);
  }
  return Status::InvalidArgument("unknown transport kind");
}

StatusOr<std::unique_ptr<TransportClient>> TransportClient::Connect(TransportKind kind,
                                                                    const ClientOptions& o) {
  if (o.max_message < wire::kMinMessage || o.max_message > wire::kMaxMessage)
    return Status::InvalidArgument("max_message " + std::to_string(o.max_message) + " is out of range: allowed " +
                                   std::to_string(wire::kMinMessage) + ".." + std::to_string(wire::kMaxMessage));
  if (!o.tenant.empty()) {
    SHARRY_RETURN_IF_ERROR(auth::CheckTenantName(o.tenant));
    if (o.secret.empty()) return Status::InvalidArgument("tenant '" + o.tenant + "' given without its secret");
    if (o.session != 0)
      return Status::InvalidArgument("a connection either authenticates (a new session) or joins session " +
                                     std::to_string(o.session) + ", not both");
  }
  switch (kind) {
    case TransportKind::kVerbs: return internal::ConnectVerbsClient(o);
    case TransportKind::kTcp: return internal::ConnectTcpClient(o);
    case TransportKind::kLoopback: return internal::ConnectLoopbackClient(o);
  }
  return Status::InvalidArgument("unknown transport kind");
}

Status TransportClient::Read(uint64_t offset, void* dst, size_t len) {
  RemoteOp op{offset, dst, len};
  return ReadBatch({&op, 1});
}

Status TransportClient::Write(uint64_t offset, const void* src, size_t len) {
  RemoteOp op{offset, const_cast<void*>(src), len};
  return WriteBatch({&op, 1});
}

Status TransportClient::Call(std::span<const uint8_t> request, std::vector<uint8_t>* response) {
  std::vector<std::vector<uint8_t>> out;
  SHARRY_RETURN_IF_ERROR(CallMany({&request, 1}, &out));
  *response = std::move(out[0]);
  return Status::Ok();
}

namespace internal {

namespace {
Status OutOfRange(std::string_view name, int64_t v, int64_t lo, int64_t hi) {
  if (v >= lo && v <= hi) return Status::Ok();
  return Status::InvalidArgument("server option " + std::string(name) + " = " + std::to_string(v) +
                                 " is out of range: allowed " + std::to_string(lo) + ".." + std::to_string(hi));
}
}  // namespace

Status CheckRequestSize(size_t n, uint32_t max_message) {
  if (n + sizeof(wire::MsgHeader) > max_message)
    return Status::InvalidArgument("request of " + std::to_string(n) + " B exceeds the largest message (" +
                                   std::to_string(max_message) + " B with header)");
  return Status::Ok();
}

Status CheckServerOptions(const ServerOptions& o) {
  SHARRY_RETURN_IF_ERROR(OutOfRange("max_message", o.max_message, wire::kMinMessage, wire::kMaxMessage));
  SHARRY_RETURN_IF_ERROR(OutOfRange("num_pollers", o.num_pollers, 1, 64));
  SHARRY_RETURN_IF_ERROR(OutOfRange("max_clients", o.max_clients, 1, 1 << 16));
  SHARRY_RETURN_IF_ERROR(OutOfRange("max_handshakes", o.max_handshakes, 1, 1 << 16));
  SHARRY_RETURN_IF_ERROR(OutOfRange("credits", o.credits, 1, 4096));
  SHARRY_RETURN_IF_ERROR(OutOfRange("handshake_timeout_ms", o.handshake_timeout_ms, 1, 3600000));
  SHARRY_RETURN_IF_ERROR(OutOfRange("stall_timeout_ms", o.stall_timeout_ms, 1, 3600000));
  SHARRY_RETURN_IF_ERROR(OutOfRange("linger_ms", o.linger_ms, 0, 60000));
  SHARRY_RETURN_IF_ERROR(OutOfRange("keepalive_s", o.keepalive_s, 0, 3600));
  SHARRY_RETURN_IF_ERROR(OutOfRange("auth_max_failures", o.auth_max_failures, 0, 1 << 20));
  SHARRY_RETURN_IF_ERROR(OutOfRange("auth_window_s", o.auth_window_s, 1, 86400));
  SHARRY_RETURN_IF_ERROR(OutOfRange("auth_cooldown_s", o.auth_cooldown_s, 1, 86400));
  SHARRY_RETURN_IF_ERROR(OutOfRange("lease_ms", o.lease_ms, 0, 86400000));
  SHARRY_RETURN_IF_ERROR(OutOfRange("max_unsent_bytes", static_cast<int64_t>(o.max_unsent_bytes), 64 << 10, int64_t{1} << 32));
  return Status::Ok();
}

void PinThread(std::thread& t, int core, const std::string& name) {
  std::string short_name = name.substr(0, 15);
  pthread_setname_np(t.native_handle(), short_name.c_str());
  if (core < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(core, &set);
  if (int rc = pthread_setaffinity_np(t.native_handle(), sizeof(set), &set); rc != 0)
    LOG(WARNING) << "cannot pin " << name << " to core " << core << ": " << std::strerror(rc)
                 << "; it runs unpinned";
}

std::vector<uint8_t> EncodeError(const Status& s) {
  std::vector<uint8_t> out(1 + s.message().size());
  out[0] = static_cast<uint8_t>(s.code());
  std::memcpy(out.data() + 1, s.message().data(), s.message().size());
  return out;
}

Status DecodeError(std::span<const uint8_t> p) {
  if (p.empty()) return Status::Protocol("server sent an empty error");
  auto code = static_cast<StatusCode>(p[0]);
  if (code == StatusCode::kOk || p[0] > static_cast<uint8_t>(kLastStatusCode)) code = StatusCode::kProtocol;
  return Status(code, "server: " + std::string(reinterpret_cast<const char*>(p.data()) + 1, p.size() - 1));
}

}  // namespace internal
}  // namespace sharry
