#!/bin/sh
# vm-perftest.sh — perftest sweep against this machine's own RDMA device
# (server and client in the same machine, one device, one address). Meant to
# run INSIDE the SoftRoCE VM under busybox sh, e.g.
#
#   scripts/rxe-vm.sh -- "$PWD/scripts/vm-perftest.sh" 64 4096 65536
#
# Arguments: message sizes in bytes (default: 64 256 1024 4096 16384 65536
# 262144 1048576). For each size it runs ib_read_lat, ib_write_lat,
# ib_send_lat and ib_write_bw and prints one line per measurement:
#
#   perftest ib_read_lat size=4096 iters=1000 p50_us=112.10 p99_us=678.30 avg_us=172.16
#   perftest ib_write_bw size=65536 iters=1024 MBps=24.46 peak_MBps=40.24
#   perftest ib_send_lat size=64 error=<status>          (on failure)
#
# p50_us is perftest's t_typical (median), p99_us its "99% percentile";
# MBps is its "BW average[MB/sec]". Iterations shrink with the size so the
# default sweep stays under ~3 minutes under TCG emulation.
#
# Environment: SHARRY_RDMA_ADDR (192.0.2.1), SHARRY_RDMA_DEV (rxe0),
# SHARRY_RDMA_GID_INDEX (1), PERFTEST_TOOLS (the four tools above),
# PERFTEST_LAT_BYTES / PERFTEST_BW_BYTES (bytes moved per measurement,
# default 16 MiB / 64 MiB), PERFTEST_TIMEOUT (seconds per run, default 60),
# PERFTEST_VERBOSE=1 (show perftest's own output).
# Exit status: 0 if every measurement succeeded, 1 otherwise.

# shellcheck source=scripts/lib.sh
case "${1:-}" in -h|--help) . "$(dirname "$0")/lib.sh"; script_help; exit 0 ;; esac

addr=${SHARRY_RDMA_ADDR:-192.0.2.1}
dev=${SHARRY_RDMA_DEV:-rxe0}
gid=${SHARRY_RDMA_GID_INDEX:-1}
tools=${PERFTEST_TOOLS:-ib_read_lat ib_write_lat ib_send_lat ib_write_bw}
lat_bytes=${PERFTEST_LAT_BYTES:-16777216}
bw_bytes=${PERFTEST_BW_BYTES:-67108864}
tmo=${PERFTEST_TIMEOUT:-60}
verbose=${PERFTEST_VERBOSE:-0}
[ $# -gt 0 ] || set -- 64 256 1024 4096 16384 65536 262144 1048576

# Server and client both busy-poll; with only 2 CPUs rxe's deferred work for
# multi-packet messages then waits for a timer tick (~4 ms at HZ=250).
if [ "$(nproc 2>/dev/null || echo 0)" -lt 3 ]; then
  echo "vm-perftest: note: $(nproc) CPUs; multi-packet *_lat results include scheduler-tick stalls (use rxe-vm.sh --smp 3)" >&2
fi

out=$(mktemp -d /tmp/vm-perftest.XXXXXX) || exit 1
trap 'rm -rf "$out"' EXIT
port=18515
failures=0

clamp() { # value min max
  v=$1
  [ "$v" -lt "$2" ] && v=$2
  [ "$v" -gt "$3" ] && v=$3
  echo "$v"
}

# wait (bounded) until a server listens on TCP port $1
wait_listen() {
  i=0
  hex=$(printf '%04X' "$1")
  while [ $i -lt 200 ]; do
    grep -q ":$hex [0-9A-F]*:0000 0A" /proc/net/tcp /proc/net/tcp6 2>/dev/null && return 0
    i=$((i + 1))
    usleep 50000
  done
  return 1
}

run_one() { # tool size
  tool=$1 size=$2
  case $tool in
    *_lat) iters=$(clamp $((lat_bytes / size)) 50 1000) ;;
    *) iters=$(clamp $((bw_bytes / size)) 64 5000) ;;
  esac
  port=$((port + 1))
  args="-F -d $dev -x $gid -s $size -n $iters -p $port"
  case $tool in
    *_bw) [ "$iters" -lt 128 ] && args="$args -t $iters" ;;
  esac
  # shellcheck disable=SC2086  # $args is a word list
  timeout "$tmo" "$tool" $args >"$out/server" 2>&1 &
  spid=$!
  if ! wait_listen "$port"; then
    kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null
    echo "perftest $tool size=$size error=server-not-listening"
    [ "$verbose" = 1 ] && cat "$out/server"
    failures=$((failures + 1))
    return
  fi
  # shellcheck disable=SC2086
  timeout "$tmo" "$tool" $args "$addr" >"$out/client" 2>&1
  rc=$?
  wait "$spid" 2>/dev/null
  [ "$verbose" = 1 ] && cat "$out/client"
  if [ $rc -ne 0 ]; then
    echo "perftest $tool size=$size error=$rc"
    [ "$verbose" = 1 ] || tail -n 5 "$out/client"
    failures=$((failures + 1))
    return
  fi
  case $tool in
    *_lat)
      # #bytes #iterations t_min t_max t_typical t_avg t_stdev 99% 99.9%
      line=$(awk -v s="$size" '$1 == s && NF >= 9 { printf "p50_us=%s p99_us=%s avg_us=%s", $5, $8, $6; exit }' "$out/client") ;;
    *)
      # #bytes #iterations BW-peak BW-average MsgRate
      line=$(awk -v s="$size" '$1 == s && NF >= 5 { printf "MBps=%s peak_MBps=%s", $4, $3; exit }' "$out/client") ;;
  esac
  if [ -z "$line" ]; then
    echo "perftest $tool size=$size error=unparsed-output"
    failures=$((failures + 1))
    return
  fi
  echo "perftest $tool size=$size iters=$iters $line"
}

for size in "$@"; do
  case $size in
    ''|*[!0-9]*) echo "vm-perftest: bad size '$size'" >&2; exit 2 ;;
  esac
  for tool in $tools; do
    run_one "$tool" "$size"
  done
done
[ $failures -eq 0 ]
