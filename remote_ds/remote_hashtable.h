// RemoteHashTable<K, V>: a hash table whose values live in far memory, one
// object per entry (swapped at object granularity). The local index maps a
// key to its object's handle (the key plus a pointer-sized handle per entry),
// small next to values of a few hundred bytes or more.
//
// Thread-safety: not thread-safe; guard it, or give each thread its own.
#pragma once

#include <cstring>
#include <functional>
#include <type_traits>
#include <unordered_map>

#include "compute/runtime.h"

namespace sharry::remote_ds {

template <typename K, typename V, typename Hash = std::hash<K>>
class RemoteHashTable {
  static_assert(std::is_trivially_copyable_v<V>, "far objects are copied byte for byte");

 public:
  explicit RemoteHashTable(compute::Runtime& rt) : rt_(&rt) {}

  // Inserts or overwrites.
  Status Put(const K& key, const V& value) {
    auto it = index_.find(key);
    if (it == index_.end()) {
      auto o = rt_->New(sizeof(V), &value);
      if (!o.ok()) return o.status();
      index_.emplace(key, std::move(*o));
      return Status::Ok();
    }
    compute::DerefScope scope(*rt_);
    auto p = it->second.Deref(scope, true);
    if (!p.ok()) return p.status();
    std::memcpy(*p, &value, sizeof(V));
    return Status::Ok();
  }

  // A copy of the value, or kNotFound.
  StatusOr<V> Get(const K& key) const {
    compute::DerefScope scope(*rt_);
    auto p = Find(scope, key);
    if (!p.ok()) return p.status();
    return **p;
  }

  // The value in place, pinned until `scope` ends.
  StatusOr<const V*> Find(compute::DerefScope& scope, const K& key) const {
    auto it = index_.find(key);
    if (it == index_.end()) return Status::NotFound("no such key");
    auto p = it->second.Deref(scope, false);
    if (!p.ok()) return p.status();
    return static_cast<const V*>(*p);
  }

  bool Contains(const K& key) const { return index_.count(key) != 0; }

  // Removes the entry (its local memory and far block); kNotFound if absent.
  Status Erase(const K& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return Status::NotFound("no such key");
    index_.erase(it);
    return Status::Ok();
  }

  size_t size() const { return index_.size(); }

  // f(const K&, const V&) for every entry, one scope per entry.
  template <typename F>
  Status ForEach(F&& f) const {
    for (const auto& [k, obj] : index_) {
      compute::DerefScope scope(*rt_);
      auto p = obj.Deref(scope, false);
      if (!p.ok()) return p.status();
      f(k, *static_cast<const V*>(*p));
    }
    return Status::Ok();
  }

 private:
  compute::Runtime* rt_;
  std::unordered_map<K, compute::RemoteObject, Hash> index_;
};

}  // namespace sharry::remote_ds
