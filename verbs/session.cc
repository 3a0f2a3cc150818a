#include "verbs/session.h"

#include <string>

namespace sharry::internal {

StatusOr<std::shared_ptr<SessionTable::Session>> SessionTable::OpenRoot(ClientId id, Peer peer,
                                                                        uint32_t max_tenant_sessions) {
  peer.session = id;
  MutexLock l(&mu_);
  if (!peer.tenant.empty()) {
    uint32_t& n = tenant_sessions_[peer.tenant];
    if (max_tenant_sessions != 0 && n >= max_tenant_sessions)
      return Status::ResourceExhausted("tenant '" + peer.tenant + "' has " + std::to_string(n) + " of " +
                                       std::to_string(max_tenant_sessions) +
                                       " clients connected (max_clients in the tenants file)");
    n++;
  }
  auto s = std::make_shared<Session>(id, std::move(peer));
  s->Touch();
  live_[id] = s;
  return s;
}

void SessionTable::Forget(Session& s) {
  live_.erase(s.root);
  if (s.peer.tenant.empty()) return;
  auto it = tenant_sessions_.find(s.peer.tenant);
  if (it != tenant_sessions_.end() && --it->second == 0) tenant_sessions_.erase(it);
}

StatusOr<std::shared_ptr<SessionTable::Session>> SessionTable::Join(ClientId root, std::span<const uint8_t> token) {
  MutexLock l(&mu_);
  auto it = live_.find(root);
  if (it == live_.end() || it->second->over.load())
    return Status::Unavailable("session " + std::to_string(root) +
                               " is gone (its control connection closed or its lease expired; "
                               "its far memory was reclaimed)");
  // Compared in constant time, the whole token.
  if (!auth::ProofMatches(token, it->second->token))
    return Status::PermissionDenied("wrong token for session " + std::to_string(root) +
                                    " (a session is joined only with the token its welcome gave)");
  it->second->members++;
  it->second->Touch();
  return it->second;
}

bool SessionTable::Expired(Session& s, Clock::time_point now) {
  if (s.over.load(std::memory_order_relaxed)) return true;
  if (lease_ms_ == 0) return false;
  const int64_t idle_ns = now.time_since_epoch().count() - s.last_heard_ns.load(std::memory_order_relaxed);
  if (idle_ns <= int64_t{lease_ms_} * 1000000) return false;
  End(s, "lease expired");
  return true;
}

void SessionTable::End(Session& s, const char* why) {
  MutexLock l(&mu_);
  if (s.over.load()) return;
  s.why = why;
  s.over.store(true);
  Forget(s);
}

std::vector<ClientId> SessionTable::Leave(const std::shared_ptr<Session>& s, ClientId id) {
  std::vector<ClientId> due;
  MutexLock l(&mu_);
  if (id == s->root) {
    s->root_closed = true;
    if (!s->over.load()) {
      s->why = "its root connection closed";
      s->over.store(true);
      Forget(*s);
    }
  } else {
    s->members--;
    due.push_back(id);
  }
  if (s->root_closed && s->members == 0) {
    due.push_back(s->root);
    s->root_closed = false;  // owed once
    s->members = -1;         // and never again
  }
  return due;
}

size_t SessionTable::sessions() const {
  MutexLock l(&mu_);
  return live_.size();
}

}  // namespace sharry::internal
