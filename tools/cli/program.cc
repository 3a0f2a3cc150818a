#include "tools/cli/program.h"

#include <glog/logging.h>

#include <string>

#include "base/flag_check.h"
#include "tools/cli/ranged_flag.h"

namespace sharry::cli {

void InitProgram(int* argc, char*** argv, std::string_view usage, Log log) {
  if (!usage.empty()) gflags::SetUsageMessage(std::string(usage));
  // Set before parsing, so that --stderrthreshold still overrides it.
  if (log == Log::kWarnings) FLAGS_stderrthreshold = google::GLOG_WARNING;
  gflags::ParseCommandLineFlags(argc, argv, true);
  // Every SHARRY_FLAG's range (tools/cli/ranged_flag.h), before anything starts.
  flags::ExitOnBadFlags(gflags::ProgramInvocationShortName(), CheckFlagRanges());
  if (log == Log::kStderr) FLAGS_logtostderr = true;
  google::InitGoogleLogging((*argv)[0]);
}

}  // namespace sharry::cli
