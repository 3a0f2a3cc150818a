#!/bin/sh
# The shipped binaries end to end: a `memnode` process, `sharry_client`
# processes (array and hashtable, both copy modes) and `memnode_stats`.
#   tests/cli_test.sh BUILD_DIR TRANSPORT ADDR
# shellcheck source=scripts/lib.sh
case "${1:-}" in -h|--help) . "$(dirname "$0")/../scripts/lib.sh"; script_help; exit 0 ;; esac
set -eu
build=$1 transport=$2 addr=$3
dir=$(mktemp -d)
# Credentials (docs/security.md): fresh secrets for tenant t1 and the admin,
# files of mode 0600 (and one too open, for the refusals below). The
# memnode takes the tenants file and every client authenticates (over verbs
# on its QP, after the connect).
secret() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }
s1=$(secret) sa=$(secret)
(
  umask 077
  printf 'tenant t1 secret=%s quota_mb=1024 max_clients=64\nadmin secret=%s\n' "$s1" "$sa" >"$dir/tenants"
  echo "$s1" >"$dir/t1.secret"
  echo "$sa" >"$dir/admin.secret"
  secret >"$dir/wrong.secret"
)
cp "$dir/t1.secret" "$dir/open.secret" && chmod 644 "$dir/open.secret"
cp "$dir/tenants" "$dir/open_tenants" && chmod 644 "$dir/open_tenants"
mauth="--tenants_file=$dir/tenants" cauth="--tenant=t1 --secret_file=$dir/t1.secret"
aauth="--admin --secret_file=$dir/admin.secret"
# $mauth, $cauth and $aauth are word lists (paths from mktemp: no spaces).
# shellcheck disable=SC2086
"$build/tools/memnode" --transport="$transport" --listen="$addr" --port=0 --port_file="$dir/port" $mauth \
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
    # shellcheck disable=SC2086
    out=$("$build/tools/sharry_client" --transport="$transport" --memnode="$addr:$port" $cauth --workload=$workload \
      --mode=$mode --working_set_mb=4 --local_pct=25 --ops=20000 2>/dev/null)
    echo "$out"
    case "$out" in *" errors=0"*) ;; *) echo "FAIL: $workload/$mode"; exit 1 ;; esac
  done
done
# Aggregates through the memnode's offload workers (docs/offload.md): every
# placement choice gives the exact sums (the client checks them), and
# always/auto really offload at 10 % local (swap_ins=0: nothing came back).
for offload in never auto always; do
  # shellcheck disable=SC2086
  out=$("$build/tools/sharry_client" --transport="$transport" --memnode="$addr:$port" $cauth --pattern=aggregate \
    --offload=$offload --arrays=4 --working_set_mb=4 --local_pct=10 --ops=2000000 2>/dev/null)
  echo "$out"
  case "$out" in *" errors=0"*) ;; *) echo "FAIL: aggregate/$offload"; exit 1 ;; esac
  if [ $offload != never ]; then
    case "$out" in *" swap_ins=0 "*) ;; *) echo "FAIL: aggregate/$offload swapped chunks in"; exit 1 ;; esac
  fi
done
# The experiments' form (scripts/experiments.sh): 8 arrays of 256-byte
# objects, a scan, and the start barrier: the timed phase must wait for go.
# shellcheck disable=SC2086
"$build/tools/sharry_client" --transport="$transport" --memnode="$addr:$port" $cauth --arrays=8 --object_bytes=256 \
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
# served or run. The cases: tests/cli_bad_flags.txt.
huge_mb=17592186044416  # 2^44 MiB: 2^64 bytes
sed -e '/^#/d' -e "s/@ADDR@/$addr/g" -e "s/@HUGE_MB@/$huge_mb/g" -e "s|@DIR@|$dir|g" "$(dirname "$0")/cli_bad_flags.txt" \
  >"$dir/bad_flags"
while read -r bin name want flags; do
  case $bin in
    # A small UMA first (a row's own --uma_mb comes later and wins): the
    # default 1 GiB does not fit a small VM, and would be refused first.
    # And its credentials: protected mode would refuse first.
    memnode) cmd="$build/tools/memnode --transport=$transport --listen=$addr --port=0 --port_file=$dir/bad.port --uma_mb=64 $mauth" ;;
    memnode_stats) cmd="$build/tools/memnode_stats --transport=$transport --addr=$addr --port=$port" ;;
    sharry_client) cmd="$build/tools/sharry_client --transport=$transport --memnode=$addr:$port $cauth --working_set_mb=4" ;;
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
done <"$dir/bad_flags"
# Authentication (both transports): a wrong secret, no credentials, and the admin.
rc=0
"$build/tools/sharry_client" --transport="$transport" --memnode="$addr:$port" --tenant=t1 \
  --secret_file="$dir/wrong.secret" --working_set_mb=1 --ops=10 >/dev/null 2>"$dir/auth.err" || rc=$?
if [ $rc -ne 1 ] || ! grep -q "could not prove it knows tenant 't1''s secret" "$dir/auth.err"; then
  echo "FAIL: a wrong secret: exit $rc"; cat "$dir/auth.err"; exit 1
fi
rc=0
"$build/tools/sharry_client" --transport="$transport" --memnode="$addr:$port" --working_set_mb=1 --ops=10 \
  >/dev/null 2>"$dir/auth.err" || rc=$?
if [ $rc -ne 1 ] || ! grep -q "serves tenants only" "$dir/auth.err"; then
  echo "FAIL: no credentials: exit $rc"; cat "$dir/auth.err"; exit 1
fi
rc=0
"$build/tools/memnode_stats" --transport="$transport" --addr="$addr" --port="$port" \
  --secret_file="$dir/admin.secret" >/dev/null 2>"$dir/auth.err" || rc=$?
if [ $rc -ne 2 ] || ! grep -q -e "--secret_file" "$dir/auth.err"; then
  echo "FAIL: a secret file without --tenant or --admin: exit $rc"; cat "$dir/auth.err"; exit 1
fi
# Every client has gone: its blocks were all reclaimed or freed (the memnode
# notices a departed client asynchronously, so give it a few seconds). The
# admin sees every client's blocks.
i=0
while :; do
  # shellcheck disable=SC2086
  stats=$("$build/tools/memnode_stats" --transport="$transport" --addr="$addr" --port="$port" $aauth 2>/dev/null)
  case "$stats" in *" 0 live blocks"*) break ;; esac
  i=$((i + 1))
  if [ $i -gt 100 ]; then echo "$stats"; echo "FAIL: blocks left behind"; exit 1; fi
  sleep 0.2
done
echo "$stats"
kill -INT $mn
wait $mn
echo "cli_test: 1 passed, 0 failed"
