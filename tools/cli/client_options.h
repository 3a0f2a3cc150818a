// The connection flags shared by the client binaries (sharry_client,
// dataframe_bench): --transport, --mode and --memnode HOST:PORT, parsed into
// RuntimeOptions in one place.
#pragma once

#include <string>
#include <string_view>

#include "base/flag_check.h"
#include "compute/runtime.h"

namespace sharry::compute {

// The exit status of a client binary whose run failed with `s`: 2 far
// memory failed mid-run (memnode lost, far data lost), 4 far memory
// exhausted (the working set does not fit in the local bound plus far
// memory), 1 anything else. (3, wrong values read, the callers decide.)
inline int ExitCodeOf(const Status& s) {
  switch (s.code()) {
    case StatusCode::kOutOfMemory:
    case StatusCode::kQuotaExceeded:
    case StatusCode::kResourceExhausted: return 4;
    case StatusCode::kDataLoss:
    case StatusCode::kUnavailable:
    case StatusCode::kDisconnected:
    case StatusCode::kTimeout: return 2;
    default: return 1;
  }
}

// Sets o->transport, o->mode, o->memnode_addr and o->memnode_port. On bad
// input returns an InvalidArgument whose message names the flag, its value
// and what is allowed ("--mode=both is not allowed: use unique, ...") and
// points *bad_flag at the flag's name. Never throws.
inline Status ParseConnectionFlags(std::string_view transport, std::string_view mode, std::string_view memnode,
                                   RuntimeOptions* o, const char** bad_flag) {
  namespace f = sharry::flags;
  if (auto s = f::CheckOneOf("transport", transport, {"verbs", "rdma", "tcp"}); !s.ok())
    return *bad_flag = "--transport", s;
  if (auto s = f::CheckOneOf("mode", mode, {"unique", "unique-copy", "multi", "multi-copy"}); !s.ok())
    return *bad_flag = "--mode", s;
  auto t = ParseTransport(transport);
  if (!t.ok()) return *bad_flag = "--transport", t.status();
  auto m = ParseCopyMode(mode);
  if (!m.ok()) return *bad_flag = "--mode", m.status();
  const size_t colon = memnode.rfind(':');
  const std::string_view port = colon == std::string_view::npos ? std::string_view() : memnode.substr(colon + 1);
  auto ports = f::ParseU64List("memnode", port, 1, 65535);  // no comma is allowed below
  if (colon == 0 || colon == std::string_view::npos || port.find(',') != std::string_view::npos || !ports.ok())
    return *bad_flag = "--memnode",
           Status::InvalidArgument("--memnode=" + std::string(memnode) + " is not HOST:PORT with PORT in 1..65535");
  o->transport = *t;
  o->mode = *m;
  o->memnode_addr = std::string(memnode.substr(0, colon));
  o->memnode_port = static_cast<uint16_t>((*ports)[0]);
  return Status::Ok();
}

}  // namespace sharry::compute
