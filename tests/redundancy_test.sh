#!/bin/sh
# Redundancy across memnodes (docs/redundancy.md) with the shipped binaries:
# 4 `memnode` processes and 3 `sharry_client` processes (array workload, 2
# threads, reads and writes checked with --verify_versions, a working set
# twice the local budget, a timed phase of at least 7 s started together), every client
# with --memnode naming the 4 memnodes. About 2 s into the timed phase one
# memnode is
#   (a) SIGKILLed, under --redundancy=replicate:2: every client exits 0 with
#       errors=0 (no failed access, no wrong value), dead_memnodes=1,
#       lost_objects=0, repaired_objects>0 and no far bytes at the dead one;
#       one client's --timeline_file has a row per 100 ms whose ops add up
#       to its total and which shows the death;
#   (b) SIGSTOPped (frozen), likewise (--op_timeout_ms=300 declares it dead);
#   (d) SIGKILLed under --redundancy=ec:2+1 (stripes of 2 data + 1 parity
#       blocks): as (a), the objects of its stripes rebuilt from the others;
#   (c) SIGKILLed, under --redundancy=none: every client exits 2 within 5 s,
#       stderr naming the dead memnode's HOST:PORT and lost_objects>0; the
#       survivors reclaim the clients' blocks and serve a fresh client.
# After each, the survivors hold no block of the departed clients
# (memnode_stats --memnode=..., the total). Prints the times from the
# death to the clients' exits and the repair counts.
#   tests/redundancy_test.sh BUILD_DIR
# shellcheck source=scripts/lib.sh
case "${1:-}" in -h|--help) . "$(dirname "$0")/../scripts/lib.sh"; script_help; exit 0 ;; esac
set -u
build=$1
dir=$(mktemp -d)
limit_ms=5000  # (c): death to exit

cleanup() {
  for f in "$dir"/*.pid; do
    [ -e "$f" ] || continue
    p=$(cat "$f")
    kill -CONT "$p" 2>/dev/null
    kill -KILL "$p" 2>/dev/null
  done
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

now_ms() { echo $(($(date +%s%N) / 1000000)); }
fail() { echo "FAIL: $*"; exit 1; }

# start_memnodes TAG: 4 memnodes, TAG.m0 .. TAG.m3; sets nodes (the
# --memnode list) and addr0 .. addr3.
start_memnodes() {
  nodes=""
  for i in 0 1 2 3; do
    "$build/tools/memnode" --transport=tcp --listen=127.0.0.1 --port=0 --port_file="$dir/$1.m$i.port" \
      --uma_mb=32 --sections=2 --stats_interval=0 >"$dir/$1.m$i.log" 2>&1 &
    echo $! >"$dir/$1.m$i.pid"
  done
  for i in 0 1 2 3; do
    n=0
    while [ ! -s "$dir/$1.m$i.port" ]; do
      n=$((n + 1))
      if [ $n -gt 300 ]; then cat "$dir/$1.m$i.log"; fail "$1: memnode $i did not start"; fi
      sleep 0.1
    done
    eval "addr$i=127.0.0.1:$(cat "$dir/$1.m$i.port")"
    nodes="$nodes${nodes:+,}127.0.0.1:$(cat "$dir/$1.m$i.port")"
  done
}

# start_client NAME ARGS...: runs sharry_client in the background; its pid
# goes to NAME.pid, its exit status to NAME.rc once it has exited.
start_client() {
  name=$1
  shift
  (
    "$build/tools/sharry_client" --transport=tcp "$@" >"$dir/$name.out" 2>"$dir/$name.err" &
    echo $! >"$dir/$name.pid"
    wait $!
    echo $? >"$dir/$name.rc"
  ) &
  n=0
  while [ ! -s "$dir/$name.pid" ]; do
    n=$((n + 1))
    [ $n -gt 100 ] && fail "$name: client did not start"
    sleep 0.1
  done
}

# wait_rc NAME SECONDS: waits (bounded) for the client's exit; sets rc.
wait_rc() {
  deadline=$(($(now_ms) + $2 * 1000))
  while [ ! -s "$dir/$1.rc" ]; do
    if [ "$(now_ms)" -gt $deadline ]; then
      echo "--- $1 stderr:"; cat "$dir/$1.err"
      fail "$1: the client still runs $2 s later"
    fi
    sleep 0.02
  done
  rc=$(cat "$dir/$1.rc")
}

# field KEY FILE: the value of KEY in the client's result line (or in the
# key=value line of its stderr); empty if absent.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" "$2" | head -1; }

# run_clients TAG REDUNDANCY [FLAGS...]: 3 clients TAG.c1 .. TAG.c3 on the 4
# memnodes, loaded, then started together; TAG.c1 writes a timeline.
# Returns when they are 2 s into the timed phase.
run_clients() {
  tag=$1 red=$2
  shift 2
  for c in 1 2 3; do
    tl=""
    [ $c = 1 ] && tl="--timeline_ms=100 --timeline_file=$dir/$tag.timeline.csv"
    # $tl is a word list (a path from mktemp: no spaces).
    # shellcheck disable=SC2086
    start_client "$tag.c$c" --memnode="$nodes" --redundancy="$red" --workload=array --working_set_mb=8 \
      --local_pct=50 --threads=2 --write_pct=30 --ops=2000 --min_secs=7 --verify_versions --seed=$c \
      --ready_file="$dir/$tag.c$c.ready" --go_file="$dir/$tag.go" $tl "$@"
  done
  for c in 1 2 3; do
    n=0
    while [ ! -e "$dir/$tag.c$c.ready" ]; do
      n=$((n + 1))
      if [ $n -gt 600 ] || [ -s "$dir/$tag.c$c.rc" ]; then cat "$dir/$tag.c$c.err"; fail "$tag.c$c: did not load its data"; fi
      sleep 0.1
    done
  done
  touch "$dir/$tag.go"
  sleep 2
  for c in 1 2 3; do
    [ -s "$dir/$tag.c$c.rc" ] && { cat "$dir/$tag.c$c.err"; fail "$tag.c$c: ended early"; }
  done
}

# survivors_clean TAG LIST: the memnodes of LIST hold no block (the clients
# have gone: their blocks are freed or reclaimed), within 10 s.
survivors_clean() {
  deadline=$(($(now_ms) + 10000))
  while :; do
    stats=$("$build/tools/memnode_stats" --memnode="$2" 2>&1)
    case "$stats" in *"total of 3/3 memnodes: "*" 0 live blocks"*) break ;; esac
    if [ "$(now_ms)" -gt $deadline ]; then echo "$stats"; fail "$1: the survivors still hold blocks 10 s after the clients left"; fi
    sleep 0.2
  done
  echo "$1: survivors: $(echo "$stats" | grep '^total')"
}

addr0="" addr1="" addr2="" addr3=""  # set by start_memnodes
summary=""
# ---- (a), (b), (d): replicate:2 or ec:2+1, a memnode killed or frozen ----
for case in repKILL:KILL:replicate:2 repSTOP:STOP:replicate:2 ecKILL:KILL:ec:2+1; do
  tag=${case%%:*} rest=${case#*:}
  sig=${rest%%:*} red=${rest#*:}
  start_memnodes "$tag"
  dead=$addr1
  run_clients "$tag" "$red" --op_timeout_ms=300
  t0=$(now_ms)
  kill -"$sig" "$(cat "$dir/$tag.m1.pid")"
  for c in 1 2 3; do
    wait_rc "$tag.c$c" 40
    t=$(($(now_ms) - t0))
    out=$dir/$tag.c$c.out
    echo "$tag.c$c: exit $rc, $t ms after SIG$sig of $dead: $(grep '^sharry_client' "$out" | tr ' ' '\n' |
      grep -E '^(ops|ops_per_s|degraded_reads|repaired_objects|repair_pending|dead_memnodes|lost_objects|stripes|far_bytes_node[0-9]|errors)=' |
      tr '\n' ' ')"
    if [ "$rc" != 0 ]; then sed 's/^/  /' "$dir/$tag.c$c.err"; fail "$tag.c$c: exit status $rc, want 0"; fi
    [ "$(field errors "$out")" = 0 ] || fail "$tag.c$c: errors=$(field errors "$out"), want 0"
    [ "$(field dead_memnodes "$out")" = 1 ] || fail "$tag.c$c: dead_memnodes=$(field dead_memnodes "$out"), want 1"
    [ "$(field lost_objects "$out")" = 0 ] || fail "$tag.c$c: lost_objects=$(field lost_objects "$out"), want 0"
    [ "$(field repaired_objects "$out")" -gt 0 ] || fail "$tag.c$c: no object repaired"
    [ "$(field far_bytes_node1 "$out")" = 0 ] || fail "$tag.c$c: far bytes still counted at the dead memnode"
    [ "$(field memnodes_answered "$out")" = 3 ] || fail "$tag.c$c: memnodes_answered=$(field memnodes_answered "$out"), want 3"
    summary="$summary $tag.c$c=${t}ms/repaired=$(field repaired_objects "$out")"
  done
  # The timeline: a header, a row per 100 ms (the last one shorter), the
  # ops adding up to the client's, the death in the dead_memnodes column.
  tl=$dir/$tag.timeline.csv
  [ "$(head -1 "$tl")" = "t_ms,ops,ops_per_s,errors,degraded_reads,repaired_objects,repair_pending,dead_memnodes" ] ||
    fail "$tag: timeline header: $(head -1 "$tl")"
  rows=$(($(wc -l <"$tl") - 1))
  sum=$(awk -F, 'NR > 1 { s += $2 } END { print s }' "$tl")
  ops=$(field ops "$dir/$tag.c1.out")
  [ "$sum" = "$ops" ] || fail "$tag: the timeline's ops add up to $sum, the client did $ops"
  # One row per 100 ms of the phase (the last one partial).
  want=$(field secs "$dir/$tag.c1.out" | awk '{ printf "%d", $1 * 10 + 0.999 }')
  if [ "$rows" -lt $((want - 1)) ] || [ "$rows" -gt $((want + 1)) ]; then
    fail "$tag: $rows timeline rows for a phase of $(field secs "$dir/$tag.c1.out") s at 100 ms"
  fi
  awk -F, 'NR > 1 && $8 == 1 { found = 1 } END { exit !found }' "$tl" || fail "$tag: the timeline never shows the death"
  # From the first row that shows the death to the first with no repair pending.
  repair=$(awk -F, 'NR > 1 && $8 == 1 && !d { d = $1 } d && $7 == 0 { print $1 - d; exit }' "$tl")
  # The slowest whole interval (not the last, shorter one).
  slow=$(awk -F, 'NR > 2 && (!m || p < m) { m = p } NR > 1 { p = $3 } END { print m + 0 }' "$tl")
  echo "$tag: timeline c1: $rows rows, ops reconcile ($ops); repair done ${repair:-(never idle: ec compaction)} ms after the death showed; slowest 100 ms: $slow ops/s"
  [ "$sig" = STOP ] && kill -KILL "$(cat "$dir/$tag.m1.pid")"
  survivors_clean "$tag" "$addr0,$addr2,$addr3"
  for i in 0 1 2 3; do kill -CONT "$(cat "$dir/$tag.m$i.pid")" 2>/dev/null; kill -KILL "$(cat "$dir/$tag.m$i.pid")" 2>/dev/null; done
done

# ---- (c) none: the dead memnode's objects are lost -----------------------
tag=none
start_memnodes "$tag"
dead=$addr1
run_clients "$tag" none
t0=$(now_ms)
kill -KILL "$(cat "$dir/$tag.m1.pid")"
for c in 1 2 3; do
  wait_rc "$tag.c$c" 30
  t=$(($(now_ms) - t0))
  err=$(cat "$dir/$tag.c$c.err")
  echo "$tag.c$c: exit $rc, $t ms after SIGKILL of $dead; stderr:"
  echo "$err" | grep '^sharry_client' | sed 's/^/  /'
  [ "$rc" = 2 ] || fail "$tag.c$c: exit status $rc, want 2 (far memory failed)"
  [ $t -le $limit_ms ] || fail "$tag.c$c: took $t ms to exit (limit $limit_ms ms)"
  case "$err" in *"memnode $dead"*) ;; *) fail "$tag.c$c: stderr does not name the dead memnode $dead" ;; esac
  lost=$(field lost_objects "$dir/$tag.c$c.err")
  [ "${lost:-0}" -gt 0 ] || fail "$tag.c$c: lost_objects=${lost:-none}, want > 0"
  case "$err" in *"far memory lost: $lost objects"*"at memnode $dead"*) ;;
    *) fail "$tag.c$c: stderr does not say the $lost objects at $dead were lost" ;; esac
  [ -s "$dir/$tag.c$c.out" ] && fail "$tag.c$c: printed a result"
  summary="$summary $tag.c$c=${t}ms/lost=$lost"
done
survivors_clean "$tag" "$addr0,$addr2,$addr3"
# The survivors serve a fresh client (which places its blocks across all 3).
start_client "$tag.fresh" --memnode="$addr0,$addr2,$addr3" --workload=array --working_set_mb=8 --local_pct=50 \
  --threads=2 --ops=40000 --verify_versions
wait_rc "$tag.fresh" 30
out=$dir/$tag.fresh.out
echo "$tag.fresh: exit $rc: $(cat "$out")"
[ "$rc" = 0 ] || { cat "$dir/$tag.fresh.err"; fail "$tag.fresh: exit status $rc on the survivors"; }
[ "$(field errors "$out")" = 0 ] || fail "$tag.fresh: errors"
for i in 0 1 2; do
  [ "$(field far_bytes_node$i "$out")" -gt 0 ] || fail "$tag.fresh: nothing placed at its memnode $i"
done

echo "death to exit:$summary"
echo "redundancy_test: 4 passed, 0 failed"
