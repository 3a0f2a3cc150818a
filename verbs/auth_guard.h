// Failed authentications, counted and rate-limited per source address
// (issue #11; docs/security.md "Authentication"). A server keeps one; every
// failed handshake (missing credentials where they are required, a wrong or
// replayed proof, an unknown tenant, a client that gives up after the
// challenge) is Failed(); a connection from an address with max_failures
// failures in the last window_s is refused at accept for cooldown_s, with
// the reason. Memory is bounded: at most max_addresses addresses are
// tracked (the one heard from least recently is forgotten first), and
// per-tenant counts are kept for the server's tenants only (every other
// name counts as "(unknown)").
//
// Thread-safety: every method may be called from any thread (one leaf lock;
// only connection setup takes it, never the data path).
#pragma once

#include <chrono>
#include <cstdint>
#include <list>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>

#include "base/mutex.h"
#include "base/status.h"
#include "verbs/transport.h"

namespace sharry::internal {

class AuthGuard {
 public:
  using Clock = std::chrono::steady_clock;
  struct Options {
    int max_failures = 10;  // 0: counted, never refused
    int window_s = 60;
    int cooldown_s = 60;
    size_t max_addresses = 4096;
  };
  explicit AuthGuard(const Options& o) : opts_(o) {}
  static Options OptionsOf(const ServerOptions& so) {
    Options o;
    o.max_failures = so.auth_max_failures;
    o.window_s = so.auth_window_s;
    o.cooldown_s = so.auth_cooldown_s;
    return o;
  }

  // Ok, or kUnavailable naming the address and when to retry.
  Status Admit(const std::string& address, Clock::time_point now) EXCLUDES(mu_);
  // A failed handshake from `address` as tenant `tenant` (empty: none
  // given); `known` says whether the server has that tenant.
  void Failed(const std::string& address, std::string_view tenant, bool known, Clock::time_point now) EXCLUDES(mu_);
  AuthCounters counters() const EXCLUDES(mu_);

 private:
  struct Entry {
    int failures = 0;  // in the window that began at window_start
    Clock::time_point window_start, blocked_until;
    std::list<std::string>::iterator lru;
  };
  const Options opts_;
  mutable Mutex mu_;
  std::unordered_map<std::string, Entry> by_address_ GUARDED_BY(mu_);
  std::list<std::string> lru_ GUARDED_BY(mu_);  // most recent first
  AuthCounters counters_ GUARDED_BY(mu_);
};

}  // namespace sharry::internal
