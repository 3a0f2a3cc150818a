// Membership: memnodes that come and go (docs/discovery.md). With
// RuntimeOptions::etcd, a MemnodeWatcher lists and watches the memnodes
// registered under the prefix; its events are handled here, on the
// membership thread (the watcher's callbacks only queue them):
//   join   a memnode we do not know is connected and appended to nodes_
//          (new blocks and repairs go there); one we had declared dead is
//          connected again, as a new, empty memnode
//   leave  its key went (lease expired or revoked): it is dead at once —
//          no probe, no timeout — and what it held is lost or degraded as
//          for any dead memnode (health.cc)
// nodes_ has one writer: Init, then this thread.
#include <glog/logging.h>

#include "compute/runtime_impl.h"

namespace sharry::compute {

ClientOptions RuntimeImpl::ControlOptions(const MemnodeAddress& a) const {
  ClientOptions co;
  co.server_addr = a.host;
  co.port = a.port;
  co.connect_timeout_ms = opts_.connect_timeout_ms;
  co.connect_attempts = opts_.connect_attempts;
  co.op_timeout_ms = opts_.op_timeout_ms;
  co.tenant = opts_.tenant;
  co.secret = opts_.secret;
  co.staging_bytes = std::max<size_t>(4u << 20, size_t{opts_.max_object_bytes} * 2);
  return co;
}

StatusOr<std::unique_ptr<memnode::MemnodeClient>> RuntimeImpl::ConnectControl(const ClientOptions& base,
                                                                             int timeout_ms) const {
  ClientOptions co = base;
  if (timeout_ms > 0) {
    co.connect_attempts = 1;
    co.connect_timeout_ms = timeout_ms;
  }
  auto c = memnode::MemnodeClient::Connect(opts_.transport, co);
  if (!c.ok()) return c.status();
  if ((*c)->uma_bytes() > far::kMaxUma)
    return Status::InvalidArgument("memnode " + co.server_addr + ":" + std::to_string(co.port) + ": its UMA of " +
                                   std::to_string((*c)->uma_bytes()) +
                                   " B is larger than a runtime addresses (1 TiB per memnode)");
  return c;
}

Status RuntimeImpl::AddMemnode(const MemnodeAddress& a, bool at_init) {
  if (nodes_.size() >= kMaxMemnodes)
    return Status::ResourceExhausted("memnode " + a.ToString() + ": a runtime uses at most " +
                                     std::to_string(kMaxMemnodes) + " memnodes");
  auto n = std::make_unique<FarNode>(static_cast<uint32_t>(nodes_.size()), a);
  n->conn_opts = ControlOptions(a);
  auto c = ConnectControl(n->conn_opts, at_init ? 0 : opts_.reconnect_timeout_ms);
  if (!c.ok()) return c.status().WithContext("memnode " + n->name + " is unreachable");
  {
    MutexLock l(&n->control_mu);  // not shared yet: for the analysis
    n->control = std::move(*c);
    n->control_id = n->control->id();
  }
  // Later connections (data connections, reconnects) try once each: a
  // failure marks the memnode unhealthy instead of retrying on every miss.
  n->conn_opts.connect_attempts = 1;
  FarNode* added = nodes_.Add(std::move(n));
  if (!at_init) {
    LOG(WARNING) << "compute runtime: memnode " << added->name << " joined (client " << added->control_id << ")";
    if (side_table_) {
      MutexLock l(&repair_mu_);
      repair_cv_.SignalAll();  // a memnode to repair onto
    }
  }
  return Status::Ok();
}

FarNode* RuntimeImpl::FindNode(const std::string& name) const {
  for (FarNode* n : nodes_)
    if (n->name == name) return n;
  return nullptr;
}

Status RuntimeImpl::StartWatcher() {
  discovery::WatcherOptions wo;
  wo.etcd.endpoint = opts_.etcd;
  wo.etcd.timeout_ms = opts_.connect_timeout_ms;
  wo.prefix = opts_.etcd_prefix;
  discovery::WatcherCallbacks cb;
  auto push = [this](MemberEvent e) {
    {
      MutexLock l(&membership_mu_);
      member_events_.push_back(std::move(e));
    }
    membership_cv_.Signal();
  };
  cb.on_join = [push](const std::string& addr, const discovery::MemnodeInfo& info) { push({true, addr, info}); };
  cb.on_leave = [push](const std::string& addr) { push({false, addr, {}}); };
  auto w = discovery::MemnodeWatcher::Start(std::move(wo), std::move(cb));
  if (!w.ok()) return w.status().WithContext("memnode discovery (--etcd)");
  watcher_ = std::move(*w);
  // The memnodes registered now: connected here, before Create returns.
  std::deque<MemberEvent> now;
  {
    MutexLock l(&membership_mu_);
    now.swap(member_events_);
  }
  for (const MemberEvent& e : now) {
    if (!e.join) continue;
    if (e.info.transport != TransportName(opts_.transport)) {
      LOG(WARNING) << "compute runtime: etcd lists memnode " << e.addr << " over " << e.info.transport
                   << ", not " << TransportName(opts_.transport) << ": not used";
      continue;
    }
    auto a = ParseMemnodeList(e.addr, 0);
    if (!a.ok() || (*a)[0].port == 0 || FindNode(e.addr) != nullptr) continue;
    if (Status s = AddMemnode((*a)[0], true); !s.ok())
      LOG(WARNING) << "compute runtime: memnode " << e.addr << " from etcd not used: " << s;
  }
  membership_ = std::thread([this] { MembershipLoop(); });
  return Status::Ok();
}

void RuntimeImpl::MembershipLoop() {
  for (;;) {
    MemberEvent e;
    {
      MutexLock l(&membership_mu_);
      while (!membership_stop_ && member_events_.empty()) membership_cv_.Wait(&membership_mu_);
      if (membership_stop_) return;
      e = std::move(member_events_.front());
      member_events_.pop_front();
    }
    if (e.join) {
      joins_++;
      OnJoin(e.addr, e.info);
    } else {
      leaves_++;
      OnLeave(e.addr);
    }
  }
}

void RuntimeImpl::OnLeave(const std::string& addr) {
  FarNode* n = FindNode(addr);
  if (n == nullptr) return;
  DeclareDead(*n, Status::Unavailable("memnode " + addr + " left etcd " + opts_.etcd +
                                      " (its lease expired or was revoked)"));
}

void RuntimeImpl::OnJoin(const std::string& addr, const discovery::MemnodeInfo& info) {
  if (info.transport != TransportName(opts_.transport)) {
    LOG(WARNING) << "compute runtime: memnode " << addr << " joined over " << info.transport << ", not "
                 << TransportName(opts_.transport) << ": not used";
    return;
  }
  FarNode* n = FindNode(addr);
  if (n == nullptr) {
    auto a = ParseMemnodeList(addr, 0);
    if (!a.ok() || (*a)[0].port == 0) {
      LOG(WARNING) << "compute runtime: etcd lists a memnode at '" << addr << "': not host:port";
      return;
    }
    if (Status s = AddMemnode((*a)[0], false); !s.ok())
      LOG(WARNING) << "compute runtime: memnode " << addr << " joined but is not used: " << s;
    return;
  }
  if (n->health.load(std::memory_order_acquire) != FarNode::kDead) return;  // in use, or its reconnector decides
  {
    // The reconnector that declared it dead has finished: join it first.
    std::thread old;
    {
      MutexLock l(&n->health_mu);
      old = std::move(n->reconnector);
    }
    if (old.joinable()) old.join();
  }
  auto c = ConnectControl(n->conn_opts, opts_.reconnect_timeout_ms);
  if (!c.ok()) {
    LOG(WARNING) << "compute runtime: memnode " << addr << " joined again but is unreachable: " << c.status();
    return;
  }
  InstallControl(n, std::move(*c));
}

}  // namespace sharry::compute
