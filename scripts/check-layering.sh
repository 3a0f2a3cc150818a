#!/usr/bin/env bash
# Checks that includes run only downward through the layers (docs/layout.md):
#
#   tools, bench, examples -> workloads -> remote_ds -> compute
#     -> memnode_client (memnode/rpc.h, memnode/client.h) -> verbs -> base
#   memnode (the server) -> alloc, memnode_client, verbs -> base
#   discovery -> base; memnode (the server), compute and what is above them
#     may include discovery
#   offload -> base; memnode (client and server), compute and what is above
#     them may include offload (the operator spec and the aggregate kernel)
#
# For every source or header of a folder, each `#include "<dir>/..."` that
# names one of Sharry's folders must be allowed for that folder. Prints each
# upward (or sideways) include and exits 1 if there is one; 0 otherwise.
#   scripts/check-layering.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_opt "$@"
cd "$(dirname "$0")/.."

ours='base|verbs|alloc|discovery|offload|memnode|compute|remote_ds|workloads|tools|bench|examples|tests|fuzz'
client='memnode/(rpc|client)\.h'
bad=0

# check <files-regex> <allowed-include-regex>: the files (paths relative to
# the top, matched against git ls-files) may include only what matches.
check() {
  local files=$1 allowed=$2 f line inc
  while IFS= read -r f; do
    [[ -f $f ]] || continue  # deleted, not yet committed
    while IFS= read -r line; do
      inc=${line#*\"}
      inc=${inc%%\"*}
      [[ $inc =~ ^($ours)/ ]] || continue
      if ! [[ $inc =~ ^($allowed)$ ]]; then
        echo "layering: $f includes $inc" >&2
        bad=1
      fi
    done < <(grep -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" || true)
  done < <(git ls-files --cached --others --exclude-standard | grep -E "^($files)$" || true)
}

src='[^/]+\.(h|cc)'
check "base/$src" 'base/.*'
check "verbs/$src" '(verbs|base)/.*'
check "alloc/$src" '(alloc|base)/.*'
check "memnode/(rpc|client)\.(h|cc)" "$client|(offload|verbs|base)/.*"
check "discovery/$src" '(discovery|base)/.*'
check "offload/$src" '(offload|base)/.*'
check "memnode/$src" '(memnode|alloc|discovery|offload|verbs|base)/.*'
check "compute/$src" "$client|(compute|discovery|offload|verbs|base)/.*"
check "remote_ds/$src" "$client|(remote_ds|compute|discovery|offload|verbs|base)/.*"
check "workloads/$src" "$client|(workloads|remote_ds|compute|discovery|offload|verbs|base)/.*"
check "tools/cli/$src" "$client|(tools/cli|remote_ds|compute|discovery|offload|verbs|base)/.*"
check "tools/$src" '(tools|workloads|remote_ds|compute|memnode|alloc|discovery|offload|verbs|base)/.*'
check "(bench|examples)/$src" '(bench|examples|tools/cli|workloads|remote_ds|compute|memnode|alloc|discovery|offload|verbs|base)/.*'

if [[ $bad != 0 ]]; then
  echo "layering: upward includes found (see docs/layout.md for the allowed arrows)" >&2
  exit 1
fi
echo "layering: ok"
