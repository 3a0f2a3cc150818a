// The connection flags shared by the client binaries (sharry_client,
// dataframe_bench): --transport, --mode and --memnode HOST:PORT, parsed into
// RuntimeOptions in one place.
#pragma once

#include <string>
#include <string_view>

#include "compute/runtime.h"

namespace sharry::compute {

// Sets o->transport, o->mode, o->memnode_addr and o->memnode_port. On bad
// input returns the error and points *bad_flag at the flag's name.
inline Status ParseConnectionFlags(std::string_view transport, std::string_view mode, std::string_view memnode,
                                   RuntimeOptions* o, const char** bad_flag) {
  auto t = ParseTransport(transport);
  if (!t.ok()) return *bad_flag = "--transport", t.status();
  auto m = ParseCopyMode(mode);
  if (!m.ok()) return *bad_flag = "--mode", m.status();
  const size_t colon = memnode.rfind(':');
  const std::string port(colon == std::string_view::npos ? "" : memnode.substr(colon + 1));
  if (colon == std::string_view::npos || port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoul(port) > 65535)
    return *bad_flag = "--memnode", Status::InvalidArgument("want HOST:PORT, not '" + std::string(memnode) + "'");
  o->transport = *t;
  o->mode = *m;
  o->memnode_addr = std::string(memnode.substr(0, colon));
  o->memnode_port = static_cast<uint16_t>(std::stoul(port));
  return Status::Ok();
}

}  // namespace sharry::compute
