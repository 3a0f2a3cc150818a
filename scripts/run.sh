#!/usr/bin/env bash
# The main job, on a fresh Debian 12 machine: installs what is missing, builds,
# and runs the far-memory demo — one memnode and three compute processes
# sharing it, Unique-Copy against Multi-Copy, ending in a table of throughput
# and far memory used (scripts/demo.sh) — over the best transport there is:
#   - an RDMA device on this host (a NIC, or SoftRoCE set up with
#     scripts/rxe-setup.sh): the verbs transport, natively;
#   - otherwise: the tcp transport on this host.
#   --vm     the verbs transport inside the throwaway SoftRoCE VM instead
#            (smaller, since the VM is emulated);
#   --bench  the transport benchmark beside its baselines instead of the demo
#            (scripts/bench-transport.sh).
#   --memnodes N, --redundancy R
#            passed to the demo (scripts/demo.sh): N memnode processes on this
#            host instead of one, the clients' --redundancy (none, replicate:R,
#            ec:K+M; docs/redundancy.md). Not with --vm or --bench.
#
# Usage: scripts/run.sh [--vm] [--bench] [--memnodes N] [--redundancy R] [--build DIR]
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
vm=0 bench=0 build=build demo_opts=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --vm) vm=1; shift ;;
    --bench) bench=1; shift ;;
    --memnodes|--redundancy)
      [[ $# -ge 2 ]] || { echo "run.sh: $1 needs a value (see --help)" >&2; exit 2; }
      demo_opts+=("$1" "$2"); shift 2 ;;
    *) common_opt run.sh "$@"; shift "$opt_shift" ;;
  esac
done
if [[ ${#demo_opts[@]} -gt 0 && ( $vm == 1 || $bench == 1 ) ]]; then
  echo "run.sh: --memnodes and --redundancy are options of the demo on this host, not of --vm or --bench" >&2
  exit 2
fi

scripts/install-deps.sh
cmake -S . -B "$build" -G Ninja >/dev/null
echo "run.sh: building (a minute or two the first time) ..."
cmake --build "$build" --target memnode memnode_stats sharry_client transport_bench >/dev/null

has_rdma=0
for f in /sys/class/infiniband/*/ports/*/state; do
  [[ -r $f ]] && grep -q ACTIVE "$f" && has_rdma=1 && break
done

if [[ $bench == 1 ]]; then
  if [[ $has_rdma == 1 || $vm == 1 ]]; then exec scripts/bench-transport.sh --verbs --build "$build"; fi
  exec scripts/bench-transport.sh --tcp --build "$build"
fi
if [[ $has_rdma == 1 ]]; then
  echo "run.sh: this host has an RDMA device: verbs transport, natively"
  exec scripts/demo.sh --transport verbs --build "$build" "${demo_opts[@]}"
elif [[ $vm == 1 ]]; then
  echo "run.sh: verbs transport inside the SoftRoCE VM (emulated: a smaller run)"
  b=$PWD/$build
  exec scripts/run-rxe.sh --timeout 900 --file "$b/tools/memnode" --file "$b/tools/memnode_stats" \
    --file "$b/tools/sharry_client" --file "$PWD/scripts/lib.sh" -- "$PWD/scripts/demo.sh" --transport verbs \
    --build "$build" \
    --working-set-mb 8 --ops 20000
else
  echo "run.sh: no RDMA device on this host: tcp transport (scripts/run.sh --vm for verbs in a VM)"
  exec scripts/demo.sh --transport tcp --build "$build" "${demo_opts[@]}"
fi
