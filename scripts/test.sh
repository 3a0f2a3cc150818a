#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine:
#   1. installs what is missing (Debian packages only; scripts/install-deps.sh)
#   2. builds Sharry (warnings are errors), checks that includes run only
#      downward (scripts/check-layering.sh), and runs the ctest labels
#        unit  in-process tests
#        tcp   end-to-end over the TCP transport on loopback
#        rxe   end-to-end over RDMA verbs: natively on a host with an RDMA
#              device, else in a throwaway SoftRoCE VM (scripts/rxe-vm.sh)
#   3. rebuilds with ASan+UBSan and with TSan and runs unit+tcp there.
#   4. builds the libFuzzer targets with clang and runs each for 20 s on a
#      copy of its seed corpus (scripts/fuzz.sh; tree <build-root>-fuzz).
#
# Usage: scripts/test.sh [--quick] [--no-rxe] [--no-sanitizers] [--no-fuzz] [--build-root DIR]
#   --quick          the normal build only (no sanitizer builds, no fuzzing)
#   --no-rxe         skip the rxe label (e.g. on a host without qemu or RDMA)
#   --no-fuzz        skip step 4
# Exit status: 0 if every test passed.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

rxe=1
sanitizers=1
fuzz=1
root=build
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) sanitizers=0; fuzz=0; shift ;;
    --no-sanitizers) sanitizers=0; shift ;;
    --no-rxe) rxe=0; shift ;;
    --no-fuzz) fuzz=0; shift ;;
    --build-root) root=$2; shift 2 ;;
    *) common_opt test.sh "$@"; shift "$opt_shift" ;;
  esac
done

step() { printf '\n==== %s (%ss)\n' "$*" "$SECONDS"; }

step "dependencies"
scripts/install-deps.sh

jobs=$(nproc)
configure_build() {
  local dir=$1; shift
  cmake -S . -B "$dir" -G Ninja -DSHARRY_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
}

failed=()
run_ctest() {
  local dir=$1 labels=$2
  if ! ctest --test-dir "$dir" -L "$labels" --output-on-failure --timeout 900; then
    failed+=("$dir:$labels")
  fi
}

step "build ($root)"
configure_build "$root" -DCMAKE_BUILD_TYPE=RelWithDebInfo
step "layering: includes run only downward (docs/layout.md)"
if ! scripts/check-layering.sh; then
  failed+=("layering")
fi
step "tests: unit and tcp"
run_ctest "$root" 'unit|tcp'
if [[ $rxe == 1 ]]; then
  step "tests: rxe (RDMA verbs over SoftRoCE)"
  run_ctest "$root" 'rxe'
fi

if [[ $sanitizers == 1 ]]; then
  step "build $root-asan (AddressSanitizer + UndefinedBehaviorSanitizer)"
  configure_build "$root-asan" -DCMAKE_BUILD_TYPE=Debug -DSHARRY_ASAN=ON -DSHARRY_BUILD_BENCH=OFF
  step "tests under ASan+UBSan: unit and tcp"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_ctest "$root-asan" 'unit|tcp'
  step "build $root-tsan (ThreadSanitizer)"
  configure_build "$root-tsan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHARRY_TSAN=ON -DSHARRY_BUILD_BENCH=OFF
  step "tests under TSan: unit and tcp"
  TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp" \
    run_ctest "$root-tsan" 'unit|tcp'
fi

if [[ $fuzz == 1 ]]; then
  step "fuzz: libFuzzer targets, 20 s each ($root-fuzz)"
  if ! scripts/fuzz.sh --seconds 20 --build-dir "$root-fuzz"; then
    failed+=("$root-fuzz:fuzz")
  fi
fi

step "done"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all test labels passed"
