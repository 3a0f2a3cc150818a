#include "memnode/quota.h"

#include <cstdio>

#include "memnode/tenants.h"

namespace sharry::memnode {

namespace {

// "64.0 MiB", "512.0 KiB", "100 B": for the refusal notes.
std::string Human(uint64_t bytes) {
  char b[32];
  if (bytes < 1024) std::snprintf(b, sizeof b, "%llu B", static_cast<unsigned long long>(bytes));
  else if (bytes < (uint64_t{1} << 20)) std::snprintf(b, sizeof b, "%.1f KiB", static_cast<double>(bytes) / 1024);
  else if (bytes < (uint64_t{1} << 30)) std::snprintf(b, sizeof b, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  else std::snprintf(b, sizeof b, "%.1f GiB", static_cast<double>(bytes) / (1 << 30));
  return b;
}

// Adds `bytes` to `held` unless that passes `quota` (0: none). Returns
// false, changing nothing, if it would; *seen is the value it was refused at.
bool Add(std::atomic<uint64_t>& held, uint64_t quota, uint64_t bytes, uint64_t* seen) {
  uint64_t cur = held.load(std::memory_order_relaxed);
  do {
    if (quota != 0 && (bytes > quota || cur > quota - bytes)) {
      *seen = cur;
      return false;
    }
  } while (!held.compare_exchange_weak(cur, cur + bytes, std::memory_order_relaxed));
  return true;
}

}  // namespace

QuotaLedger::QuotaLedger(uint64_t client_quota_bytes, const TenantsConfig* tenants)
    : client_quota_(client_quota_bytes) {
  WriterMutexLock l(&mu_);
  groups_.push_back(std::make_unique<Group>(std::string(), 0));
  if (tenants == nullptr) return;
  for (const Tenant& t : tenants->tenants) {
    groups_.push_back(std::make_unique<Group>(t.name, t.quota_bytes));
    by_name_[t.name] = groups_.back().get();
  }
}

QuotaLedger::Group* QuotaLedger::GroupFor(const std::string& tenant) {
  if (tenant.empty()) return groups_[0].get();
  auto it = by_name_.find(tenant);
  if (it != by_name_.end()) return it->second;
  // Authenticated against a tenant this ledger was not given: no group quota.
  groups_.push_back(std::make_unique<Group>(tenant, 0));
  return by_name_[tenant] = groups_.back().get();
}

std::shared_ptr<QuotaLedger::Account> QuotaLedger::Open(ClientId client, const Peer& peer) {
  WriterMutexLock l(&mu_);
  auto& a = accounts_[client];
  if (a == nullptr) {
    a = std::make_shared<Account>(client, peer.session != 0 ? peer.session : client, GroupFor(peer.tenant), peer.admin,
                                  peer.session == client);
    if (a->counted_session) a->group->sessions++;
  }
  return a;
}

std::shared_ptr<QuotaLedger::Account> QuotaLedger::Close(ClientId client) {
  WriterMutexLock l(&mu_);
  auto it = accounts_.find(client);
  if (it == accounts_.end()) return nullptr;
  std::shared_ptr<Account> a = std::move(it->second);
  accounts_.erase(it);
  if (a->counted_session) a->group->sessions--;
  return a;
}

std::shared_ptr<QuotaLedger::Account> QuotaLedger::Find(ClientId client) const {
  ReaderMutexLock l(&mu_);
  auto it = accounts_.find(client);
  return it == accounts_.end() ? nullptr : it->second;
}

Status QuotaLedger::Reserve(Account& a, uint64_t bytes) {
  uint64_t seen = 0;
  if (!Add(a.held, client_quota_, bytes, &seen)) {
    a.group->refusals++;
    return Status::ResourceExhausted("client quota " + Human(client_quota_) + ": holds " + Human(seen) + ", asked " +
                                     Human(bytes));
  }
  Group& g = *a.group;
  if (!Add(g.held, g.quota_bytes, bytes, &seen)) {
    a.held -= bytes;
    g.refusals++;
    return Status::ResourceExhausted("tenant " + g.name + " quota " + Human(g.quota_bytes) + ": holds " + Human(seen) +
                                     ", asked " + Human(bytes));
  }
  return Status::Ok();
}

void QuotaLedger::Release(Account& a, uint64_t bytes) {
  a.held -= bytes;
  a.group->held -= bytes;
}

size_t QuotaLedger::num_accounts() const {
  ReaderMutexLock l(&mu_);
  return accounts_.size();
}

std::vector<QuotaLedger::GroupView> QuotaLedger::Groups() const {
  ReaderMutexLock l(&mu_);
  std::vector<GroupView> v;
  v.reserve(groups_.size());
  for (const auto& g : groups_) v.push_back({g.get(), g->sessions.load()});
  return v;
}

std::unordered_map<ClientId, const QuotaLedger::Group*> QuotaLedger::GroupOfClients() const {
  ReaderMutexLock l(&mu_);
  std::unordered_map<ClientId, const Group*> m;
  m.reserve(accounts_.size());
  for (const auto& [id, a] : accounts_) m.emplace(id, a->group);
  return m;
}

}  // namespace sharry::memnode
