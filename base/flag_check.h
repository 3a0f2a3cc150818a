// Checked command-line flags, shared by every binary (memnode, memnode_stats,
// sharry_client, the benches and examples).
//
// Each check returns OK or an InvalidArgument whose message names the flag,
// the value and what is allowed, in one line a user can act on:
//   "--port=70000 is out of range: allowed 0..65535"
//   "--pattern=foo is not allowed: use random or scan"
// A binary runs its checks right after gflags::ParseCommandLineFlags and
// hands them to ExitOnBadFlags, which prints the first failure on stderr and
// exits with status 2 before anything starts. No check throws, wraps around
// or overflows: values are compared in their own type, before any unit
// conversion (see MiBToBytes).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace sharry::flags {

// `name` is the flag's name without dashes ("port"); messages add them.

// value in [lo, hi].
Status CheckRange(std::string_view name, int64_t value, int64_t lo, int64_t hi);
Status CheckRangeU(std::string_view name, uint64_t value, uint64_t lo, uint64_t hi);
// value finite (not nan or inf) and in [lo, hi].
Status CheckRangeF(std::string_view name, double value, double lo, double hi);
// value is one of `allowed`; the message lists them all.
Status CheckOneOf(std::string_view name, std::string_view value, std::initializer_list<std::string_view> allowed);

// A comma-separated list whose every entry is one of `allowed`; at least one.
Status CheckListOf(std::string_view name, std::string_view value, std::initializer_list<std::string_view> allowed);

// A comma-separated core list ("0,2,3"); each entry a decimal integer in
// [0, NumCores()-1] or -1 (not pinned). The empty string is the empty list
// (nothing pinned); empty entries ("1,,2") and anything else are refused.
StatusOr<std::vector<int>> ParseCoreList(std::string_view name, std::string_view value);

// A comma-separated list of unsigned decimal integers, each in [lo, hi];
// at least one entry.
StatusOr<std::vector<uint64_t>> ParseU64List(std::string_view name, std::string_view value, uint64_t lo,
                                             uint64_t hi);

// Online cores of this machine (at least 1).
int NumCores();
// Physical memory of this machine in MiB (at least 1): the most a flag that
// maps and populates memory may ask for.
uint64_t PhysicalMiB();

// The largest byte count any size flag may describe: 2^44 (16 TiB). Sizes in
// MiB or KiB are checked against this (shifted) before they are converted,
// so the conversion cannot wrap.
inline constexpr uint64_t kMaxFlagBytes = uint64_t{1} << 44;
inline constexpr uint64_t kMaxFlagMiB = kMaxFlagBytes >> 20;
inline constexpr uint64_t kMaxFlagKiB = kMaxFlagBytes >> 10;

// Returns the first non-OK status of `checks`, or OK. All are evaluated.
Status FirstError(std::initializer_list<Status> checks);

// If `s` is not OK, prints "<program>: <message>" as one line on stderr and
// exits with status 2 (the usage-error convention). Returns only if OK.
void ExitOnBadFlags(std::string_view program, const Status& s);
inline void ExitOnBadFlags(std::string_view program, std::initializer_list<Status> checks) {
  ExitOnBadFlags(program, FirstError(checks));
}

// The frame of every binary's main: ignores SIGPIPE first (a peer that closes
// its end must never kill the process; writes then fail with EPIPE), runs
// `body` and returns its exit status. The last line of defence: an exception
// escaping `body` is printed as one line on stderr ("<program>: unexpected
// error: ...", or "<program>: <out_of_memory>" for std::bad_alloc) and the
// status is 1.
int RunMain(std::string_view program, int (*body)(int, char**), int argc, char** argv,
            std::string_view out_of_memory = "out of memory (std::bad_alloc): ask for less (smaller sizes or counts)");

}  // namespace sharry::flags
