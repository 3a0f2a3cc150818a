#!/usr/bin/env bash
# The far-memory demo: one memnode and three compute processes sharing it,
# run once with Unique-Copy and once with Multi-Copy, ending in a table of
# throughput and far memory used, with the saving and the slowdown in percent.
#
#   scripts/demo.sh [--transport tcp|verbs] [--working-set-mb N] [--local-pct P]
#                   [--ops N] [--rounds N] [--memnodes N] [--redundancy R]
#                   [--build DIR]
#
# Each mode runs --rounds times (default 3), alternating; the table has the
# median round's throughput and the highest far memory seen.
#
# --memnodes N    N memnode processes on this host instead of one (1..32,
#                 default 1); the clients get the list (--memnode=A,B,...)
#                 and place far blocks across them; the table adds each
#                 memnode's highest far memory.
# --redundancy R  the clients' --redundancy (docs/redundancy.md): none
#                 (default), replicate:R (R copies on R memnodes) or ec:K+M
#                 (stripes of K data + M parity blocks on K+M memnodes);
#                 needs as many memnodes as copies or blocks. ec needs
#                 Unique-Copy, so under ec the demo runs Unique-Copy only.
#
# Needs the binaries built (scripts/run.sh builds them). Runs in about a minute.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
transport=tcp addr=127.0.0.1 ws_mb=32 local_pct=50 ops=200000 build=build clients=3 rounds=3 memnodes=1 redundancy=none
while [[ $# -gt 0 ]]; do
  case "$1" in
    --transport) transport=$2; shift 2 ;;
    --addr) addr=$2; shift 2 ;;
    --working-set-mb) ws_mb=$2; shift 2 ;;
    --local-pct) local_pct=$2; shift 2 ;;
    --ops) ops=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --memnodes) memnodes=$2; shift 2 ;;
    --redundancy) redundancy=$2; shift 2 ;;
    *) common_opt demo "$@"; shift "$opt_shift" ;;
  esac
done
# The other values are checked by the binaries (one line naming the flag).
[[ $rounds =~ ^[1-9][0-9]{0,3}$ ]] || { echo "demo: --rounds $rounds: want an integer in 1..9999" >&2; exit 2; }
if ! [[ $memnodes =~ ^[1-9][0-9]?$ ]] || (( memnodes > 32 )); then
  echo "demo: --memnodes $memnodes: want an integer in 1..32" >&2
  exit 2
fi
# Copies or blocks per object, each on its own memnode; ec: the far bytes
# per object byte (rounded up), plus one for stripes with holes.
case "$redundancy" in
  none) spread=1 copies=1 ;;
  replicate:[0-9]|replicate:[0-9][0-9]) spread=${redundancy#replicate:} copies=$spread ;;
  ec:[0-9]*+[0-9]*)
    k=${redundancy#ec:} m=${k#*+} k=${k%+*}
    [[ $k =~ ^[0-9]{1,2}$ && $m =~ ^[0-9]{1,2}$ ]] ||
      { echo "demo: --redundancy $redundancy: want none, replicate:R or ec:K+M" >&2; exit 2; }
    spread=$((10#$k + 10#$m)) copies=$(( (10#$k + 10#$m + 10#$k - 1) / (10#$k > 0 ? 10#$k : 1) + 1 )) ;;
  *) echo "demo: --redundancy $redundancy: want none, replicate:R or ec:K+M" >&2; exit 2 ;;
esac
(( spread <= memnodes )) || {
  echo "demo: --redundancy $redundancy puts $spread copies or blocks of an object on different memnodes: needs --memnodes $spread or more (got $memnodes)" >&2
  exit 2
}
modes=(unique multi)
[[ $redundancy == ec:* ]] && modes=(unique)
[[ $transport == verbs && $addr == 127.0.0.1 ]] && addr=${SHARRY_RDMA_ADDR:-192.0.2.1}
b=$PWD/$build
for bin in tools/memnode tools/memnode_stats tools/sharry_client; do
  [[ -x $b/$bin ]] || { echo "demo: $b/$bin is missing: build first (scripts/run.sh)" >&2; exit 1; }
done
tmp=$(mktemp -d)
tenants_setup "$tmp"  # a tenants file with fresh secrets (scripts/lib.sh)
mns=()
cleanup() { for p in "${mns[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

# Far memory per memnode: the UMA for what the clients may place there (all
# of the working set far, times the copies, spread over the memnodes), twice.
uma_mb=$(( (ws_mb * clients * copies * 2 + memnodes - 1) / memnodes + 64 ))
if [[ $memnodes == 1 ]]; then
  echo "Sharry demo: $clients compute processes share one memnode over $transport;"
else
  echo "Sharry demo: $clients compute processes share $memnodes memnodes over $transport, redundancy $redundancy;"
fi
echo "each works on ${ws_mb} MiB of far-memory data with ${local_pct} % of it in local memory ($ops operations, 20 % writes)."
[[ ${#modes[@]} == 1 ]] && echo "(Multi-Copy not run: $redundancy stripes need Unique-Copy, docs/redundancy.md)"
declare -A tput far
declare -A all_tput
declare -A far_node  # "mode i": the highest far memory seen at memnode i, MiB
for round in $(seq "$rounds"); do
for mode in "${modes[@]}"; do
  if [[ $memnodes == 1 ]]; then
    printf '\n[%s-copy, round %d of %d] starting the memnode ... ' "$mode" "$round" "$rounds"
  else
    printf '\n[%s-copy, round %d of %d] starting %d memnodes ... ' "$mode" "$round" "$rounds" "$memnodes"
  fi
  mns=() ports=() nodes=''
  for i in $(seq 0 $((memnodes - 1))); do
    rm -f "$tmp/port.$i"
    # shellcheck disable=SC2086  # a word list (scripts/lib.sh tenants_setup)
    "$b/tools/memnode" --transport="$transport" --listen="$addr" --port=0 --port_file="$tmp/port.$i" $memnode_auth \
      --uma_mb="$uma_mb" --sections=2 --stats_interval=0 >"$tmp/memnode-$mode.$i.log" 2>&1 &
    mns+=($!)
  done
  for i in $(seq 0 $((memnodes - 1))); do
    for _ in $(seq 300); do [[ -s $tmp/port.$i ]] && break; sleep 0.1; done
    [[ -s $tmp/port.$i ]] || { echo "memnode did not start"; cat "$tmp/memnode-$mode.$i.log"; exit 1; }
    ports+=("$(<"$tmp/port.$i")")
    nodes+="${nodes:+,}$addr:${ports[i]}"
  done
  if [[ $memnodes == 1 ]]; then echo "port ${ports[0]}"; else echo "ports ${ports[*]}"; fi
  red_flag=()
  [[ $redundancy != none ]] && red_flag=(--redundancy="$redundancy")
  pids=()
  for c in $(seq "$clients"); do
    # shellcheck disable=SC2086  # a word list (scripts/lib.sh tenants_setup)
    "$b/tools/sharry_client" --transport="$transport" --memnode="$nodes" "${red_flag[@]}" $client_auth --workload=array --mode="$mode" \
      --working_set_mb="$ws_mb" --local_pct="$local_pct" --ops="$ops" --seed="$c" \
      --ready_file="$tmp/ready-$mode-$c" --go_file="$tmp/go-$mode" \
      >"$tmp/client-$mode-$c.out" 2>"$tmp/client-$mode-$c.err" &
    pids+=($!)
  done
  # Progress, and the peak far memory the memnodes report while they run
  # (with many: their total, and each one's).
  peak=0 t=0
  while :; do
    running=0 ready=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && running=$((running + 1)); done
    # All loaded: start the timed phase of every client at once.
    for c in $(seq "$clients"); do [[ -e $tmp/ready-$mode-$c ]] && ready=$((ready + 1)); done
    [[ $ready == "$clients" && ! -e $tmp/go-$mode ]] && touch "$tmp/go-$mode"
    if [[ $memnodes == 1 ]]; then
      # shellcheck disable=SC2086  # a word list (scripts/lib.sh tenants_setup)
      used=$("$b/tools/memnode_stats" --transport="$transport" --addr="$addr" --port="${ports[0]}" $client_auth 2>/dev/null |
             sed -n 's/^UMA [0-9.]* MiB: used \([0-9.]*\) MiB.*/\1/p')
    else
      # shellcheck disable=SC2086  # a word list (scripts/lib.sh tenants_setup)
      stats=$("$b/tools/memnode_stats" --transport="$transport" --memnode="$nodes" $client_auth 2>/dev/null || true)
      used=$(sed -n 's/^total of [0-9]*\/[0-9]* memnodes: UMA [0-9.]* MiB: used \([0-9.]*\) MiB.*/\1/p' <<<"$stats")
      for i in "${!ports[@]}"; do
        u=$(sed -n "s/^memnode [^ ]*:${ports[i]}: UMA [0-9.]* MiB: used \([0-9.]*\) MiB.*/\1/p" <<<"$stats")
        [[ -n $u ]] && far_node[$mode $i]=$(awk -v a="${far_node[$mode $i]:-0}" -v b="$u" 'BEGIN { print (b > a ? b : a) }')
      done
    fi
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
  for p in "${mns[@]}"; do kill -INT "$p"; done
  for p in "${mns[@]}"; do wait "$p" || true; done
  mns=()
done
done
# The median round of each mode (3 processes on a small machine swing by
# tens of percent from run to run; rounds alternate the modes).
median() { tr ' ' '\n' | grep . | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
for mode in "${modes[@]}"; do
  echo "[$mode-copy] throughput per round (ops/s):${all_tput[$mode]}"
  tput[$mode]=$(echo "${all_tput[$mode]}" | median)
done
# With many memnodes: each one's highest far memory, "a / b / c" (MiB).
per_node() {
  local i out=''
  for i in $(seq 0 $((memnodes - 1))); do out+="${out:+ / }${far_node[$1 $i]:-?}"; done
  echo "$out"
}

echo
awk -v tu="${tput[unique]}" -v tm="${tput[multi]:-}" -v fu="${far[unique]}" -v fm="${far[multi]:-}" \
    -v n="$clients" -v ws="$ws_mb" -v lp="$local_pct" -v nm="$memnodes" -v red="$redundancy" \
    -v pu="$(per_node unique)" -v pm="$(per_node multi)" 'BEGIN {
  if (nm == 1) {
    printf "| pattern | throughput (ops/s, %d processes, median round) | peak far memory (MiB) |\n", n
    printf "|---|---:|---:|\n"
    printf "| Unique-Copy (Sharry) | %.0f | %.1f |\n", tu, fu
    printf "| Multi-Copy (AIFM-style) | %.0f | %.1f |\n", tm, fm
  } else {
    printf "| pattern | throughput (ops/s, %d processes, median round) | peak far memory (MiB, %d memnodes) | peak far memory per memnode (MiB) |\n", n, nm
    printf "|---|---:|---:|---:|\n"
    printf "| Unique-Copy (Sharry) | %.0f | %.1f | %s |\n", tu, fu, pu
    if (tm != "") printf "| Multi-Copy (AIFM-style) | %.0f | %.1f | %s |\n", tm, fm, pm
  }
  if (tm != "")
    printf "\nworking set %d x %d MiB, local memory %d %%: far memory saved by Unique-Copy: %.1f %%; slowdown: %.1f %%\n",
           n, ws, lp, (fm > 0 ? 100 * (fm - fu) / fm : 0), (tm > 0 ? 100 * (tm - tu) / tm : 0)
  else
    printf "\nworking set %d x %d MiB, local memory %d %%, redundancy %s (Multi-Copy not run)\n", n, ws, lp, red
  if (nm > 1 && red != "none")
    printf "far memory counts every copy, parity block and stripe hole (redundancy %s)\n", red
}'
