#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, checks that no internal
# header was installed, builds tests/package against it with
# find_package(Sharry) (which also compiles every installed header), and runs
# the result.
#   tests/package/check.sh <build-dir>
set -euo pipefail
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
# Internals stay in the build tree (PRIVATE_HEADERS in each CMakeLists.txt).
for internal in verbs/socket_util.h verbs/wire.h verbs/session.h verbs/transport_internal.h alloc; do
  if [[ -e $tmp/prefix/include/sharry/$internal ]]; then
    echo "check.sh: an internal header was installed: include/sharry/$internal" >&2
    exit 1
  fi
done
cmake -S "$here" -B "$tmp/build" -G Ninja -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/build" >/dev/null
"$tmp/build/consumer"
