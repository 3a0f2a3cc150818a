// What /proc says about another process: resident memory, open descriptors,
// CPU time. For the tests and benchmarks that watch a memnode under attack
// (tests/memnode_hostile_test.cc, bench/hostile_bench.cc). Each returns -1
// when the process is gone or /proc cannot be read.
#pragma once

#include <sys/types.h>

namespace sharry::proc {

// VmRSS of /proc/<pid>/status, KiB.
long RssKb(pid_t pid);
// Entries of /proc/<pid>/fd.
int FdCount(pid_t pid);
// utime + stime of /proc/<pid>/stat, clock ticks (sysconf(_SC_CLK_TCK)).
long CpuTicks(pid_t pid);

}  // namespace sharry::proc
