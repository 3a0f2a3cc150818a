// EtcdClient (etcd_client.h): each call is one POST to the JSON gateway
// (http_post.h), its body written and its reply parsed by etcd_wire.h.
#include "discovery/etcd_client.h"

#include <charconv>
#include <utility>

#include "discovery/etcd_wire.h"
#include "discovery/http_post.h"

namespace sharry::discovery {
namespace {

bool IsHostChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

}  // namespace

Status CheckHostPort(std::string_view hp) {
  const size_t colon = hp.rfind(':');
  if (colon == std::string_view::npos) return Status::InvalidArgument("not host:port");
  std::string_view host = hp.substr(0, colon), port = hp.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    for (char c : host) {
      if (!(IsHostChar(c) || c == ':')) return Status::InvalidArgument("not an IPv6 address in brackets");
    }
  } else {
    for (char c : host) {
      if (!IsHostChar(c)) {
        return Status::InvalidArgument(
            "not host:port (a host of letters, digits and .-_; an IPv6 address in brackets)");
      }
    }
  }
  if (host.empty()) return Status::InvalidArgument("no host before the port");
  unsigned value = 0;
  auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || p != port.data() + port.size() || value < 1 || value > 65535) {
    return Status::InvalidArgument("the port must be in 1..65535");
  }
  return Status::Ok();
}

EtcdClient::EtcdClient(EtcdOptions o) : o_(std::move(o)) {}

namespace {

// One unary call: the reply body of an HTTP 200, or the call's error with
// "etcd <endpoint>: <what>: " in front.
StatusOr<std::string> Call(const EtcdOptions& o, std::string_view what, const char* path, std::string body,
                           std::stop_token stop) {
  const std::string ctx = "etcd " + wire::Printable(o.endpoint, 80) + ": " + std::string(what);
  if (Status s = CheckHostPort(o.endpoint); !s.ok()) return s.WithContext(ctx);
  internal::HttpPost req;
  req.url = "http://" + o.endpoint + path;
  req.body = std::move(body);
  req.timeout_ms = o.timeout_ms;
  req.max_bytes = o.max_reply_bytes;
  auto r = internal::Post(req, std::move(stop));
  if (!r.ok()) return r.status().WithContext(ctx);
  if (r->stopped) return Status::Disconnected(ctx + ": cancelled");
  if (r->http_code != 200) return wire::ParseErrorReply(r->http_code, r->body).WithContext(ctx);
  return std::move(r->body);
}

template <typename T>
StatusOr<T> WithCtx(StatusOr<T> v, const EtcdOptions& o, std::string_view what) {
  if (v.ok()) return v;
  return v.status().WithContext("etcd " + wire::Printable(o.endpoint, 80) + ": " + std::string(what));
}

}  // namespace

StatusOr<int64_t> EtcdClient::LeaseGrant(int64_t ttl_s, std::stop_token stop) const {
  auto body = Call(o_, "lease grant", "/v3/lease/grant", wire::LeaseGrantRequest(ttl_s), std::move(stop));
  if (!body.ok()) return body.status();
  return WithCtx(wire::ParseLeaseGrantReply(*body), o_, "lease grant");
}

StatusOr<int64_t> EtcdClient::LeaseKeepAliveOnce(int64_t lease_id, std::stop_token stop) const {
  auto body = Call(o_, "lease keepalive", "/v3/lease/keepalive", wire::LeaseIdRequest(lease_id), std::move(stop));
  if (!body.ok()) return body.status();
  auto ttl = WithCtx(wire::ParseKeepAliveReply(*body), o_, "lease keepalive");
  if (ttl.ok() && *ttl == 0) {
    return Status::NotFound("etcd " + wire::Printable(o_.endpoint, 80) + ": lease keepalive: lease " +
                            std::to_string(lease_id) + " has expired (or never existed)");
  }
  return ttl;
}

Status EtcdClient::LeaseRevoke(int64_t lease_id, std::stop_token stop) const {
  auto body = Call(o_, "lease revoke", "/v3/lease/revoke", wire::LeaseIdRequest(lease_id), std::move(stop));
  if (!body.ok()) return body.status();
  return WithCtx(wire::ParseHeaderRevision(*body), o_, "lease revoke").status();
}

StatusOr<int64_t> EtcdClient::Put(std::string_view key, std::string_view value, int64_t lease_id,
                                  std::stop_token stop) const {
  auto body = Call(o_, "put", "/v3/kv/put", wire::PutRequest(key, value, lease_id), std::move(stop));
  if (!body.ok()) return body.status();
  return WithCtx(wire::ParseHeaderRevision(*body), o_, "put");
}

StatusOr<int64_t> EtcdClient::Delete(std::string_view key, std::stop_token stop) const {
  auto body = Call(o_, "delete", "/v3/kv/deleterange", wire::DeleteRequest(key), std::move(stop));
  if (!body.ok()) return body.status();
  return WithCtx(wire::ParseDeleteReply(*body), o_, "delete");
}

StatusOr<RangeResult> EtcdClient::RangePrefix(std::string_view prefix, std::stop_token stop) const {
  if (prefix.empty()) {
    return Status::InvalidArgument("etcd " + wire::Printable(o_.endpoint, 80) + ": range: an empty prefix");
  }
  auto body = Call(o_, "range", "/v3/kv/range", wire::RangePrefixRequest(prefix), std::move(stop));
  if (!body.ok()) return body.status();
  return WithCtx(wire::ParseRangeReply(*body), o_, "range");
}

Status EtcdClient::Watch(std::string_view prefix, int64_t start_revision, const WatchCallback& on_event,
                         std::stop_token stop, const std::function<void()>& on_created) const {
  const std::string ctx = "etcd " + wire::Printable(o_.endpoint, 80) + ": watch";
  if (Status s = CheckHostPort(o_.endpoint); !s.ok()) return s.WithContext(ctx);
  if (prefix.empty()) return Status::InvalidArgument(ctx + ": an empty prefix");
  if (start_revision < 1) return Status::InvalidArgument(ctx + ": start revision " + std::to_string(start_revision));
  internal::HttpPost req;
  req.url = "http://" + o_.endpoint + "/v3/watch";
  req.body = wire::WatchCreateRequest(prefix, start_revision);
  req.timeout_ms = o_.timeout_ms;
  req.max_bytes = o_.max_reply_bytes;
  bool created = false;
  req.on_line = [&](std::string_view line) -> Status {
    auto w = wire::ParseWatchLine(line);
    if (!w.ok()) return w.status();
    if (w->canceled) {
      if (w->compact_revision != 0) {
        return Status::OutOfRange("revision " + std::to_string(start_revision) + " was compacted (compact revision " +
                                  std::to_string(w->compact_revision) + ")");
      }
      return Status::Unavailable("etcd canceled the watch" +
                                 (w->cancel_reason.empty() ? "" : ": " + wire::Printable(w->cancel_reason)));
    }
    if (!created) {
      if (!w->created) return Status::Protocol("bad reply: the first line does not create the watch");
      created = true;
      if (on_created) on_created();
    }
    for (const WatchEvent& ev : w->events) on_event(ev);
    return Status::Ok();
  };
  auto r = internal::Post(req, std::move(stop));
  if (!r.ok()) return r.status().WithContext(ctx);
  if (r->stopped) return Status::Ok();
  if (r->http_code != 200) return wire::ParseErrorReply(r->http_code, r->body).WithContext(ctx);
  return Status::Disconnected(ctx + ": the stream ended");
}

}  // namespace sharry::discovery
