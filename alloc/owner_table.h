// Copyright 2024 The Sharry Authors.
//
// OwnerTable: per-owner accounting of one SectionAllocator ("per client
// bytes held").
//
// For every owner that holds at least one block of the section it keeps
// {blocks, bytes}: the number of its live blocks and their rounded sizes.
// A block whose free is pending still counts, exactly as in used_bytes:
// the owner's counters drop when the free is APPLIED (flush, threshold,
// FreeAllOf), not when it is accepted. So, at every moment,
//
//   sum over owners of bytes  == SectionStats::used_bytes
//   sum over owners of blocks == SectionStats::live_blocks
//
// which SectionAllocator::CheckInvariants verifies against a metadata walk.
//
// Costs: Add and Remove are O(1) (one hash lookup, skipped when the owner is
// the same as in the previous call). An owner's entry is erased when its
// block count reaches zero, so the table holds exactly the owners with live
// blocks and its size is bounded by the number of live blocks.
//
// Thread-safety: none; owned by one SectionAllocator.

#ifndef SHARRY_ALLOC_OWNER_TABLE_H_
#define SHARRY_ALLOC_OWNER_TABLE_H_

#include <cstdint>
#include <unordered_map>
#include <utility>
#include <vector>

#include "alloc/types.h"
#include "glog/logging.h"

namespace sharry::alloc {

class OwnerTable {
 public:
  OwnerTable() = default;
  OwnerTable(const OwnerTable&) = delete;
  OwnerTable& operator=(const OwnerTable&) = delete;

  // One more block of `bytes` for `owner`.
  void Add(OwnerId owner, uint64_t bytes) {
    Counts& c = Find(owner);
    ++c.blocks;
    c.bytes += bytes;
  }

  // One block of `bytes` of `owner` was freed (applied).
  // REQUIRES: the owner holds such a block (CHECKed).
  void Remove(OwnerId owner, uint64_t bytes) {
    Counts* c;
    if (last_ != nullptr && last_->first == owner) {
      c = &last_->second;
    } else {
      auto it = map_.find(owner);
      CHECK(it != map_.end()) << "free of a block of owner " << owner << ", who holds none";
      c = &it->second;
    }
    CHECK(c->blocks >= 1 && c->bytes >= bytes) << "owner " << owner << " accounting underflow";
    --c->blocks;
    c->bytes -= bytes;
    if (c->blocks == 0) {
      CHECK_EQ(c->bytes, 0u) << "owner " << owner;
      if (last_ != nullptr && last_->first == owner) last_ = nullptr;
      map_.erase(owner);
    }
  }

  // {owner, 0, 0} for an owner that holds nothing.
  OwnerUsage Usage(OwnerId owner) const {
    auto it = map_.find(owner);
    if (it == map_.end()) return {owner, 0, 0};
    return {owner, it->second.blocks, it->second.bytes};
  }

  // Appends one entry per owner with live blocks, in no particular order.
  void AppendTo(std::vector<OwnerUsage>* out) const {
    out->reserve(out->size() + map_.size());
    for (const auto& [owner, c] : map_) out->push_back({owner, c.blocks, c.bytes});
  }

  // Owners with live blocks.
  size_t size() const { return map_.size(); }

 private:
  struct Counts {
    uint64_t blocks = 0;
    uint64_t bytes = 0;
  };
  using Map = std::unordered_map<OwnerId, Counts>;

  Counts& Find(OwnerId owner) {
    if (last_ == nullptr || last_->first != owner) {
      // Pointers to unordered_map elements survive rehashing; only erasing
      // the element invalidates last_, and Remove clears it then.
      last_ = &*map_.try_emplace(owner).first;
    }
    return last_->second;
  }

  Map map_;
  Map::value_type* last_ = nullptr;  // the entry used most recently
};

}  // namespace sharry::alloc

#endif  // SHARRY_ALLOC_OWNER_TABLE_H_
