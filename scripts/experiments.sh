#!/usr/bin/env bash
# The paper's experiments (section 6), scaled to this machine: Figs. 6, 7, 8
# as CSVs, PNG plots and markdown tables. A thin wrapper:
#   scripts/experiments.sh [--vm] [--quick] [--only fig6,fig7,fig8] [--out DIR]
#                          [--build DIR] [--rounds N]
# is scripts/sharry_bench.py experiments with the same options (its --help
# says more); the measuring is scripts/experiments-measure.sh.
set -euo pipefail
exec python3 "$(dirname "$0")/sharry_bench.py" experiments "$@"
