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
  std::lock_guard<std::mutex> l(mu_);
  faults_.push_back(f);
  return *this;
}

FaultPlan& FaultPlan::FailNth(FaultOp op, uint64_t n, StatusCode code) {
  Fault f;
  f.op = op;
  f.nth = n;
  f.action = FaultAction::kFail;
  f.code = code;
  return Add(f);
}

FaultPlan& FaultPlan::DisconnectAt(FaultOp op, uint64_t n, FaultScope scope) {
  Fault f;
  f.op = op;
  f.nth = n;
  f.action = FaultAction::kDisconnect;
  f.scope = scope;
  return Add(f);
}

FaultPlan& FaultPlan::DelayNth(FaultOp op, uint64_t n, int delay_ms) {
  Fault f;
  f.op = op;
  f.nth = n;
  f.action = FaultAction::kDelay;
  f.delay_ms = delay_ms;
  return Add(f);
}

FaultPlan& FaultPlan::DropReplyNth(FaultOp op, uint64_t n) {
  Fault f;
  f.op = op;
  f.nth = n;
  f.action = FaultAction::kDropReply;
  return Add(f);
}

FaultPlan& FaultPlan::HoldNth(FaultOp op, uint64_t n) {
  Fault f;
  f.op = op;
  f.nth = n;
  f.action = FaultAction::kHold;
  return Add(f);
}

uint64_t FaultPlan::count(FaultOp op) const {
  std::lock_guard<std::mutex> l(mu_);
  return counts_[static_cast<int>(op)];
}

uint64_t FaultPlan::fired() const {
  std::lock_guard<std::mutex> l(mu_);
  return fired_;
}

bool FaultPlan::WaitHeld(int timeout_ms) {
  std::unique_lock<std::mutex> l(mu_);
  return cv_.wait_for(l, std::chrono::milliseconds(timeout_ms), [this] { return held_ > 0; });
}

void FaultPlan::Release() {
  std::lock_guard<std::mutex> l(mu_);
  released_ = true;
  cv_.notify_all();
}

std::optional<Fault> FaultPlan::Next(FaultOp op) {
  std::unique_lock<std::mutex> l(mu_);
  const uint64_t n = ++counts_[static_cast<int>(op)];
  const uint64_t any = ++counts_[static_cast<int>(FaultOp::kAny)];
  for (const Fault& f : faults_) {
    const bool match = f.op == FaultOp::kAny ? f.nth == any : (f.op == op && f.nth == n);
    if (!match) continue;
    fired_++;
    Fault hit = f;
    if (hit.action == FaultAction::kHold) {
      held_++;
      cv_.notify_all();
      cv_.wait(l, [this] { return released_; });
      held_--;
    }
    return hit;
  }
  return std::nullopt;
}

}  // namespace sharry
