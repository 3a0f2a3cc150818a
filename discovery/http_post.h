// One HTTP/1.1 POST with libcurl, bounded and cancellable: what EtcdClient
// sends every call through. Internal to sharry::discovery (libcurl stays
// out of the API).
//
// Two kinds of reply:
//   unary      the whole body, at most max_bytes, within timeout_ms;
//   streaming  (on_line set) a body of '\n'-terminated lines, each handed to
//              on_line as it arrives (without its "\n" or "\r\n"; blank lines
//              skipped), each at most max_bytes; no limit on the stream's
//              length or duration, but its first line must come within
//              timeout_ms. An HTTP status other than 200 turns a streaming
//              reply into a unary one (the error body is returned).
//
// The transfer runs in libcurl's multi interface on the calling thread; a
// stop request on `stop` wakes its poll (curl_multi_wakeup) and ends the
// transfer at once. Proxies from the environment are ignored (etcd is
// reached directly), redirects are not followed, and only http:// is
// spoken. TCP keepalive probes a silent peer of a stream.
//
// Thread-safety: Post may be called from many threads at once; each call
// has its own handles. on_line runs on the calling thread.
#pragma once

#include <cstddef>
#include <functional>
#include <stop_token>
#include <string>
#include <string_view>

#include "base/status.h"

namespace sharry::discovery::internal {

struct HttpPost {
  std::string url;
  std::string body;  // sent as application/json
  int timeout_ms = 2000;
  size_t max_bytes = size_t{4} << 20;
  // Streaming: called per line; a non-OK return ends the transfer with it.
  std::function<Status(std::string_view line)> on_line;
};

struct HttpResult {
  long http_code = 0;
  std::string body;      // unary, or a streaming request's non-200 reply
  bool stopped = false;  // ended by a stop request
};

// The reply (any HTTP status), or why there is none:
//   Unavailable   cannot connect ("connection refused (errno 111)") or resolve
//   Timeout       nothing (or, streaming, no first line) within timeout_ms
//   Disconnected  the connection closed or failed mid-reply
//   Protocol      not HTTP, or a reply (line) over max_bytes
//   on_line's own error, or IoError for anything else libcurl reports.
// A streaming reply that ends normally returns http_code 200 and no body.
StatusOr<HttpResult> Post(const HttpPost& req, std::stop_token stop);

}  // namespace sharry::discovery::internal
