#!/usr/bin/env bash
# The measuring side of scripts/experiments.sh (scripts/sharry_bench.py
# experiments): runs the points of the paper's Figs. 6, 7, 8 and prints what
# each produced, raw, on stdout; it parses nothing. Bash because it also runs
# inside the SoftRoCE VM (scripts/rxe-vm.sh), whose busybox image has no
# python3; sharry_bench.py reads the lines, here or from the VM's console.
#
#   scripts/experiments-measure.sh [--transport tcp|verbs] [--scale host|vm]
#                                  [--quick] [--rounds N] [--only fig6,fig7,fig8]
#                                  [--build DIR]
#
# Lines starting with '@' are for sharry_bench.py; the others are for people:
#   @point {json}      a measured point starts: its figure, configuration, round
#   @stats {json}      memnode_stats --format=json while the point runs
#   @tick {json}       progress while the point runs (label, seconds, phase)
#   @client I {json}   client process I's result (--format=json)
#   @endpoint          the point is over
#   @endfig FIG        the figure is over
# One memnode per measured point; client processes load their data, wait at
# a start barrier (tools/cli/start_barrier.h), then run the timed phase
# together.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
quick=0 rounds=3 only=fig6,fig7,fig8 build=build transport=tcp addr=127.0.0.1 scale=host
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=1; shift ;;
    --rounds) rounds=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --transport) transport=$2; shift 2 ;;
    --scale) scale=$2; shift 2 ;;
    *) common_opt experiments-measure "$@"; shift "$opt_shift" ;;
  esac
done
[[ $rounds =~ ^[1-9][0-9]{0,3}$ ]] || { echo "experiments: --rounds $rounds: want an integer in 1..9999" >&2; exit 2; }
[[ $only =~ ^(fig6|fig7|fig8)(,(fig6|fig7|fig8))*$ ]] ||
  { echo "experiments: --only $only: want a comma-separated list of fig6, fig7, fig8" >&2; exit 2; }
[[ $scale == host || $scale == vm ]] || { echo "experiments: --scale $scale: want host or vm" >&2; exit 2; }
[[ $transport == tcp || $transport == verbs ]] || { echo "experiments: --transport $transport: want tcp or verbs" >&2; exit 2; }
[[ $transport == verbs ]] && addr=${SHARRY_RDMA_ADDR:-192.0.2.1}
b=$PWD/$build
for f in tools/memnode tools/memnode_stats tools/sharry_client bench/dataframe_bench; do
  [[ -x $b/$f ]] || { echo "experiments: $b/$f is missing" >&2; exit 1; }
done
tmp=$(mktemp -d)
tenants_setup "$tmp"  # a tenants file with fresh secrets (scripts/lib.sh)
mn='' pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [[ -n $mn ]]; then kill "$mn" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
poll=1; [[ $scale == vm ]] && poll=3
t_start=$(date +%s)
mib() { awk -v x="$1" 'BEGIN { printf "%.1f", x / 1048576 }'; }  # for the headings

start_memnode() {  # start_memnode SECTIONS UMA_MB
  rm -f "$tmp/port"
  # shellcheck disable=SC2086  # a word list (scripts/lib.sh tenants_setup)
  "$b/tools/memnode" --transport="$transport" --listen="$addr" --port=0 --port_file="$tmp/port" $memnode_auth \
    --uma_mb="$2" --sections="$1" --stats_interval=0 >"$tmp/memnode.log" 2>&1 &
  mn=$!
  for _ in $(seq 600); do [[ -s $tmp/port ]] && break; sleep 0.1; done
  [[ -s $tmp/port ]] || { echo "memnode did not start:"; cat "$tmp/memnode.log"; exit 1; }
  port=$(<"$tmp/port")
}
stop_memnode() { kill -INT "$mn" 2>/dev/null; wait "$mn" 2>/dev/null || true; mn=''; }

# point KEY=VALUE...: announces a point; values are numbers unless quoted
# ("mode=\"unique\"" is a string).
point() {
  local json="\"transport\":\"$transport\"" kv
  for kv in "$@"; do json+=",\"${kv%%=*}\":${kv#*=}"; done
  echo "@point {$json}"
}

# run_clients LABEL N CMD...: N processes of CMD (each gets --seed=i, the
# barrier flags and --format=json; "@PORT@" is replaced); waits, printing the
# memnode's stats while they run, then each client's result line.
run_clients() {
  local label=$1 n=$2; shift 2
  rm -f "$tmp"/ready.* "$tmp"/go "$tmp"/out.* "$tmp"/err.*
  pids=()
  for i in $(seq "$n"); do
    local args=()
    for a in "$@"; do args+=("${a//@PORT@/$port}"); done
    "${args[@]}" --seed="$i" --ready_file="$tmp/ready.$i" --go_file="$tmp/go" --format=json \
      >"$tmp/out.$i" 2>"$tmp/err.$i" &
    pids+=($!)
  done
  local t0=$SECONDS phase=loading
  while :; do
    local running=0 ready=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && running=$((running + 1)); done
    for i in $(seq "$n"); do [[ -e $tmp/ready.$i ]] && ready=$((ready + 1)); done
    if [[ $phase == loading && $ready == "$n" ]]; then touch "$tmp/go"; phase=running; fi
    if [[ $phase == loading && $running -lt $n ]]; then break; fi  # one died while loading
    if [[ -n $mn ]]; then
      # shellcheck disable=SC2086  # a word list (scripts/lib.sh tenants_setup)
      "$b/tools/memnode_stats" --transport="$transport" --addr="$addr" --port="$port" $admin_auth --format=json 2>/dev/null |
        sed 's/^/@stats /' || true
    fi
    printf '@tick {"label":"%s","secs":%d,"phase":"%s","running":%d,"procs":%d}\n' "$label" $((SECONDS - t0)) \
      "$phase" "$running" "$n"
    [[ $running == 0 ]] && break
    sleep "$poll"
  done
  local rc=0
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  pids=()
  if [[ $rc != 0 ]]; then
    echo "experiments: a client failed ($label):"
    tail -5 "$tmp"/err.* "$tmp"/out.*
    exit 1
  fi
  for i in $(seq "$n"); do sed "s/^/@client $i /" "$tmp/out.$i"; done
  echo "@endpoint"
}

# measure SECTIONS UMA_MB LABEL N CMD...: one point against its own memnode:
# N clients of CMD, which also get --transport and --memnode.
measure() {
  local sections=$1 uma_mb=$2 label=$3 n=$4; shift 4
  start_memnode "$sections" "$uma_mb"
  # shellcheck disable=SC2086  # a word list (scripts/lib.sh tenants_setup)
  run_clients "$label" "$n" "$@" --transport="$transport" --memnode="$addr:@PORT@" $client_auth
  stop_memnode
}

# ---------------------------------------------------------------- fig 6
fig6() {
  local ws_mb=32 ops=100000 pcts=(10 25 50 75 100)
  if [[ $scale == vm ]]; then ws_mb=4 ops=6000 pcts=(10 25 50 75 100); fi
  if [[ $quick == 1 ]]; then ws_mb=$((ws_mb / 2)) ops=$((ops / 4)) pcts=(10 50 100); fi
  local total=$(( ${#pcts[@]} * 4 * rounds )) k=0 round pct procs mode
  echo "fig6: sharing vs not sharing — 8 arrays of 4 KiB objects, ${ws_mb} MiB per process, $ops operations (20 % writes) per process, median of $rounds rounds"
  for pct in "${pcts[@]}"; do
    for procs in 3 1; do
      for round in $(seq "$rounds"); do
        for mode in unique multi; do
          k=$((k + 1))
          point fig=\"fig6\" k="$k" total="$total" round="$round" procs="$procs" mode=\""$mode"\" sections=2 \
            local_pct="$pct" ws_mib="$ws_mb" ops="$ops"
          measure 2 $((ws_mb * procs * 2 + 64)) "[fig6 $k/$total] $mode x$procs local $pct %" "$procs" \
            "$b/tools/sharry_client" --workload=array --arrays=8 --object_bytes=4096 --working_set_mb="$ws_mb" \
            --local_pct="$pct" --ops="$ops" --mode="$mode" --min_secs=2
        done
      done
    done
  done
  echo "@endfig fig6"
}

# ---------------------------------------------------------------- fig 7
fig7() {
  local local_mb=4 ops=100000 counts=(1000 10000 100000 1000000 10000000) sections=(1 2) modes=(unique multi)
  if [[ $scale == vm ]]; then local_mb=1 ops=5000 counts=(1000 10000 100000) sections=(1 2); fi
  if [[ $quick == 1 ]]; then ops=$((ops / 4)); counts=("${counts[@]:0:3}"); sections=(1 2); modes=(unique); fi
  local total=$(( ${#counts[@]} * ${#sections[@]} * ${#modes[@]} )) k=0 count sec mode per
  echo "fig7: scale — 3 processes, 8 arrays of 256-byte objects, ${local_mb} MiB local memory per process, $ops operations each"
  for count in "${counts[@]}"; do
    for sec in "${sections[@]}"; do
      for mode in "${modes[@]}"; do
        k=$((k + 1))
        per=$(( (count + 2) / 3 ))
        point fig=\"fig7\" k="$k" total="$total" round=1 procs=3 mode=\""$mode"\" sections="$sec" \
          objects=$((per * 3)) object_bytes=256 local_mib_per_proc="$local_mb" ops="$ops"
        measure "$sec" $(( (per * 3 * 256 / 1048576) * 2 + 128 )) "[fig7 $k/$total] $mode $count objects $sec sections" \
          3 "$b/tools/sharry_client" --workload=array --arrays=8 --object_bytes=256 --objects="$per" \
          --local_mb="$local_mb" --ops="$ops" --mode="$mode" --min_secs=2
      done
    done
  done
  echo "@endfig fig7"
}

# ---------------------------------------------------------------- fig 8
fig8() {
  local rows=1000000 passes=2 pcts=(10 25 50 75 100)
  if [[ $scale == vm ]]; then rows=60000 passes=1 pcts=(10 50 100); fi
  if [[ $quick == 1 ]]; then rows=$((rows / 4)); pcts=(10 50 100); fi
  local configs=("unique 1" "unique 2" "multi 2")
  local total=$(( ${#pcts[@]} * ${#configs[@]} * rounds + 1 )) k=0 pct round cfg mode sec
  echo "fig8: data frame — 3 processes, $rows NYC-taxi-shaped trips each ($(mib $((rows * 57))) MiB), 5 group-by queries x $passes passes (at least 2 s), median of $rounds rounds"
  # Plain local memory: the same three processes, no memnode. Each process
  # has its own data set (--seed); the remote runs must compute the same.
  k=$((k + 1))
  port=0
  point fig=\"fig8\" k="$k" total="$total" round=1 procs=3 storage=\"local\" mode=\"-\" sections=0 local_pct=100 \
    rows_per_proc="$rows"
  run_clients "[fig8 $k/$total] local memory" 3 "$b/bench/dataframe_bench" --storage=local --rows="$rows" \
    --passes="$passes" --min_secs=2
  for pct in "${pcts[@]}"; do
    for round in $(seq "$rounds"); do
      for cfg in "${configs[@]}"; do
        read -r mode sec <<<"$cfg"
        k=$((k + 1))
        point fig=\"fig8\" k="$k" total="$total" round="$round" procs=3 storage=\"remote\" mode=\""$mode"\" \
          sections="$sec" local_pct="$pct" rows_per_proc="$rows"
        measure "$sec" $(( rows * 57 * 3 * 2 / 1048576 + 128 )) "[fig8 $k/$total] $mode $sec sections local $pct %" \
          3 "$b/bench/dataframe_bench" --storage=remote --rows="$rows" --passes="$passes" --local_pct="$pct" \
          --mode="$mode" --min_secs=2
      done
    done
  done
  echo "@endfig fig8"
}

echo "experiments: $transport transport, $scale scale$([[ $quick == 1 ]] && echo ", quick"); $(nproc) cores"
for fig in ${only//,/ }; do "$fig"; done
echo "experiments: measured in $(( $(date +%s) - t_start )) s"
