#!/bin/sh
# vm-bench-transport.sh — runs INSIDE the RDMA host or the SoftRoCE VM (busybox
# sh): the transport benchmark beside perftest on the same device, in one run.
# Called by scripts/bench-transport.sh; prints "perftest ..." and "bench ..."
# lines for its report.
#
#   vm-bench-transport.sh BENCH_BINARY PERFTEST_SCRIPT ROUNDS SIZES...
#
# 1. one full sweep: perftest over SIZES, then our benchmark over SIZES;
# 2. ROUNDS rounds of the three target pairs, each pair back to back so both
#    sides see the same machine state (emulation is noisy):
#      ib_read_lat 4 KiB   / our READ 4 KiB latency
#      ib_write_bw 64 KiB  / our WRITE 64 KiB bandwidth
#      ib_send_lat 64 B    / our request/response round trip
#    Each round starts with a line "round N".

# shellcheck source=scripts/lib.sh
case "${1:-}" in -h|--help) . "$(dirname "$0")/lib.sh"; script_help; exit 0 ;; esac
bench=$1 perftest=$2 rounds=$3
shift 3
sizes="$*"
csv=$(echo "$sizes" | tr ' ' ',')
addr=${SHARRY_RDMA_ADDR:-192.0.2.1}
run_bench() { "$bench" --transport=verbs --addr="$addr" "$@" 2>/dev/null | grep '^bench'; }

echo "round 0"
# shellcheck disable=SC2086  # $sizes: a list of words
"$perftest" $sizes
run_bench --sizes="$csv" --lat_iters=500 --bw_ops=256 --rpc_iters=1000
i=1
while [ "$i" -le "$rounds" ]; do
  echo "round $i"
  PERFTEST_TOOLS=ib_read_lat "$perftest" 4096
  run_bench --sizes=4096 --ops=lat --lat_iters=1000
  PERFTEST_TOOLS=ib_write_bw "$perftest" 65536
  run_bench --sizes=65536 --ops=bw --bw_ops=1024 --bw_batch=64
  PERFTEST_TOOLS=ib_send_lat "$perftest" 64
  run_bench --ops=rpc --rpc_iters=2000
  i=$((i + 1))
done
