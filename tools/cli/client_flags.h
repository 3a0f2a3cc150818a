// The flags of the client binaries (sharry_client, dataframe_bench), defined
// once: --memnode (a list), --redundancy and --mode (with --transport from tools/cli/program.h) for
// the connection, --ready_file and --go_file for the start barrier
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
DECLARE_string(ready_file);
DECLARE_string(go_file);

namespace sharry::compute {

// Sets o's connection (ParseConnectionFlags) from --transport, --mode and
// --memnode; a bad value exits with status 2 and a line naming the flag.
void ConnectionFromFlags(std::string_view program, RuntimeOptions* o);

// WaitAtStartBarrier(--ready_file, --go_file).
Status WaitAtStartBarrierOfFlags();

// Adds the swap counters of a timed phase (`st`: its RuntimeStats::Since):
// hit_rate, swap_ins, swap_outs, drops.
void AddSwapCounters(const RuntimeStats& st, cli::Record* r);

}  // namespace sharry::compute
