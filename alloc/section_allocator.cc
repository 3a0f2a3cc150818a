// Copyright 2024 The Sharry Authors.

#include "alloc/section_allocator.h"

#include <algorithm>
#include <unordered_map>
#include <utility>

#include "glog/logging.h"

namespace sharry::alloc {
namespace {

PageCount PagesOf(uint64_t length) {
  CHECK_GT(length, 0u) << "empty section";
  CHECK_EQ(length % kPageSize, 0u) << "section length " << length
                                   << " is not a multiple of the page size";
  const uint64_t pages = length >> kPageShift;
  CHECK_LE(pages, uint64_t{0xFFFFFFFFu}) << "section larger than 2^32 pages";
  return static_cast<PageCount>(pages);
}

// OwnerSpans::mixed_left of a new owner: one span's worth of blocks of each
// class that fits a mixed span.
std::array<uint16_t, kNumSizeClasses> MixedBlocks() {
  std::array<uint16_t, kNumSizeClasses> n{};
  for (uint32_t cl = 1; cl < kNumSizeClasses; ++cl) {
    if (SizeMap::ClassSize(cl) <= SectionAllocator::kMaxMixedBlockSize) {
      n[cl] = static_cast<uint16_t>(SizeMap::BlocksPerSpan(cl));
    }
  }
  return n;
}

}  // namespace

SectionAllocator::SectionAllocator(const Options& options)
    : base_(options.base),
      length_(options.length),
      free_batch_threshold_(options.free_batch_threshold),
      private_spans_(options.private_spans),
      mixed_spans_(options.private_spans && options.mixed_spans),
      growing_spans_(options.private_spans && options.growing_spans),
      observer_(options.observer),
      page_heap_(PagesOf(options.length)) {
  CHECK_EQ(base_ % kPageSize, 0u) << "section base " << base_ << " is not page aligned";
  CHECK(observer_ == nullptr || private_spans_) << "a span observer needs private spans";
  CHECK_GE(base_ + length_, base_) << "section wraps around";
}

SectionAllocator::~SectionAllocator() {
  // Unlink the intrusive lists before the page heap's arena frees the spans.
  for (auto& [owner, spans] : class_lists_) {
    for (ClassList& list : spans.by_class) list.clear();
  }
}

SectionAllocator::OwnerSpans& SectionAllocator::FindOrAddSpans(OwnerId key) {
  auto [it, inserted] = class_lists_.try_emplace(key);
  if (inserted && mixed_spans_) {
    static const std::array<uint16_t, kNumSizeClasses> kMixedBlocks = MixedBlocks();
    it->second.mixed_left = kMixedBlocks;
  }
  last_spans_ = &it->second;
  last_key_ = key;
  return it->second;
}

SectionAllocator::ClassList& SectionAllocator::ListOf(const Span& span) {
  return SpansOf(span.span_owner()).by_class[span.size_class()];
}

Span* SectionAllocator::NewSpan(PageCount pages, Span::State state, OwnerId owner) {
  Span* span = page_heap_.New(pages, state);
  if (span != nullptr && observer_ != nullptr) observer_->OnGrant(owner, base_ + span->start_byte(), span->bytes());
  return span;
}

void SectionAllocator::DeleteSpan(Span* span) {
  if (observer_ != nullptr) observer_->OnRevoke(span->span_owner(), base_ + span->start_byte(), span->bytes());
  page_heap_.Delete(span);
}

AllocResult SectionAllocator::Allocate(uint64_t size, OwnerId owner) {
  if (owner == kNoOwner) return {0, AllocStatus::kInvalidOwner};
  if (size == 0 || size > max_block_size()) return {0, AllocStatus::kInvalidSize};
  AllocResult r = TryAllocate(size, owner);
  if (r.status == AllocStatus::kOutOfMemory) {
    // Memory held back by delayed reclamation or span caching is still free
    // memory: use it before reporting OOM.
    const bool changed = FlushPendingFrees() > 0;
    if (ReleaseCachedSpans() > 0 || changed) r = TryAllocate(size, owner);
  }
  return r;
}

AllocResult SectionAllocator::TryAllocate(uint64_t size, OwnerId owner) {
  if (size <= kMaxSmallSize) {
    const uint32_t cl = SizeMap::ClassFor(size);
    OwnerSpans& spans = SpansOf(owner);
    if (spans.mixed_left[cl] > 0) [[unlikely]] return AllocateMixed(spans, cl, owner);
    ClassList& list = spans.by_class[cl];
    if (list.empty()) [[unlikely]] {
      const OwnerId span_owner = private_spans_ ? owner : kNoOwner;
      const PageCount pages = SpanPages(spans, cl);
      Span* span = NewSpan(pages, Span::State::kSmall, span_owner);
      if (span == nullptr && pages > SizeMap::ClassPages(cl)) {
        span = NewSpan(SizeMap::ClassPages(cl), Span::State::kSmall, span_owner);
      }
      if (span == nullptr) return {0, AllocStatus::kOutOfMemory};
      span->InitSmall(cl, span_owner);
      AddSmallSpan(span, spans, cl);
    }
    Span& span = list.front();
    const uint32_t index = span.AllocateBlock(owner);
    if (span.full()) list.erase(list.iterator_to(span));
    counts_.span_free_bytes -= span.block_size();
    counts_.used_bytes += span.block_size();
    ++counts_.live_blocks;
    owners_.Add(owner, span.block_size());
    return {base_ + span.block_start(index), AllocStatus::kOk};
  }

  const uint64_t pages = (size + kPageSize - 1) >> kPageShift;
  Span* span = NewSpan(static_cast<PageCount>(pages), Span::State::kLarge, owner);
  if (span == nullptr) return {0, AllocStatus::kOutOfMemory};
  span->InitLarge(owner);
  ++counts_.large_spans;
  counts_.used_bytes += span->bytes();
  ++counts_.live_blocks;
  owners_.Add(owner, span->bytes());
  return {base_ + span->start_byte(), AllocStatus::kOk};
}

AllocResult SectionAllocator::AllocateMixed(OwnerSpans& spans, uint32_t cl, OwnerId owner) {
  const uint32_t bytes = SizeMap::ClassSize(cl);
  ClassList& list = spans.by_class[0];
  if (!list.empty() && list.front().room_bytes() < bytes) {
    Span& full = list.front();  // its unused rest stays in span_free_bytes
    list.erase(list.iterator_to(full));
    full.Retire();
  }
  if (list.empty()) {
    Span* span = NewSpan(kMixedSpanPages, Span::State::kSmall, owner);
    if (span == nullptr) return {0, AllocStatus::kOutOfMemory};
    span->InitMixed(owner);
    AddSmallSpan(span, spans, 0);
  }
  Span& span = list.front();
  const uint32_t index = span.AllocateRun(bytes, owner);
  if (span.room_bytes() == 0) list.erase(list.iterator_to(span));
  --spans.mixed_left[cl];
  counts_.span_free_bytes -= bytes;
  counts_.used_bytes += bytes;
  ++counts_.live_blocks;
  owners_.Add(owner, bytes);
  return {base_ + span.block_start(index), AllocStatus::kOk};
}

PageCount SectionAllocator::SpanPages(const OwnerSpans& spans, uint32_t cl) const {
  const PageCount unit = SizeMap::ClassPages(cl);
  if (!growing_spans_) return unit;
  const uint64_t by_blocks = uint64_t{kMaxBlocksPerSpan} * SizeMap::ClassSize(cl) / (uint64_t{unit} * kPageSize);
  const uint64_t k_max = std::max<uint64_t>(1, std::min<uint64_t>(kMaxGrownSpanPages / unit, by_blocks));
  const uint64_t k = std::clamp<uint64_t>(spans.class_pages[cl] / kSpanGrowthDivisor / unit, 1, k_max);
  return static_cast<PageCount>(k * unit);
}

void SectionAllocator::AddSmallSpan(Span* span, OwnerSpans& spans, uint32_t cl) {
  spans.by_class[cl].push_front(*span);
  spans.class_pages[cl] += span->num_pages();
  ++counts_.small_spans;
  counts_.span_free_bytes += uint64_t{span->num_blocks()} * span->block_size();
  counts_.span_tail_bytes += span->tail_bytes();
}

AllocStatus SectionAllocator::FindBlock(uint64_t rel, BlockRef* ref, bool* pending) const {
  *pending = false;
  Span* span = page_heap_.Lookup(static_cast<PageId>(rel >> kPageShift));
  if (span == nullptr) return AllocStatus::kNotAllocated;
  const uint64_t delta = rel - span->start_byte();
  switch (span->state()) {
    case Span::State::kLarge:
      if (delta != 0) return AllocStatus::kNotAllocated;
      *ref = {span, 0};
      *pending = span->large_pending();
      return *pending ? AllocStatus::kNotAllocated : AllocStatus::kOk;
    case Span::State::kSmall: {
      const uint64_t index = delta / span->block_size();
      if (delta % span->block_size() != 0 || index >= span->num_blocks()) {
        return AllocStatus::kNotAllocated;  // interior, or in the span's tail
      }
      *ref = {span, static_cast<uint32_t>(index)};
      switch (span->block_state(static_cast<uint32_t>(index))) {
        case Span::BlockState::kLive: return AllocStatus::kOk;
        case Span::BlockState::kPending: *pending = true; return AllocStatus::kNotAllocated;
        case Span::BlockState::kFree: return AllocStatus::kNotAllocated;
      }
      break;
    }
    case Span::State::kFree:
    case Span::State::kUnused:
      break;
  }
  return AllocStatus::kNotAllocated;
}

uint64_t SectionAllocator::BlockBytes(const BlockRef& ref) const {
  return ref.span->state() == Span::State::kLarge ? ref.span->bytes()
                                                   : ref.span->block_bytes(ref.index);
}

AllocStatus SectionAllocator::Free(uint64_t offset, OwnerId owner, uint64_t* freed_bytes) {
  if (offset < base_ || offset >= end()) return AllocStatus::kOutOfRange;
  BlockRef ref;
  bool pending;
  const AllocStatus st = FindBlock(offset - base_, &ref, &pending);
  if (st != AllocStatus::kOk) return st;
  const OwnerId block_owner = ref.span->state() == Span::State::kLarge
                                  ? ref.span->large_owner()
                                  : ref.span->block_owner(ref.index);
  if (block_owner != owner) return AllocStatus::kNotOwner;

  if (ref.span->state() == Span::State::kLarge) {
    ref.span->set_large_pending(true);
  } else {
    ref.span->MarkPending(ref.index);
  }
  pending_.push_back(offset - base_);
  const uint64_t bytes = BlockBytes(ref);
  counts_.pending_bytes += bytes;
  if (freed_bytes != nullptr) *freed_bytes += bytes;
  if (pending_.size() >= free_batch_threshold_) FlushPendingFrees();
  return AllocStatus::kOk;
}

size_t SectionAllocator::FlushPendingFrees() {
  const size_t n = pending_.size();
  for (uint64_t rel : pending_) {
    BlockRef ref;
    bool pending;
    const AllocStatus st = FindBlock(rel, &ref, &pending);
    CHECK(st == AllocStatus::kNotAllocated && pending)
        << "queued free of offset " << base_ + rel << " is no longer pending";
    counts_.pending_bytes -= BlockBytes(ref);
    ApplyFree(ref);
  }
  pending_.clear();
  CHECK_EQ(counts_.pending_bytes, 0u);
  return n;
}

void SectionAllocator::ApplyFree(const BlockRef& ref) {
  Span* span = ref.span;
  --counts_.live_blocks;
  if (span->state() == Span::State::kLarge) {
    owners_.Remove(span->large_owner(), span->bytes());
    counts_.used_bytes -= span->bytes();
    --counts_.large_spans;
    DeleteSpan(span);
    return;
  }
  if (span->mixed()) [[unlikely]] {
    const uint64_t bytes = span->block_bytes(ref.index);
    owners_.Remove(span->block_owner(ref.index), bytes);
    span->FreeBlock(ref.index);
    counts_.used_bytes -= bytes;
    counts_.span_free_bytes += bytes;
    if (span->empty()) {
      // The owner's current mixed span starts over (cached, like the one
      // empty span of a class); a retired one goes back.
      if (span->class_hook_.is_linked()) {
        span->Reset();
      } else {
        ReleaseSmallSpan(span);
      }
    }
    return;
  }
  const bool was_full = span->full();
  owners_.Remove(span->block_owner(ref.index), span->block_size());
  span->FreeBlock(ref.index);
  counts_.used_bytes -= span->block_size();
  counts_.span_free_bytes += span->block_size();
  ClassList& list = ListOf(*span);
  if (was_full) list.push_front(*span);
  if (span->empty() && list.size() > 1) ReleaseSmallSpan(span);
}

void SectionAllocator::ReleaseSmallSpan(Span* span) {
  CHECK(span->empty());
  OwnerSpans& spans = SpansOf(span->span_owner());
  if (span->class_hook_.is_linked()) {  // not a retired mixed span
    ClassList& list = spans.by_class[span->size_class()];
    list.erase(list.iterator_to(*span));
  }
  uint32_t& pages = spans.class_pages[span->size_class()];
  CHECK_GE(pages, span->num_pages()) << "class " << span->size_class() << " of owner " << span->span_owner();
  pages -= span->num_pages();
  counts_.span_free_bytes -= uint64_t{span->num_blocks()} * span->block_size();
  counts_.span_tail_bytes -= span->tail_bytes();
  --counts_.small_spans;
  DeleteSpan(span);
}

size_t SectionAllocator::ReleaseCachedSpans() {
  size_t released = 0;
  for (auto& [owner, spans] : class_lists_) {
    for (ClassList& list : spans.by_class) {
      for (auto it = list.begin(); it != list.end();) {
        Span& span = *it++;
        if (span.empty()) {
          ReleaseSmallSpan(&span);
          ++released;
        }
      }
    }
  }
  return released;
}

ReclaimResult SectionAllocator::FreeAllOf(OwnerId owner) {
  // Frees the owner has already made are applied now, so that afterwards
  // the owner holds nothing (it leaves Usage and the owner list at once).
  FlushPendingFrees();
  ReclaimResult result;
  if (owners_.Usage(owner).blocks == 0) {
    ForgetOwnerSpans(owner);
    return result;
  }
  // Collect first: applying a free may merge spans under the walk.
  std::vector<BlockRef> victims;
  page_heap_.ForEachSpan([&](const Span& s) {
    Span* span = const_cast<Span*>(&s);
    if (s.state() == Span::State::kLarge) {
      if (s.large_owner() == owner && !s.large_pending()) victims.push_back({span, 0});
    } else if (s.state() == Span::State::kSmall) {
      s.ForEachAllocatedBlock([&](uint32_t index, OwnerId o, bool pending) {
        if (o == owner && !pending) victims.push_back({span, index});
      });
    }
  });
  for (const BlockRef& ref : victims) {
    ++result.blocks;
    result.bytes += BlockBytes(ref);
    ApplyFree(ref);
  }
  CHECK_EQ(owners_.Usage(owner).blocks, 0u) << "owner " << owner;
  ForgetOwnerSpans(owner);
  return result;
}

void SectionAllocator::ForgetOwnerSpans(OwnerId owner) {
  if (!private_spans_) return;
  auto it = class_lists_.find(owner);
  if (it == class_lists_.end()) return;
  for (ClassList& list : it->second.by_class) {
    while (!list.empty()) {
      Span& span = list.front();
      CHECK(span.empty()) << "owner " << owner << " still has blocks in the span at page " << span.first_page();
      ReleaseSmallSpan(&span);
    }
  }
  for (uint32_t cl = 0; cl < kNumSizeClasses; ++cl) {
    CHECK_EQ(it->second.class_pages[cl], 0u) << "owner " << owner << " still holds spans of class " << cl;
  }
  if (last_spans_ == &it->second) last_spans_ = nullptr;
  class_lists_.erase(it);
}

SectionStats SectionAllocator::stats() const {
  SectionStats s = counts_;
  s.section_bytes = length_;
  s.free_bytes = length_ - counts_.used_bytes;
  s.pending_blocks = pending_.size();
  s.page_heap_free_bytes = page_heap_.free_pages() << kPageShift;
  s.free_runs = page_heap_.free_runs();
  s.largest_free_run_bytes = uint64_t{page_heap_.largest_free_run()} << kPageShift;
  return s;
}

void SectionAllocator::CheckInvariants() const {
  page_heap_.CheckInvariants();

  uint64_t used = 0, live = 0, pending_blocks = 0, pending_bytes = 0;
  std::unordered_map<OwnerId, OwnerUsage> by_owner;
  uint64_t span_free = 0, tail = 0, free_run_bytes = 0, small = 0, large = 0;
  // Pages of small spans by span owner and class (OwnerSpans::class_pages).
  std::unordered_map<OwnerId, std::array<uint64_t, kNumSizeClasses>> class_pages;
  page_heap_.ForEachSpan([&](const Span& s) {
    switch (s.state()) {
      case Span::State::kFree:
        free_run_bytes += s.bytes();
        CHECK(!s.class_hook_.is_linked());
        break;
      case Span::State::kLarge:
        ++large;
        ++live;
        used += s.bytes();
        CHECK_NE(s.large_owner(), kNoOwner);
        ++by_owner[s.large_owner()].blocks;
        by_owner[s.large_owner()].bytes += s.bytes();
        if (s.large_pending()) {
          ++pending_blocks;
          pending_bytes += s.bytes();
        }
        CHECK(!s.class_hook_.is_linked());
        break;
      case Span::State::kSmall: {
        ++small;
        class_pages[s.span_owner()][s.size_class()] += s.num_pages();
        CHECK_EQ(s.num_pages() % (s.mixed() ? kMixedSpanPages : SizeMap::ClassPages(s.size_class())), 0u)
            << "span at page " << s.first_page();
        CHECK_LE(s.num_pages(), std::max(kMaxGrownSpanPages, SizeMap::ClassPages(s.size_class())))
            << "span at page " << s.first_page();
        CHECK(growing_spans_ || s.mixed() || s.num_pages() == SizeMap::ClassPages(s.size_class()))
            << "span at page " << s.first_page();
        uint32_t allocated = 0;
        CHECK_EQ(s.span_owner() != kNoOwner, private_spans_) << "span at page " << s.first_page();
        uint64_t allocated_bytes = 0;
        CHECK(!s.mixed() || (mixed_spans_ && s.num_pages() == kMixedSpanPages)) << "span at page " << s.first_page();
        s.ForEachAllocatedBlock([&](uint32_t index, OwnerId owner, bool pending) {
          CHECK(s.span_owner() == kNoOwner || s.span_owner() == owner)
              << "block of owner " << owner << " in the private span of " << s.span_owner();
          const uint64_t bytes = s.block_bytes(index);
          CHECK(!s.mixed() || (bytes <= kMaxMixedBlockSize && index + bytes / kMixedGranule <= s.num_blocks()))
              << "block " << index << " of " << bytes << " bytes in the mixed span at page " << s.first_page();
          ++allocated;
          allocated_bytes += bytes;
          ++by_owner[owner].blocks;
          by_owner[owner].bytes += bytes;
          if (pending) {
            ++pending_blocks;
            pending_bytes += bytes;
          }
        });
        CHECK_EQ(allocated, s.allocated());
        live += allocated;
        used += allocated_bytes;
        span_free += s.bytes() - s.tail_bytes() - allocated_bytes;
        tail += s.tail_bytes();
        CHECK_EQ(s.bytes(), uint64_t{s.num_blocks()} * s.block_size() + s.tail_bytes());
        // In its class list exactly when it has a free block (a mixed span:
        // room past its bump pointer).
        CHECK_EQ(s.class_hook_.is_linked(), s.mixed() ? s.room_bytes() > 0 : !s.full())
            << "span at page " << s.first_page();
        break;
      }
      case Span::State::kUnused:
        LOG(FATAL) << "unused span in the page heap walk";
    }
  });
  for (const auto& [key, spans] : class_lists_) {
    CHECK(private_spans_ || key == kNoOwner) << "owner list " << key << " with shared spans";
    for (uint32_t cl = 0; cl < spans.by_class.size(); ++cl) {
      size_t empty_in_class = 0;
      for (const Span& s : spans.by_class[cl]) {
        CHECK(s.state() == Span::State::kSmall);
        CHECK_EQ(s.size_class(), cl);
        CHECK_EQ(s.span_owner(), key) << "span at page " << s.first_page() << " in the list of another owner";
        if (s.empty()) ++empty_in_class;
      }
      // A class caches at most one empty span (per owner); an owner has at
      // most one mixed span with room.
      CHECK_LE(empty_in_class, 1u) << "class " << cl << " of owner " << key;
      if (cl == 0) CHECK_LE(spans.by_class[0].size(), 1u) << "owner " << key;
      auto it = class_pages.find(key);
      CHECK_EQ(spans.class_pages[cl], it == class_pages.end() ? 0u : it->second[cl])
          << "class " << cl << " of owner " << key;
    }
  }
  for (const auto& [key, pages] : class_pages) {
    CHECK(class_lists_.contains(key)) << "small spans of owner " << key << ", who has no class lists";
  }

  CHECK_EQ(used, counts_.used_bytes);
  CHECK_EQ(live, counts_.live_blocks);
  // Per-owner counters: exactly the owners found in the walk, same counts.
  CHECK_EQ(owners_.size(), by_owner.size());
  for (const auto& [owner, u] : by_owner) {
    const OwnerUsage o = owners_.Usage(owner);
    CHECK_EQ(o.blocks, u.blocks) << "owner " << owner;
    CHECK_EQ(o.bytes, u.bytes) << "owner " << owner;
  }
  CHECK_EQ(pending_blocks, pending_.size());
  CHECK_EQ(pending_bytes, counts_.pending_bytes);
  CHECK_EQ(span_free, counts_.span_free_bytes);
  CHECK_EQ(tail, counts_.span_tail_bytes);
  CHECK_EQ(small, counts_.small_spans);
  CHECK_EQ(large, counts_.large_spans);
  CHECK_EQ(free_run_bytes, page_heap_.free_pages() << kPageShift);
  // Every byte of the section is accounted for exactly once.
  CHECK_EQ(used + free_run_bytes + span_free + tail, length_);
}

}  // namespace sharry::alloc
