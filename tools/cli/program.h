// The frame every benchmark and tool main() shares, one copy: usage message,
// gflags parsing, glog set-up, and the --transport flag (defined once, in
// program_transport.cc, so only the binaries that use it have it).
#pragma once

#include <gflags/gflags.h>

#include <string_view>

#include "verbs/auth.h"
#include "verbs/transport.h"

DECLARE_string(transport);

namespace sharry::cli {

// Where glog's messages go besides its log files.
enum class Log {
  kFiles,     // log files only (glog's default)
  kWarnings,  // warnings and errors also on stderr (--stderrthreshold still overrides)
  kStderr,    // everything on stderr, no log files (daemons under a supervisor)
};

// Sets the usage message (if `usage` is not empty), parses the flags
// (removing them from argv) and initialises glog as `log` says.
void InitProgram(int* argc, char*** argv, std::string_view usage, Log log = Log::kFiles);

// --transport ("verbs", "rdma" or "tcp"), checked: a bad value exits with
// status 2 and a line naming the flag (flags::ExitOnBadFlags).
TransportKind TransportFromFlags(std::string_view program);

// --tenant and --secret_file (program_credentials.cc), checked: a bad name,
// a tenant without a secret file, a secret file that is missing, readable
// by others or malformed exit with status 2 and a line naming the flag.
// With no --tenant, *tenant stays empty (anonymous). `tenant_override`, if
// not empty, replaces --tenant (memnode_stats --admin: "admin").
void CredentialsFromFlags(std::string_view program, std::string_view tenant_override, std::string* tenant,
                          auth::Secret* secret);

}  // namespace sharry::cli
