#!/usr/bin/env bash
# The paper's experiments (section 6), scaled to this machine: Figs. 6, 7, 8
# as CSVs, PNG plots and markdown tables; on request (--only) also the
# redundancy and failure experiments across memnodes (issue #12) and Fig. 8
# with offloaded aggregates (issue #13, offload: never/auto/always at
# 10..100 % local, rows/s and bytes per query). A thin wrapper:
#   scripts/experiments.sh [--vm] [--quick] [--out DIR] [--build DIR]
#       [--only fig6,fig7,fig8,redundancy,failure,offload] (default: fig6,fig7,fig8)
#       [--rounds N] [--quiet-wait S]
# is scripts/sharry_bench.py experiments with the same options (its --help
# says more); the measuring is scripts/experiments-measure.sh.
set -euo pipefail
exec python3 "$(dirname "$0")/sharry_bench.py" experiments "$@"
