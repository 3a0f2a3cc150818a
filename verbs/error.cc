#include "verbs/error.h"

#include <string>

namespace sharry::verbs {

Status VerbFailed(std::string_view verb, int err) { return Status::FromErrno(verb, err); }

namespace {

// What a failed completion means and what to do, by its status.
struct WcCause {
  ibv_wc_status status;
  StatusCode code;
  const char* remedy;
};
constexpr WcCause kWcCauses[] = {
    {IBV_WC_REM_ACCESS_ERR, StatusCode::kRemoteAccess,
     "the remote side refused the access: the address range is outside its registered "
     "region or the rkey is wrong. The connection is now dead; reconnect."},
    {IBV_WC_RETRY_EXC_ERR, StatusCode::kDisconnected,
     "the peer did not acknowledge after all retries: it is dead or unreachable."},
    {IBV_WC_RNR_RETRY_EXC_ERR, StatusCode::kDisconnected,
     "the peer had no receive buffer posted for our SEND after all retries."},
    {IBV_WC_WR_FLUSH_ERR, StatusCode::kDisconnected,
     "flushed because the queue pair had already failed (see the first error)."},
    {IBV_WC_REM_INV_REQ_ERR, StatusCode::kProtocol,
     "the peer rejected the request as invalid (e.g. a message longer than its receive "
     "buffer, or an operation it does not allow)."},
    {IBV_WC_LOC_LEN_ERR, StatusCode::kProtocol, "a received message was longer than the posted receive buffer."},
    {IBV_WC_LOC_PROT_ERR, StatusCode::kInternal,
     "a local buffer is not covered by a registered memory region (a bug in Sharry)."},
    {IBV_WC_REM_OP_ERR, StatusCode::kProtocol,
     "the peer could not complete the operation (e.g. a SEND longer than its receive "
     "buffer). The connection is now dead; reconnect."},
};

}  // namespace

Status WcFailed(const ibv_wc& wc, std::string_view what) {
  WcCause cause = {wc.status, StatusCode::kDisconnected, "the connection is dead; reconnect."};  // any other
  for (const WcCause& c : kWcCauses)
    if (c.status == wc.status) cause = c;
  std::string m(what);
  m += " failed: ";
  m += ibv_wc_status_str(wc.status);
  m += " (wc status " + std::to_string(static_cast<int>(wc.status)) + ", vendor_err " +
       std::to_string(wc.vendor_err) + "): ";
  m += cause.remedy;
  return Status(cause.code, std::move(m));
}

}  // namespace sharry::verbs
