#!/usr/bin/env bash
# The main job, on a fresh Debian 12 machine: installs what is missing, builds,
# and runs over the best transport there is:
#   - an RDMA device on this host (a NIC, or SoftRoCE set up with
#     scripts/rxe-setup.sh): the verbs transport, natively;
#   - otherwise: the tcp transport on this host.
#   --vm: the verbs transport inside the throwaway SoftRoCE VM instead.
#
# For now (the foundation) the job is the transport benchmark beside its
# baselines (perftest for verbs, a plain TCP ping-pong for tcp), printing
# our/baseline ratios. Later it becomes the full far-memory demo.
#
# Usage: scripts/run.sh [--vm] [--build DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
vm=0
build=build
while [[ $# -gt 0 ]]; do
  case "$1" in
    --vm) vm=1 ;;
    --build) build=$2; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

scripts/install-deps.sh
cmake -S . -B "$build" -G Ninja >/dev/null
cmake --build "$build" --target transport_bench

has_rdma=0
for f in /sys/class/infiniband/*/ports/*/state; do
  [[ -r $f ]] && grep -q ACTIVE "$f" && has_rdma=1 && break
done

if [[ $has_rdma == 1 ]]; then
  echo "run.sh: this host has an RDMA device: verbs transport, natively"
  exec scripts/bench-transport.sh --verbs --build "$build"
elif [[ $vm == 1 ]]; then
  echo "run.sh: verbs transport inside the SoftRoCE VM (a few minutes under emulation)"
  exec scripts/bench-transport.sh --verbs --build "$build"
else
  echo "run.sh: no RDMA device on this host: tcp transport (scripts/run.sh --vm for verbs in a VM)"
  exec scripts/bench-transport.sh --tcp --build "$build"
fi
