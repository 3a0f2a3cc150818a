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

// Sets o->transport, o->mode, o->memnodes (and o->memnode_addr/port: the
// first) and o->redundancy. On bad input returns an InvalidArgument whose
// message names the flag, its value and what is allowed ("--mode=both is not
// allowed: use unique, ...") and points *bad_flag at the flag's name. Never
// throws.
// With etcd (host:port, or empty), the memnodes registered there count too:
// then memnode may be empty (etcd names them all).
inline Status ParseConnectionFlags(std::string_view transport, std::string_view mode, std::string_view memnode,
                                   std::string_view redundancy, RuntimeOptions* o, const char** bad_flag,
                                   std::string_view etcd = {}) {
  namespace f = sharry::flags;
  if (auto s = f::CheckOneOf("transport", transport, {"verbs", "rdma", "tcp"}); !s.ok())
    return *bad_flag = "--transport", s;
  if (auto s = f::CheckOneOf("mode", mode, {"unique", "unique-copy", "multi", "multi-copy"}); !s.ok())
    return *bad_flag = "--mode", s;
  auto t = ParseTransport(transport);
  if (!t.ok()) return *bad_flag = "--transport", t.status();
  auto m = ParseCopyMode(mode);
  if (!m.ok()) return *bad_flag = "--mode", m.status();
  if (!etcd.empty()) {
    auto e = ParseMemnodeList(etcd, 0);
    if (!e.ok() || e->size() != 1 || (*e)[0].port == 0)
      return *bad_flag = "--etcd", Status::InvalidArgument("--etcd=" + std::string(etcd) +
                                                           " is not HOST:PORT with PORT in 1..65535");
    o->etcd = std::string(etcd);
  }
  // Every entry needs its port here (a bare host is refused: 0 as default).
  auto nodes = memnode.empty() && !etcd.empty() ? StatusOr<std::vector<MemnodeAddress>>(std::vector<MemnodeAddress>{})
                                                : ParseMemnodeList(memnode, 0);
  bool ports = nodes.ok();
  if (nodes.ok())
    for (const MemnodeAddress& a : *nodes) ports = ports && a.port != 0;
  if (!ports)
    return *bad_flag = "--memnode",
           Status::InvalidArgument("--memnode=" + std::string(memnode) + " is not HOST:PORT[,HOST:PORT...] with " +
                                   "PORT in 1..65535, at most " + std::to_string(kMaxMemnodes) + ", no duplicates" +
                                   (nodes.ok() ? "" : " (" + nodes.status().message() + ")"));
  auto r = ParseRedundancy(redundancy);
  if (!r.ok())
    // ("--redundancy 'replicate:9': use none, replicate:R (R in 2..4) or ec:K+M")
    return *bad_flag = "--redundancy", Status::InvalidArgument("--" + r.status().message());
  if (r->nodes_needed() > nodes->size() && etcd.empty())
    return *bad_flag = "--redundancy",
           Status::InvalidArgument("--redundancy=" + std::string(redundancy) + " needs at least " +
                                   std::to_string(r->nodes_needed()) + " memnodes; --memnode names " +
                                   std::to_string(nodes->size()));
  o->transport = *t;
  o->mode = *m;
  o->memnodes = *nodes;
  if (!nodes->empty()) {
    o->memnode_addr = (*nodes)[0].host;
    o->memnode_port = (*nodes)[0].port;
  }
  o->redundancy = *r;
  return Status::Ok();
}

}  // namespace sharry::compute
