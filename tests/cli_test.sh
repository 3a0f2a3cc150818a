#!/bin/sh
# The shipped binaries end to end: a `memnode` process, `sharry_client`
# processes (array and hashtable, both copy modes) and `memnode_stats`.
#   tests/cli_test.sh BUILD_DIR TRANSPORT ADDR
# shellcheck source=scripts/lib.sh
case "${1:-}" in -h|--help) . "$(dirname "$0")/../scripts/lib.sh"; script_help; exit 0 ;; esac
set -eu
build=$1 transport=$2 addr=$3
dir=$(mktemp -d)
"$build/tools/memnode" --transport="$transport" --listen="$addr" --port=0 --port_file="$dir/port" \
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
    out=$("$build/tools/sharry_client" --transport="$transport" --memnode="$addr:$port" --workload=$workload \
      --mode=$mode --working_set_mb=4 --local_pct=25 --ops=20000 2>/dev/null)
    echo "$out"
    case "$out" in *" errors=0"*) ;; *) echo "FAIL: $workload/$mode"; exit 1 ;; esac
  done
done
# The experiments' form (scripts/experiments.sh): 8 arrays of 256-byte
# objects, a scan, and the start barrier: the timed phase must wait for go.
"$build/tools/sharry_client" --transport="$transport" --memnode="$addr:$port" --arrays=8 --object_bytes=256 \
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
# Bad flags are refused before anything starts: exit status 2 (1 for what
# gflags itself cannot parse), one line on stderr naming the flag, nothing
# served or run. Columns: binary, the flag the message must name, exit
# status, the flags.
huge_mb=17592186044416  # 2^44 MiB: 2^64 bytes
while read -r bin name want flags; do
  case $bin in
    # A small UMA first (a row's own --uma_mb comes later and wins): the
    # default 1 GiB does not fit a small VM, and would be refused first.
    memnode) cmd="$build/tools/memnode --transport=$transport --listen=$addr --port=0 --port_file=$dir/bad.port --uma_mb=64" ;;
    memnode_stats) cmd="$build/tools/memnode_stats --transport=$transport --addr=$addr --port=$port" ;;
    sharry_client) cmd="$build/tools/sharry_client --transport=$transport --memnode=$addr:$port --working_set_mb=4" ;;
  esac
  rc=0
  # $cmd and $flags are word lists.
  # shellcheck disable=SC2086
  timeout 30 $cmd $flags >"$dir/bad.out" 2>"$dir/bad.err" || rc=$?
  if [ $rc -ne "$want" ]; then echo "FAIL: $bin $flags: exit $rc, want $want"; cat "$dir/bad.err"; exit 1; fi
  if ! grep -q -e "--$name" -e "flag '$name'" "$dir/bad.err"; then
    echo "FAIL: $bin $flags: no line naming --$name on stderr:"; cat "$dir/bad.err"; exit 1
  fi
  if [ -s "$dir/bad.out" ] || [ -e "$dir/bad.port" ]; then echo "FAIL: $bin $flags: it ran"; exit 1; fi
done <<EOF
memnode port 2 --port=70000
memnode port 2 --port=-1
memnode port 1 --port=abc
memnode uma_mb 2 --uma_mb=0
memnode uma_mb 2 --uma_mb=17592186044417
memnode max_object_kb 2 --uma_mb=64 --max_object_kb=1152921504606846976
memnode max_object_kb 2 --uma_mb=64 --max_object_kb=65537
memnode pollers 2 --pollers=0
memnode pollers 2 --pollers=-5
memnode pollers 2 --pollers=2000
memnode sections 2 --sections=0
memnode sections 2 --sections=65
memnode max_clients 2 --max_clients=0
memnode max_clients 2 --max_clients=65537
memnode section_cores 2 --section_cores=abc
memnode section_cores 2 --section_cores=0,,1
memnode section_cores 2 --section_cores=100000
memnode poller_cores 2 --poller_cores=1,x
memnode poller_cores 2 --poller_cores=-2
memnode free_batch 2 --free_batch=0
memnode stats_interval 2 --stats_interval=-1
memnode transport 2 --transport=udp
memnode client_lease_s 2 --client_lease_s=-1
memnode client_lease_s 2 --client_lease_s=86401
memnode max_handshakes 2 --max_handshakes=0
memnode handshake_timeout_ms 2 --handshake_timeout_ms=0
memnode max_unsent_kb 2 --max_unsent_kb=1
memnode stall_timeout_ms 2 --stall_timeout_ms=0
memnode keepalive_s 2 --keepalive_s=-1
memnode_stats port 2 --port=70000
memnode_stats port 2 --port=-1
memnode_stats port 2 --port=0
memnode_stats transport 2 --transport=udp
sharry_client local_pct 2 --local_pct=-10
sharry_client local_pct 2 --local_pct=nan
sharry_client local_pct 2 --local_pct=inf
sharry_client local_pct 2 --local_pct=101
sharry_client write_pct 2 --write_pct=150
sharry_client write_pct 2 --write_pct=-1
sharry_client pattern 2 --pattern=foo
sharry_client workload 2 --workload=list
sharry_client mode 2 --mode=both
sharry_client transport 2 --transport=udp
sharry_client memnode 2 --memnode=$addr:70000
sharry_client memnode 2 --memnode=$addr
sharry_client memnode 2 --memnode=$addr:x
sharry_client working_set_mb 2 --working_set_mb=0
sharry_client working_set_mb 2 --working_set_mb=$huge_mb
sharry_client working_set_mb 2 --working_set_mb=1048576 --local_pct=0
sharry_client local_pct 2 --working_set_mb=16777216 --local_pct=100
sharry_client objects 2 --objects=18446744073709551615
sharry_client objects 2 --workload=hashtable --objects=1 --object_bytes=8
sharry_client local_mb 2 --local_mb=$huge_mb
sharry_client threads 2 --threads=0
sharry_client threads 2 --threads=-3
sharry_client threads 2 --threads=100000
sharry_client arrays 2 --arrays=0
sharry_client object_bytes 2 --object_bytes=12
sharry_client object_bytes 2 --object_bytes=2097152
sharry_client min_secs 2 --min_secs=-1
EOF
# Every client has gone: its blocks were all reclaimed or freed (the memnode
# notices a departed client asynchronously, so give it a few seconds).
i=0
while :; do
  stats=$("$build/tools/memnode_stats" --transport="$transport" --addr="$addr" --port="$port" 2>/dev/null)
  case "$stats" in *" 0 live blocks"*) break ;; esac
  i=$((i + 1))
  if [ $i -gt 100 ]; then echo "$stats"; echo "FAIL: blocks left behind"; exit 1; fi
  sleep 0.2
done
echo "$stats"
kill -INT $mn
wait $mn
echo "cli_test: 1 passed, 0 failed"
