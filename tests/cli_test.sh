#!/bin/sh
# The shipped binaries end to end: a `memnode` process, `sharry_client`
# processes (array and hashtable, both copy modes) and `memnode_stats`.
#   tests/cli_test.sh BUILD_DIR TRANSPORT ADDR
set -eu
build=$1 transport=$2 addr=$3
dir=$(mktemp -d)
"$build/memnode/memnode" --transport="$transport" --listen="$addr" --port=0 --port_file="$dir/port" \
  --uma_mb=64 --sections=2 --stats_interval=0 >"$dir/memnode.log" 2>&1 &
mn=$!
trap 'kill $mn 2>/dev/null || true; rm -rf "$dir"' EXIT
i=0
while [ ! -s "$dir/port" ]; do
  i=$((i + 1))
  if [ $i -gt 300 ]; then echo "memnode did not start:"; cat "$dir/memnode.log"; exit 1; fi
  sleep 0.1
done
port=$(cat "$dir/port")
for workload in array hashtable; do
  for mode in unique multi; do
    out=$("$build/compute/sharry_client" --transport="$transport" --memnode="$addr:$port" --workload=$workload \
      --mode=$mode --working_set_mb=4 --local_pct=25 --ops=20000 2>/dev/null)
    echo "$out"
    case "$out" in *" errors=0"*) ;; *) echo "FAIL: $workload/$mode"; exit 1 ;; esac
  done
done
# The experiments' form (scripts/experiments.sh): 8 arrays of 256-byte
# objects, a scan, and the start barrier: the timed phase must wait for go.
"$build/compute/sharry_client" --transport="$transport" --memnode="$addr:$port" --arrays=8 --object_bytes=256 \
  --objects=4000 --local_mb=0 --local_pct=30 --ops=20000 --pattern=scan --mode=unique \
  --ready_file="$dir/ready" --go_file="$dir/go" >"$dir/barrier.out" 2>/dev/null &
client=$!
i=0
while [ ! -e "$dir/ready" ]; do
  i=$((i + 1))
  if [ $i -gt 600 ]; then echo "FAIL: no ready file"; exit 1; fi
  sleep 0.1
done
sleep 0.5
if [ -s "$dir/barrier.out" ] || ! kill -0 $client 2>/dev/null; then echo "FAIL: ran before go"; exit 1; fi
touch "$dir/go"
wait $client
out=$(cat "$dir/barrier.out")
echo "$out"
case "$out" in *" arrays=8 object_bytes=256 "*" errors=0"*) ;; *) echo "FAIL: 8 arrays with a barrier"; exit 1 ;; esac
# Bad flags are refused with a message, before anything runs.
for bad in --object_bytes=12 --arrays=0 --threads=0 --mode=both --transport=udp; do
  if msg=$("$build/compute/sharry_client" --transport="$transport" --memnode="$addr:$port" $bad 2>&1 >/dev/null); then
    echo "FAIL: $bad accepted"; exit 1
  fi
  case "$msg" in *"sharry_client: --"*) ;; *) echo "FAIL: $bad: no clear message: $msg"; exit 1 ;; esac
done
# Every client has gone: its blocks were all reclaimed or freed (the memnode
# notices a departed client asynchronously, so give it a few seconds).
i=0
while :; do
  stats=$("$build/memnode/memnode_stats" --transport="$transport" --addr="$addr" --port="$port" 2>/dev/null)
  case "$stats" in *" 0 live blocks"*) break ;; esac
  i=$((i + 1))
  if [ $i -gt 100 ]; then echo "$stats"; echo "FAIL: blocks left behind"; exit 1; fi
  sleep 0.2
done
echo "$stats"
kill -INT $mn
wait $mn
echo "cli_test: 1 passed, 0 failed"
