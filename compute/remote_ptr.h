// RemotePtr<T>: a remoteable pointer with unique ownership over one object
// of a trivially copyable type T (up to the runtime's max_object_bytes).
//
//   auto p = RemotePtr<Point>::Make(rt, Point{1, 2});   // StatusOr
//   {
//     DerefScope scope(rt);
//     auto q = p->Deref(scope);        // StatusOr<const Point*>: local, pinned
//     auto w = p->DerefMut(scope);     // StatusOr<Point*>: marks it dirty
//   }                                  // unpinned: may be swapped out again
#pragma once

#include <type_traits>

#include "compute/runtime.h"

namespace sharry::compute {

template <typename T>
class RemotePtr {
  static_assert(std::is_trivially_copyable_v<T>, "far objects are copied byte for byte");

 public:
  static StatusOr<RemotePtr> Make(Runtime& rt, const T& value = T{}) {
    auto o = rt.New(sizeof(T), &value);
    if (!o.ok()) return o.status();
    return RemotePtr(std::move(*o));
  }
  RemotePtr() = default;
  explicit RemotePtr(RemoteObject o) : obj_(std::move(o)) {}

  StatusOr<const T*> Deref(DerefScope& scope) const {
    auto p = obj_.Deref(scope, false);
    if (!p.ok()) return p.status();
    return static_cast<const T*>(*p);
  }
  StatusOr<T*> DerefMut(DerefScope& scope) {
    auto p = obj_.Deref(scope, true);
    if (!p.ok()) return p.status();
    return static_cast<T*>(*p);
  }
  bool is_local() const { return obj_.is_local(); }
  explicit operator bool() const { return static_cast<bool>(obj_); }
  const RemoteObject& object() const { return obj_; }
  void Reset() { obj_.Reset(); }

 private:
  RemoteObject obj_;
};

}  // namespace sharry::compute
