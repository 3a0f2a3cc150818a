// The wire format of etcd v3's JSON gateway, as etcd 3.4 speaks it: the
// request bodies EtcdClient sends and the parsers of the replies it gets.
// Pure functions, no I/O: the parsers are what a hostile or broken etcd
// reaches, so they are fuzzed (fuzz/etcd_reply_fuzz.cc) and unit-tested.
//
// The gateway maps protobuf messages to JSON (proto3 JSON mapping):
//   - bytes fields (key, value, range_end) are base64 strings;
//   - int64 fields (revision, ID, TTL, lease) are decimal strings ("42");
//   - fields holding their default value (0, "", false, an empty list, the
//     enum's first value, e.g. a PUT event's type) are left out.
// So a missing field is its default, except where etcd always sends one
// (a header's revision, a granted lease's ID, a key): there it is an error.
// A streamed reply (lease keepalive, watch) is one JSON object a line,
// {"result": {...}} or {"error": {...}}.
//
//   lease grant  {"TTL":"5"}                     -> {"header":{...},"ID":"7587","TTL":"5"}
//   keepalive    {"ID":"7587"}                   -> {"result":{"header":{..},"ID":"7587","TTL":"5"}}  (expired: no TTL)
//   revoke       {"ID":"7587"}                   -> {"header":{...}}
//   put          {"key":b64,"value":b64,"lease":"7587"} -> {"header":{"revision":"12",...}}
//   deleterange  {"key":b64}                     -> {"header":{...},"deleted":"1"}
//   range        {"key":b64,"range_end":b64}     -> {"header":{...},"kvs":[{"key":b64,"value":b64,
//                                                    "mod_revision":"9","lease":"7587",...}],"count":"1"}
//   watch        {"create_request":{"key":b64,"range_end":b64,"start_revision":"13"}}
//                -> {"result":{"header":{...},"created":true}}
//                   {"result":{"header":{...},"events":[{"kv":{...}},{"type":"DELETE","kv":{...}}]}}
//                   {"result":{"header":{no revision},"canceled":true,"compact_revision":"40"}}
//   an error     {"error":"etcdserver: requested lease not found","message":"...","code":5}  (HTTP 404)
//
// Every parser bounds what it accepts: nesting deeper than kMaxJsonDepth is
// refused before parsing; errors are Protocol("bad reply: ...") with at most
// a short, printable excerpt of the offending text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "discovery/etcd_client.h"

namespace sharry::discovery::wire {

inline constexpr int kMaxJsonDepth = 32;

std::string Base64Encode(std::string_view bytes);
// Standard alphabet with '=' padding (what the gateway writes); anything
// else is Protocol.
StatusOr<std::string> Base64Decode(std::string_view text);

// The range end that selects every key starting with `prefix` (etcd's
// GetPrefixRangeEnd): the prefix with its last byte below 0xff incremented
// and what follows dropped; "\0" (every key) if all its bytes are 0xff.
std::string PrefixRangeEnd(std::string_view prefix);

// Request bodies.
std::string LeaseGrantRequest(int64_t ttl_s);
std::string LeaseIdRequest(int64_t lease_id);  // keepalive, revoke
std::string PutRequest(std::string_view key, std::string_view value, int64_t lease_id);
std::string DeleteRequest(std::string_view key);
std::string RangePrefixRequest(std::string_view prefix);
std::string WatchCreateRequest(std::string_view prefix, int64_t start_revision);

// Reply parsers (the body of an HTTP 200).
StatusOr<int64_t> ParseLeaseGrantReply(std::string_view body);  // the lease id (> 0)
StatusOr<int64_t> ParseKeepAliveReply(std::string_view body);   // the TTL (0: expired or unknown)
StatusOr<int64_t> ParseHeaderRevision(std::string_view body);   // put, revoke: the header's revision
StatusOr<int64_t> ParseDeleteReply(std::string_view body);      // keys deleted
StatusOr<RangeResult> ParseRangeReply(std::string_view body);

// One line of the watch stream.
struct WatchLine {
  bool created = false;
  bool canceled = false;
  int64_t compact_revision = 0;  // canceled because start_revision was compacted
  std::string cancel_reason;
  int64_t revision = 0;  // the header's (0 in a cancellation: etcd leaves it out)
  std::vector<WatchEvent> events;
};
StatusOr<WatchLine> ParseWatchLine(std::string_view line);

// The Status of an etcd error reply (HTTP status other than 200, or an
// {"error": ...} line of a stream): its message and its gRPC code mapped
// onto a StatusCode; Protocol with an excerpt if the body says nothing
// usable.
Status ParseErrorReply(long http_code, std::string_view body);

// At most `max` bytes of `text`, bytes outside printable ASCII as '?', and
// "..." if cut: safe to put in an error message.
std::string Printable(std::string_view text, size_t max = 120);

}  // namespace sharry::discovery::wire
