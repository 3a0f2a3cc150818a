// --transport, in a file of its own: a binary that never asks for it does not
// link this object, so its --help does not list the flag.
#include "base/flag_check.h"
#include "tools/cli/program.h"

DEFINE_string(transport, "tcp", "verbs or tcp");

namespace sharry::cli {

TransportKind TransportFromFlags(std::string_view program) {
  namespace f = sharry::flags;
  f::ExitOnBadFlags(program, f::CheckOneOf("transport", FLAGS_transport, {"verbs", "rdma", "tcp"}));
  auto kind = ParseTransport(FLAGS_transport);
  if (!kind.ok()) f::ExitOnBadFlags(program, kind.status());
  return *kind;
}

}  // namespace sharry::cli
