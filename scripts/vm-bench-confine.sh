#!/bin/sh
# vm-bench-confine.sh — runs INSIDE the RDMA host or the SoftRoCE VM (busybox
# sh): what verbs confinement costs a 4 KiB READ (issue #11), beside perftest
# on the same device, in one run. ROUNDS rounds, each back to back:
#   ib_read_lat 4 KiB / our READ 4 KiB, confine off / our READ 4 KiB, confine on
# ("confine on": the client's QP in its session's protection domain, the
# region granted as a span with its own memory region, the key looked up per
# op — what the memnode does). With RPC_BENCH (bench/memnode_rpc_bench), each
# round then measures ALLOC/FREE of 4 KiB objects (one-page spans: the most
# registrations per byte) with --confine=false and =true. Each round ends
# with connection setup (anonymous and authenticated, confined: a protection
# domain and its registrations per session). Each round starts with a line
# "round N".
#
#   vm-bench-confine.sh BENCH_BINARY PERFTEST_SCRIPT ROUNDS [RPC_BENCH]
#
# shellcheck source=scripts/lib.sh
case "${1:-}" in -h|--help) . "$(dirname "$0")/lib.sh"; script_help; exit 0 ;; esac
bench=$1 perftest=$2 rounds=$3 rpc_bench=${4:-}
addr=${SHARRY_RDMA_ADDR:-192.0.2.1}
i=1
while [ "$i" -le "$rounds" ]; do
  echo "round $i"
  PERFTEST_TOOLS=ib_read_lat "$perftest" 4096
  for confine in false true; do
    echo "confine=$confine"
    "$bench" --transport=verbs --addr="$addr" --sizes=4096 --ops=lat --lat_iters=1000 --confine=$confine 2>/dev/null |
      grep '^bench'
  done
  if [ -n "$rpc_bench" ]; then
    for confine in false true; do
      echo "rpc confine=$confine"
      "$rpc_bench" --transport=verbs --addr="$addr" --clients=3 --seconds=2 --uma_mb=128 --confine=$confine \
        2>/dev/null | grep rpcbench
    done
  fi
  echo "connect"
  "$bench" --transport=verbs --addr="$addr" --ops=connect --connect_iters=30 --confine=true 2>/dev/null |
    grep '^bench'
  i=$((i + 1))
done
