#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ with clang (-fsanitize=fuzzer,address,
# undefined; the `fuzz` preset of CMakePresets.json: SHARRY_FUZZ, and the lock
# annotations checked, in a build tree of its own) and runs each for a bounded
# time on a COPY of its seed corpus fuzz/corpus/<target>/ (the committed
# corpus never grows). Inputs in fuzz/regressions/<target>/, if any, are
# replayed too.
#
# Usage: scripts/fuzz.sh [--seconds N] [--preset NAME] [--build-dir DIR] [--target NAME]... [--make-corpus]
#   --seconds N      run each target for N seconds (default 30)
#   --jobs N         run N targets at a time (default 1; one core each)
#   --preset NAME    the configure preset of the tree: fuzz (default; fuzz
#                    targets only) or asan (CI's clang tree, which also builds
#                    the tests: scripts/test.sh fuzzes there, no second build)
#   --build-dir DIR  the build tree (default build-<preset>); the runs go to
#                    DIR/fuzz-run/<target>/ (corpus/, artifacts/, log)
#   --target NAME    run only this target (repeatable); default: rpc_codec_fuzz,
#                    rpc_service_fuzz, tcp_server_fuzz, tcp_client_fuzz,
#                    tcp_framing_fuzz, etcd_reply_fuzz, offload_spec_fuzz
#   --make-corpus    rewrite fuzz/corpus/ with fuzz_make_corpus, run nothing
#
# Prints per target: executions per second, total executions, the corpus
# after the run (entries, bytes), and OK or the crash input's path. The
# artifacts stay in the build tree. Exit status: 0 if no target crashed.
# Environment: CXX_FUZZ, a clang++ other than the preset's; ccache, if
# installed, is the compiler launcher.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

seconds=30
jobs=1
preset=fuzz
dir=''
targets=()
make_corpus=0
# The targets run by default (and by scripts/test.sh). tcp_client_fuzz is a
# hostile server against the TCP client; its regressions (replies announcing
# 4 GiB) are replayed first.
all_targets=(rpc_codec_fuzz rpc_service_fuzz tcp_server_fuzz tcp_client_fuzz tcp_framing_fuzz etcd_reply_fuzz
             offload_spec_fuzz)
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --preset) preset=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --build-dir) dir=$2; shift 2 ;;
    --target) targets+=("$2"); shift 2 ;;
    --make-corpus) make_corpus=1; shift ;;
    *) common_opt fuzz.sh "$@"; shift "$opt_shift" ;;
  esac
done
[[ ${#targets[@]} -eq 0 ]] && targets=("${all_targets[@]}")
case "$preset" in
  fuzz|asan) ;;
  *) echo "fuzz.sh: --preset $preset: the fuzz targets are built by the presets fuzz and asan" >&2; exit 2 ;;
esac
[[ -n $dir ]] || dir="build-$preset"
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: --seconds wants a whole number" >&2; exit 2; }
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: --jobs wants a whole number >= 1" >&2; exit 2; }

cxx=${CXX_FUZZ:-clang++}
command -v "$cxx" >/dev/null || { echo "fuzz.sh: $cxx not found (scripts/install-deps.sh installs clang)" >&2; exit 2; }
compiler=()
[[ -n ${CXX_FUZZ:-} ]] && compiler=(-DCMAKE_CXX_COMPILER="$CXX_FUZZ")
if command -v ccache >/dev/null; then export CMAKE_CXX_COMPILER_LAUNCHER=ccache; fi

echo "fuzz.sh: configuring and building $dir with $cxx (preset $preset)"
cmake --preset "$preset" -B "$dir" ${compiler[@]+"${compiler[@]}"} >/dev/null
if [[ $make_corpus == 1 ]]; then
  cmake --build "$dir" -j "$(nproc)" --target fuzz_make_corpus
  rm -rf fuzz/corpus
  "$dir/fuzz/fuzz_make_corpus" fuzz/corpus
  find fuzz/corpus -type f | sort
  exit 0
fi
cmake --build "$dir" -j "$(nproc)" --target "${targets[@]}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# fuzz_one TARGET: one run; its exit status goes to <run>/rc.
fuzz_one() {
  local t=$1 run="$dir/fuzz-run/$1" rc=0
  local extra=()
  if compgen -G "fuzz/regressions/$t/*" >/dev/null; then extra=("fuzz/regressions/$t"); fi
  # -timeout: an input running this long is a hang (reported as a crash);
  # `timeout` guards against a harness that never returns to libFuzzer.
  timeout --signal=KILL $((seconds + 120)) "$dir/fuzz/$t" -max_total_time="$seconds" -print_final_stats=1 \
    -timeout=30 -artifact_prefix="$run/artifacts/" "$run/corpus" "${extra[@]}" >"$run/log" 2>&1 || rc=$?
  echo "$rc" >"$run/rc"
}

running=0
for t in "${targets[@]}"; do
  run="$dir/fuzz-run/$t"
  rm -rf "$run/corpus" "$run/rc"
  mkdir -p "$run/corpus" "$run/artifacts"
  cp fuzz/corpus/"$t"/* "$run/corpus/"
  echo "fuzz.sh: $t for ${seconds}s (log: $run/log)"
  fuzz_one "$t" &
  running=$((running + 1))
  if [[ $running -ge $jobs ]]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait

crashed=()
summary=()
for t in "${targets[@]}"; do
  run="$dir/fuzz-run/$t"
  rc=$(cat "$run/rc" 2>/dev/null || echo 125)
  execs=$(awk '/stat::number_of_executed_units/ { print $2 }' "$run/log")
  rate=$(awk '/stat::average_exec_per_sec/ { print $2 }' "$run/log")
  entries=$(find "$run/corpus" -type f | wc -l)
  bytes=$(find "$run/corpus" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
  if [[ $rc -eq 0 ]]; then
    verdict=OK
  else
    crashed+=("$t")
    input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$run/log" | tail -1)
    verdict="CRASH (exit $rc) input: ${input:-none written; see $run/log}"
    { grep -E '^(==[0-9]+== ?ERROR|SUMMARY|F[0-9]{4} |Check failed)' "$run/log" | head -4
      grep -m1 -E '#[0-9]+ .* in sharry::' "$run/log"; } | sed 's/^/    /' || true
  fi
  summary+=("$(printf '%-18s %8s exec/s %10s execs  corpus %5s entries %9s B  %s' \
    "$t" "${rate:-?}" "${execs:-?}" "$entries" "$bytes" "$verdict")")
done

echo
echo "fuzz.sh: ${seconds}s per target, build tree $dir"
printf '%s\n' "${summary[@]}"
if [[ ${#crashed[@]} -gt 0 ]]; then
  echo "fuzz.sh: CRASHED: ${crashed[*]} (artifacts in $dir/fuzz-run/<target>/artifacts/)"
  exit 1
fi
echo "fuzz.sh: no crashes"
