#!/usr/bin/env bash
# Draws the PNG plots of scripts/experiments.sh from the CSVs in DIR (gnuplot)
# and writes DIR/tables.md. A thin wrapper:
#   scripts/plot-experiments.sh DIR
# is scripts/sharry_bench.py plot DIR (its --help says more).
set -euo pipefail
exec python3 "$(dirname "$0")/sharry_bench.py" plot "$@"
