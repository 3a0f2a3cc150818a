// A file-based start barrier for benchmark processes that must run their
// timed phase together (scripts/experiments.sh): each process, once its data
// is loaded, creates `ready_file` and then waits until `go_file` exists; the
// driver creates `go_file` when every process is ready. Empty names: no
// barrier. Polls every millisecond (sleeping, so two cores are not starved).
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "base/status.h"

namespace sharry::compute {

inline Status WaitAtStartBarrier(const std::string& ready_file, const std::string& go_file,
                                 std::chrono::seconds timeout = std::chrono::seconds(600)) {
  if (!ready_file.empty()) {
    std::FILE* f = std::fopen(ready_file.c_str(), "w");
    if (f == nullptr) return Status::InvalidArgument("cannot create the ready file " + ready_file);
    std::fclose(f);
  }
  if (go_file.empty()) return Status::Ok();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (access(go_file.c_str(), F_OK) != 0) {
    if (std::chrono::steady_clock::now() > deadline)
      return Status::Timeout("no " + go_file + " after " + std::to_string(timeout.count()) + " s");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return Status::Ok();
}

}  // namespace sharry::compute
