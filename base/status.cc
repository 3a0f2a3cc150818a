#include "base/status.h"

#include <cstring>

namespace sharry {

std::string_view StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "OK";
    case StatusCode::kInvalidArgument: return "InvalidArgument";
    case StatusCode::kOutOfRange: return "OutOfRange";
    case StatusCode::kNotFound: return "NotFound";
    case StatusCode::kOutOfMemory: return "OutOfMemory";
    case StatusCode::kRemoteAccess: return "RemoteAccess";
    case StatusCode::kTimeout: return "Timeout";
    case StatusCode::kDisconnected: return "Disconnected";
    case StatusCode::kProtocol: return "Protocol";
    case StatusCode::kIoError: return "IoError";
    case StatusCode::kUnavailable: return "Unavailable";
    case StatusCode::kPermissionDenied: return "PermissionDenied";
    case StatusCode::kInternal: return "Internal";
    case StatusCode::kResourceExhausted: return "ResourceExhausted";
    case StatusCode::kDataLoss: return "DataLoss";
    case StatusCode::kQuotaExceeded: return "QuotaExceeded";
    case StatusCode::kFailedPrecondition: return "FailedPrecondition";
  }
  return "Unknown";
}

Status Status::FromErrno(std::string_view call, int err) {
  std::string m(call);
  m += ": ";
  m += std::strerror(err);
  m += " (errno " + std::to_string(err) + ")";
  StatusCode code = StatusCode::kIoError;
  if (err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH || err == EADDRNOTAVAIL)
    code = StatusCode::kUnavailable;
  else if (err == ETIMEDOUT)
    code = StatusCode::kTimeout;
  else if (err == ECONNRESET || err == EPIPE || err == ENOTCONN)
    code = StatusCode::kDisconnected;
  else if (err == ENOMEM)
    code = StatusCode::kOutOfMemory;
  return Status(code, std::move(m));
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string s(StatusCodeName(code_));
  s += ": ";
  s += msg_;
  return s;
}

Status Status::WithContext(std::string_view ctx) const {
  if (ok()) return *this;
  std::string m(ctx);
  m += ": ";
  m += msg_;
  return Status(code_, std::move(m));
}

}  // namespace sharry
