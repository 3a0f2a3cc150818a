// EtcdClient: the few etcd v3 calls Sharry's memnode discovery needs, over
// etcd's JSON gateway (HTTP/1.1 POST to /v3/..., which etcd 3.4 serves on
// its client URL; keys and values travel base64-encoded in JSON). No gRPC:
// libcurl and nlohmann::json, both private to this library.
//
//   EtcdClient etcd({.endpoint = "127.0.0.1:2379", .timeout_ms = 2000});
//   StatusOr<int64_t> lease = etcd.LeaseGrant(5);
//   Status s = etcd.Put("/sharry/memnodes/10.0.0.7:7000", "{...}", *lease).status();
//   StatusOr<RangeResult> all = etcd.RangePrefix("/sharry/memnodes/");
//
// One endpoint, no TLS, no authentication: the etcd of a trusted control
// network (docs/discovery.md).
//
// Errors: every failure is a Status whose message names the endpoint, the
// call and what failed, e.g.
//   "etcd 127.0.0.1:2379: lease grant: connection refused (errno 111)"   Unavailable
//   "etcd 127.0.0.1:2379: put: no reply within 2000 ms"                    Timeout
//   "etcd 127.0.0.1:2379: lease revoke: HTTP 404: etcdserver: requested lease not found"  NotFound
//   "etcd 127.0.0.1:2379: range: bad reply: not JSON: ..."                  Protocol
// An etcd error maps its gRPC code onto a StatusCode (NotFound,
// InvalidArgument, Timeout, PermissionDenied, ResourceExhausted,
// OutOfRange, else Unavailable). A reply that is not what the gateway sends
// (not JSON, too deep, over max_reply_bytes, a missing or mistyped field,
// bad base64) is a Protocol error, never a crash.
//
// Cancellation: every call takes an optional std::stop_token; a stop request
// ends the call promptly (it wakes libcurl's poll): a unary call then returns
// Disconnected("... cancelled"), Watch returns OK.
//
// Thread-safety: an EtcdClient holds only its options; its methods are const
// and may be called from any number of threads at once (each call uses its
// own connection).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace sharry::discovery {

struct EtcdOptions {
  std::string endpoint;  // "host:port", or "[v6addr]:port"
  // A unary call's limit (connect and reply); the watch's limit to connect
  // and see its first reply line (after that it has none).
  int timeout_ms = 2000;
  // The largest unary reply, or line of the watch stream, accepted.
  size_t max_reply_bytes = size_t{4} << 20;
};

// A key of a range reply.
struct KeyValue {
  std::string key;
  std::string value;
  int64_t mod_revision = 0;
  int64_t lease = 0;  // 0: none
};

struct RangeResult {
  std::vector<KeyValue> kvs;  // in key order
  int64_t revision = 0;       // the store's revision the range was read at
};

struct WatchEvent {
  enum class Type : uint8_t { kPut, kDelete };
  Type type = Type::kPut;
  std::string key;
  std::string value;  // empty for kDelete
  int64_t mod_revision = 0;
};

// OK if `host_port` is "host:port" (or "[v6]:port") with a port in
// 1..65535 and a host of letters, digits and ".-_" (a v6 address in
// brackets); else InvalidArgument saying what is wrong (without repeating
// the value: the caller names it, e.g. "--etcd=x: the port must be in
// 1..65535").
Status CheckHostPort(std::string_view host_port);

class EtcdClient {
 public:
  explicit EtcdClient(EtcdOptions o);

  const std::string& endpoint() const { return o_.endpoint; }
  const EtcdOptions& options() const { return o_; }

  // A new lease of `ttl_s` seconds (etcd may round it up to its minimum);
  // returns its id.
  StatusOr<int64_t> LeaseGrant(int64_t ttl_s, std::stop_token stop = {}) const;
  // Renews the lease once; returns its remaining TTL in seconds (> 0).
  // NotFound if the lease expired or never existed.
  StatusOr<int64_t> LeaseKeepAliveOnce(int64_t lease_id, std::stop_token stop = {}) const;
  // Revokes the lease: its keys are deleted at once. NotFound if it had
  // already expired.
  Status LeaseRevoke(int64_t lease_id, std::stop_token stop = {}) const;
  // Sets key = value, attached to `lease_id` (0: none); returns the store's
  // revision after the put. NotFound if the lease does not exist.
  StatusOr<int64_t> Put(std::string_view key, std::string_view value, int64_t lease_id = 0,
                        std::stop_token stop = {}) const;
  // Deletes the key; returns how many keys were deleted (0 or 1).
  StatusOr<int64_t> Delete(std::string_view key, std::stop_token stop = {}) const;
  // Every key that starts with `prefix` (non-empty), with the revision the
  // range was read at.
  StatusOr<RangeResult> RangePrefix(std::string_view prefix, std::stop_token stop = {}) const;

  // Watches every key that starts with `prefix` from `start_revision` (>= 1:
  // events at and after it), calling on_event for each change in revision
  // order, on the calling thread, until `stop` is requested (returns OK,
  // promptly) or the watch ends: the connection fails or closes
  // (Disconnected/Unavailable/Timeout), etcd cancels the watch (OutOfRange
  // with the compact revision, if start_revision was compacted away), or a
  // line of the stream is malformed or longer than max_reply_bytes
  // (Protocol). on_created, if set, is called once etcd has created the
  // watch. After a non-OK return events may have been missed: re-read
  // (RangePrefix) and watch again from its revision + 1.
  using WatchCallback = std::function<void(const WatchEvent&)>;
  Status Watch(std::string_view prefix, int64_t start_revision, const WatchCallback& on_event, std::stop_token stop,
               const std::function<void()>& on_created = nullptr) const;

 private:
  EtcdOptions o_;
};

}  // namespace sharry::discovery
