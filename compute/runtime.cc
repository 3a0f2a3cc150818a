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

StatusOr<CopyMode> ParseCopyMode(std::string_view s) {
  if (s == "unique" || s == "unique-copy") return CopyMode::kUniqueCopy;
  if (s == "multi" || s == "multi-copy") return CopyMode::kMultiCopy;
  return Status::InvalidArgument("unknown copy mode '" + std::string(s) + "' (use unique or multi)");
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
  auto rt = std::make_unique<RuntimeImpl>(o);
  SHARRY_RETURN_IF_ERROR(rt->Init());
  return std::unique_ptr<Runtime>(std::move(rt));
}

Runtime::~Runtime() = default;

StatusOr<RemoteObject> Runtime::New(uint32_t size, const void* init) { return ImplOf(*this).New(size, init); }
Status Runtime::SwapOut(const RemoteObject& obj) { return ImplOf(*this).SwapOut(obj); }
Status Runtime::EvictToBudget() { return ImplOf(*this).EvictToBudget(); }
Status Runtime::FlushFrees() { return ImplOf(*this).FlushFrees(); }
void Runtime::WaitEvictorIdle() { ImplOf(*this).WaitEvictorIdle(); }
RuntimeStats Runtime::Stats() const { return ImplOf(*this).Stats(); }
StatusOr<memnode::Stats> Runtime::MemnodeStats() { return ImplOf(*this).MemnodeStats(); }
ClientId Runtime::control_client_id() const { return ImplOf(*this).control_id(); }
Status Runtime::eviction_status() const { return ImplOf(*this).eviction_status(); }
Status Runtime::health() const { return ImplOf(*this).health(); }
uint64_t Runtime::local_limit_bytes() const { return ImplOf(*this).local_limit(); }
const RuntimeOptions& Runtime::options() const { return ImplOf(*this).opts(); }

// ---------------------------------------------------------------- life

RuntimeImpl::RuntimeImpl(const RuntimeOptions& o) : opts_(o), instance_(g_instances.fetch_add(1)) {}

Status RuntimeImpl::Init() {
  conn_opts_.server_addr = opts_.memnode_addr;
  conn_opts_.port = opts_.memnode_port;
  conn_opts_.connect_timeout_ms = opts_.connect_timeout_ms;
  conn_opts_.connect_attempts = opts_.connect_attempts;
  conn_opts_.op_timeout_ms = opts_.op_timeout_ms;
  conn_opts_.tenant = opts_.tenant;
  conn_opts_.secret = opts_.secret;
  conn_opts_.staging_bytes = std::max<size_t>(4u << 20, size_t{opts_.max_object_bytes} * 2);
  auto c = memnode::MemnodeClient::Connect(opts_.transport, conn_opts_);
  if (!c.ok()) return c.status().WithContext("the memnode is unreachable");
  {
    MutexLock l(&control_mu_);  // no other thread yet: for the analysis
    control_ = std::move(*c);
    control_id_ = control_->id();
  }
  // Later connections (data connections, reconnects) try once each: a
  // failure marks the runtime unhealthy instead of retrying on every miss.
  conn_opts_.connect_attempts = 1;
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
  LOG(INFO) << "compute runtime: " << CopyModeName(opts_.mode) << "-copy, local budget "
            << opts_.local_budget_bytes << " B, memnode " << opts_.memnode_addr << ":" << opts_.memnode_port
            << " over " << TransportName(opts_.transport) << " (client " << control_id_ << ")";
  return Status::Ok();
}

RuntimeImpl::~RuntimeImpl() {
  StopThreads();
  if (objects_.load() != 0) LOG(WARNING) << "compute runtime destroyed with " << objects_.load() << " live objects";
  // Not while unhealthy: the FREE would fail at once (and the memnode
  // reclaims our blocks when the control connection closes anyway).
  if (health_.load() == kHealthy) {
    Status s = FlushFrees();
    if (!s.ok()) LOG(WARNING) << "compute runtime: final FREE failed: " << s;
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
  const FarBlockQueue::Level pending = free_queue_.Pending();
  s.pending_free_blocks = pending.blocks;
  s.pending_free_bytes = pending.bytes;
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
  return s;
}

StatusOr<memnode::Stats> RuntimeImpl::MemnodeStats() {
  Status why;
  if (!TryBeginFar(&why)) return why;
  ReaderMutexLock far(&epoch_mu_, std::adopt_lock);
  MutexLock l(&control_mu_);
  auto st = control_->GetStats();
  if (!st.ok() && !control_->transport().alive())
    return ConnectionFailed(st.status().WithContext("control connection (STATS)"), "STATS");
  return st;
}

Status RuntimeImpl::eviction_status() const {
  MutexLock l(&evict_status_mu_);
  return evict_status_;
}

}  // namespace sharry::compute
