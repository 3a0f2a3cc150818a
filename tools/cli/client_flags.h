// The flags of the client binaries (sharry_client, dataframe_bench), defined
// once: --memnode (a list), --redundancy, --mode and --op_timeout_ms (with --transport from
// tools/cli/program.h) for the connection, --ready_file and --go_file for the start barrier
// (tools/cli/start_barrier.h); and the result fields both report the same
// way. In client_flags.cc: a binary that uses none of this does not link the
// object, so it does not get the flags.
#pragma once

#include <gflags/gflags.h>

#include <string_view>

#include "base/status.h"
#include "compute/runtime.h"
#include "tools/cli/output.h"

DECLARE_string(memnode);
DECLARE_string(redundancy);
DECLARE_string(mode);
DECLARE_string(offload);
DECLARE_int32(op_timeout_ms);
DECLARE_double(ec_hole_budget);
DECLARE_string(ready_file);
DECLARE_string(go_file);

namespace sharry::compute {

// Sets o's connection (ParseConnectionFlags) from --transport, --mode,
// --memnode and --redundancy, and o->op_timeout_ms from --op_timeout_ms; a
// bad value exits with status 2 and a line naming the flag.
void ConnectionFromFlags(std::string_view program, RuntimeOptions* o);

// WaitAtStartBarrier(--ready_file, --go_file).
Status WaitAtStartBarrierOfFlags();

// Adds the swap counters of a timed phase (`st`: its RuntimeStats::Since):
// hit_rate, swap_ins, swap_outs, drops.
void AddSwapCounters(const RuntimeStats& st, cli::Record* r);

// The far memory of a run, taken while its data still exists (`st`: the
// timed phase's RuntimeStats::Since; asks every memnode for STATS):
//   far_bytes_mine       bytes our blocks hold, summed over the memnodes that answer
//   far_bytes_memnode    the used bytes of those memnodes (every client's)
//   memnodes_answered    how many answered (a dead one does not)
//   far_copy_bytes       our far copies in object bytes (far bytes x copies)
//   far_bytes_node<i>    of which at memnode i (--memnode order), the runtime's count
//   degraded_reads, repaired_objects, dead_memnodes, lost_objects  (the phase's counts)
//   repair_pending       objects still short of a copy at the end
//   stripes              ec: live stripes at the end
//   restriped_objects    ec: objects moved out of stripes with holes (the phase's count)
cli::Record FarCounters(Runtime& rt, const RuntimeStats& st);

}  // namespace sharry::compute
