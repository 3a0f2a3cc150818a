#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine:
#   1. installs what is missing (Debian packages only; scripts/install-deps.sh)
#      and runs shellcheck on every shell script of the tree
#   2. builds Sharry (warnings are errors), checks that includes run only
#      downward (scripts/check-layering.sh), and runs the ctest labels
#        unit  in-process tests, and the install and Debian packages
#              (tests/package/check.sh)
#        tcp   end-to-end over the TCP transport on loopback
#        rxe   end-to-end over RDMA verbs: natively on a host with an RDMA
#              device, else in a throwaway SoftRoCE VM (scripts/rxe-vm.sh)
#   3. rebuilds with clang, ASan+UBSan and the lock annotations checked
#      (-Werror=thread-safety), runs unit+tcp there, and runs each libFuzzer
#      target of that same tree for 10 s on a copy of its seed corpus, two
#      at a time
#      (scripts/fuzz.sh); then rebuilds with g++ and TSan and runs unit+tcp.
# The build trees, options and sanitizer settings are the presets of
# CMakePresets.json: default (build/), asan (build-asan/: clang, ASan+UBSan,
# fuzz targets, thread-safety analysis: one tree for the three), tsan
# (build-tsan/); the test presets unit-tcp, rxe, asan, tsan. ccache, if
# installed, is the compiler launcher.
#
# Usage: scripts/test.sh [--quick] [--no-rxe] [--no-sanitizers] [--no-fuzz]
#   --quick          steps 1 and 2 only
#   --no-rxe         skip the rxe label (e.g. on a host without qemu or RDMA)
#   --no-sanitizers  skip the sanitizer test runs of step 3 (the clang tree is
#                    still built: it is the thread-safety check)
#   --no-fuzz        skip the fuzzing of step 3
# Prints each step with the seconds since the start. Exit status: 0 if
# every step passed.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

rxe=1
sanitizers=1
clang=1
fuzz=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) sanitizers=0; clang=0; fuzz=0; shift ;;
    --no-sanitizers) sanitizers=0; shift ;;
    --no-rxe) rxe=0; shift ;;
    --no-fuzz) fuzz=0; shift ;;
    *) common_opt test.sh "$@"; shift "$opt_shift" ;;
  esac
done

step() { printf '\n==== %s (%ss)\n' "$*" "$SECONDS"; }
failed=()

step "dependencies"
scripts/install-deps.sh

step "shellcheck: every shell script"
mapfile -t shell_scripts < <(find scripts tests -name '*.sh' -type f | LC_ALL=C sort)
shell_scripts+=(packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm)
if ! shellcheck -x "${shell_scripts[@]}"; then
  failed+=("shellcheck")
fi

if command -v ccache >/dev/null; then
  export CMAKE_CXX_COMPILER_LAUNCHER=ccache
fi
jobs=$(nproc)
# preset_build NAME: configure and build the tree of preset NAME.
preset_build() {
  cmake --preset "$1" >/dev/null && cmake --build --preset "$1" -j "$jobs"
}
# run_ctest PRESET: the tests of the test preset PRESET; their whole output
# goes to build/ci-logs/PRESET.log as well (see failure_digest).
logs=build/ci-logs
mkdir -p "$logs"
run_ctest() {
  if ! ctest --preset "$1" --output-log "$logs/$1.log"; then
    failed+=("ctest:$1")
  fi
}
# failure_digest PRESET: the lines of PRESET's log that say what failed
# (gtest failures and their values, CHECKs, sanitizer reports), printed
# last so that a CI page that keeps only the tail still shows them.
failure_digest() {
  local log="$logs/$1.log"
  [[ -f $log ]] || return 0
  echo "---- $1: what failed (from $log)"
  grep -a -E -A3 '^\[  FAILED  \]|: Failure$|Check failed|^(ERROR|WARNING): (Address|Thread|Leak|UndefinedBehavior)Sanitizer|runtime error:|\*\*\*(Failed|Timeout|Exception)' \
    "$log" | head -n 80 || true
}

step "build build/ (preset default)"
preset_build default
step "layering: includes run only downward (docs/layout.md)"
if ! scripts/check-layering.sh; then
  failed+=("layering")
fi
step "tests: unit and tcp"
run_ctest unit-tcp
if [[ $rxe == 1 ]]; then
  step "tests: rxe (RDMA verbs over SoftRoCE)"
  run_ctest rxe
fi

if [[ $clang == 1 ]]; then
  step "build build-asan/ with clang: ASan+UBSan, lock annotations (-Werror=thread-safety), libFuzzer targets"
  if ! preset_build asan; then
    failed+=("build-asan:clang")
    sanitizers_asan=0
    fuzz=0
  else
    sanitizers_asan=$sanitizers
  fi
  if [[ $sanitizers_asan == 1 ]]; then
    step "tests under ASan+UBSan: unit and tcp"
    run_ctest asan
  fi
  if [[ $fuzz == 1 ]]; then
    step "fuzz: libFuzzer targets, 10 s each, two at a time (build-asan/)"
    if ! scripts/fuzz.sh --preset asan --seconds 10 --jobs 2; then
      failed+=("fuzz")
    fi
  fi
fi

if [[ $sanitizers == 1 ]]; then
  step "build build-tsan/ (ThreadSanitizer)"
  preset_build tsan
  step "tests under TSan: unit and tcp"
  run_ctest tsan
fi

step "done"
if [[ ${#failed[@]} -gt 0 ]]; then
  for f in "${failed[@]}"; do
    [[ $f == ctest:* ]] && failure_digest "${f#ctest:}"
  done
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all test labels passed"
