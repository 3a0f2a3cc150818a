// OffloadJob: one OFFLOAD request (memnode/rpc.h), checked and decoded —
// what an offload worker runs (memnode/offload_workers.h) — and the two
// halves of its life: ParseOffloadRequest (on the poller that received it)
// and RunOffloadJob (on an offload worker).
//
// What may be read: only pages of the requesting client's SESSION (the
// root's client id, which owns the session's blocks), each pinned in the
// page-owner map (RegionAccess) while it is read. The allocator's metadata
// lives on its section threads, so a poller cannot ask cheaply whether a
// range lies inside one live block; the check is by pages instead: every
// page of every piece, and of the result block, must be the session's.
// A piece that runs past its block into another of the session's blocks
// (or the free tail of the session's own span) is thus accepted — it reads
// only the session's own bytes (or zeros). docs/offload.md.
//
// Errors name what failed: "unit 3, column 1, piece 0: [8192, +4096) is
// not this session's far memory". Parse errors are request-level (nothing
// queued); run errors fail the job (OFFLOAD_WAIT reports them) and leave
// the result block untouched.
//
// Thread-safety: both functions are reentrant; a job is run by one thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "base/status.h"
#include "memnode/rpc.h"
#include "offload/spec.h"
#include "verbs/transport.h"

namespace sharry::memnode {

// The memnode's limits on one OFFLOAD.
struct OffloadLimits {
  uint64_t max_rows = 4194304;  // rows of all units together (--offload_max_rows)
  // The job's result buffer (units x partial bytes), held by the worker
  // while it runs: a bound on a worker's memory.
  uint64_t max_result_bytes = uint64_t{64} << 20;
};

struct OffloadJob {
  struct Unit {
    uint64_t first_row = 0;
    uint32_t rows = 0;
  };
  offload::Spec spec;
  size_t partial_bytes = 0;  // offload::PartialBytes(spec)
  uint64_t result_offset = 0;
  uint32_t result_bytes = 0;
  std::vector<Unit> units;
  // Every unit's pieces, unit-major, then column by column: the pieces of
  // unit u, column c are pieces[starts[u*C + c] .. starts[u*C + c + 1]),
  // C = spec.columns.size().
  std::vector<PieceRef> pieces;
  std::vector<uint32_t> starts;
  uint64_t rows = 0;  // of all units

  size_t columns() const { return spec.columns.size(); }
  std::span<const PieceRef> PiecesOf(size_t unit, size_t column) const {
    const size_t i = unit * columns() + column;
    return {pieces.data() + starts[i], pieces.data() + starts[i + 1]};
  }
};

// Decodes and checks an OFFLOAD of `units` units (the RpcHeader's count;
// `body` is what follows the RpcHeader) from a client of `session`, over a
// region of region_size bytes whose page owners `access` knows. Every piece
// and the result block are checked against the session's pages (pinned and
// unpinned at once: a check, not a hold).
StatusOr<OffloadJob> ParseOffloadRequest(uint16_t units, std::span<const uint8_t> body, uint32_t session,
                                         const OffloadLimits& limits, RegionAccess* access, uint64_t region_size);

// What a running job reports and obeys besides its result.
struct OffloadRunControl {
  // Checked before each unit: set, the job stops there (Disconnected).
  const std::atomic<bool>* cancel = nullptr;
  // Called before each unit, with no page pinned (tests order a free here).
  std::function<void(size_t unit)> before_unit;
};

// Runs `job` over the region at `region` for `session`: for each unit, pins
// every piece (a failed pin — the block was freed and its pages revoked
// meanwhile — fails the job with PermissionDenied naming unit, column and
// piece), runs offload::RunUnit into a job-local buffer, unpins. Then pins
// the result block and copies the units' partials there (unit order).
// *rows_done counts the rows of the units that ran.
Status RunOffloadJob(const OffloadJob& job, uint32_t session, uint8_t* region, RegionAccess* access,
                     const OffloadRunControl& control, uint64_t* rows_done);

}  // namespace sharry::memnode
