// The runtime's life (Create, Init, ~Runtime), the API's entry points, and
// Stats(). The rest of RuntimeImpl is in the files runtime.h lists.
#include "compute/runtime.h"

#include <glog/logging.h>

#include <algorithm>

#include "compute/runtime_impl.h"

namespace sharry::compute {

using namespace meta;  // NOLINT: the bit names of object.h

namespace {
std::atomic<uint64_t> g_instances{1};
}  // namespace

std::string_view CopyModeName(CopyMode m) { return m == CopyMode::kUniqueCopy ? "unique" : "multi"; }

std::string_view OffloadModeName(OffloadMode m) {
  switch (m) {
    case OffloadMode::kAuto: return "auto";
    case OffloadMode::kAlways: return "always";
    case OffloadMode::kNever: return "never";
  }
  return "?";
}

StatusOr<OffloadMode> ParseOffloadMode(std::string_view s) {
  for (OffloadMode m : {OffloadMode::kAuto, OffloadMode::kAlways, OffloadMode::kNever})
    if (s == OffloadModeName(m)) return m;
  return Status::InvalidArgument("offload mode '" + std::string(s) + "': use auto, always or never");
}

StatusOr<CopyMode> ParseCopyMode(std::string_view s) {
  if (s == "unique" || s == "unique-copy") return CopyMode::kUniqueCopy;
  if (s == "multi" || s == "multi-copy") return CopyMode::kMultiCopy;
  return Status::InvalidArgument("unknown copy mode '" + std::string(s) + "' (use unique or multi)");
}

StatusOr<std::vector<MemnodeAddress>> ParseMemnodeList(std::string_view list, uint16_t default_port) {
  return memnode::ParseMemnodeList(list, default_port, kMaxMemnodes);
}

StatusOr<Redundancy> ParseRedundancy(std::string_view s) {
  Redundancy r;
  auto number = [](std::string_view t, uint32_t* v) {
    if (t.empty() || t.size() > 3) return false;
    *v = 0;
    for (char c : t) {
      if (c < '0' || c > '9') return false;
      *v = *v * 10 + static_cast<uint32_t>(c - '0');
    }
    return true;
  };
  const std::string bad = "redundancy '" + std::string(s) + "': use none, replicate:R (R in 2..4) or ec:K+M";
  if (s == "none") return r;
  if (s.starts_with("replicate:")) {
    r.kind = Redundancy::Kind::kReplicate;
    if (!number(s.substr(10), &r.replicas) || r.replicas < 2 || r.replicas > 4) return Status::InvalidArgument(bad);
    return r;
  }
  if (s.starts_with("ec:")) {
    const std::string_view km = s.substr(3);
    const size_t plus = km.find('+');
    r.kind = Redundancy::Kind::kErasure;
    if (plus == std::string_view::npos || !number(km.substr(0, plus), &r.k) || !number(km.substr(plus + 1), &r.m) ||
        r.k < 1 || r.m < 1 || r.k + r.m > 32)
      return Status::InvalidArgument(bad + " (K >= 1, M >= 1, K+M <= 32)");
    return r;
  }
  return Status::InvalidArgument(bad);
}

std::string RedundancyName(const Redundancy& r) {
  switch (r.kind) {
    case Redundancy::Kind::kNone:
      return "none";
    case Redundancy::Kind::kReplicate:
      return "replicate:" + std::to_string(r.replicas);
    case Redundancy::Kind::kErasure:
      return "ec:" + std::to_string(r.k) + "+" + std::to_string(r.m);
  }
  return "?";
}

// ---------------------------------------------------------------- the API

StatusOr<std::unique_ptr<Runtime>> Runtime::Create(const RuntimeOptions& o) {
  if (o.local_budget_bytes == 0) return Status::InvalidArgument("the local budget must be positive");
  if (o.max_object_bytes == 0 || o.max_object_bytes > (64u << 20))
    return Status::InvalidArgument("max_object_bytes must be 1 B .. 64 MiB");
  if (o.free_batch == 0 || o.evict_batch == 0) return Status::InvalidArgument("batches must be positive");
  if (o.evict_ahead_bytes > o.local_budget_bytes / 2)
    return Status::InvalidArgument("evict_ahead_bytes must be at most half the local budget");
  if (o.op_timeout_ms <= 0 || o.reconnect_timeout_ms <= 0 || o.reconnect_attempts < 0 || o.reconnect_pause_ms < 0)
    return Status::InvalidArgument("op_timeout_ms and reconnect_timeout_ms must be positive, the reconnect "
                                   "attempts and pause not negative");
  if (o.placement_refresh_ms < 0) return Status::InvalidArgument("placement_refresh_ms must not be negative");
  if (!(o.ec_hole_budget >= 0 && o.ec_hole_budget <= 10))
    return Status::InvalidArgument("ec_hole_budget must be in 0..10");
  if (o.ec_refill_bytes < -1 || o.ec_refill_bytes > (int64_t{1} << 40))
    return Status::InvalidArgument("ec_refill_bytes must be -1 (auto), 0 (off) or up to 1 TiB; it is " +
                                   std::to_string(o.ec_refill_bytes));
  if (o.memnodes.size() > kMaxMemnodes)
    return Status::InvalidArgument("at most " + std::to_string(kMaxMemnodes) + " memnodes");
  if (o.redundancy.kind == Redundancy::Kind::kErasure && o.mode != CopyMode::kUniqueCopy)
    return Status::InvalidArgument("redundancy " + RedundancyName(o.redundancy) +
                                   ": erasure coding is built for Unique-Copy only (Multi-Copy: none or replicate:R)");
  if (o.redundancy.kind == Redundancy::Kind::kReplicate && (o.redundancy.replicas < 2 || o.redundancy.replicas > 4))
    return Status::InvalidArgument("redundancy replicate:R needs R in 2..4");
  const size_t nodes = o.memnodes.empty() ? 1 : o.memnodes.size();
  if (o.redundancy.nodes_needed() > nodes && o.etcd.empty())
    return Status::InvalidArgument("redundancy " + RedundancyName(o.redundancy) + " needs at least " +
                                   std::to_string(o.redundancy.nodes_needed()) + " memnodes; " +
                                   std::to_string(nodes) + " given");
  auto rt = std::make_unique<RuntimeImpl>(o);
  SHARRY_RETURN_IF_ERROR(rt->Init());
  return std::unique_ptr<Runtime>(std::move(rt));
}

Runtime::~Runtime() = default;

StatusOr<RemoteObject> Runtime::New(uint32_t size, const void* init, uint32_t affinity) {
  return ImplOf(*this).New(size, init, affinity);
}
Status Runtime::SwapOut(const RemoteObject& obj) { return ImplOf(*this).SwapOut(obj); }
Status Runtime::EvictToBudget() { return ImplOf(*this).EvictToBudget(); }
Status Runtime::FlushFrees() { return ImplOf(*this).FlushFrees(); }
void Runtime::WaitEvictorIdle() { ImplOf(*this).WaitEvictorIdle(); }
RuntimeStats Runtime::Stats() const { return ImplOf(*this).Stats(); }
StatusOr<memnode::Stats> Runtime::MemnodeStats(size_t node) { return ImplOf(*this).MemnodeStats(node); }
size_t Runtime::memnode_count() const { return ImplOf(*this).node_count(); }
ClientId Runtime::control_client_id(size_t node) const { return ImplOf(*this).control_id(node); }
Status Runtime::eviction_status() const { return ImplOf(*this).eviction_status(); }
Status Runtime::health() const { return ImplOf(*this).health(); }
uint64_t Runtime::local_limit_bytes() const { return ImplOf(*this).local_limit(); }
const RuntimeOptions& Runtime::options() const { return ImplOf(*this).opts(); }

// ---------------------------------------------------------------- life

RuntimeImpl::RuntimeImpl(const RuntimeOptions& o)
    : opts_(o),
      copies_(o.redundancy.kind == Redundancy::Kind::kReplicate ? o.redundancy.replicas : 1),
      side_table_(o.redundancy.kind != Redundancy::Kind::kNone),
      instance_(g_instances.fetch_add(1)) {}

Status RuntimeImpl::Init() {
  if (opts_.redundancy.kind == Redundancy::Kind::kErasure) {
    auto ec = ErasureCode::Create(static_cast<int>(opts_.redundancy.k), static_cast<int>(opts_.redundancy.m));
    if (!ec.ok()) return ec.status();
    ec_ = std::make_unique<ErasureCode>(std::move(*ec));
    refill_cap_ = opts_.ec_refill_bytes >= 0
                      ? static_cast<uint64_t>(opts_.ec_refill_bytes)
                      : std::min<uint64_t>(opts_.local_budget_bytes / 16, uint64_t{2} * opts_.evict_batch * 4096);
  }
  // The memnodes: the options' list (or the one address, unless etcd alone
  // names them), then those registered in etcd.
  std::vector<MemnodeAddress> addrs = opts_.memnodes;
  if (addrs.empty() && opts_.etcd.empty()) addrs.push_back({opts_.memnode_addr, opts_.memnode_port});
  for (const MemnodeAddress& a : addrs) SHARRY_RETURN_IF_ERROR(AddMemnode(a, true));
  if (!opts_.etcd.empty()) SHARRY_RETURN_IF_ERROR(StartWatcher());
  if (nodes_.size() == 0)
    return Status::Unavailable("no memnode: none is registered under " + opts_.etcd_prefix + " at etcd " +
                               opts_.etcd + " and none was given");
  if (opts_.redundancy.nodes_needed() > nodes_.size())
    return Status::Unavailable("redundancy " + RedundancyName(opts_.redundancy) + " needs at least " +
                               std::to_string(opts_.redundancy.nodes_needed()) + " memnodes; " +
                               std::to_string(nodes_.size()) + " are reachable");
  // One eviction batch of bytes: what a synchronous eviction frees below the
  // budget, and how far below its start the evictor goes, so that rounds
  // come in full batches (one ALLOC, one chain of WRITEs).
  const uint64_t budget = opts_.local_budget_bytes;
  local_limit_ = budget + budget / 8;
  const uint64_t batch = std::min<uint64_t>(budget / 16, uint64_t{opts_.evict_batch} * 4096);
  sync_target_ = budget - batch;
  evict_start_ = budget;
  evict_target_ = sync_target_;
  if (opts_.evict_thread) {
    // A quarter batch ahead by default: enough for the evictor to finish a
    // round before the application reaches the budget (a round takes about
    // as long as a few swap-ins), while local memory stays nearly full (each
    // byte kept free costs hit rate).
    const uint64_t ahead = opts_.evict_ahead_bytes != 0 ? opts_.evict_ahead_bytes : std::max<uint64_t>(batch / 4, 1);
    evict_start_ = budget - ahead;
    evict_target_ = evict_start_ - std::min(batch, evict_start_);
  }
  StartThreads();
  std::string names;
  for (const auto& n : nodes_) names += (names.empty() ? "" : ",") + n->name + "#" + std::to_string(n->control_id);
  LOG(INFO) << "compute runtime: " << CopyModeName(opts_.mode) << "-copy, local budget "
            << opts_.local_budget_bytes << " B, memnodes " << names << " (name#client) over "
            << TransportName(opts_.transport) << ", redundancy " << RedundancyName(opts_.redundancy);
  return Status::Ok();
}

RuntimeImpl::~RuntimeImpl() {
  if (watcher_) watcher_->Stop();
  {
    MutexLock l(&membership_mu_);
    membership_stop_ = true;
  }
  membership_cv_.SignalAll();
  if (membership_.joinable()) membership_.join();
  StopThreads();
  if (objects_.load() != 0) LOG(WARNING) << "compute runtime destroyed with " << objects_.load() << " live objects";
  // Not while unhealthy: the FREE would fail at once (and the memnode
  // reclaims our blocks when the control connection closes anyway).
  if (AnyHealthy()) {
    BeginFar();
    ReaderMutexLock far(&epoch_mu_, std::adopt_lock);
    for (auto& n : nodes_) {
      if (!n->healthy()) continue;
      Status s = FlushQueued(*n, 0);
      if (!s.ok()) LOG(WARNING) << "compute runtime: final FREE at memnode " << n->name << " failed: " << s;
    }
  }
}

// ---------------------------------------------------------------- stats

RuntimeStats RuntimeImpl::Stats() const {
  RuntimeStats s;
  s.objects = objects_.load();
  const size_t hw = high_water_.load(std::memory_order_acquire);
  for (size_t i = 0; i < hw; ++i) {
    const ObjectHeader* h = HeaderAt(i);
    if (h->live.load(std::memory_order_relaxed) == 0) continue;
    uint64_t m = h->word.load(std::memory_order_relaxed);
    s.local_objects += Is(m, kPresent);
    s.pinned_objects += Pins(m) > 0;
    s.hot_objects += Is(m, kPresent) && Is(m, kHot);
  }
  s.local_bytes = local_bytes_.load();
  s.peak_local_bytes = peak_local_bytes_.load();
  s.far_bytes = far_bytes_.load();
  for (const auto& n : nodes_) {
    const FarBlockQueue::Level pending = n->free_queue.Pending();
    s.pending_free_blocks += pending.blocks;
    s.pending_free_bytes += pending.bytes;
    RuntimeStats::Memnode m;
    m.name = n->name;
    const int h = n->health.load();
    m.state = h == FarNode::kHealthy ? "healthy" : h == FarNode::kReconnecting ? "reconnecting" : "dead";
    m.copies = n->copies.load();
    m.copy_bytes = n->copy_bytes.load();
    m.alloc_rpcs = n->alloc_rpcs.load();
    m.free_rpcs = n->free_rpcs.load();
    m.pending_free_blocks = pending.blocks;
    m.used_bytes = n->used_at_stats.load();
    s.memnodes.push_back(std::move(m));
  }
  s.local_hits = hits_.load();
  s.swap_ins = swap_ins_.load();
  s.swap_outs = swap_outs_.load();
  s.drops = drops_.load();
  s.eviction_rounds = rounds_.load();
  s.background_rounds = background_rounds_.load();
  s.sync_rounds = sync_rounds_.load();
  s.prefetches = prefetches_.load();
  s.alloc_rpcs = alloc_rpcs_.load();
  s.free_rpcs = free_rpcs_.load();
  s.recycled_blocks = recycled_.load();
  s.failed_far_accesses = failed_far_.load();
  s.connection_failures = connection_failures_.load();
  s.lease_renewals = renewals_.load();
  s.reconnects = reconnects_.load();
  s.lost_objects = lost_objects_.load();
  s.lost_bytes = lost_bytes_.load();
  s.far_exhausted = far_exhausted_count_.load();
  s.quota_exceeded = quota_exceeded_count_.load();
  s.refused_local = refused_local_.load();
  s.far_copy_bytes = far_copy_bytes_.load();
  s.far_read_bytes = far_read_bytes_.load();
  s.far_write_bytes = far_write_bytes_.load();
  s.aggregates = aggregates_.load();
  s.agg_local_units = agg_local_units_.load();
  s.agg_pulled_units = agg_pulled_units_.load();
  s.agg_offloaded_units = agg_offloaded_units_.load();
  s.agg_offloaded_rows = agg_offloaded_rows_.load();
  s.offload_jobs = offload_jobs_.load();
  s.offload_refused = offload_refused_.load();
  s.offload_rpc_bytes = offload_rpc_bytes_.load();
  s.offload_cpu_ns = offload_cpu_ns_.load();
  s.offload_abandoned_blocks = offload_abandoned_blocks_.load();
  s.degraded_reads = degraded_reads_.load();
  s.dead_memnodes = dead_memnodes_.load();
  s.repair_pending = repair_pending_.load();
  s.repaired_objects = repaired_.load();
  s.stripes = live_stripes_.load();
  s.restriped_objects = restriped_.load();
  s.ec_refills = refills_.load();
  s.ec_kept_holes = kept_holes_.load();
  s.ec_kept_bytes = kept_bytes_.load();
  if (ec_) {
    s.repair_pending = restripe_pending_.load();
    s.restripe_pending = holes_pending_.load();
  }
  return s;
}

StatusOr<memnode::Stats> RuntimeImpl::MemnodeStats(size_t node) {
  if (node >= nodes_.size())
    return Status::InvalidArgument("memnode " + std::to_string(node) + ": the runtime has " +
                                   std::to_string(nodes_.size()));
  FarNode& n = *nodes_[node];
  if (!n.healthy()) return FailedAccess(NodeStatus(n).WithContext("STATS"));
  BeginFar();
  ReaderMutexLock far(&epoch_mu_, std::adopt_lock);
  MutexLock l(&n.control_mu);
  auto st = n.control->GetStats();
  if (!st.ok() && !n.control->transport().alive()) {
    l.Unlock();
    return ConnectionFailed(n, st.status().WithContext("control connection (STATS)"), "STATS");
  }
  return st;
}

Status RuntimeImpl::eviction_status() const {
  MutexLock l(&evict_status_mu_);
  return evict_status_;
}

}  // namespace sharry::compute
