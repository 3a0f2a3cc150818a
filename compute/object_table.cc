// The object table: the header slab, and an object's lifecycle — New, Pin
// (the local-hit path and the swap-in), SwapIn, Destroy — with the handles
// that reach it (DerefScope, RemoteObject).
#include <glog/logging.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "base/cpu_relax.h"
#include "compute/runtime_impl.h"

namespace sharry::compute {

using namespace meta;  // NOLINT: the bit names of object.h

// ---------------------------------------------------------------- scope

DerefScope::DerefScope(Runtime& rt) : rt_(rt), owner_(std::this_thread::get_id()) {}

DerefScope::~DerefScope() {
  for (uint32_t i = 0; i < n_inline_; ++i) RuntimeImpl::Unpin(inline_[i]);
  for (ObjectHeader* h : overflow_) RuntimeImpl::Unpin(h);
  if (hits_) ImplOf(rt_).AddHits(hits_);
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
  if (h_ != nullptr) ImplOf(*rt_).Destroy(h_);
  h_ = nullptr;
}

StatusOr<void*> RemoteObject::Deref(DerefScope& scope, bool write) const {
  CHECK(h_ != nullptr) << "Deref of an empty RemoteObject";
  return ImplOf(*rt_).Pin(scope, h_, write);
}

int RemoteObject::far_memnode() const {
  const uint64_t m = word();
  if (!Is(m, kFar)) return -1;
  const uint64_t a = Is(m, kPresent) ? h_->far_offset : Addr(m);
  if (a == kLostFar || a == kNoFarOffset) return -1;
  return static_cast<int>(far::NodeOf(a));
}

void RemoteObject::Prefetch() const {
  if (h_ != nullptr) ImplOf(*rt_).EnqueuePrefetch(h_);
}

// ---------------------------------------------------------------- slab

ObjectHeader* RuntimeImpl::AllocHeader() {
  MutexLock l(&headers_mu_);
  if (!free_headers_.empty()) {
    ObjectHeader* h = free_headers_.back();
    free_headers_.pop_back();
    return h;
  }
  size_t i = high_water_.load(std::memory_order_relaxed);
  CHECK_LT(i / kChunk, std::size(chunks_)) << "too many objects";
  if (i % kChunk == 0) {
    chunks_[i / kChunk].reset(new ObjectHeader[kChunk]);
    if (side_table_) {
      extras_[i / kChunk].reset(new uint64_t[kChunk * (kMaxCopies - 1)]);
      std::fill_n(extras_[i / kChunk].get(), kChunk * (kMaxCopies - 1), kNoFarOffset);
    }
  }
  HeaderAt(i)->index = static_cast<uint32_t>(i);
  high_water_.store(i + 1, std::memory_order_release);
  return HeaderAt(i);
}

RuntimeImpl::Copies RuntimeImpl::CopiesOf(const ObjectHeader* h, uint64_t first) const {
  Copies c;
  if (first == kNoFarOffset || first == kLostFar) return c;
  c.addr[c.n++] = first;
  if (copies_ == 1) return c;
  const uint64_t* e = Extras(h);
  for (uint32_t i = 0; i < kMaxCopies - 1; ++i)
    if (e[i] != kNoFarOffset) c.addr[c.n++] = e[i];
  return c;
}

void RuntimeImpl::SetExtras(ObjectHeader* h, const uint64_t* addrs, uint32_t n) {
  if (!side_table_) {
    CHECK_EQ(n, 0u) << "replicas without replication";
    return;
  }
  uint64_t* e = Extras(h);
  for (uint32_t i = 0; i < kMaxCopies - 1; ++i) e[i] = i < n ? addrs[i] : kNoFarOffset;
}

void RuntimeImpl::FreeHeader(ObjectHeader* h) {
  MutexLock l(&headers_mu_);
  free_headers_.push_back(h);
}

void RuntimeImpl::AddLocal(uint64_t size) {
  const uint64_t now = local_bytes_.fetch_add(size, std::memory_order_relaxed) + size;
  uint64_t peak = peak_local_bytes_.load(std::memory_order_relaxed);
  while (now > peak && !peak_local_bytes_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

// ---------------------------------------------------------------- lifecycle

StatusOr<RemoteObject> RuntimeImpl::New(uint32_t size, const void* init, uint32_t affinity) {
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
  h->affinity = affinity;  // read by eviction rounds after the word's release below
  h->live.store(1, std::memory_order_relaxed);
  h->word.store(kPresent | kDirty | kHot | reinterpret_cast<uint64_t>(p), std::memory_order_release);
  AddLocal(size);
  objects_++;
  MaybeEvict();
  return RemoteObject(this, h);
}

StatusOr<void*> RuntimeImpl::Pin(DerefScope& scope, ObjectHeader* h, bool write) {
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
    if (Addr(m) == kLostFar) return LostObjectStatus();
    if (!room_checked) {  // then look at the word again: MakeRoom may have taken a while
      if (Status room = MakeRoom(h->size, true); !room.ok()) return room;
      room_checked = true;
      m = h->word.load(std::memory_order_acquire);
      continue;
    }
    // The far access first, then kBusy (a reconnector waits for busy
    // objects while it holds the far accesses off).
    Status s;
    {
      BeginFar();
      ReaderMutexLock far(&epoch_mu_, std::adopt_lock);
      if (!h->word.compare_exchange_strong(m, m | kBusy, std::memory_order_acq_rel, std::memory_order_acquire))
        continue;
      s = SwapIn(h, m);
    }
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

Status RuntimeImpl::SwapIn(ObjectHeader* h, uint64_t m) {
  const uint32_t size = h->size;
  void* p = std::malloc(size);
  auto fail = [&](Status s) {
    std::free(p);
    h->word.store(m, std::memory_order_release);
    return s;
  };
  if (p == nullptr) return fail(Status::OutOfMemory("local memory for a swap-in"));
  if (Addr(m) == kLostFar) return fail(LostObjectStatus());
  // Inside the far access (and with kBusy), the far blocks stay ours: a
  // reconnector drops copies only with epoch_mu_ held exclusively.
  if (ec_) {
    // Unique-Copy: the object leaves its stripe: a hole, refilled by a
    // later eviction round (its old bytes kept for the parity delta) or
    // compacted away (stripe_refill.cc, stripes.cc).
    if (Status s = ReadMember(h, Addr(m), p); !s.ok()) return fail(s);  // (its context says swap-in)
    const bool flush = LeaveStripe(h, p);
    far_bytes_ -= size;
    h->word.store(kPresent | kHot | kBusy | reinterpret_cast<uint64_t>(p), std::memory_order_release);
    AddLocal(size);
    swap_ins_++;
    if (flush) {
      if (Status s = FlushAllQueued(FreeReserve()); !s.ok())
        LOG(WARNING) << "compute runtime: FREE of far blocks failed (they stay queued): " << s;
    }
    return Status::Ok();
  }
  if (Status s = ReadCopy(h, Addr(m), p, "swap-in"); !s.ok()) return fail(s);
  const Copies copies = CopiesOf(h, Addr(m));
  uint64_t word = kPresent | kHot | kBusy | reinterpret_cast<uint64_t>(p);
  if (opts_.mode == CopyMode::kUniqueCopy) {
    // Unique-Copy: the far copies go away (their FREEs are batched).
    far_bytes_ -= size;
    SetExtras(h, nullptr, 0);
    h->word.store(word, std::memory_order_release);
    AddLocal(size);
    swap_ins_++;
    for (uint32_t c = 0; c < copies.n; ++c) {
      if (Status s = QueueFreeInFarAccess(copies.addr[c], size); !s.ok())
        LOG(WARNING) << "compute runtime: FREE of far blocks failed (they stay queued): " << s;
    }
    return Status::Ok();
  }
  h->far_offset = Addr(m);  // Multi-Copy: the far copies stay valid while clean
  h->word.store(word | kFar, std::memory_order_release);
  AddLocal(size);
  swap_ins_++;
  return Status::Ok();
}

Status RuntimeImpl::ReadCopy(ObjectHeader* h, uint64_t addr, void* out, std::string_view what) {
  const uint32_t size = h->size;
  const Copies copies = CopiesOf(h, addr);
  Status last;
  // Replicas: each object starts at its own copy (by its slot), so reads
  // spread over the memnodes instead of all going to the first copies.
  const uint32_t first = copies.n > 1 ? h->index % copies.n : 0;
  bool skipped = false;  // a copy's memnode was not healthy
  for (uint32_t k = 0; k < copies.n; ++k) {
    const uint32_t c = (first + k) % copies.n;
    FarNode& n = *nodes_[far::NodeOf(copies.addr[c])];
    if (!n.healthy()) {
      skipped = true;
      continue;
    }
    auto conn = DataConnection(n);
    if (!conn.ok()) {
      last = conn.status();  // counted
      continue;
    }
    Status s = (*conn)->Read(far::OffsetOf(copies.addr[c]), out, size);
    if (s.ok()) {
      far_read_bytes_ += size;
      if (!last.ok() || skipped) degraded_reads_++;  // a copy before it failed or was skipped
      return s;
    }
    if (!(*conn)->alive()) {
      last = ConnectionFailed(n, s, what);  // then the next copy
    } else {
      return FailedAccess(s.WithContext(std::string(what) + " from memnode " + n.name));
    }
  }
  if (last.ok()) last = FailedAccess(NoHealthyStatus(&copies).WithContext(what));
  return last;  // (ConnectionFailed's context says what)
}

void RuntimeImpl::Destroy(ObjectHeader* h) {
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
  } else if (far != kNoFarOffset && ec_) {
    far_bytes_ -= size;
    if (LeaveStripe(h) && TryBeginFar()) {
      ReaderMutexLock l(&epoch_mu_, std::adopt_lock);
      if (Status s = FlushAllQueued(FreeReserve()); !s.ok()) LOG(WARNING) << "compute runtime: FREE failed: " << s;
    }
  } else if (far != kNoFarOffset) {
    far_bytes_ -= size;
    const Copies copies = CopiesOf(h, far);
    SetExtras(h, nullptr, 0);
    for (uint32_t c = 0; c < copies.n; ++c)
      if (Status s = QueueFree(copies.addr[c], size); !s.ok()) LOG(WARNING) << "compute runtime: FREE failed: " << s;
  }
  h->far_offset = kNoFarOffset;
  h->live.store(0, std::memory_order_relaxed);
  h->word.store(0, std::memory_order_release);
  objects_--;
  FreeHeader(h);
}

}  // namespace sharry::compute
