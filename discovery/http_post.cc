// A bounded, cancellable HTTP POST over libcurl's multi interface
// (http_post.h).
#include "discovery/http_post.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>

namespace sharry::discovery::internal {
namespace {

using Clock = std::chrono::steady_clock;

void GlobalInitOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// The state one transfer's write callback works on.
struct Transfer {
  const HttpPost* req = nullptr;
  CURL* easy = nullptr;
  bool streaming = false;
  long http_code = 0;  // known from the first body byte on
  std::string buf;     // unary (or error) body; streaming: the partial line
  size_t lines = 0;    // streaming: lines delivered
  Status error;        // why the write callback ended the transfer
};

// Hands each complete line of `in` to on_line; keeps a partial one in buf.
// Returns false (with t->error set) to end the transfer.
bool SplitLines(Transfer* t, std::string_view in) {
  while (!in.empty()) {
    const size_t nl = in.find('\n');
    const std::string_view part = in.substr(0, nl);
    if (t->buf.size() + part.size() > t->req->max_bytes) {
      t->error = Status::Protocol("a reply line over " + std::to_string(t->req->max_bytes) + " bytes");
      return false;
    }
    if (nl == std::string_view::npos) {
      t->buf.append(part);
      return true;
    }
    std::string_view line = part;
    if (!t->buf.empty()) {
      t->buf.append(part);
      line = t->buf;
    }
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.empty()) {
      ++t->lines;
      Status s;
      try {
        s = t->req->on_line(line);
      } catch (const std::exception& e) {  // never through libcurl's C frames
        s = Status::Internal(std::string("a watch callback threw: ") + e.what());
      } catch (...) {
        s = Status::Internal("a watch callback threw");
      }
      if (!s.ok()) {
        t->error = std::move(s);
        return false;
      }
    }
    t->buf.clear();
    in.remove_prefix(nl + 1);
  }
  return true;
}

size_t OnWrite(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t len = size * n;
  if (t->http_code == 0) curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->http_code);
  if (t->streaming && t->http_code == 200) return SplitLines(t, std::string_view(data, len)) ? len : 0;
  if (t->buf.size() + len > t->req->max_bytes) {
    t->error = Status::Protocol("a reply over " + std::to_string(t->req->max_bytes) + " bytes");
    return 0;
  }
  t->buf.append(data, len);
  return len;
}

// "Connection refused (errno 111)" -> "connection refused (errno 111)".
std::string ErrnoText(long err) {
  std::string s = std::strerror(static_cast<int>(err));
  if (!s.empty()) s[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(s[0])));
  return s + " (errno " + std::to_string(err) + ")";
}

Status StatusOfCurl(CURLcode rc, CURL* easy, const char* errbuf, int timeout_ms) {
  const std::string detail = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc);
  long os_errno = 0;
  curl_easy_getinfo(easy, CURLINFO_OS_ERRNO, &os_errno);
  switch (rc) {
    case CURLE_COULDNT_CONNECT:
      return Status::Unavailable(os_errno != 0 ? ErrnoText(os_errno) : "cannot connect: " + detail);
    case CURLE_COULDNT_RESOLVE_HOST: return Status::Unavailable("cannot resolve the host: " + detail);
    case CURLE_OPERATION_TIMEDOUT: return Status::Timeout("no reply within " + std::to_string(timeout_ms) + " ms");
    case CURLE_GOT_NOTHING: return Status::Disconnected("the connection closed without a reply");
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
      return Status::Disconnected("the connection failed: " + (os_errno != 0 ? ErrnoText(os_errno) : detail));
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_TOO_MANY_REDIRECTS: return Status::Protocol("not an HTTP reply: " + detail);
    default: return Status::IoError(std::string("libcurl: ") + curl_easy_strerror(rc) + ": " + detail);
  }
}

struct EasyDeleter {
  void operator()(CURL* e) const { curl_easy_cleanup(e); }
};
struct MultiDeleter {
  void operator()(CURLM* m) const { curl_multi_cleanup(m); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

}  // namespace

StatusOr<HttpResult> Post(const HttpPost& req, std::stop_token stop) {
  GlobalInitOnce();
  std::unique_ptr<CURLM, MultiDeleter> multi(curl_multi_init());
  std::unique_ptr<CURL, EasyDeleter> easy(curl_easy_init());
  std::unique_ptr<curl_slist, SlistDeleter> headers(curl_slist_append(nullptr, "Content-Type: application/json"));
  if (!multi || !easy || !headers) return Status::ResourceExhausted("libcurl: cannot allocate a transfer");
  Transfer t;
  t.req = &req;
  t.easy = easy.get();
  t.streaming = static_cast<bool>(req.on_line);
  char errbuf[CURL_ERROR_SIZE] = {};
  CURL* e = easy.get();
  curl_easy_setopt(e, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http");
  curl_easy_setopt(e, CURLOPT_PROXY, "");  // never a proxy from the environment
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_POST, 1L);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, req.body.data());
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, OnWrite);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(req.timeout_ms));
  if (t.streaming) {
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 5L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 2L);
  } else {
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(req.timeout_ms));
  }
  if (curl_multi_add_handle(multi.get(), e) != CURLM_OK) return Status::IoError("libcurl: cannot add a transfer");

  HttpResult out;
  Status failed;
  {
    // Wakes the poll below when a stop is requested (curl_multi_wakeup may
    // be called from any thread). Destroyed before the handles.
    CURLM* m = multi.get();
    std::stop_callback wake(stop, [m] { curl_multi_wakeup(m); });
    const Clock::time_point first_line_deadline = Clock::now() + std::chrono::milliseconds(req.timeout_ms);
    for (;;) {
      int running = 0;
      if (CURLMcode mc = curl_multi_perform(m, &running); mc != CURLM_OK) {
        failed = Status::IoError(std::string("libcurl: ") + curl_multi_strerror(mc));
        break;
      }
      if (running == 0) break;
      if (stop.stop_requested()) {
        out.stopped = true;
        break;
      }
      int wait_ms = 1000;
      if (t.streaming && t.lines == 0) {  // (a non-200 reply: its whole body)
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(first_line_deadline - Clock::now());
        if (left.count() <= 0) {
          failed = Status::Timeout("no reply within " + std::to_string(req.timeout_ms) + " ms");
          break;
        }
        wait_ms = static_cast<int>(std::min<int64_t>(wait_ms, left.count() + 1));
      }
      if (CURLMcode mc = curl_multi_poll(m, nullptr, 0, wait_ms, nullptr); mc != CURLM_OK) {
        failed = Status::IoError(std::string("libcurl: ") + curl_multi_strerror(mc));
        break;
      }
    }
  }
  CURLcode rc = CURLE_OK;
  bool done = false;
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi.get(), &left)) {
    if (msg->msg == CURLMSG_DONE && msg->easy_handle == e) {
      rc = msg->data.result;
      done = true;
    }
  }
  curl_multi_remove_handle(multi.get(), e);
  if (out.stopped) return out;
  if (!failed.ok()) return failed;
  if (!done) return Status::Internal("libcurl: the transfer neither finished nor failed");
  if (rc == CURLE_WRITE_ERROR && !t.error.ok()) return t.error;
  if (rc != CURLE_OK) return StatusOfCurl(rc, e, errbuf, req.timeout_ms);
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &out.http_code);
  if (!t.streaming || out.http_code != 200) out.body = std::move(t.buf);
  return out;
}

}  // namespace sharry::discovery::internal
