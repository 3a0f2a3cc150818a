// MemnodeRegistration and MemnodeWatcher (memnode_registry.h).
//
// Locks: each Impl has one Mutex, a leaf: nothing else is taken while it is
// held, and no etcd call or callback runs under it.
#include "discovery/memnode_registry.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <optional>
#include <stop_token>
#include <thread>
#include <utility>
#include <vector>

#include "base/mutex.h"
#include "base/thread_annotations.h"

namespace sharry::discovery {
namespace {

// Sleeps `ms` unless a stop is requested first; false if one was.
bool SleepUnlessStopped(std::stop_token st, int ms) {
  Mutex mu;
  std::condition_variable_any cv;
  std::unique_lock<Mutex> l(mu);
  cv.wait_for(l, st, std::chrono::milliseconds(ms), [] { return false; });
  return !st.stop_requested();
}

void LogLine(const std::string& line) {
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

}  // namespace

// ---------------------------------------------------------------- MemnodeRegistration

struct MemnodeRegistration::Impl {
  Impl(RegistrationOptions opts, std::string k)
      : o(std::move(opts)), etcd(o.etcd), key(std::move(k)), value(EncodeMemnodeInfo(o.info)) {}

  // One round of the keepalive thread: renews the lease, or, if it is
  // lost, grants a new one and puts the key again.
  Status Renew(std::stop_token st) EXCLUDES(mu);
  void Run(std::stop_token st) EXCLUDES(mu);

  const RegistrationOptions o;
  const EtcdClient etcd;
  const std::string key;
  const std::string value;

  mutable Mutex mu;  // a leaf
  int64_t lease GUARDED_BY(mu) = 0;
  bool paused GUARDED_BY(mu) = false;
  RegistrationStats stats GUARDED_BY(mu);

  std::jthread thread;  // Run(); joined by Stop()
};

Status MemnodeRegistration::Impl::Renew(std::stop_token st) {
  int64_t current;
  {
    MutexLock l(&mu);
    current = lease;
  }
  if (current != 0) {
    auto ttl = etcd.LeaseKeepAliveOnce(current, st);
    if (ttl.ok()) {
      MutexLock l(&mu);
      ++stats.keepalives;
      return Status::Ok();
    }
    if (ttl.status().code() != StatusCode::kNotFound) return ttl.status();
    LogLine("memnode registration: " + key + ": " + ttl.status().message() + "; registering again");
    MutexLock l(&mu);
    lease = 0;
  }
  auto granted = etcd.LeaseGrant(o.ttl_s, st);
  if (!granted.ok()) return granted.status();
  auto put = etcd.Put(key, value, *granted, st);
  if (!put.ok()) {
    (void)etcd.LeaseRevoke(*granted, st);  // best effort: it expires anyway
    return put.status();
  }
  LogLine("memnode registration: " + key + ": registered again with lease " + std::to_string(*granted));
  MutexLock l(&mu);
  lease = *granted;
  ++stats.regrants;
  return Status::Ok();
}

void MemnodeRegistration::Impl::Run(std::stop_token st) {
  const int period_ms = std::max(100, o.ttl_s * 1000 / 3);
  const int retry_ms = std::max(100, o.ttl_s * 1000 / 9);
  int wait_ms = period_ms;
  uint64_t failing = 0;  // consecutive failures
  while (SleepUnlessStopped(st, wait_ms)) {
    {
      MutexLock l(&mu);
      if (paused) continue;
    }
    Status s = Renew(st);
    if (st.stop_requested()) return;
    if (s.ok()) {
      if (failing != 0) {
        LogLine("memnode registration: " + key + ": renewed again after " + std::to_string(failing) + " failure(s)");
      }
      failing = 0;
      wait_ms = period_ms;
      continue;
    }
    {
      MutexLock l(&mu);
      ++stats.failures;
    }
    if (failing++ == 0) {
      LogLine("memnode registration: " + key + ": " + s.ToString() + "; retrying every " + std::to_string(retry_ms) +
              " ms");
    }
    wait_ms = retry_ms;
  }
}

MemnodeRegistration::MemnodeRegistration(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MemnodeRegistration::~MemnodeRegistration() { (void)Stop(); }

StatusOr<std::unique_ptr<MemnodeRegistration>> MemnodeRegistration::Start(RegistrationOptions o) {
  if (o.prefix.empty()) return Status::InvalidArgument("memnode registration: an empty key prefix");
  if (o.ttl_s < 1 || o.ttl_s > 3600) {
    return Status::InvalidArgument("memnode registration: ttl " + std::to_string(o.ttl_s) + " s is not in 1..3600");
  }
  if (Status s = CheckHostPort(o.info.addr); !s.ok()) {
    return s.WithContext("memnode registration: address '" + o.info.addr + "'");
  }
  if (Status s = CheckHostPort(o.etcd.endpoint); !s.ok()) {
    return s.WithContext("memnode registration: etcd '" + o.etcd.endpoint + "'");
  }
  std::string key = o.prefix + o.info.addr;
  auto impl = std::make_unique<Impl>(std::move(o), std::move(key));
  auto granted = impl->etcd.LeaseGrant(impl->o.ttl_s);
  if (!granted.ok()) return granted.status();
  auto put = impl->etcd.Put(impl->key, impl->value, *granted);
  if (!put.ok()) {
    (void)impl->etcd.LeaseRevoke(*granted);
    return put.status();
  }
  {
    MutexLock l(&impl->mu);
    impl->lease = *granted;
  }
  Impl* p = impl.get();
  impl->thread = std::jthread([p](std::stop_token st) { p->Run(st); });
  return std::unique_ptr<MemnodeRegistration>(new MemnodeRegistration(std::move(impl)));
}

Status MemnodeRegistration::Stop() {
  if (impl_->thread.joinable()) {
    impl_->thread.request_stop();
    impl_->thread.join();
  }
  int64_t lease;
  {
    MutexLock l(&impl_->mu);
    lease = impl_->lease;
    impl_->lease = 0;
  }
  if (lease == 0) return Status::Ok();
  Status s = impl_->etcd.LeaseRevoke(lease);
  if (s.code() == StatusCode::kNotFound) return Status::Ok();  // expired already: the key is gone
  return s;
}

const std::string& MemnodeRegistration::key() const { return impl_->key; }

int64_t MemnodeRegistration::lease_id() const {
  MutexLock l(&impl_->mu);
  return impl_->lease;
}

RegistrationStats MemnodeRegistration::stats() const {
  MutexLock l(&impl_->mu);
  return impl_->stats;
}

void MemnodeRegistration::PauseKeepAliveForTest() {
  MutexLock l(&impl_->mu);
  impl_->paused = true;
}

// ---------------------------------------------------------------- MemnodeWatcher

struct MemnodeWatcher::Impl {
  Impl(WatcherOptions opts, WatcherCallbacks callbacks) : o(std::move(opts)), cb(std::move(callbacks)), etcd(o.etcd) {}

  // The MemnodeInfo of a key's value, or nothing if it is not one (logged).
  std::optional<MemnodeInfo> Decode(const std::string& addr, const std::string& value) EXCLUDES(mu);
  // Sets addr's entry to `info` (none: absent) and delivers what changed.
  void Apply(const std::string& addr, const std::optional<MemnodeInfo>& info) EXCLUDES(mu);
  // Delivers the difference between the members and a fresh list.
  void Relist(const RangeResult& r) EXCLUDES(mu);
  void OnEvent(const WatchEvent& ev) EXCLUDES(mu);
  void Run(std::stop_token st, int64_t revision) EXCLUDES(mu);

  const WatcherOptions o;
  const WatcherCallbacks cb;
  const EtcdClient etcd;

  mutable Mutex mu;  // a leaf
  std::map<std::string, MemnodeInfo> members GUARDED_BY(mu);
  WatcherStats stats GUARDED_BY(mu);

  std::jthread thread;  // Run(); joined by Stop()
};

std::optional<MemnodeInfo> MemnodeWatcher::Impl::Decode(const std::string& addr, const std::string& value) {
  auto info = DecodeMemnodeInfo(value);
  Status bad;
  if (!info.ok()) {
    bad = info.status();
  } else if (info->addr != addr) {
    bad = Status::InvalidArgument("its addr " + info->addr + " is not the key's");
  }
  if (bad.ok()) return std::move(*info);
  {
    MutexLock l(&mu);
    ++stats.bad_values;
  }
  LogLine("memnode watcher: ignoring key " + o.prefix + addr + ": " + bad.message());
  return std::nullopt;
}

void MemnodeWatcher::Impl::Apply(const std::string& addr, const std::optional<MemnodeInfo>& info) {
  bool leave = false, join = false;
  {
    MutexLock l(&mu);
    auto it = members.find(addr);
    if (!info) {
      if (it != members.end()) {
        members.erase(it);
        leave = true;
      }
    } else if (it == members.end()) {
      members.emplace(addr, *info);
      join = true;
    } else if (it->second != *info) {  // restarted at the same address
      it->second = *info;
      leave = join = true;
    }
    stats.leaves += leave;
    stats.joins += join;
  }
  if (leave && cb.on_leave) cb.on_leave(addr);
  if (join && cb.on_join) cb.on_join(addr, *info);
}

void MemnodeWatcher::Impl::Relist(const RangeResult& r) {
  std::map<std::string, MemnodeInfo> now;
  for (const KeyValue& kv : r.kvs) {
    if (!kv.key.starts_with(o.prefix)) continue;  // (etcd sent what was not asked for)
    std::string addr = kv.key.substr(o.prefix.size());
    if (auto info = Decode(addr, kv.value)) now.emplace(std::move(addr), std::move(*info));
  }
  std::vector<std::string> gone;
  {
    MutexLock l(&mu);
    for (const auto& [addr, info] : members) {
      if (!now.contains(addr)) gone.push_back(addr);
    }
  }
  for (const std::string& addr : gone) Apply(addr, std::nullopt);
  for (const auto& [addr, info] : now) Apply(addr, info);
}

void MemnodeWatcher::Impl::OnEvent(const WatchEvent& ev) {
  if (!ev.key.starts_with(o.prefix)) return;
  const std::string addr = ev.key.substr(o.prefix.size());
  if (ev.type == WatchEvent::Type::kDelete) {
    Apply(addr, std::nullopt);
  } else {
    Apply(addr, Decode(addr, ev.value));
  }
}

void MemnodeWatcher::Impl::Run(std::stop_token st, int64_t revision) {
  int backoff_ms = o.min_backoff_ms;
  bool failing = false;
  while (!st.stop_requested()) {
    bool created = false;
    Status s = etcd.Watch(
        o.prefix, revision + 1, [this](const WatchEvent& ev) { OnEvent(ev); }, st,
        [&] {
          created = true;
          if (failing) LogLine("memnode watcher: watching " + o.prefix + " again");
          failing = false;
        });
    if (st.stop_requested()) return;
    {
      MutexLock l(&mu);
      ++stats.watch_failures;
    }
    if (created) backoff_ms = o.min_backoff_ms;
    if (!failing) LogLine("memnode watcher: " + s.ToString() + "; listing " + o.prefix + " again");
    failing = true;
    // List again (retrying with backoff while etcd is unreachable) and
    // deliver what changed meanwhile; then watch from there.
    for (;;) {
      if (!SleepUnlessStopped(st, backoff_ms)) return;
      backoff_ms = std::min(backoff_ms * 2, o.max_backoff_ms);
      auto r = etcd.RangePrefix(o.prefix, st);
      if (st.stop_requested()) return;
      if (r.ok()) {
        {
          MutexLock l(&mu);
          ++stats.relists;
        }
        Relist(*r);
        revision = r->revision;
        break;
      }
    }
  }
}

MemnodeWatcher::MemnodeWatcher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MemnodeWatcher::~MemnodeWatcher() { Stop(); }

StatusOr<std::unique_ptr<MemnodeWatcher>> MemnodeWatcher::Start(WatcherOptions o, WatcherCallbacks cb) {
  if (o.prefix.empty()) return Status::InvalidArgument("memnode watcher: an empty key prefix");
  if (o.min_backoff_ms < 1 || o.max_backoff_ms < o.min_backoff_ms || o.max_backoff_ms > 600000) {
    return Status::InvalidArgument("memnode watcher: backoff " + std::to_string(o.min_backoff_ms) + ".." +
                                   std::to_string(o.max_backoff_ms) + " ms is not within 1..600000");
  }
  if (Status s = CheckHostPort(o.etcd.endpoint); !s.ok()) {
    return s.WithContext("memnode watcher: etcd '" + o.etcd.endpoint + "'");
  }
  auto impl = std::make_unique<Impl>(std::move(o), std::move(cb));
  auto r = impl->etcd.RangePrefix(impl->o.prefix);
  if (!r.ok()) return r.status();
  impl->Relist(*r);
  Impl* p = impl.get();
  const int64_t revision = r->revision;
  impl->thread = std::jthread([p, revision](std::stop_token st) { p->Run(st, revision); });
  return std::unique_ptr<MemnodeWatcher>(new MemnodeWatcher(std::move(impl)));
}

void MemnodeWatcher::Stop() {
  if (impl_->thread.joinable()) {
    impl_->thread.request_stop();
    impl_->thread.join();
  }
}

std::map<std::string, MemnodeInfo> MemnodeWatcher::Snapshot() const {
  MutexLock l(&impl_->mu);
  return impl_->members;
}

WatcherStats MemnodeWatcher::stats() const {
  MutexLock l(&impl_->mu);
  return impl_->stats;
}

}  // namespace sharry::discovery
