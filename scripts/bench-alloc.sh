#!/usr/bin/env bash
# The allocator benchmark matrix in one run, as one markdown table plus the
# two targets of the issue, each marked met or MISSED. A thin wrapper:
#   scripts/bench-alloc.sh [--duration-ms N] [--reps N] [--threads "1,2,4,8,16"]
#                          [--sections K] [--scale-live "1000,10000000"]
#                          [--scale-ops N] [--scale-rounds N] [--quiet-wait S]
#                          [--build DIR] [--out DIR] [--no-install]
# is scripts/sharry_bench.py alloc with the same options (its --help says more).
set -euo pipefail
exec python3 "$(dirname "$0")/sharry_bench.py" alloc "$@"
