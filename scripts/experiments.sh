#!/usr/bin/env bash
# The paper's experiments (section 6), scaled to this machine, each writing a
# CSV and drawing PNG plots with gnuplot:
#   fig6  sharing vs not sharing: 3 processes (and 1 alone) against one
#         memnode, 8 remoteable arrays of 4 KiB objects each, local memory 10..100 %
#         of the working set; throughput and far memory, Unique- vs Multi-Copy.
#   fig7  scale: fixed local memory, 10^3..10^7 objects in the system (256 B
#         each: 10^7 x 4 KiB would not fit in 24 GiB); 1 and 2 sections.
#   fig8  data analysis: NYC-taxi-shaped data frame (bench/dataframe_bench.cc),
#         3 processes; Unique-Copy with 1 and 2 sections, Multi-Copy, and
#         plain local memory; local memory 10..100 %.
#
#   scripts/experiments.sh [--vm] [--quick] [--only fig6,fig7,fig8] [--out DIR]
#                          [--build DIR]
#
#   (default)  tcp transport on this host; results in results/host/
#   --vm       verbs over SoftRoCE in the throwaway VM (scripts/rxe-vm.sh), at a
#              smaller scale; results in results/vm/
#   --quick    fewer points and smaller sizes (a few minutes; for a smoke test)
#   --rounds N each fig6/fig8 point N times, Unique and Multi interleaved; the
#              median round is kept (default 3; fig7 runs once: its loads are long)
#
# Every run prints a progress line; each figure ends in DIR/<fig>.csv and
# DIR/<fig>*.png. One memnode per measured point; client processes load their
# data, wait at a start barrier, then run the timed phase together.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
ROOT=$PWD
vm=0 quick=0 rounds=3 only=fig6,fig7,fig8 out='' build=build inner=0 transport=tcp addr=127.0.0.1 scale=host
while [[ $# -gt 0 ]]; do
  case "$1" in
    --vm) vm=1; shift ;;
    --quick) quick=1; shift ;;
    --rounds) rounds=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --inner) inner=1; shift ;;  # (internal) inside the VM: run, then print the CSVs
    --transport) transport=$2; shift 2 ;;
    --scale) scale=$2; shift 2 ;;
    *) common_opt experiments "$@"; shift "$opt_shift" ;;
  esac
done
[[ $rounds =~ ^[1-9][0-9]{0,3}$ ]] || { echo "experiments: --rounds $rounds: want an integer in 1..9999" >&2; exit 2; }
[[ $only =~ ^(fig6|fig7|fig8)(,(fig6|fig7|fig8))*$ ]] ||
  { echo "experiments: --only $only: want a comma-separated list of fig6, fig7, fig8" >&2; exit 2; }
[[ $scale == host || $scale == vm ]] || { echo "experiments: --scale $scale: want host or vm" >&2; exit 2; }
b=$ROOT/$build
bins=("$b/tools/memnode" "$b/tools/memnode_stats" "$b/tools/sharry_client" "$b/bench/dataframe_bench")

plot() {  # plot DIR: every figure whose CSV is in DIR
  command -v gnuplot >/dev/null || { echo "experiments: gnuplot is missing (scripts/install-deps.sh); CSVs only"; return; }
  "$ROOT/scripts/plot-experiments.sh" "$1"
}

# ---------------------------------------------------------------- host side
if [[ $inner == 0 ]]; then
  scripts/install-deps.sh >/dev/null
  cmake -S . -B "$build" -G Ninja >/dev/null
  echo "experiments: building ..."
  cmake --build "$build" --target memnode memnode_stats sharry_client dataframe_bench >/dev/null
  q=(--rounds "$rounds"); [[ $quick == 1 ]] && q+=(--quick)
  if [[ $vm == 1 ]]; then
    out=${out:-results/vm}
    mkdir -p "$out"
    files=(); for f in "${bins[@]}"; do files+=(--file "$f"); done
    echo "experiments: verbs over SoftRoCE in the VM (emulated, so smaller); results in $out"
    log=$out/vm-run.log
    scripts/rxe-vm.sh --timeout 5400 --mem 3072 "${files[@]}" --file "$ROOT/scripts/experiments.sh" -- \
      "$ROOT/scripts/experiments.sh" --inner --transport verbs --scale vm --only "$only" --build "$build" \
      --out /tmp/results "${q[@]}" | tee "$log"
    # The CSVs come back on the console between markers.
    awk -v dir="$out" '/^=== csv [a-z0-9]+ ===$/ { f = dir "/" $3 ".csv"; printf "" > f; next }
                       /^=== end ===$/ { f = ""; next } f != "" { print >> f }' "$log"
    plot "$out"
    exit 0
  fi
  out=${out:-results/host}
  mkdir -p "$out"
  "$0" --inner --transport tcp --scale host --only "$only" --build "$build" --out "$out" "${q[@]}"
  plot "$out"
  exit 0
fi

# ---------------------------------------------------------------- measuring
[[ $transport == verbs && $addr == 127.0.0.1 ]] && addr=${SHARRY_RDMA_ADDR:-192.0.2.1}
for f in "${bins[@]}"; do [[ -x $f ]] || { echo "experiments: $f is missing" >&2; exit 1; }; done
mkdir -p "$out"
tmp=$(mktemp -d)
mn='' pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [[ -n $mn ]]; then kill "$mn" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
poll=1; [[ $scale == vm ]] && poll=3
live=0; [[ -t 1 && $scale != vm ]] && live=1  # a live status line (not on the VM's console)
t_start=$(date +%s)

kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }  # kv KEY < line: the value of KEY=
sum() { awk '{ s += $1 } END { printf "%.0f", s }'; }
mib() { awk -v x="$1" 'BEGIN { printf "%.1f", x / 1048576 }'; }
# Over the client outputs of the last point ($tmp/out.*), the values of KEY:
outs_sum() { cat "$tmp"/out.* | kv "$1" | sum; }                   # summed
outs_max() { cat "$tmp"/out.* | kv "$1" | sort -n | tail -1; }     # the largest
outs_mean() { cat "$tmp"/out.* | kv "$1" | awk '{ s += $1 } END { printf "%.4f", s / NR }'; }  # averaged

# median_row FILE COL: the row of FILE (CSV rows of one configuration, one
# per round) whose column COL is the median.
median_row() { sort -t, -k"$2","$2" -g "$1" | awk -v n="$(wc -l <"$1")" 'NR == int((n + 1) / 2)'; }

start_memnode() {  # start_memnode SECTIONS UMA_MB
  rm -f "$tmp/port"
  "$b/tools/memnode" --transport="$transport" --listen="$addr" --port=0 --port_file="$tmp/port" \
    --uma_mb="$2" --sections="$1" --stats_interval=0 >"$tmp/memnode.log" 2>&1 &
  mn=$!
  for _ in $(seq 600); do [[ -s $tmp/port ]] && break; sleep 0.1; done
  [[ -s $tmp/port ]] || { echo "memnode did not start:"; cat "$tmp/memnode.log"; exit 1; }
  port=$(<"$tmp/port")
}
stop_memnode() { kill -INT "$mn" 2>/dev/null; wait "$mn" 2>/dev/null || true; mn=; }

# run_clients LABEL N CMD...: N processes of CMD (each gets --seed=i and the
# barrier flags; "@PORT@" is replaced); waits, tracking the memnode's peak
# far memory; leaves outputs in $tmp/out.* and the peak in $peak (bytes).
run_clients() {
  local label=$1 n=$2; shift 2
  rm -f "$tmp"/ready.* "$tmp"/go "$tmp"/out.* "$tmp"/err.*
  pids=()
  for i in $(seq "$n"); do
    local args=()
    for a in "$@"; do args+=("${a//@PORT@/$port}"); done
    "${args[@]}" --seed="$i" --ready_file="$tmp/ready.$i" --go_file="$tmp/go" >"$tmp/out.$i" 2>"$tmp/err.$i" &
    pids+=($!)
  done
  peak=0
  local t0=$SECONDS phase=loading
  while :; do
    local running=0 ready=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && running=$((running + 1)); done
    for i in $(seq "$n"); do [[ -e $tmp/ready.$i ]] && ready=$((ready + 1)); done
    if [[ $phase == loading && $ready == "$n" ]]; then touch "$tmp/go"; phase=running; fi
    if [[ $phase == loading && $running -lt $n ]]; then break; fi  # one died while loading
    local used=
    [[ -n $mn ]] && used=$("$b/tools/memnode_stats" --transport="$transport" --addr="$addr" --port="$port" 2>/dev/null |
           sed -n 's/^UMA [0-9.]* MiB: used \([0-9.]*\) MiB.*/\1/p' || true)
    [[ -n $used ]] && peak=$(awk -v a="$peak" -v b="$used" 'BEGIN { print (b * 1048576 > a ? b * 1048576 : a) }')
    [[ $live == 1 ]] && printf '\r  %-48s %4ds %s, %d/%d running, far %s MiB   ' "$label" $((SECONDS - t0)) "$phase" \
      "$running" "$n" "${used:-?}"
    [[ $running == 0 ]] && break
    sleep "$poll"
  done
  [[ $live == 1 ]] && printf '\r%*s\r' 110 ''
  local rc=0
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  pids=()
  if [[ $rc != 0 ]]; then
    echo "experiments: a client failed ($label):"
    tail -5 "$tmp"/err.* "$tmp"/out.*
    exit 1
  fi
}

# ---------------------------------------------------------------- fig 6
fig6() {
  local ws_mb=32 ops=100000 pcts=(10 25 50 75 100)
  if [[ $scale == vm ]]; then ws_mb=4 ops=6000 pcts=(10 25 50 75 100); fi
  if [[ $quick == 1 ]]; then ws_mb=$((ws_mb / 2)) ops=$((ops / 4)) pcts=(10 50 100); fi
  local csv=$out/fig6.csv total=$(( ${#pcts[@]} * 4 * rounds )) k=0
  echo "experiment,transport,procs,mode,sections,local_pct,ws_mib,ops_per_proc,ops_per_s,ops_per_s_per_proc,far_mib_end,far_mib_peak,hit_rate,swap_ins,swap_outs,drops,alloc_rpcs,free_rpcs,secs" >"$csv"
  echo "fig6: sharing vs not sharing — 8 arrays of 4 KiB objects, ${ws_mb} MiB per process, $ops operations (20 % writes) per process, median of $rounds rounds"
  for pct in "${pcts[@]}"; do
    for procs in 3 1; do
      rm -f "$tmp"/rows.*
      for _ in $(seq "$rounds"); do
      for mode in unique multi; do
        k=$((k + 1))
        start_memnode 2 $((ws_mb * procs * 2 + 64))
        run_clients "[fig6 $k/$total] $mode x$procs local $pct %" "$procs" "$b/tools/sharry_client" \
          --transport="$transport" --memnode="$addr:@PORT@" --workload=array --arrays=8 --object_bytes=4096 \
          --working_set_mb="$ws_mb" --local_pct="$pct" --ops="$ops" --mode="$mode" --min_secs=2
        stop_memnode
        local tput far secs hit
        tput=$(outs_sum ops_per_s)
        far=$(outs_sum far_bytes_mine)
        secs=$(outs_max secs)
        hit=$(outs_mean hit_rate)
        printf '%s,%s,%d,%s,2,%d,%d,%d,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n' fig6 "$transport" "$procs" "$mode" "$pct" \
          "$ws_mb" "$ops" "$tput" "$((tput / procs))" "$(mib "$far")" "$(mib "$peak")" "$hit" \
          "$(outs_sum swap_ins)" "$(outs_sum swap_outs)" \
          "$(outs_sum drops)" "$(outs_sum alloc_rpcs)" \
          "$(outs_sum free_rpcs)" "$secs" >>"$tmp/rows.$mode"
        printf '[fig6 %2d/%d] %-6s x%d local %3d %%: %8s ops/s, far %7s MiB (peak %s)  [%ds]\n' "$k" "$total" "$mode" \
          "$procs" "$pct" "$tput" "$(mib "$far")" "$(mib "$peak")" $(( $(date +%s) - t_start ))
      done
      done
      for mode in unique multi; do median_row "$tmp/rows.$mode" 9 >>"$csv"; done
    done
  done
}

# ---------------------------------------------------------------- fig 7
fig7() {
  local local_mb=4 ops=100000 counts=(1000 10000 100000 1000000 10000000) sections=(1 2) modes=(unique multi)
  if [[ $scale == vm ]]; then local_mb=1 ops=5000 counts=(1000 10000 100000) sections=(1 2); fi
  if [[ $quick == 1 ]]; then ops=$((ops / 4)); counts=("${counts[@]:0:3}"); sections=(1 2); modes=(unique); fi
  local csv=$out/fig7.csv total=$(( ${#counts[@]} * ${#sections[@]} * ${#modes[@]} )) k=0
  echo "experiment,transport,procs,mode,sections,objects,object_bytes,ws_mib,local_mib_per_proc,ops_per_s,far_mib_end,far_mib_peak,hit_rate,alloc_rpcs,free_rpcs,fill_secs,secs" >"$csv"
  echo "fig7: scale — 3 processes, 8 arrays of 256-byte objects, ${local_mb} MiB local memory per process, $ops operations each"
  for count in "${counts[@]}"; do
    for sec in "${sections[@]}"; do
      for mode in "${modes[@]}"; do
        k=$((k + 1))
        local per=$(( (count + 2) / 3 ))
        # shellcheck disable=SC2017  # MiB rounded down, then doubled
        start_memnode "$sec" $(( per * 3 * 256 / 1048576 * 2 + 128 ))
        run_clients "[fig7 $k/$total] $mode $count objects $sec sections" 3 "$b/tools/sharry_client" \
          --transport="$transport" --memnode="$addr:@PORT@" --workload=array --arrays=8 --object_bytes=256 \
          --objects="$per" --local_mb="$local_mb" --ops="$ops" --mode="$mode" --min_secs=2
        stop_memnode
        local tput far fill secs
        tput=$(outs_sum ops_per_s)
        far=$(outs_sum far_bytes_mine)
        fill=$(outs_max fill_secs)
        secs=$(outs_max secs)
        printf '%s,%s,3,%s,%d,%d,256,%s,%d,%s,%s,%s,%s,%s,%s,%s,%s\n' fig7 "$transport" "$mode" "$sec" "$((per * 3))" \
          "$(mib $((per * 3 * 256)))" "$local_mb" "$tput" "$(mib "$far")" "$(mib "$peak")" \
          "$(outs_mean hit_rate)" \
          "$(outs_sum alloc_rpcs)" "$(outs_sum free_rpcs)" "$fill" "$secs" >>"$csv"
        printf '[fig7 %2d/%d] %-6s %9d objects, %d sections: %8s ops/s, far %8s MiB, load %6ss  [%ds]\n' "$k" "$total" \
          "$mode" "$((per * 3))" "$sec" "$tput" "$(mib "$far")" "$fill" $(( $(date +%s) - t_start ))
      done
    done
  done
}

# ---------------------------------------------------------------- fig 8
fig8() {
  local rows=1000000 passes=2 pcts=(10 25 50 75 100)
  if [[ $scale == vm ]]; then rows=60000 passes=1 pcts=(10 50 100); fi
  if [[ $quick == 1 ]]; then rows=$((rows / 4)); pcts=(10 50 100); fi
  local configs=("unique 1" "unique 2" "multi 2")
  local csv=$out/fig8.csv total=$(( ${#pcts[@]} * ${#configs[@]} * rounds + 1 )) k=0
  echo "experiment,transport,procs,storage,mode,sections,local_pct,rows_per_proc,frame_mib_per_proc,rows_per_s,far_mib_end,far_mib_peak,hit_rate,swap_ins,swap_outs,drops,alloc_rpcs,free_rpcs,load_secs,query_secs,checksum" >"$csv"
  echo "fig8: data frame — 3 processes, $rows NYC-taxi-shaped trips each ($(mib $((rows * 57))) MiB), 5 group-by queries x $passes passes (at least 2 s), median of $rounds rounds"
  # Plain local memory: the same three processes, no memnode.
  k=$((k + 1))
  port=0
  run_clients "[fig8 $k/$total] local memory" 3 "$b/bench/dataframe_bench" --storage=local --rows="$rows" \
    --passes="$passes" --min_secs=2
  # Each process has its own data set (--seed); remote runs must match these.
  local want=() i
  for i in 1 2 3; do want[i]=$(kv checksum <"$tmp/out.$i"); done
  local tput
  tput=$(outs_sum rows_per_s)
  printf '%s,%s,3,local,-,0,100,%d,%s,%s,0,0,1,0,0,0,0,0,%s,%s,%s\n' fig8 "$transport" "$rows" "$(mib $((rows * 57)))" \
    "$tput" "$(outs_max load_secs)" \
    "$(outs_max query_secs)" "${want[1]}" >>"$csv"
  printf '[fig8 %2d/%d] plain local memory: %10s rows/s  [%ds]\n' "$k" "$total" "$tput" $(( $(date +%s) - t_start ))
  for pct in "${pcts[@]}"; do
    rm -f "$tmp"/rows.*
    for _ in $(seq "$rounds"); do
    for cfg in "${configs[@]}"; do
      read -r mode sec <<<"$cfg"
      k=$((k + 1))
      start_memnode "$sec" $(( rows * 57 * 3 * 2 / 1048576 + 128 ))
      run_clients "[fig8 $k/$total] $mode $sec sections local $pct %" 3 "$b/bench/dataframe_bench" --storage=remote \
        --transport="$transport" --memnode="$addr:@PORT@" --rows="$rows" --passes="$passes" --local_pct="$pct" \
        --mode="$mode" --min_secs=2
      stop_memnode
      local far got
      tput=$(outs_sum rows_per_s)
      far=$(outs_sum far_bytes_mine)
      for i in 1 2 3; do
        got=$(kv checksum <"$tmp/out.$i")
        [[ $got == "${want[i]}" ]] || { echo "experiments: fig8 process $i: results $got, local memory ${want[i]}"; exit 1; }
      done
      printf '%s,%s,3,remote,%s,%d,%d,%d,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n' fig8 "$transport" "$mode" "$sec" \
        "$pct" "$rows" "$(mib $((rows * 57)))" "$tput" "$(mib "$far")" "$(mib "$peak")" \
        "$(outs_mean hit_rate)" \
        "$(outs_sum swap_ins)" "$(outs_sum swap_outs)" \
        "$(outs_sum drops)" "$(outs_sum alloc_rpcs)" \
        "$(outs_sum free_rpcs)" "$(outs_max load_secs)" \
        "$(outs_max query_secs)" "${want[1]}" >>"$tmp/rows.$mode$sec"
      printf '[fig8 %2d/%d] %-6s %d sections local %3d %%: %10s rows/s, far %7s MiB, results = local  [%ds]\n' "$k" \
        "$total" "$mode" "$sec" "$pct" "$tput" "$(mib "$far")" $(( $(date +%s) - t_start ))
    done
    done
    for cfg in "${configs[@]}"; do read -r mode sec <<<"$cfg"; median_row "$tmp/rows.$mode$sec" 10 >>"$csv"; done
  done
}

echo "experiments: $transport transport, $scale scale$([[ $quick == 1 ]] && echo ", quick"); $(nproc) cores; writing to $out"
for fig in ${only//,/ }; do
  case $fig in
    fig6|fig7|fig8) "$fig" ;;
    *) echo "experiments: unknown figure $fig" >&2; exit 2 ;;
  esac
done
echo "experiments: done in $(( $(date +%s) - t_start )) s"
if [[ $scale == vm ]]; then
  for f in "$out"/*.csv; do echo "=== csv $(basename "$f" .csv) ==="; cat "$f"; echo "=== end ==="; done
fi
