// RemoteKeys: a verbs client's keys to its session's far blocks, when the
// server confines one-sided access (ServerOptions::confine; docs/tenants.md
// "Verbs confinement").
//
// The server registers each span it grants to a session as its own memory
// region, and the ALLOC reply carries, per block, the key (rkey) of the
// region covering it. This table maps each 8 KiB page of the server's region
// to the key last learned for it: 4 bytes per page (0.05 % of the region's
// size, on the client), one relaxed atomic each, no lock.
//
// Why a key learned from the newest ALLOC is never stale for a block the
// session holds: the server deregisters a span's region only after the
// span's last block is freed (or the session is reclaimed), and a block the
// session holds keeps its span registered; a later grant of the same pages
// comes with a new key in the ALLOC reply of the block that caused it.
// Pages of blocks the session gave back may keep old keys: using one is a
// remote access error the device raises (the connection dies), which only a
// client touching memory it does not hold can cause.
//
// The verbs server keeps the same table for the keys it hands out
// (VerbsServer::RemoteKey: Learn on grant, Learn(..., 0) on revoke).
//
// Thread-safety: Learn and Find may run concurrently from the session's
// connections; a key learned on one thread is seen by another once the
// block's offset reached it through the application's own synchronisation.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

namespace sharry {

class RemoteKeys {
 public:
  static constexpr uint32_t kPageShift = 13;  // the memnode's page (alloc::kPageSize)

  // Sized by the first connection's welcome (the server's region_size);
  // later calls with the same size are no-ops.
  void Init(uint64_t region_size);
  // [offset, offset+len) (one block) is reached with `rkey`.
  void Learn(uint64_t offset, uint64_t len, uint32_t rkey);
  // The key for [offset, offset+len): 0 when none was learned, or when the
  // range's first and last pages have different keys (it crosses regions).
  uint32_t Find(uint64_t offset, uint64_t len) const;

 private:
  std::once_flag once_;
  uint64_t pages_ = 0;
  std::unique_ptr<std::atomic<uint32_t>[]> keys_;
};

}  // namespace sharry
