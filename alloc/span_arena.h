// Copyright 2024 The Sharry Authors.
//
// SpanArena: storage for Span records.
//
// Records are allocated in chunks of kChunk and never freed before the arena
// dies; a released record goes to a free list (state kUnused) and is reused.
// Two properties follow that the PageHeap relies on: a Span* stays valid for
// the arena's lifetime (intrusive containers and the page map hold raw
// pointers), and a stale page-map entry always points at a real record.
//
// Thread-safety: none; owned by one PageHeap.

#ifndef SHARRY_ALLOC_SPAN_ARENA_H_
#define SHARRY_ALLOC_SPAN_ARENA_H_

#include <memory>
#include <vector>

#include "alloc/span.h"

namespace sharry::alloc {

class SpanArena {
 public:
  static constexpr size_t kChunk = 256;

  SpanArena() = default;
  SpanArena(const SpanArena&) = delete;
  SpanArena& operator=(const SpanArena&) = delete;

  // Returns a record in state kUnused with undefined range fields.
  Span* New() {
    if (free_ == nullptr) Grow();
    Span* s = free_;
    free_ = s->next_unused_;
    s->next_unused_ = nullptr;
    ++in_use_;
    return s;
  }

  // REQUIRES: s came from New(), is not in any container and is not
  // referenced by a current page-map entry.
  void Delete(Span* s) {
    CHECK(!s->free_hook_.is_linked() && !s->class_hook_.is_linked());
    s->state_ = Span::State::kUnused;
    s->next_unused_ = free_;
    free_ = s;
    --in_use_;
  }

  size_t in_use() const { return in_use_; }
  size_t capacity() const { return chunks_.size() * kChunk; }

 private:
  void Grow() {
    chunks_.push_back(std::make_unique<Span[]>(kChunk));
    Span* chunk = chunks_.back().get();
    for (size_t i = kChunk; i-- > 0;) {
      chunk[i].next_unused_ = free_;
      free_ = &chunk[i];
    }
  }

  std::vector<std::unique_ptr<Span[]>> chunks_;
  Span* free_ = nullptr;
  size_t in_use_ = 0;
};

}  // namespace sharry::alloc

#endif  // SHARRY_ALLOC_SPAN_ARENA_H_
