#include "verbs/auth_guard.h"

namespace sharry::internal {

Status AuthGuard::Admit(const std::string& address, Clock::time_point now) {
  MutexLock l(&mu_);
  auto it = by_address_.find(address);
  if (it == by_address_.end() || now >= it->second.blocked_until) return Status::Ok();
  counters_.rate_limited++;
  const auto left = std::chrono::ceil<std::chrono::seconds>(it->second.blocked_until - now).count();
  return Status::Unavailable("too many failed authentications from " + address + ": retry in " +
                             std::to_string(left) + " s");
}

void AuthGuard::Failed(const std::string& address, std::string_view tenant, bool known, Clock::time_point now) {
  MutexLock l(&mu_);
  counters_.failures++;
  counters_.failures_by_tenant[tenant.empty() || known ? std::string(tenant) : "(unknown)"]++;
  auto it = by_address_.find(address);
  if (it == by_address_.end()) {
    if (by_address_.size() >= opts_.max_addresses && !lru_.empty()) {
      by_address_.erase(lru_.back());
      lru_.pop_back();
    }
    lru_.push_front(address);
    it = by_address_.emplace(address, Entry{}).first;
    it->second.lru = lru_.begin();
    it->second.window_start = now;
  } else {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
  }
  Entry& e = it->second;
  if (now - e.window_start > std::chrono::seconds(opts_.window_s)) {
    e.window_start = now;
    e.failures = 0;
  }
  if (opts_.max_failures > 0 && ++e.failures >= opts_.max_failures) {
    e.blocked_until = now + std::chrono::seconds(opts_.cooldown_s);
    e.failures = 0;
    e.window_start = now;
  }
}

AuthCounters AuthGuard::counters() const {
  MutexLock l(&mu_);
  return counters_;
}

}  // namespace sharry::internal
