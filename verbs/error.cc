#include "verbs/error.h"

#include <string>

namespace sharry::verbs {

Status VerbFailed(std::string_view verb, int err) { return Status::FromErrno(verb, err); }

Status WcFailed(const ibv_wc& wc, std::string_view what) {
  std::string m(what);
  m += " failed: ";
  m += ibv_wc_status_str(wc.status);
  m += " (wc status " + std::to_string(static_cast<int>(wc.status)) + ", vendor_err " +
       std::to_string(wc.vendor_err) + "): ";
  switch (wc.status) {
    case IBV_WC_REM_ACCESS_ERR:
      m += "the remote side refused the access: the address range is outside its registered "
           "region or the rkey is wrong. The connection is now dead; reconnect.";
      return Status::RemoteAccess(std::move(m));
    case IBV_WC_RETRY_EXC_ERR:
      m += "the peer did not acknowledge after all retries: it is dead or unreachable.";
      return Status::Disconnected(std::move(m));
    case IBV_WC_RNR_RETRY_EXC_ERR:
      m += "the peer had no receive buffer posted for our SEND after all retries.";
      return Status::Disconnected(std::move(m));
    case IBV_WC_WR_FLUSH_ERR:
      m += "flushed because the queue pair had already failed (see the first error).";
      return Status::Disconnected(std::move(m));
    case IBV_WC_REM_INV_REQ_ERR:
      m += "the peer rejected the request as invalid (e.g. a message longer than its receive "
           "buffer, or an operation it does not allow).";
      return Status::Protocol(std::move(m));
    case IBV_WC_LOC_LEN_ERR:
      m += "a received message was longer than the posted receive buffer.";
      return Status::Protocol(std::move(m));
    case IBV_WC_LOC_PROT_ERR:
      m += "a local buffer is not covered by a registered memory region (a bug in Sharry).";
      return Status::Internal(std::move(m));
    case IBV_WC_REM_OP_ERR:
      m += "the peer could not complete the operation (e.g. a SEND longer than its receive "
           "buffer). The connection is now dead; reconnect.";
      return Status::Protocol(std::move(m));
    default:
      m += "the connection is dead; reconnect.";
      return Status::Disconnected(std::move(m));
  }
}

}  // namespace sharry::verbs
