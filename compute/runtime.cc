#include "compute/runtime.h"

#include <glog/logging.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "base/cpu_relax.h"

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

// ---------------------------------------------------------------- scope

DerefScope::DerefScope(Runtime& rt) : rt_(rt), owner_(std::this_thread::get_id()) {}

DerefScope::~DerefScope() {
  for (uint32_t i = 0; i < n_inline_; ++i) rt_.Unpin(inline_[i]);
  for (ObjectHeader* h : overflow_) rt_.Unpin(h);
  if (hits_) rt_.hits_.fetch_add(hits_, std::memory_order_relaxed);
  alive_ = false;
}

// ---------------------------------------------------------------- handle

RemoteObject& RemoteObject::operator=(RemoteObject&& o) noexcept {
  if (this != &o) {
    Reset();
    rt_ = o.rt_;
    h_ = o.h_;
    o.h_ = nullptr;
  }
  return *this;
}

void RemoteObject::Reset() {
  if (h_ != nullptr) rt_->Destroy(h_);
  h_ = nullptr;
}

StatusOr<void*> RemoteObject::Deref(DerefScope& scope, bool write) const {
  CHECK(h_ != nullptr) << "Deref of an empty RemoteObject";
  return rt_->Pin(scope, h_, write);
}

void RemoteObject::Prefetch() const {
  if (h_ != nullptr) rt_->EnqueuePrefetch(h_);
}

// ---------------------------------------------------------------- runtime

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
  std::unique_ptr<Runtime> rt(new Runtime(o));
  SHARRY_RETURN_IF_ERROR(rt->Init());
  return rt;
}

Runtime::Runtime(const RuntimeOptions& o) : opts_(o), instance_(g_instances.fetch_add(1)) {}

Status Runtime::Init() {
  conn_opts_.server_addr = opts_.memnode_addr;
  conn_opts_.port = opts_.memnode_port;
  conn_opts_.connect_timeout_ms = opts_.connect_timeout_ms;
  conn_opts_.connect_attempts = opts_.connect_attempts;
  conn_opts_.op_timeout_ms = opts_.op_timeout_ms;
  conn_opts_.staging_bytes = std::max<size_t>(4u << 20, size_t{opts_.max_object_bytes} * 2);
  auto c = memnode::MemnodeClient::Connect(opts_.transport, conn_opts_);
  if (!c.ok()) return c.status().WithContext("the memnode is unreachable");
  control_ = std::move(*c);
  control_id_ = control_->id();
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
    evictor_ = std::thread([this] { EvictorLoop(); });
  }
  if (opts_.prefetch_thread) prefetcher_ = std::thread([this] { PrefetchLoop(); });
  lease_thread_ = std::thread([this] { LeaseLoop(); });
  LOG(INFO) << "compute runtime: " << CopyModeName(opts_.mode) << "-copy, local budget "
            << opts_.local_budget_bytes << " B, memnode " << opts_.memnode_addr << ":" << opts_.memnode_port
            << " over " << TransportName(opts_.transport) << " (client " << control_id_ << ")";
  return Status::Ok();
}

Runtime::~Runtime() {
  // Both background threads stop (an eviction round in flight completes)
  // before the last FREEs go out.
  {
    std::lock_guard<std::mutex> l(evictor_mu_);
    evictor_stop_ = true;
  }
  evictor_cv_.notify_all();
  {
    std::lock_guard<std::mutex> l(prefetch_mu_);
    stop_ = true;
  }
  prefetch_cv_.notify_all();
  if (evictor_.joinable()) evictor_.join();
  if (prefetcher_.joinable()) prefetcher_.join();
  {
    std::lock_guard<std::mutex> l(lease_mu_);
    lease_stop_ = true;
  }
  lease_cv_.notify_all();
  if (lease_thread_.joinable()) lease_thread_.join();
  {
    std::unique_lock<std::mutex> l(health_mu_);
    reconnector_stop_ = true;
    health_cv_.notify_all();
    std::thread t = std::move(reconnector_);
    l.unlock();
    if (t.joinable()) t.join();
  }
  if (objects_.load() != 0) LOG(WARNING) << "compute runtime destroyed with " << objects_.load() << " live objects";
  // Not while unhealthy: the FREE would fail at once (and the memnode
  // reclaims our blocks when the control connection closes anyway).
  if (health_.load() == kHealthy) {
    Status s = FlushFrees();
    if (!s.ok()) LOG(WARNING) << "compute runtime: final FREE failed: " << s;
  }
}

ObjectHeader* Runtime::AllocHeader() {
  std::lock_guard<std::mutex> l(headers_mu_);
  if (!free_headers_.empty()) {
    ObjectHeader* h = free_headers_.back();
    free_headers_.pop_back();
    return h;
  }
  size_t i = high_water_.load(std::memory_order_relaxed);
  CHECK_LT(i / kChunk, std::size(chunks_)) << "too many objects";
  if (i % kChunk == 0) chunks_[i / kChunk].reset(new ObjectHeader[kChunk]);
  high_water_.store(i + 1, std::memory_order_release);
  return HeaderAt(i);
}

void Runtime::FreeHeader(ObjectHeader* h) {
  std::lock_guard<std::mutex> l(headers_mu_);
  free_headers_.push_back(h);
}

StatusOr<TransportClient*> Runtime::DataConnection() {
  // One data connection per (thread, runtime), made on first use and again
  // after the reconnector replaced the connections (a new conn_epoch_). A
  // dead one is not retried here: that is the reconnector's job.
  struct Entry { uint64_t instance; uint64_t epoch; TransportClient* conn; };
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
  ClientOptions co = conn_opts_;
  co.session = control_id_.load(std::memory_order_acquire);
  auto c = TransportClient::Connect(opts_.transport, co);
  if (!c.ok()) return ConnectionFailed(c.status(), "data connection");
  std::lock_guard<std::mutex> l(conns_mu_);
  data_conns_.push_back(std::move(*c));
  if (mine == nullptr) {
    cache.push_back({instance_, epoch, nullptr});
    mine = &cache.back();
  }
  mine->epoch = epoch;
  mine->conn = data_conns_.back().get();
  return mine->conn;
}

StatusOr<RemoteObject> Runtime::New(uint32_t size, const void* init) {
  if (size == 0 || size > opts_.max_object_bytes)
    return Status::InvalidArgument("object of " + std::to_string(size) + " B: objects must be 1.." +
                                   std::to_string(opts_.max_object_bytes) + " B (max_object_bytes)");
  SHARRY_RETURN_IF_ERROR(MakeRoom(size, false));
  void* p = std::malloc(size);
  if (p == nullptr) return Status::OutOfMemory("local memory for an object of " + std::to_string(size) + " B");
  if (init) std::memcpy(p, init, size);
  else std::memset(p, 0, size);
  ObjectHeader* h = AllocHeader();
  h->size = size;
  h->far_offset = kNoFarOffset;
  h->live.store(1, std::memory_order_relaxed);
  h->word.store(kPresent | kDirty | kHot | reinterpret_cast<uint64_t>(p), std::memory_order_release);
  AddLocal(size);
  objects_++;
  MaybeEvict();
  return RemoteObject(this, h);
}

StatusOr<void*> Runtime::Pin(DerefScope& scope, ObjectHeader* h, bool write) {
  CHECK(scope.alive_ && scope.owner_ == std::this_thread::get_id())
      << "dereference outside a live DerefScope of this thread: make a DerefScope on this thread and keep it "
         "alive while you use the pointer";
  CHECK(&scope.rt_ == this) << "DerefScope of another Runtime";
  uint64_t m = h->word.load(std::memory_order_acquire);
  if (scope.Holds(h)) {
    // Already pinned by this scope: present and at this address until it ends.
    scope.hits_++;
    if (write && !Is(m, kDirty)) h->word.fetch_or(kDirty, std::memory_order_relaxed);
    return reinterpret_cast<void*>(Addr(m));
  }
  bool room_checked = false;
  for (;;) {
    if (Is(m, kPresent) && !Is(m, kBusy)) {
      // The local hit: one CAS, no lock, no system call.
      CHECK_LT(Pins(m), kMaxPins) << "an object is pinned by more than " << kMaxPins << " scopes";
      uint64_t n = (m + kPinOne) | kHot | (write ? kDirty : 0);
      if (h->word.compare_exchange_weak(m, n, std::memory_order_acq_rel, std::memory_order_acquire)) {
        scope.hits_++;
        scope.Add(h);
        return reinterpret_cast<void*>(Addr(m));
      }
      continue;
    }
    if (Is(m, kBusy)) {  // another thread is moving it: wait
      CpuRelax();
      std::this_thread::yield();
      m = h->word.load(std::memory_order_acquire);
      continue;
    }
    if (!Is(m, kFar)) return Status::Internal("dereference of a destroyed object");
    if (Addr(m) == kLostFar) {
      std::lock_guard<std::mutex> l(health_mu_);
      Status lost = !loss_status_.ok() ? loss_status_
                                       : Status::DataLoss("far memory lost: the object's only copy was at memnode " +
                                                             MemnodeName() + ", reclaimed when our connection dropped");
      return FailedAccess(lost.WithContext("swap-in of an object lost with the far memory"));
    }
    if (!room_checked) {  // then look at the word again: MakeRoom may have taken a while
      if (Status room = MakeRoom(h->size, true); !room.ok()) return room;
      room_checked = true;
      m = h->word.load(std::memory_order_acquire);
      continue;
    }
    if (!h->word.compare_exchange_weak(m, m | kBusy, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
    Status s = SwapIn(h, m);
    if (!s.ok()) return s;
    // SwapIn left it present, hot and busy; pin it and release in one store.
    uint64_t now = h->word.load(std::memory_order_relaxed);
    uint64_t pinned = ((now & ~kBusy) + kPinOne) | (write ? kDirty : 0);
    h->word.store(pinned, std::memory_order_release);
    scope.Add(h);
    MaybeEvict();
    return reinterpret_cast<void*>(Addr(pinned));
  }
}

// REQUIRES: the caller set kBusy on `h` (whose word was `m`: far, not present).
// On return h is present, hot and STILL busy; on error the word is restored.
Status Runtime::SwapIn(ObjectHeader* h, uint64_t m) {
  const uint64_t off = Addr(m);
  const uint32_t size = h->size;
  void* p = std::malloc(size);
  auto fail = [&](Status s) {
    std::free(p);
    h->word.store(m, std::memory_order_release);
    return s;
  };
  if (p == nullptr) return fail(Status::OutOfMemory("local memory for a swap-in"));
  if (off == kLostFar) return fail(Status::Internal("swap-in of a lost object"));
  FarGuard guard;
  if (Status s = BeginFar(&guard); !s.ok()) return fail(s);
  // Holding the guard (and kBusy), the far block stays ours: the reconnector
  // marks objects lost only with epoch_mu_ held exclusively.
  auto conn = DataConnection();
  if (!conn.ok()) return fail(conn.status().WithContext("swap-in"));  // counted
  if (Status s = (*conn)->Read(off, p, size); !s.ok()) {
    if (!(*conn)->alive()) return fail(ConnectionFailed(s, "swap-in"));
    return fail(FailedAccess(s.WithContext("swap-in")));
  }
  uint64_t word = kPresent | kHot | kBusy | reinterpret_cast<uint64_t>(p);
  if (opts_.mode == CopyMode::kUniqueCopy) {
    // Unique-Copy: the far copy goes away (its FREE is batched).
    far_bytes_ -= size;
    h->word.store(word, std::memory_order_release);
    AddLocal(size);
    swap_ins_++;
    if (Status s = QueueFree(off, size, true); !s.ok())
      LOG(WARNING) << "compute runtime: FREE of far blocks failed (they stay queued): " << s;
    return Status::Ok();
  }
  h->far_offset = off;  // Multi-Copy: the far copy stays valid while clean
  h->word.store(word | kFar, std::memory_order_release);
  AddLocal(size);
  swap_ins_++;
  return Status::Ok();
}

void Runtime::Destroy(ObjectHeader* h) {
  uint64_t m = h->word.load(std::memory_order_acquire);
  for (;;) {
    if (Is(m, kBusy)) {
      std::this_thread::yield();
      m = h->word.load(std::memory_order_acquire);
      continue;
    }
    CHECK_EQ(Pins(m), 0u) << "an object was destroyed while a DerefScope still pins it";
    if (h->word.compare_exchange_weak(m, kBusy, std::memory_order_acq_rel, std::memory_order_acquire)) break;
  }
  const uint32_t size = h->size;
  if (Is(m, kPresent)) {
    std::free(reinterpret_cast<void*>(Addr(m)));
    local_bytes_ -= size;
  }
  uint64_t far = kNoFarOffset;
  if (Is(m, kFar)) far = Is(m, kPresent) ? h->far_offset : Addr(m);
  if (far == kLostFar) {
    // Nothing to free: the memnode reclaimed it.
  } else if (far != kNoFarOffset) {
    far_bytes_ -= size;
    if (Status s = QueueFree(far, size, false); !s.ok()) LOG(WARNING) << "compute runtime: FREE failed: " << s;
  }
  h->far_offset = kNoFarOffset;
  h->live.store(0, std::memory_order_relaxed);
  h->word.store(0, std::memory_order_release);
  objects_--;
  FreeHeader(h);
}

size_t Runtime::FreeReserve() const {
  // Unique-Copy: the next eviction round reuses up to evict_batch queued
  // blocks. Were they freed, that round would need an ALLOC and the FREE
  // would have been wasted: in steady swapping (a swap-in per swap-out) the
  // queue fills to one batch just as the round comes, so without a reserve
  // nearly every round paid one ALLOC and one FREE RPC.
  return opts_.mode == CopyMode::kUniqueCopy ? opts_.evict_batch : 0;
}

Status Runtime::QueueFree(uint64_t offset, uint32_t size, bool guard_held) {
  std::unique_lock<std::mutex> l(control_mu_);
  pending_free_.push_back({offset, size});
  pending_free_bytes_ += size;
  const size_t reserve = FreeReserve();
  if (pending_free_.size() < opts_.free_batch + reserve) return Status::Ok();
  if (health_.load(std::memory_order_acquire) != kHealthy) return Status::Ok();  // they wait in the queue
  // A full batch beyond the reserve: the background thread sends it, off
  // this (swap-in) path, unless it has fallen far behind.
  if (opts_.prefetch_thread && pending_free_.size() < 4u * opts_.free_batch + reserve) {
    l.unlock();
    {
      std::lock_guard<std::mutex> pl(prefetch_mu_);
      flush_wanted_ = true;
    }
    prefetch_cv_.notify_one();
    return Status::Ok();
  }
  if (guard_held) return FlushFreesLocked(l, reserve);
  // Lock order: epoch_mu_ before control_mu_.
  l.unlock();
  FarGuard guard;
  if (Status s = BeginFar(&guard); !s.ok()) return Status::Ok();  // they wait in the queue
  l.lock();
  return FlushFreesLocked(l, reserve);
}

Status Runtime::FlushFrees() {
  FarGuard guard;
  SHARRY_RETURN_IF_ERROR(BeginFar(&guard));
  std::unique_lock<std::mutex> l(control_mu_);
  return FlushFreesLocked(l, 0);
}

// REQUIRES: a FarGuard held (lock order: epoch_mu_, then control_mu_).
Status Runtime::FlushFreesLocked(std::unique_lock<std::mutex>&, size_t keep) {
  if (pending_free_.size() <= keep) return Status::Ok();
  // The oldest go; the newest `keep` stay for reuse (Evict takes from the back).
  const size_t n = pending_free_.size() - keep;
  std::vector<Status> each;
  std::vector<uint64_t> offsets;
  offsets.reserve(n);
  uint64_t bytes = 0;
  for (size_t i = 0; i < n; ++i) {
    offsets.push_back(pending_free_[i].offset);
    bytes += pending_free_[i].size;
  }
  Status s = control_->Free(offsets, &each);
  free_rpcs_++;
  if (!s.ok() && !control_->transport().alive()) {  // keep them queued
    return ConnectionFailed(s.WithContext("control connection (FREE)"), "FREE");
  }
  // Element errors would be our bug (a block freed twice): say so, drop them.
  if (!s.ok()) LOG(ERROR) << "compute runtime: memnode refused a FREE: " << s;
  pending_free_.erase(pending_free_.begin(), pending_free_.begin() + n);
  pending_free_bytes_ -= bytes;
  return Status::Ok();
}

void Runtime::AddLocal(uint64_t size) {
  const uint64_t now = local_bytes_.fetch_add(size, std::memory_order_relaxed) + size;
  uint64_t peak = peak_local_bytes_.load(std::memory_order_relaxed);
  while (now > peak && !peak_local_bytes_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

void Runtime::RecordEvictionError(const Status& s) {
  std::lock_guard<std::mutex> sl(evict_status_mu_);
  if (evict_status_.ok() || evict_status_.code() != s.code())
    LOG(WARNING) << "compute runtime: eviction failed, objects stay local: " << s;
  evict_status_ = s;
}

void Runtime::SignalEvictor() {
  // Once per wake-up: while the flag is set, signalling costs one load.
  if (evict_wanted_.load(std::memory_order_relaxed) || evict_wanted_.exchange(true)) return;
  { std::lock_guard<std::mutex> l(evictor_mu_); }  // the evictor is waiting, or will see the flag
  evictor_cv_.notify_one();
}

void Runtime::MaybeEvict() {
  const uint64_t budget = opts_.local_budget_bytes;
  const uint64_t local = local_bytes_.load(std::memory_order_relaxed);
  if (local <= evict_start_) return;
  if (opts_.evict_thread) {
    SignalEvictor();
    if (local <= budget) return;  // the evictor catches up off this thread
  }
  std::unique_lock<std::mutex> l(evict_mu_, std::try_to_lock);
  if (!l.owns_lock()) {
    // Another thread (the evictor, or another application thread) is
    // evicting. Go on, unless usage ran far past the budget: then wait for it
    // and help, so usage stays bounded.
    if (local_bytes_.load(std::memory_order_relaxed) <= budget + budget / 8) return;
    l.lock();
  }
  // Evict a little below the budget, so that rounds come in batches. A
  // further round only while still over the budget: the first one stops at
  // evict_batch objects, often one object short of sync_target_, and a
  // round of one object would cost a whole WRITE round trip on this path.
  for (int round = 0; round < 64; ++round) {
    const uint64_t now = local_bytes_.load(std::memory_order_relaxed);
    if (now <= (round == 0 ? sync_target_ : budget)) break;
    const uint64_t rounds_before = rounds_.load(std::memory_order_relaxed);
    Status s = Evict(now - sync_target_, nullptr);
    if (!s.ok()) {
      RecordEvictionError(s);
      break;
    }
    if (rounds_.load(std::memory_order_relaxed) == rounds_before) break;  // nothing evictable now
    sync_rounds_++;
  }
}

// The evictor thread: sleeps until signalled, then swaps out rounds until
// usage is at evict_target_. A round that fails (far memory exhausted, the
// memnode lost) or finds nothing evictable (all pinned) makes it back off
// (1 ms doubling to 128 ms) instead of spinning on the next signal; a
// successful round resets the backoff.
void Runtime::EvictorLoop() {
  auto backoff = std::chrono::milliseconds(0);
  for (;;) {
    {
      std::unique_lock<std::mutex> l(evictor_mu_);
      if (backoff.count() > 0) evictor_cv_.wait_for(l, backoff, [this] { return evictor_stop_; });
      evictor_cv_.wait(l, [this] { return evictor_stop_ || evict_wanted_.load(); });
      if (evictor_stop_) return;
      evictor_busy_ = true;
    }
    // Cleared before usage is read (an RMW: it sees the signaller's usage),
    // so a signal after this read sets the flag again and wakes us.
    evict_wanted_.exchange(false, std::memory_order_acq_rel);
    bool stuck = false;
    for (;;) {
      {
        std::lock_guard<std::mutex> l(evictor_mu_);
        if (evictor_stop_) break;
      }
      Status s;
      bool progress = false;
      {
        std::lock_guard<std::mutex> l(evict_mu_);
        // A round starts only past the start mark, so that it frees a full
        // batch (down to evict_target_): swap-ins during a round must not
        // make the next one a round of one object.
        const uint64_t now = local_bytes_.load();
        if (now <= evict_start_) break;
        const uint64_t rounds_before = rounds_.load(std::memory_order_relaxed);
        s = Evict(now - evict_target_, nullptr);
        progress = rounds_.load(std::memory_order_relaxed) != rounds_before;
      }
      if (!s.ok()) RecordEvictionError(s);
      if (!s.ok() || !progress) {
        stuck = true;
        break;
      }
      background_rounds_++;
    }
    {
      std::lock_guard<std::mutex> l(evictor_mu_);
      evictor_busy_ = false;
    }
    evictor_idle_cv_.notify_all();
    backoff = !stuck ? std::chrono::milliseconds(0)
                     : std::min(std::chrono::milliseconds(128), std::max(std::chrono::milliseconds(1), backoff * 2));
  }
}

Status Runtime::EvictToBudget() {
  std::lock_guard<std::mutex> l(evict_mu_);
  for (int round = 0; round < 1 << 20; ++round) {
    uint64_t local = local_bytes_.load();
    if (local <= opts_.local_budget_bytes) return Status::Ok();
    uint64_t before = local;
    SHARRY_RETURN_IF_ERROR(Evict(local - opts_.local_budget_bytes, nullptr));
    if (local_bytes_.load() >= before) return Status::Unavailable("every local object is pinned or busy");
  }
  return Status::Ok();
}

Status Runtime::SwapOut(const RemoteObject& obj) {
  std::lock_guard<std::mutex> l(evict_mu_);
  return Evict(0, obj.h_);
}

// REQUIRES: evict_mu_ held. Picks up to evict_batch cold, unpinned, local
// objects (CLOCK over the hot bits; or just `only`), swaps them out with one
// batched ALLOC and one chain of WRITEs, and releases their local memory.
Status Runtime::Evict(uint64_t bytes_to_free, ObjectHeader* only, bool drops_only) {
  // Victims are taken only while holding the guard, so the reconnector
  // (epoch_mu_ exclusive) never waits for one of ours.
  FarGuard guard;
  if (Status s = BeginFar(&guard); !s.ok()) return s.WithContext("swap-out");
  struct Victim { ObjectHeader* h; uint64_t word; };
  std::vector<Victim> victims;
  if (only != nullptr) {
    uint64_t m = only->word.load(std::memory_order_acquire);
    if (!Is(m, kPresent)) return Status::Ok();  // already far
    if (Is(m, kBusy) || Pins(m) > 0) return Status::Unavailable("the object is pinned by a DerefScope or busy");
    if (!only->word.compare_exchange_strong(m, m | kBusy, std::memory_order_acq_rel)) 
      return Status::Unavailable("the object changed while being swapped out; retry");
    victims.push_back({only, m});
  } else {
    const size_t hw = high_water_.load(std::memory_order_acquire);
    if (hw == 0) return Status::Ok();
    uint64_t freed = 0;
    for (size_t step = 0; step < 2 * hw && victims.size() < opts_.evict_batch && freed < bytes_to_free; ++step) {
      ObjectHeader* h = HeaderAt(clock_hand_);
      clock_hand_ = (clock_hand_ + 1) % hw;
      if (h->live.load(std::memory_order_relaxed) == 0) continue;
      uint64_t m = h->word.load(std::memory_order_acquire);
      if (!Is(m, kPresent) || Is(m, kBusy) || Pins(m) > 0) continue;
      if (drops_only && !Is(m, kFar)) continue;
      if (Is(m, kHot)) {  // second chance
        h->word.compare_exchange_strong(m, m & ~kHot, std::memory_order_acq_rel);
        continue;
      }
      if (!h->word.compare_exchange_strong(m, m | kBusy, std::memory_order_acq_rel)) continue;
      victims.push_back({h, m});
      freed += h->size;
    }
    if (victims.empty()) return Status::Ok();
  }
  rounds_++;
  auto release = [&](const Victim& v) { v.h->word.store(v.word, std::memory_order_release); };

  // Far blocks: Unique-Copy always needs new ones; Multi-Copy only the first time.
  std::vector<uint64_t> sizes;
  std::vector<size_t> needs;
  for (size_t i = 0; i < victims.size(); ++i) {
    const Victim& v = victims[i];
    bool has_far = opts_.mode == CopyMode::kMultiCopy && Is(v.word, kFar);
    if (!has_far) {
      sizes.push_back(v.h->size);
      needs.push_back(i);
    }
  }
  std::vector<uint64_t> far(victims.size(), kNoFarOffset);
  for (size_t i = 0; i < victims.size(); ++i)
    if (opts_.mode == CopyMode::kMultiCopy && Is(victims[i].word, kFar)) far[i] = victims[i].h->far_offset;
  Status alloc_status;
  if (!needs.empty()) {
    std::vector<uint64_t> offs;
    std::vector<Status> each;
    std::lock_guard<std::mutex> l(control_mu_);
    // First reuse queued far blocks of the same size: no ALLOC, no FREE.
    // Newest first (from the back): with objects of one size this is O(1)
    // per victim, so the lock the swap-in path needs is held briefly.
    std::vector<size_t> still;
    for (size_t k : needs) {
      const uint32_t size = victims[k].h->size;
      auto it = std::find_if(pending_free_.rbegin(), pending_free_.rend(),
                             [size](const FreeBlock& b) { return b.size == size; });
      if (it == pending_free_.rend()) {
        still.push_back(k);
        continue;
      }
      far[k] = it->offset;
      pending_free_bytes_ -= size;
      *it = pending_free_.back();
      pending_free_.pop_back();
      recycled_++;
    }
    sizes.clear();
    for (size_t k : still) sizes.push_back(victims[k].h->size);
    if (!sizes.empty()) {
      alloc_status = control_->Alloc(sizes, &offs, &each);
      alloc_rpcs_++;
      if (!alloc_status.ok() && !control_->transport().alive()) {
        for (size_t k : needs)  // recycled blocks go back to the queue
          if (far[k] != kNoFarOffset) {
            pending_free_.push_back({far[k], victims[k].h->size});
            pending_free_bytes_ += victims[k].h->size;
          }
        for (const Victim& v : victims) release(v);
        return ConnectionFailed(alloc_status.WithContext("control connection (ALLOC)"), "swap-out: ALLOC");
      }
      for (size_t j = 0; j < still.size(); ++j) far[still[j]] = offs[j];
      NoteAllocResult(alloc_status, !alloc_status.ok());
    }
  }
  // Objects without a far block (far memory exhausted) stay local.
  std::vector<RemoteOp> writes;
  std::vector<size_t> written;
  for (size_t i = 0; i < victims.size(); ++i) {
    const Victim& v = victims[i];
    if (far[i] == memnode::kNoOffset) continue;
    bool must_write = opts_.mode == CopyMode::kUniqueCopy || !Is(v.word, kFar) || Is(v.word, kDirty);
    if (must_write) writes.push_back({far[i], reinterpret_cast<void*>(Addr(v.word)), v.h->size});
    written.push_back(i);
  }
  if (!writes.empty()) {
    auto conn = DataConnection();
    Status ws = conn.ok() ? (*conn)->WriteBatch(writes) : conn.status();
    if (!ws.ok() && conn.ok() && !(*conn)->alive()) ws = ConnectionFailed(ws, "swap-out: WRITE");
    if (!ws.ok()) {
      // Nothing was lost: every object is still local. Give back new blocks.
      std::unique_lock<std::mutex> l(control_mu_);
      for (size_t k : needs)
        if (far[k] != memnode::kNoOffset) {
          pending_free_.push_back({far[k], victims[k].h->size});
          pending_free_bytes_ += victims[k].h->size;
        }
      for (const Victim& v : victims) release(v);
      return ws.code() == StatusCode::kUnavailable ? ws : FailedAccess(ws.WithContext("swap-out: WRITE"));
    }
  }
  for (size_t i = 0; i < victims.size(); ++i) {
    const Victim& v = victims[i];
    if (far[i] == memnode::kNoOffset) {
      release(v);
      continue;
    }
    const bool dropped = opts_.mode == CopyMode::kMultiCopy && Is(v.word, kFar) && !Is(v.word, kDirty);
    if (!(opts_.mode == CopyMode::kMultiCopy && Is(v.word, kFar))) far_bytes_ += v.h->size;
    v.h->far_offset = opts_.mode == CopyMode::kMultiCopy ? far[i] : kNoFarOffset;
    std::free(reinterpret_cast<void*>(Addr(v.word)));
    local_bytes_ -= v.h->size;
    v.h->word.store(kFar | far[i], std::memory_order_release);
    if (dropped) drops_++;
    else swap_outs_++;
  }
  if (!alloc_status.ok()) return alloc_status.WithContext("swap-out: some objects stay local");
  return Status::Ok();
}

void Runtime::EnqueuePrefetch(ObjectHeader* h) {
  if (!opts_.prefetch_thread) return;
  uint64_t m = h->word.load(std::memory_order_relaxed);
  if (Is(m, kPresent) || Is(m, kBusy)) return;
  std::lock_guard<std::mutex> l(prefetch_mu_);
  if (prefetch_q_.size() >= 256) return;  // best effort
  prefetch_q_.push_back(h);
  prefetch_cv_.notify_one();
}

void Runtime::PrefetchLoop() {
  for (;;) {
    ObjectHeader* h = nullptr;
    bool flush = false;
    {
      std::unique_lock<std::mutex> l(prefetch_mu_);
      prefetch_cv_.wait(l, [this] { return stop_ || flush_wanted_ || !prefetch_q_.empty(); });
      if (stop_) return;
      flush = flush_wanted_;
      flush_wanted_ = false;
      if (!flush) {
        h = prefetch_q_.front();
        prefetch_q_.pop_front();
      }
    }
    if (flush) {
      FarGuard guard;
      if (!BeginFar(&guard).ok()) continue;
      std::unique_lock<std::mutex> cl(control_mu_);
      const size_t reserve = FreeReserve();
      if (pending_free_.size() >= opts_.free_batch + reserve) {
        if (Status s = FlushFreesLocked(cl, reserve); !s.ok()) LOG(WARNING) << "compute runtime: FREE failed: " << s;
      }
      continue;
    }
    uint64_t m = h->word.load(std::memory_order_acquire);
    if (Is(m, kPresent) || Is(m, kBusy) || !Is(m, kFar) || Addr(m) == kLostFar) continue;
    // Best effort: never past the budget, never while unhealthy.
    if (local_bytes_.load(std::memory_order_relaxed) + h->size > opts_.local_budget_bytes ||
        health_.load(std::memory_order_relaxed) != kHealthy)
      continue;
    if (!h->word.compare_exchange_strong(m, m | kBusy, std::memory_order_acq_rel)) continue;
    if (Status s = SwapIn(h, m); !s.ok()) {
      VLOG(1) << "prefetch failed: " << s;
      continue;
    }
    h->word.fetch_and(~kBusy, std::memory_order_release);
    prefetches_++;
    MaybeEvict();
  }
}

void Runtime::WaitEvictorIdle() {
  if (!evictor_.joinable()) return;
  std::unique_lock<std::mutex> l(evictor_mu_);
  evictor_idle_cv_.wait(l, [this] { return evictor_stop_ || (!evictor_busy_ && !evict_wanted_.load()); });
}

RuntimeStats Runtime::Stats() const {
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
  {
    std::lock_guard<std::mutex> l(const_cast<std::mutex&>(control_mu_));
    s.pending_free_blocks = pending_free_.size();
    s.pending_free_bytes = pending_free_bytes_;
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
  s.refused_local = refused_local_.load();
  return s;
}

StatusOr<memnode::Stats> Runtime::MemnodeStats() {
  FarGuard guard;
  SHARRY_RETURN_IF_ERROR(BeginFar(&guard));
  std::lock_guard<std::mutex> l(control_mu_);
  auto st = control_->GetStats();
  if (!st.ok() && !control_->transport().alive()) {
    return ConnectionFailed(st.status().WithContext("control connection (STATS)"), "STATS");
  }
  return st;
}

Status Runtime::eviction_status() const {
  std::lock_guard<std::mutex> l(evict_status_mu_);
  return evict_status_;
}

// ---------------------------------------------------------------- health

std::string Runtime::MemnodeName() const {
  return opts_.memnode_addr + ":" + std::to_string(opts_.memnode_port);
}

Status Runtime::ConnectionFailed(const Status& s, std::string_view what) {
  OnFarFailure(s);
  Status h = health();
  return FailedAccess(h.ok() ? Status::Unavailable(s.ToString()).WithContext(what) : h.WithContext(what));
}

Status Runtime::FailedAccess(Status s) {
  failed_far_.fetch_add(1, std::memory_order_relaxed);
  return s;
}

Status Runtime::UnhealthyStatus() const {
  // REQUIRES: health_mu_ held.
  if (health_.load(std::memory_order_acquire) == kHealthy) return Status::Ok();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - unhealthy_since_).count();
  char age[32];
  std::snprintf(age, sizeof(age), "%.1f", secs);
  const bool failed = health_.load(std::memory_order_acquire) == kFailed;
  std::string msg = "memnode " + MemnodeName() + " unreachable since " + age + " s" +
                    (failed ? " (gave up reconnecting)" : " (reconnecting)") + ": " +
                    std::string(StatusCodeName(health_status_.code())) + ": " + health_status_.message();
  return Status::Unavailable(std::move(msg));
}

Status Runtime::health() const {
  std::lock_guard<std::mutex> l(health_mu_);
  if (!loss_status_.ok()) {
    if (health_.load(std::memory_order_acquire) != kHealthy) {
      Status now = UnhealthyStatus();
      return Status::DataLoss(loss_status_.message() + "; and now " + now.message());
    }
    return loss_status_;
  }
  return UnhealthyStatus();
}

Status Runtime::BeginFar(FarGuard* guard) {
  if (health_.load(std::memory_order_acquire) == kHealthy) {
    FarGuard g(epoch_mu_, std::try_to_lock);
    // Not available: the reconnector is replacing the connections.
    if (g.owns_lock()) {
      *guard = std::move(g);
      return Status::Ok();
    }
  }
  std::lock_guard<std::mutex> l(health_mu_);
  Status s = UnhealthyStatus();
  if (s.ok()) s = Status::Unavailable("memnode " + MemnodeName() + ": the runtime is reconnecting");
  return FailedAccess(std::move(s));
}

void Runtime::OnFarFailure(const Status& s) {
  std::unique_lock<std::mutex> l(health_mu_);
  if (health_.load(std::memory_order_acquire) != kHealthy || reconnector_stop_) return;  // already known
  health_status_ = s.ok() ? Status::Disconnected("connection lost") : s;
  unhealthy_since_ = std::chrono::steady_clock::now();
  health_.store(kReconnecting, std::memory_order_release);
  connection_failures_++;
  LOG(WARNING) << "compute runtime: memnode " << MemnodeName() << " lost: " << health_status_
               << "; far accesses fail until a reconnect succeeds";
  // At most one reconnector: a previous one has finished (it sets the state
  // before it returns), so joining it here is brief.
  std::thread old = std::move(reconnector_);
  reconnector_ = std::thread([this] { ReconnectLoop(); });
  l.unlock();
  if (old.joinable()) old.join();
}

// The reconnector. First, with every far access drained (epoch_mu_
// exclusive), is the control connection still good? Then only a data
// connection died: far data is intact, the data connections are replaced and
// the runtime is healthy again. Otherwise the memnode reclaims (or has
// reclaimed) all our blocks: the far-only objects are marked lost at once,
// and up to reconnect_attempts connects (reconnect_timeout_ms each, pauses
// from reconnect_pause_ms doubling) try to get a new control connection, so
// that the surviving local objects and new ones can use far memory again.
// After the last one the runtime is failed for good.
void Runtime::ReconnectLoop() {
  auto wait = [this](int ms) {  // false: the runtime is being destroyed
    std::unique_lock<std::mutex> l(health_mu_);
    health_cv_.wait_for(l, std::chrono::milliseconds(ms), [this] { return reconnector_stop_; });
    return !reconnector_stop_;
  };
  auto set_state = [this](int state, const Status& why) {
    std::lock_guard<std::mutex> l(health_mu_);
    if (!why.ok()) health_status_ = why;
    health_.store(state, std::memory_order_release);
  };
  bool control_lost = false;
  {
    std::unique_lock<std::shared_mutex> ex(epoch_mu_);
    // Without control_mu_: nobody else uses control_ now (every user holds a
    // FarGuard), and Stats() or a Destroy (control_mu_ for the FREE queue)
    // must not wait for this round trip (up to op_timeout_ms).
    Status probe =
        control_->transport().alive() ? control_->GetStats().status() : control_->transport().dead_reason();
    if (probe.ok() && !control_->transport().alive()) probe = control_->transport().dead_reason();
    if (probe.ok()) {
      std::lock_guard<std::mutex> l(conns_mu_);
      data_conns_.clear();
      conn_epoch_++;
    } else {
      control_lost = true;
      MarkFarMemoryLost(probe);
      std::lock_guard<std::mutex> l(conns_mu_);
      data_conns_.clear();
      conn_epoch_++;
    }
  }
  if (!control_lost) {
    LOG(WARNING) << "compute runtime: memnode " << MemnodeName() << " still answers: data connections replaced";
    reconnects_++;
    set_state(kHealthy, Status());
    return;
  }
  int pause = opts_.reconnect_pause_ms;
  Status last;
  for (int attempt = 0; attempt < opts_.reconnect_attempts; ++attempt) {
    if (attempt > 0) {
      if (!wait(pause)) return;
      pause *= 2;
    }
    {
      std::lock_guard<std::mutex> l(health_mu_);
      if (reconnector_stop_) return;
    }
    ClientOptions co = conn_opts_;
    co.connect_attempts = 1;
    co.connect_timeout_ms = opts_.reconnect_timeout_ms;
    auto c = memnode::MemnodeClient::Connect(opts_.transport, co);
    if (!c.ok()) {
      last = c.status();
      LOG(WARNING) << "compute runtime: reconnect " << attempt + 1 << "/" << opts_.reconnect_attempts << " to "
                   << MemnodeName() << " failed: " << last;
      continue;
    }
    {
      std::unique_lock<std::shared_mutex> ex(epoch_mu_);
      std::unique_ptr<memnode::MemnodeClient> old;
      {
        std::lock_guard<std::mutex> l(control_mu_);
        old = std::move(control_);
        control_ = std::move(*c);
        control_id_ = control_->id();
        // Blocks queued since the loss were the old client's: reclaimed.
        pending_free_.clear();
        pending_free_bytes_ = 0;
      }
      std::lock_guard<std::mutex> l(conns_mu_);
      data_conns_.clear();
      conn_epoch_++;
    }
    far_exhausted_ = false;
    reconnects_++;
    LOG(WARNING) << "compute runtime: reconnected to memnode " << MemnodeName() << " as client " << control_id_;
    set_state(kHealthy, Status());
    return;
  }
  LOG(ERROR) << "compute runtime: gave up reconnecting to memnode " << MemnodeName() << " after "
             << opts_.reconnect_attempts << " attempts: " << last;
  set_state(kFailed, Status());
}

void Runtime::LeaseLoop() {
  for (;;) {
    uint32_t lease_ms = 0;
    if (health_.load(std::memory_order_acquire) == kHealthy) {
      FarGuard g(epoch_mu_, std::try_to_lock);  // not while the reconnector replaces control_
      if (g.owns_lock()) {
        Status s;
        {
          std::lock_guard<std::mutex> l(control_mu_);
          lease_ms = control_->transport().info().lease_ms;
          if (lease_ms > 0) s = control_->Renew();
        }
        if (lease_ms > 0 && s.ok()) renewals_++;
        if (!s.ok()) {
          g.unlock();
          failed_far_++;
          OnFarFailure(s.WithContext("lease renewal"));
        }
      }
    }
    // Every lease/3 (two missed renewals of slack); without a lease, look
    // again now and then (a reconnect may bring one).
    const int wait_ms = lease_ms > 0 ? std::max<int>(1, static_cast<int>(lease_ms / 3)) : 1000;
    std::unique_lock<std::mutex> l(lease_mu_);
    if (lease_cv_.wait_for(l, std::chrono::milliseconds(wait_ms), [this] { return lease_stop_; })) return;
  }
}

void Runtime::MarkFarMemoryLost(const Status& why) {
  // REQUIRES: epoch_mu_ exclusive. No far access is in flight; an object is
  // busy only briefly (a Pin backing out of a swap-in, a Destroy).
  uint64_t lost = 0, lost_bytes = 0, dropped_copies = 0;
  const size_t hw = high_water_.load(std::memory_order_acquire);
  for (size_t i = 0; i < hw; ++i) {
    ObjectHeader* h = HeaderAt(i);
    uint64_t m = h->word.load(std::memory_order_acquire);
    for (;;) {
      if (h->live.load(std::memory_order_acquire) == 0 || !Is(m, kFar)) break;
      if (Is(m, kBusy)) {
        std::this_thread::yield();
        m = h->word.load(std::memory_order_acquire);
        continue;
      }
      if (Is(m, kPresent)) {
        // Multi-Copy: the local copy survives; its far copy is gone, so it
        // is dirty (the next swap-out writes it to a new block). Busy while
        // far_offset changes (Destroy reads it under kBusy); the pin count
        // may change meanwhile (Unpin), hence the RMWs.
        if (h->word.compare_exchange_weak(m, m | kBusy, std::memory_order_acq_rel)) {
          h->far_offset = kNoFarOffset;
          h->word.fetch_or(kDirty, std::memory_order_relaxed);
          h->word.fetch_and(~(kFar | kBusy), std::memory_order_release);
          dropped_copies++;
          break;
        }
        continue;
      }
      if (Addr(m) == kLostFar) break;
      if (h->word.compare_exchange_weak(m, kFar | kLostFar, std::memory_order_acq_rel)) {
        lost++;
        lost_bytes += h->size;
        break;
      }
    }
  }
  {
    std::lock_guard<std::mutex> l(control_mu_);
    pending_free_.clear();
    pending_free_bytes_ = 0;
  }
  far_bytes_ = 0;  // no object has a far copy any more
  lost_objects_ += lost;
  lost_bytes_ += lost_bytes;
  std::lock_guard<std::mutex> l(health_mu_);
  if (lost > 0 && loss_status_.ok()) {
    loss_status_ = Status::DataLoss(
        "far memory lost: " + std::to_string(lost) + " objects (" + std::to_string(lost_bytes) +
        " B) whose only copy was at memnode " + MemnodeName() +
        " were reclaimed when our control connection dropped (" + why.ToString() + ")");
  } else if (lost > 0) {
    loss_status_ = Status::DataLoss(loss_status_.message() + "; then " + std::to_string(lost) + " more objects");
  }
  LOG(WARNING) << "compute runtime: control connection to memnode " << MemnodeName() << " lost (" << why
               << "): " << lost << " far-only objects (" << lost_bytes << " B) lost, " << dropped_copies
               << " local objects lost their far copy and stay local";
}

void Runtime::NoteAllocResult(const Status& s, bool any_refused) {
  if (!any_refused) {
    if (far_exhausted_.load(std::memory_order_relaxed) && far_exhausted_.exchange(false))
      LOG(WARNING) << "compute runtime: far memory available again at memnode " << MemnodeName();
    return;
  }
  if (far_exhausted_.load(std::memory_order_relaxed) || far_exhausted_.exchange(true)) return;
  far_exhausted_count_++;
  LOG(WARNING) << "compute runtime: far memory exhausted at memnode " << MemnodeName() << ": " << s;
  if (!exhausted_said_.exchange(true)) {
    // Once per runtime on stderr (glog's files are easy to miss).
    std::fprintf(stderr,
                 "sharry runtime: far memory exhausted at memnode %s (%s): local usage is held to %llu B "
                 "(budget + budget/8); New() and swap-ins past it fail with ResourceExhausted\n",
                 MemnodeName().c_str(), s.ToString().c_str(), static_cast<unsigned long long>(local_limit_));
  }
}

Status Runtime::MakeRoom(uint64_t size, bool swap_in) {
  auto fits = [&] {
    const uint64_t now = local_bytes_.load(std::memory_order_relaxed);
    return now + size <= local_limit_ || (swap_in && now <= local_limit_);
  };
  if (fits()) return Status::Ok();
  Status why;
  {
    std::lock_guard<std::mutex> l(evict_mu_);
    for (int round = 0; round < 64 && !fits(); ++round) {
      const uint64_t now = local_bytes_.load(std::memory_order_relaxed);
      const uint64_t rounds_before = rounds_.load(std::memory_order_relaxed);
      why = Evict(now + size - std::min(now + size, sync_target_), nullptr);
      if (!why.ok()) RecordEvictionError(why);
      // Multi-Copy, far memory exhausted: objects with a far copy can still
      // go (clean ones are dropped, dirty ones rewritten in place).
      if (!why.ok() && why.code() == StatusCode::kOutOfMemory && opts_.mode == CopyMode::kMultiCopy &&
          !fits())
        (void)Evict(now + size - std::min(now + size, sync_target_), nullptr, true);
      if (local_bytes_.load(std::memory_order_relaxed) >= now &&
          (!why.ok() || rounds_.load(std::memory_order_relaxed) == rounds_before))
        break;  // no progress
    }
    if (fits()) return Status::Ok();
  }
  refused_local_++;
  std::string at = "local usage " + std::to_string(local_bytes_.load()) + " B at its bound of " +
                   std::to_string(local_limit_) + " B (budget + budget/8)";
  if (why.code() == StatusCode::kUnavailable || health_.load() != kHealthy) {
    Status h = health();
    return Status::Unavailable(at + ": " + (h.ok() ? why.message() : h.message()));
  }
  if (!why.ok()) return Status::ResourceExhausted(at + ": far memory exhausted or refused: " + why.ToString());
  return Status::ResourceExhausted(at + ": every local object is pinned or busy");
}

}  // namespace sharry::compute
