// MemnodeInfo: what a memnode says about itself in the discovery registry,
// the value of its key <prefix><addr> in etcd (memnode_registry.h). A small
// JSON object, one line:
//
//   {"addr":"10.0.0.7:7000","transport":"tcp","uma_bytes":1073741824,"started":1767261600123}
//
//   addr       host:port clients connect to (the key's suffix, repeated)
//   transport  "tcp" or "verbs"
//   uma_bytes  the far memory it serves (its UMA), in bytes
//   started    when this memnode process started, in Unix milliseconds: a
//              memnode restarted at the same address has a new value (and
//              none of its predecessor's far memory)
//
// Decoding ignores fields it does not know (newer memnodes may add some) and
// refuses a value without one of these four, or with one of the wrong type
// (InvalidArgument naming it).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace sharry::discovery {

struct MemnodeInfo {
  std::string addr;
  std::string transport;
  uint64_t uma_bytes = 0;
  int64_t started_ms = 0;

  bool operator==(const MemnodeInfo&) const = default;
};

std::string EncodeMemnodeInfo(const MemnodeInfo& info);
StatusOr<MemnodeInfo> DecodeMemnodeInfo(std::string_view json);

// Now, in Unix milliseconds (for MemnodeInfo::started_ms).
int64_t UnixMillisNow();

}  // namespace sharry::discovery
