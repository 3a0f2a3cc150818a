// Copyright 2024 The Sharry Authors.

#include "alloc/sharry_allocator.h"

#include <algorithm>
#include <array>
#include <unordered_map>

#include "glog/logging.h"

namespace sharry::alloc {
namespace {

uint64_t SectionBytesFor(const SharryAllocatorOptions& o) {
  CHECK(o.num_sections >= 1 && o.num_sections <= RequestScheduler::kMaxSections)
      << "num_sections " << o.num_sections;
  const uint64_t bytes = (o.uma_bytes / o.num_sections) & ~(kPageSize - 1);
  CHECK_GT(bytes, 0u) << "a UMA of " << o.uma_bytes << " bytes cannot hold "
                      << o.num_sections << " sections of at least one page";
  return bytes;
}

// Per-thread scratch for splitting batches, reused across calls so the hot
// path does not allocate.
struct Scratch {
  std::vector<uint32_t> section_of;
  std::vector<uint64_t> in;          // inputs grouped by section
  std::vector<uint32_t> position;    // index into the caller's arrays
  std::vector<AllocResult> alloc_out;
  std::vector<AllocStatus> status_out;
  std::vector<uint64_t> valid_in;    // inputs that passed local checks
  std::vector<uint32_t> valid_pos;
  std::vector<uint32_t> retry;       // elements refused by their planned section
};
thread_local Scratch tls_scratch;

// Groups the m elements by section_of (a counting sort): fills `in` and
// `position` section by section and returns, per section, where its slice
// starts in them (first[s] .. first[s+1]).
std::array<uint32_t, RequestScheduler::kMaxSections + 1> GroupBySection(
    uint32_t num_sections, std::span<const uint64_t> values, std::span<const uint32_t> section_of,
    std::vector<uint64_t>* in, std::vector<uint32_t>* position) {
  std::array<uint32_t, RequestScheduler::kMaxSections + 1> first{};
  for (uint32_t s : section_of) ++first[s + 1];
  for (uint32_t s = 0; s < num_sections; ++s) first[s + 1] += first[s];
  std::array<uint32_t, RequestScheduler::kMaxSections> next;
  std::copy(first.begin(), first.begin() + num_sections, next.begin());
  in->resize(values.size());
  position->resize(values.size());
  for (uint32_t i = 0; i < values.size(); ++i) {
    const uint32_t k = next[section_of[i]]++;
    (*in)[k] = values[i];
    (*position)[k] = i;
  }
  return first;
}

// Submits to each section s with a slice of a grouped batch (first[s] ..
// first[s+1] of `in`, GroupBySection) one request of `kind`, answered into
// the same slice of `answers` and completed by done[s]. kFree with
// freed_bytes: section s adds the bytes it freed to freed_bytes[s].
template <typename T>
void SubmitSlices(const std::vector<std::unique_ptr<SectionThread>>& sections, SectionRequest::Kind kind,
                  OwnerId owner, const std::array<uint32_t, RequestScheduler::kMaxSections + 1>& first,
                  const uint64_t* in, T* answers, std::array<Completion, RequestScheduler::kMaxSections>& done,
                  uint64_t* freed_bytes = nullptr) {
  for (uint32_t s = 0; s < sections.size(); ++s) {
    if (first[s] == first[s + 1]) continue;
    SectionRequest r;
    r.kind = kind;
    r.owner = owner;
    r.count = first[s + 1] - first[s];
    r.in = in + first[s];
    SetOut(r.out, answers + first[s]);
    r.done = &done[s];
    if (freed_bytes != nullptr) r.freed_bytes = &freed_bytes[s];  // kFree
    sections[s]->Submit(r);
  }
}

// Asks every section at once (they work in parallel) with a request of
// `kind` for `owner`, answered into answers[s], and waits for them all.
template <typename T>
void AskEverySection(const std::vector<std::unique_ptr<SectionThread>>& sections, SectionRequest::Kind kind,
                     OwnerId owner, T* answers) {
  std::array<Completion, RequestScheduler::kMaxSections> done;
  for (uint32_t s = 0; s < sections.size(); ++s) {
    SectionRequest r;
    r.kind = kind;
    r.owner = owner;
    SetOut(r.out, &answers[s]);
    r.done = &done[s];
    sections[s]->Submit(r);
  }
  for (uint32_t s = 0; s < sections.size(); ++s) done[s].Wait(&sections[s]->running_cpu());
}

}  // namespace

SharryAllocator::SharryAllocator(const SharryAllocatorOptions& options)
    : uma_bytes_(options.uma_bytes),
      num_sections_(options.num_sections),
      section_bytes_(SectionBytesFor(options)),
      load_source_(this),
      scheduler_(
          RequestScheduler::Options{
              .num_sections = options.num_sections,
              .section_bytes = section_bytes_,
              .pressure_weight = options.pressure_weight,
              .bucket_nanos = options.window_bucket_nanos,
              .window_buckets = options.window_buckets,
              .clock = options.clock,
          },
          &load_source_) {
  sections_.reserve(num_sections_);
  for (uint32_t i = 0; i < num_sections_; ++i) {
    SectionThread::Options so;
    so.section.base = uint64_t{i} * section_bytes_;
    so.section.length = section_bytes_;
    so.section.free_batch_threshold = options.free_batch_threshold;
    so.section.private_spans = options.private_spans;
    so.section.observer = options.observer;
    so.core = options.cores.empty() ? -1 : options.cores[i % options.cores.size()];
    so.busy_poll = options.busy_poll;
    so.ring_capacity = options.ring_capacity;
    so.idle_spin_nanos = options.idle_spin_nanos;
    so.idle_yield_nanos = options.idle_yield_nanos;
    sections_.push_back(std::make_unique<SectionThread>(so));
  }
}

SharryAllocator::~SharryAllocator() {
  for (auto& s : sections_) s->Stop();
}

void SharryAllocator::AllocBatch(OwnerId owner, std::span<const uint64_t> sizes,
                                 std::span<AllocResult> out) {
  CHECK_EQ(sizes.size(), out.size());
  if (sizes.empty()) return;
  Scratch& sc = tls_scratch;

  // Answer locally what no section could accept.
  std::span<const uint64_t> vs = sizes;
  const uint32_t* vpos = nullptr;  // nullptr: identity
  const bool all_valid = owner != kNoOwner && std::all_of(sizes.begin(), sizes.end(), [&](uint64_t s) {
                           return s >= 1 && s <= section_bytes_;
                         });
  if (!all_valid) {
    sc.valid_in.clear();
    sc.valid_pos.clear();
    for (uint32_t i = 0; i < sizes.size(); ++i) {
      if (owner == kNoOwner) {
        out[i] = {0, AllocStatus::kInvalidOwner};
      } else if (sizes[i] == 0 || sizes[i] > section_bytes_) {
        out[i] = {0, AllocStatus::kInvalidSize};
      } else {
        sc.valid_in.push_back(sizes[i]);
        sc.valid_pos.push_back(i);
      }
    }
    if (sc.valid_in.empty()) return;
    vs = sc.valid_in;
    vpos = sc.valid_pos.data();
  }
  auto out_at = [&](uint32_t j) -> AllocResult& { return out[vpos ? vpos[j] : j]; };
  const uint32_t m = static_cast<uint32_t>(vs.size());

  if (num_sections_ == 1) {
    // Nothing to choose and nowhere to retry: skip the policy (and its
    // read of the section's published usage, a cache miss), but count the
    // elements for the request-rate stats.
    scheduler_.RecordOps(0, m);
    if (vpos == nullptr) {
      sections_[0]->AllocBatch(owner, vs, out);
    } else {
      sc.alloc_out.resize(m);
      sections_[0]->AllocBatch(owner, vs, sc.alloc_out);
      for (uint32_t j = 0; j < m; ++j) out_at(j) = sc.alloc_out[j];
    }
    return;
  }

  sc.section_of.resize(m);
  scheduler_.Plan(vs, sc.section_of);
  const bool one_section =
      std::all_of(sc.section_of.begin(), sc.section_of.end(),
                  [&](uint32_t s) { return s == sc.section_of[0]; });

  if (one_section) {
    const uint32_t s = sc.section_of[0];
    uint64_t planned = 0;
    for (uint64_t size : vs) planned += RequestScheduler::RoundedBytes(size);
    if (vpos == nullptr) {
      sections_[s]->AllocBatch(owner, vs, out);
    } else {
      sc.alloc_out.resize(m);
      sections_[s]->AllocBatch(owner, vs, sc.alloc_out);
      for (uint32_t j = 0; j < m; ++j) out_at(j) = sc.alloc_out[j];
    }
    scheduler_.Completed(s, planned);
  } else {
    const auto first = GroupBySection(num_sections_, vs, sc.section_of, &sc.in, &sc.position);
    sc.alloc_out.resize(m);
    std::array<Completion, RequestScheduler::kMaxSections> done;
    SubmitSlices(sections_, SectionRequest::Kind::kAlloc, owner, first, sc.in.data(), sc.alloc_out.data(), done);
    for (uint32_t s = 0; s < num_sections_; ++s) {
      if (first[s] == first[s + 1]) continue;
      done[s].Wait(&sections_[s]->running_cpu());
      uint64_t planned = 0;
      for (uint32_t k = first[s]; k < first[s + 1]; ++k) {
        planned += RequestScheduler::RoundedBytes(sc.in[k]);
        out_at(sc.position[k]) = sc.alloc_out[k];
      }
      scheduler_.Completed(s, planned);
    }
  }

  // Out of memory in the planned section: try the others, all the refused
  // elements of the batch at once in each (at most K-1 round trips to section
  // threads, not one per element and section: near exhaustion a 64-element
  // ALLOC used to make ~190, enough to outlast a client's 2 s op timeout on a
  // loaded two-core host).
  sc.retry.clear();
  for (uint32_t j = 0; j < m; ++j) {
    if (out_at(j).status == AllocStatus::kOutOfMemory) sc.retry.push_back(j);
  }
  uint64_t visited = 0;
  while (!sc.retry.empty()) {
    uint64_t bytes = 0;
    for (uint32_t j : sc.retry) bytes += RequestScheduler::RoundedBytes(vs[j]);
    const uint32_t s = scheduler_.PickForRetry(bytes, visited);
    if (s == RequestScheduler::kNoSection) break;
    visited |= uint64_t{1} << s;
    // The refused elements that were not planned in s.
    sc.in.clear();
    sc.position.clear();
    for (uint32_t j : sc.retry) {
      if (sc.section_of[j] == s) continue;
      sc.in.push_back(vs[j]);
      sc.position.push_back(j);
    }
    if (sc.in.empty()) {
      scheduler_.Completed(s, RequestScheduler::RoundedBytes(bytes));
      continue;
    }
    scheduler_.RecordOps(s, sc.in.size() - 1);
    sc.alloc_out.resize(sc.in.size());
    sections_[s]->AllocBatch(owner, sc.in, sc.alloc_out);
    scheduler_.Completed(s, RequestScheduler::RoundedBytes(bytes));
    for (size_t k = 0; k < sc.in.size(); ++k) {
      if (sc.alloc_out[k].status != AllocStatus::kOutOfMemory) out_at(sc.position[k]) = sc.alloc_out[k];
    }
    std::erase_if(sc.retry, [&](uint32_t j) { return out_at(j).status != AllocStatus::kOutOfMemory; });
  }
}

AllocResult SharryAllocator::Allocate(OwnerId owner, uint64_t size) {
  AllocResult r;
  AllocBatch(owner, std::span<const uint64_t>(&size, 1), std::span<AllocResult>(&r, 1));
  return r;
}

void SharryAllocator::FreeBatch(OwnerId owner, std::span<const uint64_t> offsets,
                                std::span<AllocStatus> out, uint64_t* freed_bytes) {
  CHECK_EQ(offsets.size(), out.size());
  if (offsets.empty()) return;
  Scratch& sc = tls_scratch;

  // Common case: every offset in one section. Hand the caller's arrays to
  // it as they are.
  const uint32_t first_section = SectionOf(offsets[0]);
  if (first_section != RequestScheduler::kNoSection &&
      std::all_of(offsets.begin() + 1, offsets.end(),
                  [&](uint64_t off) { return SectionOf(off) == first_section; })) {
    scheduler_.RecordOps(first_section, offsets.size());
    sections_[first_section]->FreeBatch(owner, offsets, out, freed_bytes);
    return;
  }

  // Route by one division; offsets past the last section are answered here.
  sc.valid_in.clear();
  sc.valid_pos.clear();
  sc.section_of.clear();
  for (uint32_t i = 0; i < offsets.size(); ++i) {
    const uint32_t s = SectionOf(offsets[i]);
    if (s == RequestScheduler::kNoSection) {
      out[i] = AllocStatus::kOutOfRange;
      continue;
    }
    sc.valid_in.push_back(offsets[i]);
    sc.valid_pos.push_back(i);
    sc.section_of.push_back(s);
  }
  const uint32_t m = static_cast<uint32_t>(sc.valid_in.size());
  if (m == 0) return;

  // The inputs are copied to valid_in either way; group them by section.
  const auto first =
      GroupBySection(num_sections_, sc.valid_in, sc.section_of, &sc.in, &sc.position);
  sc.status_out.resize(m);
  for (uint32_t s = 0; s < num_sections_; ++s)
    if (first[s] != first[s + 1]) scheduler_.RecordOps(s, first[s + 1] - first[s]);
  std::array<Completion, RequestScheduler::kMaxSections> done;
  std::array<uint64_t, RequestScheduler::kMaxSections> freed{};  // one per section: no sharing
  SubmitSlices(sections_, SectionRequest::Kind::kFree, owner, first, sc.in.data(), sc.status_out.data(), done,
               freed_bytes != nullptr ? freed.data() : nullptr);
  for (uint32_t s = 0; s < num_sections_; ++s) {
    if (first[s] == first[s + 1]) continue;
    done[s].Wait(&sections_[s]->running_cpu());
    if (freed_bytes != nullptr) *freed_bytes += freed[s];
    for (uint32_t k = first[s]; k < first[s + 1]; ++k) {
      out[sc.valid_pos[sc.position[k]]] = sc.status_out[k];
    }
  }
}

AllocStatus SharryAllocator::Free(OwnerId owner, uint64_t offset) {
  AllocStatus st;
  FreeBatch(owner, std::span<const uint64_t>(&offset, 1), std::span<AllocStatus>(&st, 1));
  return st;
}

ReclaimResult SharryAllocator::FreeAllOf(OwnerId owner) {
  for (uint32_t s = 0; s < num_sections_; ++s) scheduler_.RecordOps(s, 1);
  std::vector<ReclaimResult> results(num_sections_);
  AskEverySection(sections_, SectionRequest::Kind::kFreeAllOf, owner, results.data());
  ReclaimResult total;
  for (const ReclaimResult& r : results) total += r;
  return total;
}

uint64_t SharryAllocator::Flush() {
  std::vector<uint64_t> flushed(num_sections_);
  AskEverySection(sections_, SectionRequest::Kind::kFlush, kNoOwner, flushed.data());
  uint64_t total = 0;
  for (uint64_t n : flushed) total += n;
  return total;
}

OwnerUsage SharryAllocator::Usage(OwnerId owner) {
  std::array<OwnerUsage, RequestScheduler::kMaxSections> usage;
  AskEverySection(sections_, SectionRequest::Kind::kUsage, owner, usage.data());
  OwnerUsage total{owner, 0, 0};
  for (uint32_t s = 0; s < num_sections_; ++s) {
    total.blocks += usage[s].blocks;
    total.bytes += usage[s].bytes;
  }
  return total;
}

AllocatorStats SharryAllocator::Stats() {
  AllocatorStats out;
  out.sections.resize(num_sections_);
  // Ask every section at once, then collect.
  std::vector<SectionSnapshot> snapshots(num_sections_);
  AskEverySection(sections_, SectionRequest::Kind::kStats, kNoOwner, snapshots.data());
  std::unordered_map<OwnerId, OwnerUsage> owners;
  for (uint32_t s = 0; s < num_sections_; ++s) {
    AllocatorStats::Section& sec = out.sections[s];
    sec.index = s;
    sec.base = sections_[s]->base();
    sec.stats = snapshots[s].stats;
    for (const OwnerUsage& u : snapshots[s].owners) {
      OwnerUsage& o = owners[u.owner];
      o.owner = u.owner;
      o.blocks += u.blocks;
      o.bytes += u.bytes;
    }
    sec.window_ops = scheduler_.WindowOps(s);
    sec.requests_per_second = scheduler_.OpsPerSecond(s);
    sec.ring_depth = sections_[s]->ring_depth();
    sec.requests_served = sections_[s]->requests_served();
    sec.elements_served = sections_[s]->elements_served();
    sec.parks = sections_[s]->parks();
    sec.pinned = sections_[s]->pinned();

    out.total.Add(sec.stats);
  }
  out.owners.reserve(owners.size());
  for (const auto& [id, u] : owners) out.owners.push_back(u);
  std::sort(out.owners.begin(), out.owners.end(), [](const OwnerUsage& a, const OwnerUsage& b) {
    return a.bytes != b.bytes ? a.bytes > b.bytes : a.owner < b.owner;
  });
  return out;
}

}  // namespace sharry::alloc
