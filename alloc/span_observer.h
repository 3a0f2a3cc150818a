// Copyright 2024 The Sharry Authors.
//
// SpanObserver: told when a run of pages becomes one owner's and when it
// stops being anyone's — the hook through which the memnode confines each
// client to its own memory (issue #11, docs/security.md "Confinement").
//
// With SectionAllocator::Options::private_spans (the default), every span —
// small or large — holds blocks of exactly one owner: it is that owner's
// protection unit. The allocator calls
//
//   OnGrant(owner, offset, bytes)   when it takes the span's pages from the
//                                   page heap for `owner` (before the first
//                                   block of it is handed out), and
//   OnRevoke(owner, offset, bytes)  when it gives them back (after the last
//                                   block of it was freed; before the pages
//                                   can be granted to anyone else).
//
// offset is a UMA offset (section base included). The memnode uses the pair
// to keep a page-owner map that the TCP server checks every READ/WRITE
// against, to register and deregister the span with the owner's verbs
// protection domain, and to zero the pages on revoke (no remanence: the next
// owner reads zeros; an owner reusing its own blocks is not charged a
// memset).
//
// Thread-safety: called on the thread that runs the SectionAllocator (its
// section thread, or under a MutexAllocator's lock), never concurrently for
// one section. Calls for different sections may run concurrently. An
// observer must not call back into the allocator.

#ifndef SHARRY_ALLOC_SPAN_OBSERVER_H_
#define SHARRY_ALLOC_SPAN_OBSERVER_H_

#include <cstdint>

#include "alloc/types.h"

namespace sharry::alloc {

class SpanObserver {
 public:
  virtual ~SpanObserver() = default;
  virtual void OnGrant(OwnerId owner, uint64_t offset, uint64_t bytes) = 0;
  virtual void OnRevoke(OwnerId owner, uint64_t offset, uint64_t bytes) = 0;
};

}  // namespace sharry::alloc

#endif  // SHARRY_ALLOC_SPAN_OBSERVER_H_
