// Deterministic fault injection at the transport seam, for tests only.
//
// A FaultPlan installed on a loopback server (TransportKind::kLoopback, see
// verbs/transport_loopback.cc) counts the operations that reach it from any
// of its clients and acts on the Nth of a kind: fail it with a chosen code,
// disconnect, delay it, drop its reply, or hold it until the test releases
// it. Nothing depends on timing or on a socket: a test that installs a plan
// takes the same path on every run.
//
// Counting (per plan, from the moment it is installed; 1-based):
//   kRead     one per READ, one per operation of a ReadBatch
//   kWrite    one per WRITE, one per operation of a WriteBatch (so "the 3rd
//             WRITE" of a batch of 8 fails mid-batch: the first 2 are done)
//   kRequest  one per request of Call/CallMany (ALLOC, FREE, STATS, RENEW ...)
//   kAny      every one of the above
// Each operation is counted under its own kind and under kAny; the first
// fault (in the order added) whose kind and number match acts on it.
// Operations refused before they reach the server (a closed connection, an
// out-of-range offset, an oversized request) are not counted.
//
// Actions:
//   kFail        the operation fails with `code` (not done; the rest of its
//                batch is not done either); the connection stays up.
//   kDisconnect  the server closes the connection (kConnection), its whole
//                session (kSession: members first, then the root, as when a
//                root connection drops), or every connection (kServer: as a
//                memnode restart would); the operation fails kDisconnected
//                and the client is dead. OnDisconnect runs for each closed
//                connection. The server stays registered: a new Connect works.
//   kDelay       the operation waits delay_ms, then is done.
//   kDropReply   the operation is done at the server but its reply is lost:
//                the client times out at once (kTimeout, no real wait), is
//                dead, and its connection closes (OnDisconnect), as a tcp
//                client that gave up on its op_timeout_ms.
//   kHold        the operation waits until Release() (WaitHeld() returns once
//                it waits), then is done: a test can look at the state while
//                an operation is in flight.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"

namespace sharry {

enum class FaultOp { kRead, kWrite, kRequest, kAny };
enum class FaultAction { kFail, kDisconnect, kDelay, kDropReply, kHold };
enum class FaultScope { kConnection, kSession, kServer };
std::string_view FaultOpName(FaultOp op);

struct Fault {
  FaultOp op = FaultOp::kAny;
  uint64_t nth = 1;  // the nth operation of kind `op` (1-based)
  FaultAction action = FaultAction::kFail;
  StatusCode code = StatusCode::kUnavailable;     // kFail
  int delay_ms = 0;                                // kDelay
  FaultScope scope = FaultScope::kConnection;      // kDisconnect
};

class FaultPlan {
 public:
  FaultPlan() = default;
  FaultPlan(const FaultPlan&) = delete;
  FaultPlan& operator=(const FaultPlan&) = delete;

  // Builders (chainable).
  FaultPlan& Add(const Fault& f) EXCLUDES(mu_);
  FaultPlan& FailNth(FaultOp op, uint64_t n, StatusCode code = StatusCode::kUnavailable);
  FaultPlan& DisconnectAt(FaultOp op, uint64_t n, FaultScope scope = FaultScope::kConnection);
  FaultPlan& DelayNth(FaultOp op, uint64_t n, int delay_ms);
  FaultPlan& DropReplyNth(FaultOp op, uint64_t n);
  FaultPlan& HoldNth(FaultOp op, uint64_t n);

  // Operations of that kind counted so far, and faults that acted.
  uint64_t count(FaultOp op) const EXCLUDES(mu_);
  uint64_t fired() const EXCLUDES(mu_);
  // kHold: waits (up to timeout_ms) until an operation is held; true if so.
  bool WaitHeld(int timeout_ms = 10000) EXCLUDES(mu_);
  // Lets every held operation (and every later one) go on.
  void Release() EXCLUDES(mu_);

  // The transport's side: counts one operation of kind `op` (never kAny)
  // and returns the fault that acts on it, if any. Waits here for kHold.
  std::optional<Fault> Next(FaultOp op) EXCLUDES(mu_);

 private:
  // A leaf lock: the loopback transport calls in holding none of its own.
  mutable Mutex mu_;
  CondVar cv_;  // with mu_: held_ or released_ changed
  std::vector<Fault> faults_ GUARDED_BY(mu_);
  uint64_t counts_[4] GUARDED_BY(mu_) = {};  // by FaultOp
  uint64_t fired_ GUARDED_BY(mu_) = 0;
  int held_ GUARDED_BY(mu_) = 0;
  bool released_ GUARDED_BY(mu_) = false;
};

// Installs `plan` on the loopback server on `port` (replacing any; nullptr
// removes it). kNotFound if no loopback server is registered on that port.
Status SetLoopbackFaults(uint16_t port, std::shared_ptr<FaultPlan> plan);

}  // namespace sharry
