#!/bin/sh
# Failure semantics of the shipped binaries (docs/compute.md, "When the
# memnode fails"): a real `memnode` process and a `sharry_client` that would
# run for minutes; then the memnode is
#   (a) SIGKILLed, (b) SIGSTOPped (and later killed), (c) SIGTERMed:
#       the client must exit non-zero (status 2) within 5 s, its stderr
#       naming the memnode and what happened;
#   (d) too small (--uma_mb) for the working set: the client's peak local
#       usage stays within the documented bound (budget + budget/8 + one
#       object per thread), stderr says far memory is exhausted, exit 4.
# Prints the time from the memnode's death to the client's exit.
#   tests/failure_test.sh BUILD_DIR
# shellcheck source=scripts/lib.sh
case "${1:-}" in -h|--help) . "$(dirname "$0")/../scripts/lib.sh"; script_help; exit 0 ;; esac
set -u
build=$1
dir=$(mktemp -d)
limit_ms=5000

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

# start_memnode NAME UMA_MB [FLAGS...]: sets mn (pid) and port.
start_memnode() {
  mname=$1
  muma=$2
  shift 2
  rm -f "$dir/port"
  "$build/tools/memnode" --transport=tcp --listen=127.0.0.1 --port=0 --port_file="$dir/port" \
    --uma_mb="$muma" --sections=2 --stats_interval=0 "$@" >"$dir/$mname.memnode.log" 2>&1 &
  mn=$!
  echo $mn >"$dir/$mname.memnode.pid"
  i=0
  while [ ! -s "$dir/port" ]; do
    i=$((i + 1))
    if [ $i -gt 300 ]; then cat "$dir/$mname.memnode.log"; fail "$mname: memnode did not start"; fi
    sleep 0.1
  done
  port=$(cat "$dir/port")
}

# start_client NAME ARGS...: runs sharry_client in the background; its pid
# goes to NAME.pid, its exit status to NAME.rc once it has exited.
start_client() {
  name=$1
  shift
  (
    "$build/tools/sharry_client" --transport=tcp --memnode="127.0.0.1:$port" "$@" \
      >"$dir/$name.out" 2>"$dir/$name.err" &
    echo $! >"$dir/$name.pid"
    wait $!
    echo $? >"$dir/$name.rc"
  ) &
  i=0
  while [ ! -s "$dir/$name.pid" ]; do
    i=$((i + 1))
    [ $i -gt 100 ] && fail "$name: client did not start"
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

# A client that would run for two minutes: 2 threads, 32 MiB at 25 % local.
run_workload() {
  start_client "$1" --workload=array --working_set_mb=32 --local_pct=25 --threads=2 --ops=1000000 \
    --min_secs=120 --ready_file="$dir/$1.ready"
  i=0
  while [ ! -e "$dir/$1.ready" ]; do
    i=$((i + 1))
    if [ $i -gt 600 ] || [ -s "$dir/$1.rc" ]; then cat "$dir/$1.err"; fail "$1: the client did not load its data"; fi
    sleep 0.1
  done
  sleep 1  # in the timed phase, swapping
  [ -s "$dir/$1.rc" ] && { cat "$dir/$1.err"; fail "$1: the client ended early"; }
}

summary=""
for sig in KILL STOP TERM; do
  name=sig$sig
  start_memnode $name 256
  run_workload $name
  t0=$(now_ms)
  kill -"$sig" "$mn"
  wait_rc "$name" 30
  t=$(($(now_ms) - t0))
  [ $sig = STOP ] && kill -KILL $mn
  err=$(cat "$dir/$name.err")
  echo "SIG$sig: the client exited $rc after $t ms; stderr:"
  echo "$err" | sed 's/^/  /'
  [ "$rc" = 2 ] || fail "SIG$sig: exit status $rc, want 2 (far memory failed)"
  [ $t -le $limit_ms ] || fail "SIG$sig: the client took $t ms to exit (limit $limit_ms ms)"
  case "$err" in *"memnode 127.0.0.1:$port"*) ;; *) fail "SIG$sig: stderr does not name the memnode" ;; esac
  case "$err" in *unreachable* | *"far memory lost"*) ;; *) fail "SIG$sig: stderr does not say what happened" ;; esac
  summary="$summary SIG$sig=${t}ms"
  wait $mn 2>/dev/null
done

# (d) Far memory exhausted mid-run: another client (the hog) holds most of
# a 16 MiB memnode; ours (16 MiB of data, 10 % local) fits the memnode on
# paper, so it starts, and finds far memory exhausted while it runs.
start_memnode exhausted 16
start_client hog --workload=array --working_set_mb=20 --local_pct=30 --threads=1 --ops=100000000
deadline=$(($(now_ms) + 60000))
until "$build/tools/memnode_stats" --port="$port" 2>/dev/null | grep -q 'used 1[2-6]\.'; do
  [ "$(now_ms)" -gt $deadline ] && fail "exhausted: the hog did not take 12 MiB of far memory within 60 s"
  sleep 0.2
done
start_client exhausted --workload=array --working_set_mb=16 --local_pct=10 --threads=2 --ops=100000
wait_rc exhausted 120
kill -KILL "$(cat "$dir/hog.pid")" 2>/dev/null
err=$(cat "$dir/exhausted.err")
echo "far memory exhausted: the client exited $rc; stderr:"
echo "$err" | sed 's/^/  /'
[ "$rc" = 4 ] || fail "exhausted: exit status $rc, want 4 (far memory exhausted)"
case "$err" in *"far memory exhausted"*) ;; *) fail "exhausted: stderr does not say far memory is exhausted" ;; esac
n=$(printf '%s\n' "$err" | grep -c "sharry runtime: far memory exhausted")
[ "$n" = 1 ] || fail "exhausted: said $n times on stderr, want once"
peak=$(printf '%s\n' "$err" | sed -n 's/.*peak_local_bytes=\([0-9]*\).*/\1/p')
lim=$(printf '%s\n' "$err" | sed -n 's/.*local_limit_bytes=\([0-9]*\).*/\1/p')
if [ -z "$peak" ] || [ -z "$lim" ]; then fail "exhausted: no peak_local_bytes/local_limit_bytes on stderr"; fi
# One 4 KiB object per adding thread (the filling thread and the prefetcher).
bound=$((lim + 2 * 4096))
echo "exhausted: peak local $peak B, bound $bound B (budget + budget/8 = $lim B, + 2 objects)"
[ "$peak" -le "$bound" ] || fail "exhausted: peak local usage $peak B above the bound $bound B"
kill -INT $mn
wait $mn

# (e) A frozen client (SIGSTOP) loses its far memory after its lease, and
# when it wakes it is told, instead of reading blocks now someone else's.
start_memnode frozen 256 --client_lease_s=2
run_workload frozen
used_before=$("$build/tools/memnode_stats" --port="$port" 2>/dev/null | sed -n 's/.*: used \([0-9.]*\) MiB.*/\1/p' | head -1)
kill -STOP "$(cat "$dir/frozen.pid")"
t0=$(now_ms)
deadline=$((t0 + 20000))
until "$build/tools/memnode_stats" --port="$port" 2>/dev/null | grep -q ': used 0.0 MiB'; do
  [ "$(now_ms)" -gt $deadline ] && fail "frozen: its far memory ($used_before MiB) was not reclaimed within 20 s"
  sleep 0.1
done
t_reclaim=$(($(now_ms) - t0))
[ $t_reclaim -ge 1500 ] || fail "frozen: reclaimed after $t_reclaim ms, before its 2 s lease"
kill -CONT "$(cat "$dir/frozen.pid")"
wait_rc frozen 30
err=$(cat "$dir/frozen.err")
echo "frozen client: ${used_before} MiB of far memory reclaimed $t_reclaim ms after SIGSTOP (lease 2 s); after SIGCONT it exited $rc; stderr:"
echo "$err" | sed 's/^/  /'
[ "$rc" = 2 ] || fail "frozen: exit status $rc, want 2 (far memory failed)"
case "$err" in *"lease expired"*) ;; *) fail "frozen: stderr does not say its lease expired" ;; esac
kill -INT $mn
wait $mn

echo "death to exit:$summary (limit ${limit_ms} ms); frozen client reclaimed after ${t_reclaim} ms (lease 2000 ms)"
echo "failure_test: 5 passed, 0 failed"
