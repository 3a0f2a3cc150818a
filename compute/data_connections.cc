// Data connections: one per (thread, runtime) for the one-sided READs and
// WRITEs of object data, cached per thread, each joining the control
// connection's session.
#include "compute/runtime_impl.h"

namespace sharry::compute {

StatusOr<TransportClient*> RuntimeImpl::DataConnection() {
  // One data connection per (thread, runtime), made on first use and again
  // after the reconnector replaced the connections (a new conn_epoch_). A
  // dead one is not retried here: that is the reconnector's job.
  struct Entry {
    uint64_t instance;
    uint64_t epoch;
    TransportClient* conn;
  };
  thread_local std::vector<Entry> cache;
  const uint64_t epoch = conn_epoch_.load(std::memory_order_acquire);
  Entry* mine = nullptr;
  for (Entry& e : cache) {
    if (e.instance != instance_) continue;
    if (e.epoch == epoch) {
      if (e.conn->alive()) return e.conn;
      return ConnectionFailed(e.conn->dead_reason(), "data connection");
    }
    mine = &e;  // from before a reconnect: the pointer is gone, connect anew
  }
  // A data connection joins the control connection's session: the memnode
  // closes it before it reclaims our far blocks (lease expired, control
  // connection lost), so it can never touch a block handed to someone else.
  // It shows the session's token, which only our control connection was
  // given (no other process can join our session and reach our blocks).
  ClientOptions co = conn_opts_;
  co.tenant.clear();  // a joining connection does not authenticate again
  co.secret = auth::Secret();
  {
    MutexLock l(&control_mu_);  // under epoch_mu_ (shared): the control connection stays put
    co.session = control_->id();
    co.session_token = control_->transport().info().session_token;
    co.keys = control_->transport().keys();  // the keys its ALLOCs learn
  }
  auto c = TransportClient::Connect(opts_.transport, co);
  if (!c.ok()) return ConnectionFailed(c.status(), "data connection");
  MutexLock l(&conns_mu_);
  data_conns_.push_back(std::move(*c));
  if (mine == nullptr) {
    cache.push_back({instance_, epoch, nullptr});
    mine = &cache.back();
  }
  mine->epoch = epoch;
  mine->conn = data_conns_.back().get();
  return mine->conn;
}

void RuntimeImpl::DropDataConnections() {
  MutexLock l(&conns_mu_);
  data_conns_.clear();
  conn_epoch_++;
}

}  // namespace sharry::compute
