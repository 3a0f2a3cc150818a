#!/usr/bin/env bash
# The measuring side of scripts/experiments.sh (scripts/sharry_bench.py
# experiments): runs the points of the paper's Figs. 6, 7, 8, of the
# redundancy experiments (issue #12) and of Fig. 8 with offloaded aggregates
# (issue #13) and prints what each produced, raw, on stdout; it parses
# nothing. Bash because it also runs inside the SoftRoCE VM (scripts/rxe-vm.sh),
# whose busybox image has no python3; sharry_bench.py reads the lines, here or
# from the VM's console.
#
#   scripts/experiments-measure.sh [--transport tcp|verbs] [--scale host|vm]
#                                  [--quick] [--rounds N]
#                                  [--only fig6,fig7,fig8,redundancy,failure,offload]
#                                  [--quiet-wait S] [--build DIR]
#
# --quiet-wait S: before each point of redundancy and failure and each remote
# point of offload, wait up to S seconds (default 0: no wait) for the machine
# to be under 15 % busy, and print how busy it was (@busy): other work on the
# machine bends the numbers.
#
# Lines starting with '@' are for sharry_bench.py; the others are for people:
#   @point {json}      a measured point starts: its figure, configuration, round
#   @stats {json}      memnode_stats --format=json while the point runs (with
#                      many memnodes: one per memnode, then "memnode":"total")
#   @busy {json}       how busy the machine was before the point (--quiet-wait)
#   @cpu {json}        the share of the machine's CPU time that was busy, and
#                      that the memnode(s) used, while all clients and
#                      memnodes ran (sampled once a second)
#   @phase running     the start barrier opened: the timed phase runs
#   @tick {json}       progress while the point runs (label, seconds, phase)
#   @kill {json}       a memnode was SIGKILLed: which, and when (ms after the
#                      start barrier opened)
#   @rc I N            client process I's exit status
#   @clienterr I LINE  a "sharry_client:" line of a client's stderr (exit != 0)
#   @timeline I ROW    a row of client I's --timeline_file (the header too)
#   @client I {json}   client process I's result (--format=json)
#   @endpoint          the point is over
#   @endfig FIG        the figure is over
# One memnode per measured point of Figs. 6-8 and offload, 4 for redundancy
# and failure; client processes load their data, wait at a start barrier
# (tools/cli/start_barrier.h), then run the timed phase together.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
quick=0 rounds=3 rounds_given=0 only=fig6,fig7,fig8 build=build transport=tcp addr=127.0.0.1 scale=host quiet_wait=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quiet-wait) quiet_wait=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --rounds) rounds=$2; rounds_given=1; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --transport) transport=$2; shift 2 ;;
    --scale) scale=$2; shift 2 ;;
    *) common_opt experiments-measure "$@"; shift "$opt_shift" ;;
  esac
done
[[ $rounds =~ ^[1-9][0-9]{0,3}$ ]] || { echo "experiments: --rounds $rounds: want an integer in 1..9999" >&2; exit 2; }
figs='fig6|fig7|fig8|redundancy|failure|offload'
[[ $only =~ ^($figs)(,($figs))*$ ]] ||
  { echo "experiments: --only $only: want a comma-separated list of fig6, fig7, fig8, redundancy, failure, offload" >&2; exit 2; }
[[ $quiet_wait =~ ^[0-9]{1,5}$ ]] ||
  { echo "experiments: --quiet-wait $quiet_wait: want seconds in 0..99999" >&2; exit 2; }
[[ $scale == host || $scale == vm ]] || { echo "experiments: --scale $scale: want host or vm" >&2; exit 2; }
[[ $transport == tcp || $transport == verbs ]] || { echo "experiments: --transport $transport: want tcp or verbs" >&2; exit 2; }
[[ $scale == vm && $only =~ redundancy|failure ]] &&
  { echo "experiments: --only $only: redundancy and failure run on the host only (4 memnodes + 3 clients; untested in the VM)" >&2; exit 2; }
[[ $transport == verbs ]] && addr=${SHARRY_RDMA_ADDR:-192.0.2.1}
b=$PWD/$build
for f in tools/memnode tools/memnode_stats tools/sharry_client bench/dataframe_bench; do
  [[ -x $b/$f ]] || { echo "experiments: $b/$f is missing" >&2; exit 1; }
done
tmp=$(mktemp -d)
tenants_setup "$tmp"  # a tenants file with fresh secrets (scripts/lib.sh)
mn='' pids=() mns=() wrappers=() nodes='' port=0 killer=''
ok_rcs=0           # the clients' exit statuses run_clients accepts (failure: "0 2")
kill_after='' victim='' victim_addr=''  # run_clients: SIGKILL pid $victim (at $victim_addr) this many s after the start
cleanup() {
  for p in "${pids[@]}" "${mns[@]}"; do kill "$p" 2>/dev/null || true; done
  if [[ -n $mn ]]; then kill "$mn" 2>/dev/null || true; fi
  if [[ -n $killer ]]; then kill "$killer" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
poll=1; [[ $scale == vm ]] && poll=3
t_start=$(date +%s)
mib() { awk -v x="$1" 'BEGIN { printf "%.1f", x / 1048576 }'; }  # for the headings

memnode_args=()  # more flags for start_memnode's memnode (offload: --offload_threads)
start_memnode() {  # start_memnode SECTIONS UMA_MB
  rm -f "$tmp/port"
  # shellcheck disable=SC2086  # a word list (scripts/lib.sh tenants_setup)
  "$b/tools/memnode" --transport="$transport" --listen="$addr" --port=0 --port_file="$tmp/port" $memnode_auth \
    --uma_mb="$2" --sections="$1" --stats_interval=0 "${memnode_args[@]}" >"$tmp/memnode.log" 2>&1 &
  mn=$!
  for _ in $(seq 600); do [[ -s $tmp/port ]] && break; sleep 0.1; done
  [[ -s $tmp/port ]] || { echo "memnode did not start:"; cat "$tmp/memnode.log"; exit 1; }
  port=$(<"$tmp/port")
}
stop_memnode() { kill -INT "$mn" 2>/dev/null; wait "$mn" 2>/dev/null || true; mn=''; }

# start_memnodes N SECTIONS UMA_MB: N memnodes; sets mns (their pids, in
# order) and nodes (the --memnode list, in the same order). Each runs under
# a subshell that waits for it (wrappers), so that a SIGKILLed memnode is
# not announced as "Killed" on stderr by this shell.
start_memnodes() {
  local i n=$1
  mns=() wrappers=() nodes=''
  for ((i = 0; i < n; i++)); do
    rm -f "$tmp/port.$i" "$tmp/pid.$i"
    # shellcheck disable=SC2086  # a word list (scripts/lib.sh tenants_setup)
    ("$b/tools/memnode" --transport="$transport" --listen="$addr" --port=0 --port_file="$tmp/port.$i" $memnode_auth \
       --uma_mb="$3" --sections="$2" --stats_interval=0 >"$tmp/memnode.$i.log" 2>&1 &
     echo $! >"$tmp/pid.$i"
     wait $!) 2>/dev/null &
    wrappers+=($!)
  done
  for ((i = 0; i < n; i++)); do
    for _ in $(seq 600); do [[ -s $tmp/port.$i && -s $tmp/pid.$i ]] && break; sleep 0.1; done
    [[ -s $tmp/port.$i ]] || { echo "memnode $i did not start:"; cat "$tmp/memnode.$i.log"; exit 1; }
    mns+=("$(<"$tmp/pid.$i")")
    nodes+="${nodes:+,}$addr:$(<"$tmp/port.$i")"
  done
}
stop_memnodes() {
  local p
  for p in "${mns[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${wrappers[@]}"; do wait "$p" 2>/dev/null || true; done
  mns=() wrappers=() nodes=''
}

# cpu_sample: "ALL BUSY MEMNODES", in clock ticks so far: all CPUs' time
# and their busy time (/proc/stat), and the memnodes' (utime + stime of each
# of $mns and of $mn, /proc/PID/stat).
cpu_sample() {
  local u n s i w q sq st p mt=0 f
  read -r _ u n s i w q sq st _ </proc/stat
  for p in "${mns[@]}" ${mn:+"$mn"}; do
    { read -r -a f <"/proc/$p/stat"; } 2>/dev/null || continue
    mt=$((mt + f[13] + f[14]))
  done
  echo "$((u + n + s + i + w + q + sq + st)) $((u + n + s + q + sq + st)) $mt"
}

# The wall clock in ms (bash 5's $EPOCHREALTIME: no fork; else date).
now_ms() {
  local t=${EPOCHREALTIME:-}
  if [[ -n $t ]]; then t=${t//[!0-9]/}; echo $((t / 1000)); else echo $(($(date +%s%N) / 1000000)); fi
}

# busy_pct: how busy all CPUs were over one second, in percent (/proc/stat),
# printed before each figure: other work on the machine bends its numbers.
busy_pct() {
  local u0 n0 s0 i0 w0 q0 sq0 st0 u1 n1 s1 i1 w1 q1 sq1 st1
  read -r _ u0 n0 s0 i0 w0 q0 sq0 st0 _ </proc/stat
  sleep 1
  read -r _ u1 n1 s1 i1 w1 q1 sq1 st1 _ </proc/stat
  local idle=$(( (i1 + w1) - (i0 + w0) ))
  local all=$(( idle + (u1 + n1 + s1 + q1 + sq1 + st1) - (u0 + n0 + s0 + q0 + sq0 + st0) ))
  echo $(( all > 0 ? 100 * (all - idle) / all : 0 ))
}

# point KEY=VALUE...: announces a point; values are numbers unless quoted
# ("mode=\"unique\"" is a string).
point() {
  local json="\"transport\":\"$transport\"" kv
  for kv in "$@"; do json+=",\"${kv%%=*}\":${kv#*=}"; done
  echo "@point {$json}"
}

# run_clients LABEL N CMD...: N processes of CMD (each gets --seed=i, the
# barrier flags and --format=json; "@PORT@" is replaced by the memnode's
# port, "@TMP@" by a scratch directory, "@I@" by i); waits, printing the
# memnode's stats (or the memnodes' with $nodes set) while they run, then
# each client's exit status, result line and timeline (@TMP@/tl.i, if
# written). A client's exit status not in $ok_rcs ends the script. With
# $kill_after set, SIGKILLs $victim that many seconds after the start.
run_clients() {
  local label=$1 n=$2; shift 2
  rm -f "$tmp"/ready.* "$tmp"/go "$tmp"/out.* "$tmp"/err.* "$tmp"/tl.* "$tmp"/killed
  pids=()
  for i in $(seq "$n"); do
    local args=() a
    for a in "$@"; do a=${a//@PORT@/$port}; a=${a//@TMP@/$tmp}; args+=("${a//@I@/$i}"); done
    "${args[@]}" --seed="$i" --ready_file="$tmp/ready.$i" --go_file="$tmp/go" --format=json \
      >"$tmp/out.$i" 2>"$tmp/err.$i" &
    pids+=($!)
  done
  local t0=$SECONDS phase=loading cpu0='' cpu1='' t_cpu1=0
  while :; do
    local running=0 ready=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && running=$((running + 1)); done
    for i in $(seq "$n"); do [[ -e $tmp/ready.$i ]] && ready=$((ready + 1)); done
    if [[ $phase == loading && $ready == "$n" ]]; then
      local t_go
      t_go=$(now_ms)
      touch "$tmp/go"
      phase=running
      echo "@phase running"
      if [[ ${#mns[@]} -gt 0 || -n $mn ]]; then cpu0=$(cpu_sample); fi
      if [[ -n $kill_after ]]; then
        (sleep "$kill_after"; kill -KILL "$victim" 2>/dev/null; echo $(($(now_ms) - t_go)) >"$tmp/killed") &
        killer=$!
      fi
    fi
    if [[ $phase == loading && $running -lt $n ]]; then break; fi  # one died while loading
    # The CPU shares while every client and memnode runs (not past a kill).
    if [[ -n $cpu0 && $running == "$n" && ! -e $tmp/killed ]]; then
      cpu1=$(cpu_sample)
      t_cpu1=$(now_ms)
    fi
    if [[ -n $nodes ]]; then
      # shellcheck disable=SC2086  # a word list (scripts/lib.sh tenants_setup)
      "$b/tools/memnode_stats" --transport="$transport" --memnode="$nodes" $admin_auth --format=json 2>/dev/null |
        sed 's/^/@stats /' || true
    elif [[ -n $mn ]]; then
      # shellcheck disable=SC2086  # a word list (scripts/lib.sh tenants_setup)
      "$b/tools/memnode_stats" --transport="$transport" --addr="$addr" --port="$port" $admin_auth --format=json 2>/dev/null |
        sed 's/^/@stats /' || true
    fi
    printf '@tick {"label":"%s","secs":%d,"phase":"%s","running":%d,"procs":%d}\n' "$label" $((SECONDS - t0)) \
      "$phase" "$running" "$n"
    [[ $running == 0 ]] && break
    sleep "$poll"
  done
  local bad=0 rcs=() r
  for p in "${pids[@]}"; do
    r=0
    wait "$p" || r=$?
    rcs+=("$r")
    [[ " $ok_rcs " == *" $r "* ]] || bad=1
  done
  pids=()
  if [[ -n $killer ]]; then wait "$killer" || true; killer=''; fi
  if [[ $bad != 0 ]]; then
    echo "experiments: a client failed ($label): exit statuses ${rcs[*]}"
    tail -5 "$tmp"/err.* "$tmp"/out.*
    exit 1
  fi
  if [[ -n $cpu1 && $cpu1 != "$cpu0" ]]; then
    local a0 b0 m0 a1 b1 m1
    read -r a0 b0 m0 <<<"$cpu0"
    read -r a1 b1 m1 <<<"$cpu1"
    if (( a1 > a0 )); then
      printf '@cpu {"busy_pct":%d,"memnodes_pct":%d,"window_ms":%d}\n' $((100 * (b1 - b0) / (a1 - a0))) \
        $((100 * (m1 - m0) / (a1 - a0))) $((t_cpu1 - t_go))
    fi
  fi
  if [[ -s $tmp/killed ]]; then
    printf '@kill {"ms":%d,"after_s":"%s","memnode":"%s"}\n' "$(<"$tmp/killed")" "$kill_after" "$victim_addr"
  fi
  for i in $(seq "$n"); do
    echo "@rc $i ${rcs[i - 1]}"
    if [[ ${rcs[i - 1]} != 0 ]]; then grep '^sharry_client:' "$tmp/err.$i" | sed "s/^/@clienterr $i /" || true; fi
    if [[ -e $tmp/tl.$i ]]; then sed "s/^/@timeline $i /" "$tmp/tl.$i"; fi
    sed "s/^/@client $i /" "$tmp/out.$i"
  done
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

# ---------------------------------------------------------------- redundancy (issue #12)
# rotate K ITEMS...: the items, starting at item K mod their count (each
# round starts with another mode, so that no mode always runs first).
rotate() { local k=$1; shift; local a=("$@") i; for ((i = 0; i < ${#a[@]}; i++)); do echo "${a[(i + k) % ${#a[@]}]}"; done; }

# SHARRY_REDUNDANCY_MODES overrides the modes (a space-separated list); a mode
# "ec:K+M@B" runs ec:K+M with --ec_hole_budget=B (the far memory /
# throughput curve of docs/redundancy.md), "ec:K+M~R" with
# --ec_refill_bytes=R (~0: no refills, holes only compacted); both may be
# given ("ec:2+1@10~0").
redundancy() {
  local ws_mb=32 ops=2000 secs=5 memnodes=4 procs=3 pct=50 r=$rounds modes=(none replicate:2 ec:2+1 ec:3+1)
  if [[ -n ${SHARRY_REDUNDANCY_MODES:-} ]]; then read -ra modes <<<"$SHARRY_REDUNDANCY_MODES"; fi
  if [[ $quick == 1 ]]; then ws_mb=16 secs=2; [[ $rounds_given == 1 ]] || r=1; fi
  local total=$(( ${#modes[@]} * r )) k=0 round red
  echo "redundancy: $procs processes on $memnodes memnodes (this host), 8 arrays of 4 KiB objects, ${ws_mb} MiB per process, $pct % local, 20 % writes, timed phase >= $secs s; ${modes[*]} interleaved, median of $r rounds"
  for round in $(seq "$r"); do
    for red in $(rotate $((round - 1)) "${modes[@]}"); do
      k=$((k + 1))
      point fig=\"redundancy\" k="$k" total="$total" round="$round" procs="$procs" memnodes="$memnodes" \
        redundancy=\""$red"\" sections=1 local_pct="$pct" ws_mib="$ws_mb"
      wait_quiet
      start_memnodes "$memnodes" 1 $((ws_mb * 2 + 64))
      local hole=()
      [[ $red =~ @([0-9.]+) ]] && hole+=(--ec_hole_budget="${BASH_REMATCH[1]}")
      [[ $red =~ ~(-?[0-9]+) ]] && hole+=(--ec_refill_bytes="${BASH_REMATCH[1]}")
      # shellcheck disable=SC2086  # a word list (scripts/lib.sh tenants_setup)
      run_clients "[redundancy $k/$total] $red" "$procs" "$b/tools/sharry_client" --transport="$transport" \
        --memnode="$nodes" $client_auth --redundancy="${red%%[@~]*}" "${hole[@]}" --workload=array --arrays=8 \
        --object_bytes=4096 --working_set_mb="$ws_mb" --local_pct="$pct" --ops="$ops" --min_secs="$secs"
      stop_memnodes
    done
  done
  echo "@endfig redundancy"
}

# The failure timeline: the same clients (reads checked exactly,
# --verify_versions), memnode 1 of 4 SIGKILLed a few seconds into the timed
# phase; every client writes a row per 100 ms. Under none the clients exit 2.
failure() {
  local ws_mb=32 ops=1000 secs=10 kill_s=3 memnodes=4 procs=3 pct=50 r=$rounds modes=(replicate:2 ec:2+1 none)
  if [[ $quick == 1 ]]; then ws_mb=8 secs=5 kill_s=1.5; [[ $rounds_given == 1 ]] || r=1; fi
  local total=$(( ${#modes[@]} * r )) k=0 round red
  echo "failure: $procs processes on $memnodes memnodes, ${ws_mb} MiB per process, $pct % local, 20 % writes, reads checked; memnode 1 SIGKILLed $kill_s s into a timed phase of >= $secs s; ${modes[*]} interleaved, $r rounds"
  ok_rcs="0 2" kill_after=$kill_s
  for round in $(seq "$r"); do
    for red in $(rotate $((round - 1)) "${modes[@]}"); do
      k=$((k + 1))
      point fig=\"failure\" k="$k" total="$total" round="$round" procs="$procs" memnodes="$memnodes" \
        redundancy=\""$red"\" sections=1 local_pct="$pct" ws_mib="$ws_mb" secs="$secs" kill_s="$kill_s"
      wait_quiet
      start_memnodes "$memnodes" 1 $((ws_mb * 2 + 64))
      victim=${mns[1]} victim_addr=$(echo "$nodes" | cut -d, -f2)
      # shellcheck disable=SC2086  # a word list (scripts/lib.sh tenants_setup)
      run_clients "[failure $k/$total] $red" "$procs" "$b/tools/sharry_client" --transport="$transport" \
        --memnode="$nodes" $client_auth --redundancy="$red" --workload=array --arrays=8 --object_bytes=4096 \
        --working_set_mb="$ws_mb" --local_pct="$pct" --ops="$ops" --min_secs="$secs" --verify_versions \
        --timeline_ms=100 --timeline_file="@TMP@/tl.@I@"
      stop_memnodes
    done
  done
  ok_rcs=0 kill_after='' victim='' victim_addr=''
  echo "@endfig failure"
}

# ---------------------------------------------------------------- offload (issue #13)
# Fig. 8's five group-bys through compute::Aggregate (--queries=aggregate),
# the far part run here, swapping chunks in as Fig. 8 does (--offload=never),
# at the memnode (always) or where the cost decision says (auto); the three
# interleaved, each group of three starting with the next setting. The
# reference: the same queries on plain local memory (their checksums).
offload() {
  local rows=1000000 passes=2 pcts=(10 25 50 75 100) modes=(unique multi) settings=(never auto always) r=$rounds
  if [[ $scale == vm ]]; then rows=60000 passes=1 pcts=(10 50 100); fi
  if [[ $quick == 1 ]]; then rows=$((rows / 4)); pcts=(10 50 100); [[ $rounds_given == 1 ]] || r=1; fi
  local total=$(( ${#pcts[@]} * ${#modes[@]} * ${#settings[@]} * r + 1 )) k=0 g=0 pct round mode off
  echo "offload: Fig. 8's 5 group-bys through compute::Aggregate — 3 processes, $rows trips each ($(mib $((rows * 57))) MiB), one memnode (1 section, 1 offload thread); far part swapped in (never), at the memnode (always) or as auto decides, interleaved; x $passes passes (at least 2 s), median of $r rounds"
  k=$((k + 1))
  port=0
  point fig=\"offload\" k="$k" total="$total" round=1 procs=3 storage=\"local\" queries=\"aggregate\" mode=\"-\" \
    offload=\"-\" sections=0 local_pct=100 rows_per_proc="$rows"
  run_clients "[offload $k/$total] local memory" 3 "$b/bench/dataframe_bench" --storage=local --queries=aggregate \
    --rows="$rows" --passes="$passes" --min_secs=2
  memnode_args=(--offload_threads=1)
  for pct in "${pcts[@]}"; do
    for round in $(seq "$r"); do
      for mode in "${modes[@]}"; do
        for off in $(rotate "$g" "${settings[@]}"); do
          k=$((k + 1))
          point fig=\"offload\" k="$k" total="$total" round="$round" procs=3 storage=\"remote\" queries=\"aggregate\" \
            mode=\""$mode"\" offload=\""$off"\" sections=1 local_pct="$pct" rows_per_proc="$rows"
          wait_quiet
          measure 1 $(( rows * 57 * 3 * 2 / 1048576 + 128 )) "[offload $k/$total] $mode local $pct % $off" \
            3 "$b/bench/dataframe_bench" --storage=remote --queries=aggregate --offload="$off" --rows="$rows" \
            --passes="$passes" --local_pct="$pct" --mode="$mode" --min_secs=2
        done
        g=$((g + 1))
      done
    done
  done
  memnode_args=()
  echo "@endfig offload"
}

echo "experiments: $transport transport, $scale scale$([[ $quick == 1 ]] && echo ", quick"); $(nproc) cores"
# wait_quiet: with --quiet-wait S, waits up to S seconds for the machine to
# be under 15 % busy (between points, so ours are not running) and prints
# @busy with the last second's percentage and the seconds waited.
wait_quiet() {
  [[ $quiet_wait == 0 ]] && return 0
  local t0=$SECONDS pct
  pct=$(busy_pct)
  while (( pct >= 15 && SECONDS - t0 < quiet_wait )); do pct=$(busy_pct); done
  printf '@busy {"pct":%d,"waited_s":%d}\n' "$pct" $((SECONDS - t0))
}

for fig in ${only//,/ }; do
  echo "experiments: the machine was $(busy_pct) % busy in the second before $fig"
  "$fig"
done
echo "experiments: measured in $(( $(date +%s) - t_start )) s"
