// Copyright 2024 The Sharry Authors.
//
// private_spans_bench: the far-memory cost of private spans (issue #11: a
// span holds one client's blocks, so that it can be granted to and revoked
// from exactly one client) and the spans granted to clients. For 3 and 30
// clients, each allocating a given number of bytes — 4 KiB objects (the
// demo's arrays) or a hash-table-like mix (3 in 4 of 16..512 B, 1 in 4 of
// 4 KiB) — interleaved, with a free now and then, it prints
//   * the pages the allocator holds (section minus free runs) with shared
//     spans (the paper's allocator), with private spans of the size-class
//     table's size (growing_spans off: the allocator before growing spans;
//     mixed spans on) and with private spans that grow with what their
//     owner holds of the class (the default), and the overhead of each
//     private layout: held minus held with shared spans, as a share of the
//     bytes in use (the blocks' rounded sizes, the same in every run), and
//   * the spans granted to clients (SpanObserver::OnGrant calls) per MiB
//     allocated, with private spans: over verbs each grant registers one MR.
// Every run makes the same requests (the same random stream).
//
// A second table: churn. One client holds a given number of bytes of 4 KiB
// objects, then allocates a batch and frees it again (memnode_rpc_bench's
// ALLOC+FREE), many rounds; it prints grants and revokes per round.
//
//   build/bench/private_spans_bench

#include <cstdint>
#include <cstdio>
#include <random>
#include <utility>
#include <vector>

#include "alloc/section_allocator.h"
#include "alloc/size_classes.h"
#include "alloc/span_observer.h"

namespace sharry::alloc {
namespace {

class GrantCounter : public SpanObserver {
 public:
  void OnGrant(OwnerId, uint64_t, uint64_t) override { ++grants; }
  void OnRevoke(OwnerId, uint64_t, uint64_t) override { ++revokes; }
  uint64_t grants = 0;
  uint64_t revokes = 0;
};

struct Result {
  double held_mib = 0;
  double used_mib = 0;
  double allocated_mib = 0;  // rounded bytes of every allocation, freed or not
  uint64_t grants = 0;
  bool oom = false;
};

enum class Layout { kShared, kPrivate, kPrivateGrowing };

Result Run(Layout layout, int clients, uint64_t bytes_per_client, bool mixed, uint64_t seed) {
  GrantCounter counter;
  const bool private_spans = layout != Layout::kShared;
  SectionAllocator a({.length = uint64_t{4} << 30,
                      .free_batch_threshold = 64,
                      .private_spans = private_spans,
                      .growing_spans = layout == Layout::kPrivateGrowing,
                      .observer = private_spans ? &counter : nullptr});
  std::mt19937_64 rng(seed);
  std::vector<std::vector<uint64_t>> live(clients);
  std::vector<uint64_t> have(clients, 0);
  Result res;
  // Interleaved allocations (clients run concurrently), some frees.
  bool more = true;
  while (more) {
    more = false;
    for (int c = 0; c < clients; ++c) {
      if (have[c] >= bytes_per_client) continue;
      more = true;
      uint64_t size = 4096;
      if (mixed) {  // hash-table-like: 16..512 B entries, and 4 KiB chunks
        const int k = static_cast<int>(rng() % 4);
        size = k == 0 ? 4096 : 16 + rng() % 497;
      }
      const AllocResult r = a.Allocate(size, static_cast<OwnerId>(c));
      if (!r.ok()) {
        res.oom = true;
        return res;
      }
      live[c].push_back(r.offset);
      have[c] += SizeMap::RoundedSize(size);
      if (rng() % 10 == 0 && live[c].size() > 1) {  // a free now and then
        const size_t i = rng() % live[c].size();
        (void)a.Free(live[c][i], static_cast<OwnerId>(c));
        live[c][i] = live[c].back();
        live[c].pop_back();
      }
    }
  }
  a.FlushPendingFrees();
  a.CheckInvariants();
  const SectionStats s = a.stats();
  constexpr double kMiB = 1 << 20;
  res.held_mib = static_cast<double>(s.section_bytes - s.page_heap_free_bytes) / kMiB;
  res.used_mib = static_cast<double>(s.used_bytes) / kMiB;
  for (uint64_t h : have) res.allocated_mib += static_cast<double>(h) / kMiB;
  res.grants = counter.grants;
  return res;
}

// Grants and revokes per round of `batch` 4 KiB allocations freed again,
// by one client that holds `held` bytes of them.
std::pair<double, double> Churn(bool growing, uint64_t held, int batch) {
  GrantCounter counter;
  SectionAllocator a({.length = uint64_t{1} << 30, .free_batch_threshold = 64, .growing_spans = growing,
                      .observer = &counter});
  for (uint64_t b = 0; b < held; b += 4096) {
    if (!a.Allocate(4096, 1).ok()) return {-1, -1};
  }
  constexpr int kRounds = 1000;
  const uint64_t g0 = counter.grants, r0 = counter.revokes;
  std::vector<uint64_t> offs(batch);
  for (int round = 0; round < kRounds; ++round) {
    for (uint64_t& off : offs) off = a.Allocate(4096, 1).offset;
    for (uint64_t off : offs) (void)a.Free(off, 1);
  }
  a.CheckInvariants();
  return {static_cast<double>(counter.grants - g0) / kRounds, static_cast<double>(counter.revokes - r0) / kRounds};
}

}  // namespace
}  // namespace sharry::alloc

int main() {
  using sharry::alloc::Layout;
  using sharry::alloc::Result;
  using sharry::alloc::Run;
  std::printf("overhead: held minus held with shared spans, %% of used; grants: OnGrant calls per MiB allocated\n");
  std::printf("before: private spans of the table's size; after: growing spans (the default)\n");
  std::printf("%-12s %7s %10s %9s %14s %14s %14s\n", "objects", "clients", "MiB each", "used MiB", "held: shared",
              "before", "after");
  for (bool mixed : {false, true}) {
    for (int clients : {3, 30}) {
      for (uint64_t per : {uint64_t{1} << 20, uint64_t{32} << 20}) {
        const Result shared = Run(Layout::kShared, clients, per, mixed, 1);
        const Result before = Run(Layout::kPrivate, clients, per, mixed, 1);
        const Result after = Run(Layout::kPrivateGrowing, clients, per, mixed, 1);
        if (shared.oom || before.oom || after.oom) {
          std::printf("out of memory\n");
          return 1;
        }
        auto overhead = [&](const Result& r) { return 100.0 * (r.held_mib - shared.held_mib) / r.used_mib; };
        auto grants = [](const Result& r) { return static_cast<double>(r.grants) / r.allocated_mib; };
        std::printf("%-12s %7d %10.0f %9.2f %14.2f %14.2f %14.2f   overhead %+6.2f%% -> %+6.2f%%"
                    "   grants/MiB %6.1f -> %5.1f\n",
                    mixed ? "mixed" : "4KiB", clients, static_cast<double>(per) / (1 << 20), after.used_mib,
                    shared.held_mib, before.held_mib, after.held_mib, overhead(before), overhead(after),
                    grants(before), grants(after));
      }
    }
  }
  std::printf("\nchurn: one client holding H MiB of 4 KiB objects allocates a batch and frees it, 1000 rounds\n");
  std::printf("%8s %6s %26s %26s\n", "H MiB", "batch", "before: grants revokes", "after: grants revokes");
  for (uint64_t held : {uint64_t{0}, uint64_t{32} << 20}) {
    for (int batch : {1, 16, 256}) {
      const auto [gb, rb] = sharry::alloc::Churn(false, held, batch);
      const auto [ga, ra] = sharry::alloc::Churn(true, held, batch);
      std::printf("%8.0f %6d %17.2f %8.2f %17.2f %8.2f\n", static_cast<double>(held) / (1 << 20), batch, gb, rb, ga,
                  ra);
    }
  }
  return 0;
}
