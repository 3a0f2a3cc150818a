// QuotaLedger: the far memory each client and each tenant holds, and the
// quotas on them (issue #11; docs/memnode.md, "Quotas").
//
// Unit: rounded bytes, what the allocator charges for a block
// (alloc::SizeMap::RoundedSize: its size class, or whole 8 KiB pages above
// 256 KiB) — the same bytes as ClientRecord::bytes_held. A client holding
// 100 blocks of 3000 B is charged 100 x 3072 B.
//
// Groups: one per tenant of the tenants file (its quota_bytes), one for the
// anonymous clients (no group quota), and one without quota for a tenant the
// file does not name (created at its first connect). Groups live as long as
// the ledger, so an Account's pointer to its group stays valid. Every client
// (anonymous or not) is also capped by client_quota_bytes (0: no cap).
//
// Reserve before allocating, give back what did not become a block:
//   Reserve(a, bytes)  adds `bytes` to the client's counter, then to its
//                      group's, each with a compare-and-swap that refuses to
//                      pass the quota; a refusal undoes the client's part and
//                      changes nothing else.
//   Release(a, bytes)  subtracts from both: an element the allocator refused,
//                      a FREE the allocator accepted (its block's bytes), what
//                      FreeAllOf reclaimed when the client went away.
// So with any number of poller threads serving one client or one tenant,
// held <= quota at every moment, and between requests
//   Account::held == the client's allocator usage minus its pending frees
// (a FREE gives its bytes back when the allocator accepts it; the
// allocator's owner counters drop when the free is applied). A reservation
// in flight may make a concurrent one of the same group fail although the
// first is refused in the end: refusals err on the safe side.
//
// Thread-safety: Open and Close take mu_ exclusively, Find and the
// snapshots shared (a leaf); Reserve and Release are lock-free on an Account
// the caller holds.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"
#include "verbs/transport.h"

namespace sharry {
struct TenantsConfig;
}

namespace sharry::memnode {

// A tenant's (or the anonymous clients') counters.
struct QuotaGroup {
  QuotaGroup(std::string n, uint64_t q) : name(std::move(n)), quota_bytes(q) {}
  const std::string name;      // the tenant; empty: the anonymous clients
  const uint64_t quota_bytes;  // 0: no quota
  std::atomic<uint64_t> held{0};
  std::atomic<uint64_t> refusals{0};  // ALLOC elements refused (either quota)
  std::atomic<uint32_t> sessions{0};  // root connections now
};

// One client's (connection's) counter.
struct QuotaAccount {
  QuotaAccount(ClientId c, ClientId s, QuotaGroup* g, bool adm, bool root)
      : id(c), session(s), group(g), admin(adm), counted_session(root) {}
  const ClientId id;
  const ClientId session;      // its session's root (Peer::session): the owner of the session's pages
  QuotaGroup* const group;
  const bool admin;            // sees every record in STATS
  const bool counted_session;  // a session's root: counted in group->sessions
  std::atomic<uint64_t> held{0};
};

class QuotaLedger {
 public:
  using Group = QuotaGroup;
  using Account = QuotaAccount;
  // A group's numbers at one moment, for STATS.
  struct GroupView {
    const Group* group;
    uint32_t sessions;
  };

  // `tenants` may be nullptr (no tenants file); it is read here only.
  QuotaLedger(uint64_t client_quota_bytes, const TenantsConfig* tenants);

  uint64_t client_quota_bytes() const { return client_quota_; }

  // The account of a client that connected (OnConnect), in its tenant's
  // group. Opening an id that is open returns its account.
  std::shared_ptr<Account> Open(ClientId client, const Peer& peer) EXCLUDES(mu_);
  // Removes the account and returns it (nullptr if none): the caller gives
  // back what it still holds (Release) after reclaiming its blocks.
  std::shared_ptr<Account> Close(ClientId client) EXCLUDES(mu_);
  // The account, or nullptr.
  std::shared_ptr<Account> Find(ClientId client) const EXCLUDES(mu_);

  // Reserves `bytes` for `a` (see the file comment). On refusal returns
  // ResourceExhausted naming the quota and what is held, e.g. "client quota
  // 64.0 MiB: holds 63.9 MiB, asked 0.5 MiB".
  [[nodiscard]] Status Reserve(Account& a, uint64_t bytes);
  void Release(Account& a, uint64_t bytes);

  // Open accounts now.
  size_t num_accounts() const EXCLUDES(mu_);
  // Every group, the anonymous one first, then the tenants in the file's order.
  std::vector<GroupView> Groups() const EXCLUDES(mu_);
  // The group of every open account.
  std::unordered_map<ClientId, const Group*> GroupOfClients() const EXCLUDES(mu_);

 private:
  Group* GroupFor(const std::string& tenant) REQUIRES(mu_);

  const uint64_t client_quota_;
  // A leaf. Shared on the data path (Find), exclusive at connect/disconnect.
  mutable SharedMutex mu_;
  std::vector<std::unique_ptr<Group>> groups_ GUARDED_BY(mu_);  // [0]: anonymous
  std::unordered_map<std::string, Group*> by_name_ GUARDED_BY(mu_);
  std::unordered_map<ClientId, std::shared_ptr<Account>> accounts_ GUARDED_BY(mu_);
};

}  // namespace sharry::memnode
