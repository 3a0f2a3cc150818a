// Status: the outcome of an operation that can fail for reasons outside the
// program's control (network, remote peer, bad request, resources).
//
// Modelled on LevelDB's Status: a cheap value that is either OK or carries a
// code and a message a user can act on. Invariants of our own code are
// CHECKed instead (glog), and stay on in release builds.
//
// Thread-safety: a Status is a value; distinct objects may be used from
// distinct threads without synchronisation.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>

namespace sharry {

enum class StatusCode : uint8_t {
  kOk = 0,
  kInvalidArgument = 1,   // the caller passed something malformed
  kOutOfRange = 2,        // an address range outside the remote region
  kNotFound = 3,          // unknown offset, client, ...
  kOutOfMemory = 4,       // far memory (or a local resource) exhausted
  kRemoteAccess = 5,      // the remote NIC refused an access (bad rkey/addr)
  kTimeout = 6,           // no answer within the deadline
  kDisconnected = 7,      // the peer is gone, or the connection is dead
  kProtocol = 8,          // a malformed or unexpected message on the wire
  kIoError = 9,           // a system call or verb failed
  kUnavailable = 10,      // the peer cannot be reached (refused, no route)
  kPermissionDenied = 11, // e.g. freeing a block that another client owns
  kInternal = 12,         // a bug: should never be seen
  kResourceExhausted = 13,// a local bound reached (e.g. local memory held to its bound
                          // while far memory is exhausted); retry after freeing
  kDataLoss = 14,         // data is gone for good (e.g. far-only objects reclaimed
                          // after the control connection was lost)
  kQuotaExceeded = 15,    // far memory refused by a quota (the client's or its
                          // tenant's), not exhausted: handled like kOutOfMemory
  kFailedPrecondition = 16,  // the peer is not set up for this request (e.g. an
                             // OFFLOAD to a memnode run with --offload_threads=0)
};
// The largest code: a code on the wire above it is a protocol error.
inline constexpr StatusCode kLastStatusCode = StatusCode::kFailedPrecondition;
// Far memory refused, for either reason: exhausted or past a quota.
inline bool IsFarMemoryRefused(StatusCode c) { return c == StatusCode::kOutOfMemory || c == StatusCode::kQuotaExceeded; }

// Stable, human-readable name of a code ("OutOfRange", ...).
std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string msg) : code_(code), msg_(std::move(msg)) {}

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
  static Status OutOfRange(std::string m) { return {StatusCode::kOutOfRange, std::move(m)}; }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status OutOfMemory(std::string m) { return {StatusCode::kOutOfMemory, std::move(m)}; }
  static Status RemoteAccess(std::string m) { return {StatusCode::kRemoteAccess, std::move(m)}; }
  static Status Timeout(std::string m) { return {StatusCode::kTimeout, std::move(m)}; }
  static Status Disconnected(std::string m) { return {StatusCode::kDisconnected, std::move(m)}; }
  static Status Protocol(std::string m) { return {StatusCode::kProtocol, std::move(m)}; }
  static Status IoError(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
  static Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
  static Status PermissionDenied(std::string m) { return {StatusCode::kPermissionDenied, std::move(m)}; }
  static Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
  static Status ResourceExhausted(std::string m) { return {StatusCode::kResourceExhausted, std::move(m)}; }
  static Status DataLoss(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
  static Status QuotaExceeded(std::string m) { return {StatusCode::kQuotaExceeded, std::move(m)}; }
  static Status FailedPrecondition(std::string m) { return {StatusCode::kFailedPrecondition, std::move(m)}; }
  // An IoError naming a failed call and errno: "ibv_reg_mr: Cannot allocate memory (errno 12)".
  static Status FromErrno(std::string_view call, int err);

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return msg_; }
  // "OutOfRange: read of 16 bytes at offset ..." or "OK".
  std::string ToString() const;

  // Prefixes the message with context: "connect 10.0.0.1:7000: <msg>".
  Status WithContext(std::string_view ctx) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string msg_;
};

inline std::ostream& operator<<(std::ostream& os, const Status& s) { return os << s.ToString(); }

// StatusOr<T>: a T or the Status explaining why there is none.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  StatusOr(Status status) : status_(std::move(status)) {  // NOLINT
    if (status_.ok()) status_ = Status::Internal("StatusOr constructed from OK status without value");
  }
  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() { return *value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace sharry

// Returns early from the enclosing function if `expr` is not OK.
#define SHARRY_RETURN_IF_ERROR(expr)            \
  do {                                          \
    ::sharry::Status sharry_status_ = (expr);   \
    if (!sharry_status_.ok()) return sharry_status_; \
  } while (0)
