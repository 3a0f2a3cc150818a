#!/usr/bin/env bash
# The far-memory demo: one memnode and three compute processes sharing it,
# run once with Unique-Copy and once with Multi-Copy, ending in a table of
# throughput and far memory used, with the saving and the slowdown in percent.
#
#   scripts/demo.sh [--transport tcp|verbs] [--working-set-mb N] [--local-pct P]
#                   [--ops N] [--rounds N] [--build DIR]
#
# Each mode runs --rounds times (default 3), alternating; the table has the
# median round's throughput and the highest far memory seen.
#
# Needs the binaries built (scripts/run.sh builds them). Runs in about a minute.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
transport=tcp addr=127.0.0.1 ws_mb=32 local_pct=50 ops=200000 build=build clients=3 rounds=3
while [[ $# -gt 0 ]]; do
  case "$1" in
    --transport) transport=$2; shift 2 ;;
    --addr) addr=$2; shift 2 ;;
    --working-set-mb) ws_mb=$2; shift 2 ;;
    --local-pct) local_pct=$2; shift 2 ;;
    --ops) ops=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) common_opt demo "$@"; shift "$opt_shift" ;;
  esac
done
# The other values are checked by the binaries (one line naming the flag).
[[ $rounds =~ ^[1-9][0-9]{0,3}$ ]] || { echo "demo: --rounds $rounds: want an integer in 1..9999" >&2; exit 2; }
[[ $transport == verbs && $addr == 127.0.0.1 ]] && addr=${SHARRY_RDMA_ADDR:-192.0.2.1}
b=$PWD/$build
for bin in tools/memnode tools/memnode_stats tools/sharry_client; do
  [[ -x $b/$bin ]] || { echo "demo: $b/$bin is missing: build first (scripts/run.sh)" >&2; exit 1; }
done
tmp=$(mktemp -d)
tenants_setup "$tmp"  # a tenants file with fresh secrets (scripts/lib.sh)
mn=
cleanup() { if [[ -n $mn ]]; then kill "$mn" 2>/dev/null || true; fi; rm -rf "$tmp"; }
trap cleanup EXIT

echo "Sharry demo: $clients compute processes share one memnode over $transport;"
echo "each works on ${ws_mb} MiB of far-memory data with ${local_pct} % of it in local memory ($ops operations, 20 % writes)."
declare -A tput far
declare -A all_tput
for round in $(seq "$rounds"); do
for mode in unique multi; do
  printf '\n[%s-copy, round %d of %d] starting the memnode ... ' "$mode" "$round" "$rounds"
  rm -f "$tmp/port"
  # shellcheck disable=SC2086  # a word list (scripts/lib.sh tenants_setup)
  "$b/tools/memnode" --transport="$transport" --listen="$addr" --port=0 --port_file="$tmp/port" $memnode_auth \
    --uma_mb=$((ws_mb * clients * 2 + 64)) --sections=2 --stats_interval=0 >"$tmp/memnode-$mode.log" 2>&1 &
  mn=$!
  for _ in $(seq 300); do [[ -s $tmp/port ]] && break; sleep 0.1; done
  [[ -s $tmp/port ]] || { echo "memnode did not start"; cat "$tmp/memnode-$mode.log"; exit 1; }
  port=$(<"$tmp/port")
  echo "port $port"
  pids=()
  for c in $(seq "$clients"); do
    # shellcheck disable=SC2086  # a word list (scripts/lib.sh tenants_setup)
    "$b/tools/sharry_client" --transport="$transport" --memnode="$addr:$port" $client_auth --workload=array --mode="$mode" \
      --working_set_mb="$ws_mb" --local_pct="$local_pct" --ops="$ops" --seed="$c" \
      --ready_file="$tmp/ready-$mode-$c" --go_file="$tmp/go-$mode" \
      >"$tmp/client-$mode-$c.out" 2>"$tmp/client-$mode-$c.err" &
    pids+=($!)
  done
  # Progress, and the peak far memory the memnode reports while they run.
  peak=0 t=0
  while :; do
    running=0 ready=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && running=$((running + 1)); done
    # All loaded: start the timed phase of every client at once.
    for c in $(seq "$clients"); do [[ -e $tmp/ready-$mode-$c ]] && ready=$((ready + 1)); done
    [[ $ready == "$clients" && ! -e $tmp/go-$mode ]] && touch "$tmp/go-$mode"
    # shellcheck disable=SC2086  # a word list (scripts/lib.sh tenants_setup)
    used=$("$b/tools/memnode_stats" --transport="$transport" --addr="$addr" --port="$port" $client_auth 2>/dev/null |
           sed -n 's/^UMA [0-9.]* MiB: used \([0-9.]*\) MiB.*/\1/p')
    [[ -n $used ]] && peak=$(awk -v a="$peak" -v b="$used" 'BEGIN { print (b > a ? b : a) }')
    if [[ -t 1 ]]; then
      printf '\r[%s-copy] %3ds: %d of %d clients running, far memory in use %s MiB (peak %s)   ' \
        "$mode" "$t" "$running" "$clients" "${used:-?}" "$peak"
    elif (( t % 5 == 0 )); then
      printf '[%s-copy] %3ds: %d of %d clients running, far memory in use %s MiB (peak %s)\n' \
        "$mode" "$t" "$running" "$clients" "${used:-?}" "$peak"
    fi
    [[ $running == 0 ]] && break
    sleep 1
    t=$((t + 1))
  done
  [[ -t 1 ]] && echo
  for p in "${pids[@]}"; do
    wait "$p" || { echo "a client failed:"; cat "$tmp"/client-"$mode"-*.err | tail -20; exit 1; }
  done
  tput[$mode]=$(cat "$tmp"/client-"$mode"-*.out | sed -n 's/.* ops_per_s=\([0-9.]*\).*/\1/p' | awk '{ s += $1 } END { print s }')
  far[$mode]=$(awk -v a="${far[$mode]:-0}" -v b="$peak" 'BEGIN { print (b > a ? b : a) }')
  all_tput[$mode]="${all_tput[$mode]:-} ${tput[$mode]}"
  grep -h "errors=" "$tmp"/client-"$mode"-*.out | sed 's/^/    /' | cut -c1-160
  kill -INT "$mn"; wait "$mn" || true; mn=
done
done
# The median round of each mode (3 processes on a small machine swing by
# tens of percent from run to run; rounds alternate the modes).
median() { tr ' ' '\n' | grep . | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
for mode in unique multi; do
  echo "[$mode-copy] throughput per round (ops/s):${all_tput[$mode]}"
  tput[$mode]=$(echo "${all_tput[$mode]}" | median)
done

echo
awk -v tu="${tput[unique]}" -v tm="${tput[multi]}" -v fu="${far[unique]}" -v fm="${far[multi]}" \
    -v n="$clients" -v ws="$ws_mb" -v lp="$local_pct" 'BEGIN {
  printf "| pattern | throughput (ops/s, %d processes, median round) | peak far memory (MiB) |\n", n
  printf "|---|---:|---:|\n"
  printf "| Unique-Copy (Sharry) | %.0f | %.1f |\n", tu, fu
  printf "| Multi-Copy (AIFM-style) | %.0f | %.1f |\n", tm, fm
  printf "\nworking set %d x %d MiB, local memory %d %%: far memory saved by Unique-Copy: %.1f %%; slowdown: %.1f %%\n",
         n, ws, lp, (fm > 0 ? 100 * (fm - fu) / fm : 0), (tm > 0 ? 100 * (tm - tu) / tm : 0)
}'
