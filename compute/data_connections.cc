// Data connections: one per (thread, runtime, memnode) for the one-sided
// READs and WRITEs of object data, cached per thread, each joining our
// control connection's session at that memnode.
#include "compute/runtime_impl.h"

namespace sharry::compute {

StatusOr<TransportClient*> RuntimeImpl::DataConnection(FarNode& n) {
  // Made on first use and again after the reconnector replaced the
  // memnode's connections (a new conn_epoch). A dead one is not retried
  // here: that is the reconnector's job.
  struct Entry {
    uint64_t instance;
    uint32_t node;
    uint64_t epoch;
    TransportClient* conn;
  };
  thread_local std::vector<Entry> cache;
  const uint64_t epoch = n.conn_epoch.load(std::memory_order_acquire);
  Entry* mine = nullptr;
  for (Entry& e : cache) {
    if (e.instance != instance_ || e.node != n.index) continue;
    if (e.epoch == epoch) {
      if (e.conn->alive()) return e.conn;
      return ConnectionFailed(n, e.conn->dead_reason(), "data connection");
    }
    mine = &e;  // from before a reconnect: the pointer is gone, connect anew
  }
  if (!n.healthy()) return FailedAccess(NodeStatus(n).WithContext("data connection"));
  // A data connection joins the control connection's session: the memnode
  // closes it before it reclaims our far blocks (lease expired, control
  // connection lost), so it can never touch a block handed to someone else.
  // It shows the session's token, which only our control connection was
  // given (no other process can join our session and reach our blocks).
  ClientOptions co = n.conn_opts;
  co.tenant.clear();  // a joining connection does not authenticate again
  co.secret = auth::Secret();
  {
    MutexLock l(&n.control_mu);  // under epoch_mu_ (shared): the control connection stays put
    co.session = n.control->id();
    co.session_token = n.control->transport().info().session_token;
    co.keys = n.control->transport().keys();  // the keys its ALLOCs learn
  }
  auto c = TransportClient::Connect(opts_.transport, co);
  if (!c.ok()) return ConnectionFailed(n, c.status(), "data connection");
  MutexLock l(&conns_mu_);
  data_conns_.push_back({n.index, std::move(*c)});
  if (mine == nullptr) {
    cache.push_back({instance_, n.index, epoch, nullptr});
    mine = &cache.back();
  }
  mine->epoch = epoch;
  mine->conn = data_conns_.back().conn.get();
  return mine->conn;
}

void RuntimeImpl::DropDataConnections(FarNode& n) {
  MutexLock l(&conns_mu_);
  std::erase_if(data_conns_, [&](const DataConn& d) { return d.node == n.index; });
  n.conn_epoch++;
}

}  // namespace sharry::compute
