// FaultPlan (verbs/fault_injection.h): the counting and matching; the
// loopback transport (verbs/transport_loopback.cc) acts on what it returns.
#include "verbs/fault_injection.h"

#include <chrono>

namespace sharry {

std::string_view FaultOpName(FaultOp op) {
  switch (op) {
    case FaultOp::kRead: return "READ";
    case FaultOp::kWrite: return "WRITE";
    case FaultOp::kRequest: return "request";
    case FaultOp::kAny: return "operation";
  }
  return "operation";
}

FaultPlan& FaultPlan::Add(const Fault& f) {
  MutexLock l(&mu_);
  faults_.push_back(f);
  return *this;
}

FaultPlan& FaultPlan::FailNth(FaultOp op, uint64_t n, StatusCode code) {
  return Add({.op = op, .nth = n, .action = FaultAction::kFail, .code = code});
}

FaultPlan& FaultPlan::DisconnectAt(FaultOp op, uint64_t n, FaultScope scope) {
  return Add({.op = op, .nth = n, .action = FaultAction::kDisconnect, .scope = scope});
}

FaultPlan& FaultPlan::DelayNth(FaultOp op, uint64_t n, int delay_ms) {
  return Add({.op = op, .nth = n, .action = FaultAction::kDelay, .delay_ms = delay_ms});
}

FaultPlan& FaultPlan::DropReplyNth(FaultOp op, uint64_t n) {
  return Add({.op = op, .nth = n, .action = FaultAction::kDropReply});
}

FaultPlan& FaultPlan::HoldNth(FaultOp op, uint64_t n) {
  return Add({.op = op, .nth = n, .action = FaultAction::kHold});
}

uint64_t FaultPlan::count(FaultOp op) const {
  MutexLock l(&mu_);
  return counts_[static_cast<int>(op)];
}

uint64_t FaultPlan::fired() const {
  MutexLock l(&mu_);
  return fired_;
}

bool FaultPlan::WaitHeld(int timeout_ms) {
  MutexLock l(&mu_);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (held_ == 0)
    if (!cv_.WaitUntil(&mu_, deadline)) return held_ > 0;
  return true;
}

void FaultPlan::Release() {
  MutexLock l(&mu_);
  released_ = true;
  cv_.SignalAll();
}

std::optional<Fault> FaultPlan::Next(FaultOp op) {
  MutexLock l(&mu_);
  const uint64_t n = ++counts_[static_cast<int>(op)];
  const uint64_t any = ++counts_[static_cast<int>(FaultOp::kAny)];
  for (const Fault& f : faults_) {
    const bool match = f.op == FaultOp::kAny ? f.nth == any : (f.op == op && f.nth == n);
    if (!match) continue;
    fired_++;
    Fault hit = f;
    if (hit.action == FaultAction::kHold) {
      held_++;
      cv_.SignalAll();
      while (!released_) cv_.Wait(&mu_);
      held_--;
    }
    return hit;
  }
  return std::nullopt;
}

}  // namespace sharry
