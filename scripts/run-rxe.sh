#!/usr/bin/env bash
# run-rxe.sh — run a command that needs an RDMA device: natively when this host
# has an ACTIVE RDMA port, otherwise inside the SoftRoCE VM (scripts/rxe-vm.sh).
# ctest uses it for the tests labelled `rxe`.
#
# Usage:
#   scripts/run-rxe.sh [--timeout SECS] [rxe-vm.sh options...] -- COMMAND [ARGS...]
#
#   --timeout SECS  limit for the command (natively) or the whole VM (default
#                   600); exit status 124 when it is hit
#   other options before `--` (--file, --smp, --mem, --quiet, --cache-dir) are
#   passed to scripts/rxe-vm.sh and ignored natively.
#
# Natively, SHARRY_RDMA_DEV, SHARRY_RDMA_GID_INDEX and SHARRY_RDMA_ADDR are set
# from the first ACTIVE port (device, its IPv4-mapped RoCE GID, and the IPv4
# address of the netdev under it) unless already set in the environment.
# SHARRY_RXE_MODE=vm forces the VM, SHARRY_RXE_MODE=native forces native.
set -euo pipefail

here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
timeout_s=600
vm_opts=()

while [[ $# -gt 0 ]]; do
  case $1 in
    --timeout) [[ $# -ge 2 ]] || { echo "run-rxe: --timeout needs a value" >&2; exit 2; }
               timeout_s=$2; shift 2 ;;
    --timeout=*) timeout_s=${1#*=}; shift ;;
    --file|--smp|--mem|--cache-dir)
      [[ $# -ge 2 ]] || { echo "run-rxe: $1 needs a value" >&2; exit 2; }
      vm_opts+=("$1" "$2"); shift 2 ;;
    --) shift; break ;;
    -h|--help) script_help; exit 0 ;;
    -*) vm_opts+=("$1"); shift ;;
    *) break ;;
  esac
done
[[ $# -ge 1 ]] || { echo "run-rxe: no command given (usage: run-rxe.sh [--timeout SECS] -- COMMAND [ARGS...])" >&2; exit 2; }
[[ $timeout_s =~ ^[0-9]+$ && $timeout_s -gt 0 ]] || { echo "run-rxe: --timeout wants a positive integer" >&2; exit 2; }

# First ACTIVE port as "dev port", if any.
active_port() {
  local f dev port st
  for f in /sys/class/infiniband/*/ports/*/state; do
    [[ -r $f ]] || continue
    st=$(<"$f")
    [[ $st == *ACTIVE* ]] || continue
    port=${f%/state}; port=${port##*/}
    dev=${f#/sys/class/infiniband/}; dev=${dev%%/*}
    echo "$dev $port"
    return 0
  done
  return 1
}

# Index of the first IPv4-mapped GID (::ffff:a.b.c.d) of dev/port, and the
# address, as "index a.b.c.d".
ipv4_gid() {
  local dev=$1 port=$2 f g idx h
  for f in /sys/class/infiniband/"$dev"/ports/"$port"/gids/*; do
    idx=${f##*/}
    [[ $idx =~ ^[0-9]+$ && $idx -lt 64 ]] || continue
    g=$(cat "$f" 2>/dev/null) || continue
    if [[ $g =~ ^0000:0000:0000:0000:0000:ffff:([0-9a-f]{4}):([0-9a-f]{4})$ ]]; then
      h=${BASH_REMATCH[1]}${BASH_REMATCH[2]}
      echo "$idx $((16#${h:0:2})).$((16#${h:2:2})).$((16#${h:4:2})).$((16#${h:6:2}))"
      return 0
    fi
  done
  return 1
}

# Netdev under dev/port (RoCE/iWARP), from sysfs or the rdma tool.
port_netdev() {
  local dev=$1 port=$2 nd
  nd=$(cat /sys/class/infiniband/"$dev"/ports/"$port"/gid_attrs/ndevs/0 2>/dev/null || true)
  if [[ -z $nd ]] && command -v rdma >/dev/null; then
    nd=$(rdma link show "$dev/$port" 2>/dev/null | sed -n 's/.* netdev \([^ ]*\).*/\1/p' | head -n1)
  fi
  echo "$nd"
}

mode=${SHARRY_RXE_MODE:-auto}
if [[ $mode != vm ]] && ap=$(active_port); then
  read -r dev port <<<"$ap"
  gid_info=$(ipv4_gid "$dev" "$port" || true)
  addr=
  nd=$(port_netdev "$dev" "$port")
  if [[ -n $nd ]] && command -v ip >/dev/null; then
    addr=$(ip -4 -o addr show dev "$nd" 2>/dev/null | awk '{ sub(/\/.*/, "", $4); print $4; exit }')
  fi
  [[ -n $addr || -z $gid_info ]] || addr=${gid_info#* }
  export SHARRY_RDMA_DEV=${SHARRY_RDMA_DEV:-$dev}
  if [[ -n $gid_info && -z ${SHARRY_RDMA_GID_INDEX:-} ]]; then export SHARRY_RDMA_GID_INDEX=${gid_info%% *}; fi
  if [[ -n $addr && -z ${SHARRY_RDMA_ADDR:-} ]]; then export SHARRY_RDMA_ADDR=$addr; fi
  echo "run-rxe: native on $dev port $port${nd:+ (netdev $nd)}: SHARRY_RDMA_ADDR=${SHARRY_RDMA_ADDR:-unset} SHARRY_RDMA_GID_INDEX=${SHARRY_RDMA_GID_INDEX:-unset}" >&2
  rc=0
  timeout -k 10 "$timeout_s" "$@" || rc=$?
  [[ $rc -eq 124 ]] && echo "run-rxe: TIMEOUT: the command did not finish within ${timeout_s} s" >&2
  exit "$rc"
fi
if [[ $mode == native ]]; then
  echo "run-rxe: SHARRY_RXE_MODE=native but this host has no ACTIVE RDMA port" >&2
  exit 125
fi
exec "$here/rxe-vm.sh" --timeout "$timeout_s" ${vm_opts[@]+"${vm_opts[@]}"} -- "$@"
