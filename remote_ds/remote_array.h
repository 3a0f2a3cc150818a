// RemoteArray<T>: a fixed-length array in far memory. Elements are grouped
// into chunk objects of chunk_bytes (default 4 KiB); a chunk is the unit of
// swapping. Element access goes through a DerefScope, which pins the
// element's chunk; a sequential scan prefetches the next chunks.
//
// Placement (ChunkPlacement, default kAnywhere: every chunk least used
// first). With kRowAffinity — for arrays you will aggregate across many
// memnodes — chunk c gets the
// affinity key 1 + (first row of c) / kAffinityRows (Runtime::New), so with
// many memnodes the chunks of the same kAffinityRows rows — in every array
// made this way, whatever its element size — put their first far copy on
// the same memnode, and an aggregate over several such arrays
// (compute/aggregate.h, default units of kAffinityRows rows) finds each unit
// on one memnode and runs it there (docs/offload.md). Chunks that
// straddle two groups of rows (chunk_bytes not a power of two) take the key
// of their first row. Not the default: it trades the least-used spread of
// every eviction round for units kept together (with replicate:2 it cost
// the redundancy figure a third of its throughput; docs/RESULTS.md).
//
// Thread-safety: concurrent reads and writes of DISTINCT elements from many
// threads are fine (the runtime is thread-safe); the array itself is not
// resized. Each thread uses its own DerefScope.
#pragma once

#include <algorithm>
#include <cstring>
#include <optional>
#include <type_traits>
#include <vector>

#include "compute/aggregate.h"
#include "compute/runtime.h"

namespace sharry::remote_ds {

using compute::DerefScope;
using compute::RemoteObject;
using compute::Runtime;

// Where an array's chunks go when swapped out (see the top of this file).
enum class ChunkPlacement {
  kRowAffinity,  // key by row: the same rows of every array on the same memnode
  kAnywhere,     // no key: each chunk least used first
};
// Rows per affinity key: an aggregate's default unit (compute/aggregate.h).
inline constexpr uint64_t kAffinityRows = compute::kDefaultUnitRows;

template <typename T>
class RemoteArray {
  static_assert(std::is_trivially_copyable_v<T>, "far objects are copied byte for byte");

 public:
  static StatusOr<RemoteArray> Make(Runtime& rt, size_t n, uint32_t chunk_bytes = 4096,
                                    ChunkPlacement placement = ChunkPlacement::kAnywhere) {
    return Build(rt, n, chunk_bytes, placement, static_cast<void (*)(size_t, T&)>(nullptr));
  }
  // As Make, but element i starts as init(i, T&) sets it: each chunk is
  // filled before it becomes an object, so loading costs no swap-in (a
  // ForEachMut after Make would bring every evicted chunk back once).
  template <typename Init>
  static StatusOr<RemoteArray> MakeWith(Runtime& rt, size_t n, Init&& init, uint32_t chunk_bytes = 4096,
                                        ChunkPlacement placement = ChunkPlacement::kAnywhere) {
    return Build(rt, n, chunk_bytes, placement, &init);
  }
  // The affinity key of the chunk whose first row is `row` (never 0).
  static uint32_t AffinityKeyOf(size_t row) { return static_cast<uint32_t>(row / kAffinityRows % 0xFFFFFFFFu) + 1; }

  size_t size() const { return n_; }
  size_t elements_per_chunk() const { return per_chunk_; }
  size_t chunks() const { return chunks_.size(); }
  const RemoteObject& chunk(size_t c) const { return chunks_[c]; }

  // Element i, local and at a fixed address until `scope` ends.
  StatusOr<const T*> at(DerefScope& scope, size_t i) const { return Element(scope, i, false); }
  StatusOr<T*> mutable_at(DerefScope& scope, size_t i) {
    auto p = Element(scope, i, true);
    if (!p.ok()) return p.status();
    return const_cast<T*>(*p);
  }

  // Copies out / in, in a scope of their own.
  StatusOr<T> Get(size_t i) const {
    DerefScope scope(*rt_);
    auto p = at(scope, i);
    if (!p.ok()) return p.status();
    return **p;
  }
  Status Set(size_t i, const T& v) {
    DerefScope scope(*rt_);
    auto p = mutable_at(scope, i);
    if (!p.ok()) return p.status();
    **p = v;
    return Status::Ok();
  }

  // Sequential forward scan of [begin, end): f(index, const T&) (ForEach) or
  // f(index, T&) (ForEachMut). One scope per chunk, so the scan never pins
  // more than one chunk; the next `prefetch` chunks are requested ahead.
  template <typename F>
  Status ForEach(F&& f, size_t begin = 0, size_t end = ~size_t{0}, size_t prefetch = 4) const {
    return Scan(std::forward<F>(f), begin, end, prefetch, false);
  }
  template <typename F>
  Status ForEachMut(F&& f, size_t begin = 0, size_t end = ~size_t{0}, size_t prefetch = 4) {
    return Scan(std::forward<F>(f), begin, end, prefetch, true);
  }

  // This array as a column of an aggregate (compute/aggregate.h; T must be
  // one of the ten integer and floating types of offload::ElemType).
  compute::AggregateColumn column() const {
    return {chunks_, static_cast<uint32_t>(per_chunk_), offload::ElemTypeOf<T>()};
  }
  // An aggregate over this array alone (column 0 of `spec`), split between
  // here and the memnodes holding its far chunks (docs/offload.md).
  StatusOr<offload::Result> Aggregate(const offload::Spec& spec, const compute::AggregateOptions& o = {}) const {
    const compute::AggregateColumn c[1] = {column()};
    return compute::Aggregate(*rt_, spec, c, n_, o);
  }

  // Iterator access inside one scope: every chunk the iterator visits stays
  // pinned until the scope ends, so use it for ranges that fit the budget.
  class ScopedRange {
   public:
    ScopedRange(const RemoteArray& a, DerefScope& s) : a_(a), s_(s) {}
    StatusOr<const T*> operator[](size_t i) const { return a_.at(s_, i); }

   private:
    const RemoteArray& a_;
    DerefScope& s_;
  };
  ScopedRange In(DerefScope& scope) const { return ScopedRange(*this, scope); }

  // A sequential reader of [begin, end), for scans that walk several arrays
  // in step (the columns of a data frame): Next() returns the next element,
  // local and pinned until the cursor leaves its chunk (one scope per chunk,
  // as ForEach), or nullptr at the end or on an error (then status() says
  // why). The next `prefetch` chunks are requested ahead. Within a chunk,
  // Next() is a pointer compare and increment. One thread; not movable.
  class Cursor {
   public:
    Cursor(const RemoteArray& a, size_t begin, size_t end, size_t prefetch)
        : a_(a), next_(std::min(begin, a.n_)), end_(std::min(end, a.n_)), prefetch_(prefetch) {}
    Cursor(const Cursor&) = delete;
    Cursor& operator=(const Cursor&) = delete;
    const T* Next() { return p_ != stop_ ? p_++ : Advance(); }
    const Status& status() const { return status_; }

   private:
    const T* Advance() {
      scope_.reset();  // unpins the chunk just read
      if (next_ >= end_) return nullptr;
      const size_t per = a_.per_chunk_, c = next_ / per;
      for (size_t k = 1; k <= prefetch_ && c + k < a_.chunks_.size(); ++k) a_.chunks_[c + k].Prefetch();
      scope_.emplace(*a_.rt_);
      auto p = a_.chunks_[c].Deref(*scope_, false);
      if (!p.ok()) {
        status_ = p.status();
        next_ = end_;
        scope_.reset();
        return nullptr;
      }
      const T* chunk = static_cast<const T*>(*p);
      p_ = chunk + (next_ - c * per);
      next_ = std::min(end_, (c + 1) * per);
      stop_ = chunk + (next_ - c * per);
      return p_++;
    }
    const RemoteArray& a_;
    size_t next_, end_, prefetch_;
    std::optional<DerefScope> scope_;
    const T* p_ = nullptr;
    const T* stop_ = nullptr;
    Status status_;
  };
  Cursor Read(size_t begin = 0, size_t end = ~size_t{0}, size_t prefetch = 4) const {
    return Cursor(*this, begin, end, prefetch);
  }

 private:
  StatusOr<const T*> Element(DerefScope& scope, size_t i, bool write) const {
    if (i >= n_) return Status::OutOfRange("index " + std::to_string(i) + " of an array of " + std::to_string(n_));
    auto p = chunks_[i / per_chunk_].Deref(scope, write);
    if (!p.ok()) return p.status();
    return static_cast<const T*>(*p) + i % per_chunk_;
  }

  template <typename F>
  Status Scan(F&& f, size_t begin, size_t end, size_t prefetch, bool write) const {
    end = std::min(end, n_);
    for (size_t i = begin; i < end;) {
      const size_t c = i / per_chunk_;
      for (size_t k = 1; k <= prefetch && c + k < chunks_.size(); ++k) chunks_[c + k].Prefetch();
      DerefScope scope(*rt_);
      auto p = chunks_[c].Deref(scope, write);
      if (!p.ok()) return p.status();
      T* elem = static_cast<T*>(*p) + (i - c * per_chunk_);  // no division per element
      const size_t stop = std::min(end, (c + 1) * per_chunk_);
      for (; i < stop; ++i, ++elem) f(i, *elem);
    }
    return Status::Ok();
  }

  template <typename InitPtr>
  static StatusOr<RemoteArray> Build(Runtime& rt, size_t n, uint32_t chunk_bytes, ChunkPlacement placement,
                                     InitPtr init) {
    if (chunk_bytes < sizeof(T))
      return Status::InvalidArgument("a chunk of " + std::to_string(chunk_bytes) + " B cannot hold one element");
    RemoteArray a;
    a.rt_ = &rt;
    a.n_ = n;
    a.per_chunk_ = chunk_bytes / sizeof(T);
    const size_t chunks = (n + a.per_chunk_ - 1) / a.per_chunk_;
    a.chunks_.reserve(chunks);
    std::vector<T> buf(init != nullptr ? a.per_chunk_ : 0);
    for (size_t c = 0; c < chunks; ++c) {
      const size_t elems = std::min<size_t>(a.per_chunk_, n - c * a.per_chunk_);
      if (init != nullptr)
        for (size_t k = 0; k < elems; ++k) (*init)(c * a.per_chunk_ + k, buf[k]);
      const uint32_t key = placement == ChunkPlacement::kRowAffinity ? AffinityKeyOf(c * a.per_chunk_) : 0;
      auto o = rt.New(static_cast<uint32_t>(elems * sizeof(T)), init != nullptr ? buf.data() : nullptr, key);
      if (!o.ok()) return o.status();
      a.chunks_.push_back(std::move(*o));
    }
    return a;
  }

  Runtime* rt_ = nullptr;
  size_t n_ = 0;
  size_t per_chunk_ = 1;
  std::vector<RemoteObject> chunks_;
};

}  // namespace sharry::remote_ds
