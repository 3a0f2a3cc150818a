#include "tools/cli/program.h"

#include <glog/logging.h>

#include <string>

namespace sharry::cli {

void InitProgram(int* argc, char*** argv, std::string_view usage, Log log) {
  if (!usage.empty()) gflags::SetUsageMessage(std::string(usage));
  // Set before parsing, so that --stderrthreshold still overrides it.
  if (log == Log::kWarnings) FLAGS_stderrthreshold = google::GLOG_WARNING;
  gflags::ParseCommandLineFlags(argc, argv, true);
  if (log == Log::kStderr) FLAGS_logtostderr = true;
  google::InitGoogleLogging((*argv)[0]);
}

}  // namespace sharry::cli
