#!/usr/bin/env bash
# The compute-runtime benchmark (bench/compute_bench.cc) with an in-process
# memnode: over tcp on this host, and over verbs on an RDMA device (natively
# if this host has one, else SoftRoCE in the throwaway VM, scripts/run-rxe.sh).
# Prints the table of each run with the issue's targets marked met/MISSED.
#
#   scripts/bench-compute.sh [--tcp] [--verbs] [--build DIR] [--out DIR] [-- BENCH_FLAGS...]
#
#   --tcp    this host, tcp backend, host sizes (32 MiB array, 64 Ki hashtable entries)
#   --verbs  verbs backend; in the VM with smaller sizes (4 MiB array, 8 Ki entries)
#            because TCG emulation is ~10x slower
#   (neither: both)
#   BENCH_FLAGS after `--` go to every run (e.g. -- --mode=unique --tests=swapin).
# Raw output: DIR/compute-tcp.txt, DIR/compute-verbs.txt (stderr in *.log);
# DIR defaults to BUILD/bench-results. Targets (issue #4): local-hit
# dereference <= 2x a raw pointer; ForEach scan at 100 % local >= 0.5x
# std::vector; 4 KiB swap-in p50 (Unique-Copy: plus its amortized batched
# FREE) <= 1.3x the transport's 4 KiB READ p50 in the same run.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

do_tcp=0 do_verbs=0 build=build out=
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --) shift; extra=("$@"); break ;;
    *) common_opt bench-compute "$@"; shift "$opt_shift" ;;
  esac
done
bench_setup compute_bench

host_line() {
  echo "computebench host cores=$(nproc) mem_gib=$(awk '/MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)" \
    "kernel=$(uname -r) loadavg=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' ,) date=$(date -u +%Y-%m-%dT%H:%MZ)"
}

# The table and TARGET lines of one raw file.
table() { grep -E '^(\||TARGET )' "$1" || { echo "bench-compute: no table in $1 (see ${1%.txt}.log)" >&2; return 1; }; }

status=0
if [[ $do_tcp == 1 ]]; then
  echo "== tcp, this host ($(nproc) cores, $(uname -r))"
  { host_line; "$bench" --transport=tcp ${extra[@]+"${extra[@]}"} 2>"$out/compute-tcp.log"; } \
    | tee "$out/compute-tcp.txt" | grep --line-buffered '^computebench' || status=1
fi

if [[ $do_verbs == 1 ]]; then
  echo "== verbs (SoftRoCE in the VM unless this host has an RDMA device)"
  # The address comes from SHARRY_RDMA_ADDR (set by run-rxe.sh and in the VM).
  { host_line; scripts/run-rxe.sh --timeout 420 -- "$bench" --transport=verbs --array_mb=4 --ht_entries=8192 \
      --random_indices=65536 --swap_samples=1500 --swap_objects=128 --uma_mb=64 --rounds=5 \
      ${extra[@]+"${extra[@]}"} 2>"$out/compute-verbs.log"; } \
    | tee "$out/compute-verbs.txt" | grep --line-buffered '^computebench' || status=1
  [[ $status == 0 ]] || tail -n 20 "$out/compute-verbs.log" >&2
fi

echo
for t in tcp verbs; do
  [[ $t == tcp && $do_tcp == 1 || $t == verbs && $do_verbs == 1 ]] || continue
  echo "== $t: $(grep -m1 '^computebench host' "$out/compute-$t.txt" | cut -d' ' -f3-)"
  table "$out/compute-$t.txt" || status=1
  echo
done
exit "$status"
