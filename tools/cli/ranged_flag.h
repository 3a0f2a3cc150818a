// A numeric command-line flag defined together with its allowed range, so
// that the range is written once and the help text and the check cannot
// drift apart:
//
//   SHARRY_FLAG(int32, threads, 1, 1, 256, "worker threads");
//
// defines --threads (gflags' DEFINE_int32) with the help text
// "worker threads [1..256]", and cli::InitProgram checks every such flag of
// the binary right after parsing: a value outside its range prints
//   "<program>: --threads=0 is out of range: allowed 1..256"
// on stderr and exits with status 2 (flags::ExitOnBadFlags), before anything
// starts. `lo` and `hi` are evaluated twice: once for the help text, during
// static initialisation, and again for the check, so they may call functions
// such as flags::PhysicalMiB(), but must not read other flags (a range that
// depends on another flag is checked in main(), with flags::CheckRange).
//
// Types: int32, int64, uint32, uint64 and double (finite values only).
#pragma once

#include <gflags/gflags.h>

#include <cstdint>
#include <string_view>

#include "base/flag_check.h"
#include "base/status.h"

namespace sharry::cli {

// The checks of every SHARRY_FLAG of this binary, in definition order; the
// first failure, or OK. cli::InitProgram calls this.
Status CheckFlagRanges();

namespace internal {

// Registers --name's range check and returns `help` with the range appended
// (storage that lives as long as the program: gflags keeps the pointer).
const char* RangedHelp(const char* name, const int32_t* flag, int64_t lo, int64_t hi, const char* help);
const char* RangedHelp(const char* name, const int64_t* flag, int64_t lo, int64_t hi, const char* help);
const char* RangedHelp(const char* name, const uint32_t* flag, uint64_t lo, uint64_t hi, const char* help);
const char* RangedHelp(const char* name, const uint64_t* flag, uint64_t lo, uint64_t hi, const char* help);
const char* RangedHelp(const char* name, const double* flag, double lo, double hi, const char* help);

}  // namespace internal
}  // namespace sharry::cli

// gflags' DEFINE_<type> declares FLAGS_<name> before it registers the help
// text, so the help expression can take the flag's address.
#define SHARRY_FLAG(type, name, value, lo, hi, help) \
  DEFINE_##type(name, value, ::sharry::cli::internal::RangedHelp(#name, &FLAGS_##name, (lo), (hi), help))
