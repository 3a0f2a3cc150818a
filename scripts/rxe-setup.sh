#!/usr/bin/env bash
# rxe-setup.sh — bring up (or tear down) a SoftRoCE (rdma_rxe) device on a host
# whose kernel has rdma_rxe. Hosts without it (e.g. the CI machines) use
# scripts/rxe-vm.sh instead.
#
# Usage:
#   scripts/rxe-setup.sh [--netdev DEV] [--name NAME] [--teardown]
#
#   --netdev DEV  Ethernet netdev to put rxe on (default: the default route's
#                 device, else the first non-lo interface that is up)
#   --name NAME   rxe device name (default rxe0)
#   --teardown    delete the rxe device (no error if it does not exist)
#
# Idempotent: an existing NAME is reused. Waits (bounded) for port 1 to become
# ACTIVE and prints device, netdev, state and the IPv4 GID with its index
# (the index to give perftest's -x or SHARRY_RDMA_GID_INDEX). Needs root for
# modprobe and `rdma link add` (iproute2). Ubuntu may need
# linux-modules-extra-$(uname -r).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"

name=rxe0
netdev=
teardown=false
die() { echo "rxe-setup: $*" >&2; exit 1; }

while [[ $# -gt 0 ]]; do
  case $1 in
    --netdev) [[ $# -ge 2 ]] || die "--netdev needs a value"; netdev=$2; shift 2 ;;
    --netdev=*) netdev=${1#*=}; shift ;;
    --name) [[ $# -ge 2 ]] || die "--name needs a value"; name=$2; shift 2 ;;
    --name=*) name=${1#*=}; shift ;;
    --teardown) teardown=true; shift ;;
    -h|--help) script_help; exit 0 ;;
    *) echo "rxe-setup: unknown argument: $1" >&2; exit 2 ;;
  esac
done

kver=$(uname -r)
command -v rdma >/dev/null || die "the rdma tool is missing; install iproute2"

link_exists() { rdma link show "$name/1" >/dev/null 2>&1; }

if $teardown; then
  if [[ -d /sys/class/infiniband/$name ]] || link_exists; then
    rdma link delete "$name" || die "rdma link delete $name failed (root needed?)"
    echo "rxe-setup: deleted $name"
  else
    echo "rxe-setup: $name does not exist; nothing to do"
  fi
  exit 0
fi

# Does this kernel have rdma_rxe (loaded, built in, or as a module)?
if [[ ! -d /sys/module/rdma_rxe ]]; then
  have_module=false
  if command -v modinfo >/dev/null && modinfo rdma_rxe >/dev/null 2>&1; then
    have_module=true
  elif [[ -f /lib/modules/$kver/modules.builtin ]] && grep -q '/rdma_rxe\.ko' "/lib/modules/$kver/modules.builtin"; then
    have_module=true
  fi
  if ! $have_module; then
    hint=
    if [[ ! -d /sys/class/infiniband ]]; then hint=" (no /sys/class/infiniband)"; fi
    die "this kernel ($kver) has no RDMA support: no rdma_rxe module$hint; use scripts/rxe-vm.sh"
  fi
  [[ $(id -u) -eq 0 ]] || die "modprobe rdma_rxe needs root; run with sudo"
  modprobe rdma_rxe || die "modprobe rdma_rxe failed; this kernel cannot run SoftRoCE here, use scripts/rxe-vm.sh"
fi

if [[ -z $netdev ]]; then
  netdev=$(ip -o route show default 2>/dev/null | awk '{ for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit } }')
fi
if [[ -z $netdev ]]; then
  netdev=$(ip -o link show up 2>/dev/null | awk -F': ' '$2 !~ /^lo(@|$)/ { sub(/@.*/, "", $2); print $2; exit }')
fi
[[ -n $netdev ]] || die "no netdev found (no default route, no interface up besides lo); pass --netdev"
[[ -d /sys/class/net/$netdev ]] || die "no such netdev: $netdev"

if [[ -d /sys/class/infiniband/$name ]]; then
  cur=$(cat "/sys/class/infiniband/$name/ports/1/gid_attrs/ndevs/0" 2>/dev/null || true)
  [[ -z $cur ]] && cur=$(rdma link show "$name/1" 2>/dev/null | sed -n 's/.* netdev \([^ ]*\).*/\1/p')
  if [[ -n $cur && $cur != "$netdev" ]]; then
    echo "rxe-setup: note: $name already exists on $cur (not $netdev); keeping it" >&2
    netdev=$cur
  else
    echo "rxe-setup: $name already exists"
  fi
elif other=$(rdma link show 2>/dev/null | awk -v nd="$netdev" '$NF == nd || $(NF - 1) == nd { sub(/\/.*/, "", $2); print $2; exit }') &&
     [[ -n $other ]]; then
  # rxe allows one device per netdev
  echo "rxe-setup: note: $netdev already carries RDMA device $other; using it instead of $name" >&2
  name=$other
else
  [[ $(id -u) -eq 0 ]] || die "rdma link add needs root; run with sudo"
  rdma link add "$name" type rxe netdev "$netdev" || die "rdma link add $name type rxe netdev $netdev failed"
  echo "rxe-setup: created $name on $netdev"
fi

port=/sys/class/infiniband/$name/ports/1
state=
for _ in $(seq 100); do
  state=$(cat "$port/state" 2>/dev/null || true)
  [[ $state == *ACTIVE* ]] && break
  sleep 0.1
done
[[ $state == *ACTIVE* ]] || die "$name port 1 not ACTIVE after 10 s (state: ${state:-unknown}; is $netdev up with a carrier?)"

gid_index='' gid='' ipv4=''
for _ in $(seq 50); do   # the IPv4 GID appears shortly after the port, if the netdev has an address
  for f in "$port"/gids/*; do
    i=${f##*/}
    [[ $i =~ ^[0-9]+$ && $i -lt 64 ]] || continue
    g=$(cat "$f" 2>/dev/null) || continue
    if [[ $g =~ ^0000:0000:0000:0000:0000:ffff:([0-9a-f]{4}):([0-9a-f]{4})$ ]]; then
      h=${BASH_REMATCH[1]}${BASH_REMATCH[2]}
      gid_index=$i gid=$g
      ipv4=$((16#${h:0:2})).$((16#${h:2:2})).$((16#${h:4:2})).$((16#${h:6:2}))
      break 2
    fi
  done
  sleep 0.1
done

echo "device:    $name"
echo "netdev:    $netdev"
echo "state:     $state"
if [[ -n $gid ]]; then
  echo "ipv4 gid:  $gid (index $gid_index, address $ipv4)"
  echo "use:       SHARRY_RDMA_DEV=$name SHARRY_RDMA_GID_INDEX=$gid_index SHARRY_RDMA_ADDR=$ipv4"
else
  echo "ipv4 gid:  none (give $netdev an IPv4 address; then rerun to see the index)"
fi
