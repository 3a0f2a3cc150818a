// RemoteArray<T>: a fixed-length array in far memory. Elements are grouped
// into chunk objects of chunk_bytes (default 4 KiB); a chunk is the unit of
// swapping. Element access goes through a DerefScope, which pins the
// element's chunk; a sequential scan prefetches the next chunks.
//
// Thread-safety: concurrent reads and writes of DISTINCT elements from many
// threads are fine (the runtime is thread-safe); the array itself is not
// resized. Each thread uses its own DerefScope.
#pragma once

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "compute/runtime.h"

namespace sharry::remote_ds {

using compute::DerefScope;
using compute::RemoteObject;
using compute::Runtime;

template <typename T>
class RemoteArray {
  static_assert(std::is_trivially_copyable_v<T>, "far objects are copied byte for byte");

 public:
  static StatusOr<RemoteArray> Make(Runtime& rt, size_t n, uint32_t chunk_bytes = 4096) {
    if (chunk_bytes < sizeof(T))
      return Status::InvalidArgument("a chunk of " + std::to_string(chunk_bytes) + " B cannot hold one element");
    RemoteArray a;
    a.rt_ = &rt;
    a.n_ = n;
    a.per_chunk_ = chunk_bytes / sizeof(T);
    const size_t chunks = (n + a.per_chunk_ - 1) / a.per_chunk_;
    a.chunks_.reserve(chunks);
    for (size_t c = 0; c < chunks; ++c) {
      const size_t elems = std::min<size_t>(a.per_chunk_, n - c * a.per_chunk_);
      auto o = rt.New(static_cast<uint32_t>(elems * sizeof(T)));
      if (!o.ok()) return o.status();
      a.chunks_.push_back(std::move(*o));
    }
    return a;
  }

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

  Runtime* rt_ = nullptr;
  size_t n_ = 0;
  size_t per_chunk_ = 1;
  std::vector<RemoteObject> chunks_;
};

}  // namespace sharry::remote_ds
