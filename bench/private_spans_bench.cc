// private_spans_bench: the far-memory cost of private spans (issue #11: a
// span holds one client's blocks, so that it can be granted to and revoked
// from exactly one client). For 3 and 30 clients, each allocating a given
// number of bytes — 4 KiB objects (the demo's arrays) or a hash-table-like
// mix (3 in 4 of 16..512 B, 1 in 4 of 4 KiB) — interleaved, with a free now
// and then, it prints the pages the allocator holds (section minus free
// runs) with shared spans (the paper's allocator) and with private spans,
// and the difference as a share of the bytes in use.
//
//   build/bench/private_spans_bench
#include <cstdio>
#include <random>
#include <vector>
#include "alloc/section_allocator.h"
#include "alloc/size_classes.h"
using namespace sharry::alloc;
struct R { double held_mib, used_mib; };
R Run(bool priv, int clients, uint64_t bytes_per_client, bool mixed, uint64_t seed) {
  SectionAllocator a({.length = uint64_t{4} << 30, .free_batch_threshold = 64, .private_spans = priv});
  std::mt19937_64 rng(seed);
  std::vector<std::vector<uint64_t>> live(clients);
  std::vector<uint64_t> have(clients, 0);
  // Interleaved allocations (clients run concurrently), some frees.
  bool more = true;
  while (more) {
    more = false;
    for (int c = 0; c < clients; ++c) {
      if (have[c] >= bytes_per_client) continue;
      more = true;
      uint64_t size = 4096;
      if (mixed) {  // hash-table-like: 16..512 B entries, and 4 KiB chunks
        const int k = rng() % 4;
        size = k == 0 ? 4096 : 16 + rng() % 497;
      }
      AllocResult r = a.Allocate(size, static_cast<OwnerId>(c));
      if (!r.ok()) { std::printf("oom\n"); return {}; }
      live[c].push_back(r.offset);
      have[c] += SizeMap::RoundedSize(size);
      if (rng() % 10 == 0 && live[c].size() > 1) {  // a free now and then
        size_t i = rng() % live[c].size();
        (void)a.Free(live[c][i], static_cast<OwnerId>(c));
        live[c][i] = live[c].back();
        live[c].pop_back();
      }
    }
  }
  a.FlushPendingFrees();
  const SectionStats s = a.stats();
  return {double(s.section_bytes - s.page_heap_free_bytes) / (1 << 20), double(s.used_bytes) / (1 << 20)};
}
int main() {
  for (bool mixed : {false, true})
    for (int clients : {3, 30})
      for (uint64_t per : {uint64_t{1} << 20, uint64_t{32} << 20}) {
        R off = Run(false, clients, per, mixed, 1), on = Run(true, clients, per, mixed, 1);
        std::printf("%-14s clients=%2d per_client=%5.1f MiB  used %.2f MiB  held: shared %.2f MiB, private %.2f MiB  overhead %+.2f%% of used\n",
                    mixed ? "mixed" : "4KiB objects", clients, double(per) / (1 << 20), on.used_mib, off.held_mib, on.held_mib,
                    100.0 * (on.held_mib - off.held_mib) / on.used_mib);
      }
}
