#!/usr/bin/env bash
# Installs, from Debian packages only, what Sharry needs to build, test and
# benchmark. Idempotent: installs only what is missing; safe to run again.
#
#   scripts/install-deps.sh          # build + test + VM dependencies
#   scripts/install-deps.sh --check  # print what is missing, install nothing
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_opt "$@"

PKGS=(
  # build
  build-essential cmake ninja-build pkg-config
  # the Debian packages (cpack -G DEB runs dpkg-shlibdeps, which needs file)
  # and the shell-script lint of scripts/test.sh. systemd-analyze (package
  # systemd, on every systemd machine) verifies the unit when present.
  file shellcheck
  # the fuzz targets (scripts/fuzz.sh): clang with libFuzzer's runtime
  clang libclang-rt-14-dev
  # libraries
  rdma-core libibverbs-dev librdmacm-dev
  libboost-dev libgtest-dev libgmock-dev libgflags-dev libgoogle-glog-dev
  # tenants: HMAC-SHA256 and the CSPRNG (verbs/auth.h)
  libssl-dev
  # the memnode's Prometheus endpoint (memnode/metrics_http.h)
  libmicrohttpd-dev
  # the erasure code of the runtime's stripes across memnodes (compute/erasure_code.h)
  libisal-dev
  # memnode discovery through etcd (discovery/): libcurl and nlohmann::json
  # speak etcd v3's JSON gateway (no gRPC); etcd-server runs the real etcd
  # that discovery_test.tcp starts (it fails without /usr/bin/etcd),
  # etcd-client is etcdctl, to look at a registry by hand (Debian also
  # enables an etcd.service on 127.0.0.1:2379; the tests use their own ports)
  libcurl4-openssl-dev nlohmann-json3-dev etcd-server etcd-client
  # baselines for the benchmarks
  perftest
  libjemalloc2 libtcmalloc-minimal4 libmimalloc2.0
  # plots of the experiments (scripts/experiments.sh)
  gnuplot-nox
  # the throwaway SoftRoCE VM (scripts/rxe-vm.sh)
  qemu-system-x86 linux-image-amd64 busybox-static ibverbs-utils rdmacm-utils
  iproute2 cpio gzip kmod
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#PKGS[@]} packages present"
  exit 0
fi
echo "install-deps: missing: ${missing[*]}"
[[ "${1:-}" == "--check" ]] && exit 1

SUDO=()
[[ $(id -u) -ne 0 ]] && SUDO=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "install-deps: done"
