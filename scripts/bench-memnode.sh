#!/usr/bin/env bash
# Memnode RPC benchmark: ALLOC/FREE round trips per second from 3 client
# processes sharing one memnode, beside a plain request/response server of the
# same message sizes in the same run, over tcp (this host) and verbs (an RDMA
# device, or the SoftRoCE VM).
#   scripts/bench-memnode.sh [--tcp] [--verbs] [--seconds S] [--build DIR] [--out DIR]
# (neither --tcp nor --verbs: both). Raw lines: DIR/memnode-tcp.txt,
# DIR/memnode-verbs.txt; DIR defaults to BUILD/bench-results.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
do_tcp=0 do_verbs=0 seconds=3 build=build out=
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    *) common_opt bench-memnode "$@"; shift "$opt_shift" ;;
  esac
done
bench_setup memnode_rpc_bench
if [[ $do_tcp == 1 ]]; then
  echo "== tcp, this host ($(nproc) cores)"
  "$bench" --transport=tcp --addr=127.0.0.1 --clients=3 --seconds="$seconds" 2>/dev/null | tee "$out/memnode-tcp.txt"
fi
if [[ $do_verbs == 1 ]]; then
  echo "== verbs (SoftRoCE in the VM unless this host has an RDMA device)"
  scripts/run-rxe.sh --timeout 900 -- "$bench" --transport=verbs --addr=192.0.2.1 --clients=3 \
    --seconds="$seconds" --uma_mb=128 2>/dev/null | grep rpcbench | tee "$out/memnode-verbs.txt"
fi
