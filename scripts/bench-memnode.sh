#!/usr/bin/env bash
# Memnode RPC benchmark: ALLOC/FREE round trips per second from 3 client
# processes sharing one memnode, beside a plain request/response server of the
# same message sizes in the same run, over tcp (this host) and verbs (an RDMA
# device, or the SoftRoCE VM).
#   scripts/bench-memnode.sh [--tcp] [--verbs] [--seconds S] [--build DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
do_tcp=0 do_verbs=0 seconds=3 build=build
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tcp) do_tcp=1 ;;
    --verbs) do_verbs=1 ;;
    --seconds) seconds=$2; shift ;;
    --build) build=$2; shift ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "bench-memnode: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[[ $do_tcp == 0 && $do_verbs == 0 ]] && do_tcp=1 do_verbs=1
bench=$PWD/$build/bench/memnode_rpc_bench
[[ -x $bench ]] || { cmake -S . -B "$build" -G Ninja >/dev/null; cmake --build "$build" --target memnode_rpc_bench; }
out=$build/bench-results
mkdir -p "$out"
if [[ $do_tcp == 1 ]]; then
  echo "== tcp, this host ($(nproc) cores)"
  "$bench" --transport=tcp --addr=127.0.0.1 --clients=3 --seconds="$seconds" 2>/dev/null | tee "$out/memnode-tcp.txt"
fi
if [[ $do_verbs == 1 ]]; then
  echo "== verbs (SoftRoCE in the VM unless this host has an RDMA device)"
  scripts/run-rxe.sh --timeout 900 -- "$bench" --transport=verbs --addr=192.0.2.1 --clients=3 \
    --seconds="$seconds" --uma_mb=128 2>/dev/null | grep rpcbench | tee "$out/memnode-verbs.txt"
fi
