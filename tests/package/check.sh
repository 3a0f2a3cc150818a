#!/usr/bin/env bash
# Checks an installed Sharry, from a build tree. Two modes:
#   tests/package/check.sh BUILD_DIR        (ctest package_consumer.unit)
#     installs the tree into a temporary prefix (cmake --install), checks that
#     no internal header was installed, builds tests/package against it with
#     find_package(Sharry) (which also compiles every installed header), and
#     runs the result.
#   tests/package/check.sh --deb BUILD_DIR  (ctest package_deb.unit)
#     builds the Debian packages (cpack -G DEB, packaging/) into a temporary
#     folder and checks them with dpkg-deb: sharry-memnode holds the two
#     binaries, the systemd unit (hardened; systemd-analyze verify, if
#     installed) and the flags file as a conffile, with Depends from
#     dpkg-shlibdeps; sharry-dev holds the libraries, only API headers and the
#     CMake config. Then builds and runs tests/package against the unpacked
#     sharry-dev.
set -euo pipefail
case "${1:-}" in -h|--help)
  # shellcheck source=scripts/lib.sh
  . "$(dirname "$0")/../../scripts/lib.sh"; script_help; exit 0 ;;
esac
deb=0
if [[ ${1:-} == --deb ]]; then deb=1; shift; fi
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "check.sh: $*" >&2; exit 1; }

# Internals stay in the build tree (PRIVATE_HEADERS in each CMakeLists.txt).
check_no_internals() {
  local include=$1 internal
  [[ -e $include/verbs/transport.h && -e $include/discovery/memnode_registry.h && -e $include/offload/kernel.h ]] ||
    fail "no API headers in $include"
  for internal in verbs/socket_util.h verbs/wire.h verbs/session.h verbs/transport_internal.h compute/erasure_code.h alloc \
      discovery/etcd_wire.h discovery/http_post.h offload/int_divider.h; do
    [[ ! -e $include/$internal ]] || fail "an internal header was installed: include/sharry/$internal"
  done
}

# Builds tests/package against the Sharry installed under prefix $1 and runs it.
build_consumer() {
  cmake -S "$here" -B "$tmp/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$1" >/dev/null
  cmake --build "$tmp/consumer" >/dev/null
  "$tmp/consumer/consumer"
}

if [[ $deb == 0 ]]; then
  cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
  check_no_internals "$tmp/prefix/include/sharry"
  build_consumer "$tmp/prefix"
  exit 0
fi

# ---- the Debian packages
for tool in cpack dpkg-deb dpkg-shlibdeps; do
  command -v "$tool" >/dev/null || fail "$tool not found (scripts/install-deps.sh installs it)"
done
cpack -G DEB --config "$build/CPackConfig.cmake" -B "$tmp/debs" >"$tmp/cpack.log" 2>&1 ||
  { cat "$tmp/cpack.log" >&2; fail "cpack -G DEB failed"; }
version=$(sed -n 's/^set(CPACK_PACKAGE_VERSION "\(.*\)")$/\1/p' "$build/CPackConfig.cmake")
arch=$(dpkg --print-architecture)
memnode_deb=$tmp/debs/sharry-memnode_${version}_$arch.deb
dev_deb=$tmp/debs/sharry-dev_${version}_$arch.deb
for d in "$memnode_deb" "$dev_deb"; do
  [[ -s $d ]] || { ls "$tmp/debs" >&2; fail "cpack wrote no ${d##*/}"; }
done

# has FILE PATTERN...: each extended regex matches a line of FILE.
has() {
  local f=$1 p
  shift
  for p in "$@"; do grep -Eq -- "$p" "$f" || fail "${f##*/}: nothing matches '$p'"; done
}
# lacks FILE PATTERN...: no line of FILE matches.
lacks() {
  local f=$1 p
  shift
  for p in "$@"; do
    if grep -Eq -- "$p" "$f"; then fail "${f##*/}: unexpected $(grep -E -m1 -- "$p" "$f")"; fi
  done
}

# sharry-memnode: contents (dpkg-deb -c) and control (dpkg-deb -I).
dpkg-deb -c "$memnode_deb" | awk '{ print $NF }' >"$tmp/memnode.contents"
dpkg-deb -I "$memnode_deb" >"$tmp/memnode.info"
has "$tmp/memnode.contents" '^\./usr/bin/memnode$' '^\./usr/bin/memnode_stats$' \
  '^\./usr/lib/systemd/system/sharry-memnode\.service$' '^\./etc/default/sharry-memnode$'
lacks "$tmp/memnode.contents" '^\./usr/include/' 'sharry_client' '\.a$'
has "$tmp/memnode.info" '^ Package: sharry-memnode$' '^ Depends: .*libibverbs1' '^ Depends: .*librdmacm1' \
  '^ Depends: .*libgoogle-glog' '^ Recommends: .*ibverbs-providers' \
  ' postinst( |$)' ' prerm( |$)' ' postrm( |$)' ' conffiles( |$)'
dpkg-deb -x "$memnode_deb" "$tmp/memnode-root"
dpkg-deb -e "$memnode_deb" "$tmp/memnode-control"
has "$tmp/memnode-control/conffiles" '^/etc/default/sharry-memnode$'
unit=$tmp/memnode-root/usr/lib/systemd/system/sharry-memnode.service
has "$unit" '^ExecStart=/usr/bin/memnode [$]MEMNODE_FLAGS$' '^EnvironmentFile=/etc/default/sharry-memnode$' \
  '^DynamicUser=yes$' '^ProtectSystem=strict$' '^ProtectHome=yes$' '^NoNewPrivileges=yes$' '^PrivateTmp=yes$' \
  '^LimitMEMLOCK=[0-9]+[KMG]$' '^CapabilityBoundingSet=$' '^Restart=on-failure$' \
  '^RestrictAddressFamilies=.*AF_INET6.*AF_NETLINK'
has "$tmp/memnode-root/etc/default/sharry-memnode" '^MEMNODE_FLAGS=".*--uma_mb=[0-9]+'
[[ -x $tmp/memnode-root/usr/bin/memnode ]] || fail "usr/bin/memnode is not executable"
if command -v systemd-analyze >/dev/null; then
  # --root: the unit's ExecStart resolves inside the package; the units it
  # names (network-online.target, ...) are the system's, not checked here.
  if ! systemd-analyze verify --man=no --recursive-errors=no --root="$tmp/memnode-root" \
      "$tmp/memnode-root/usr/lib/systemd/system/sharry-memnode.service" >"$tmp/verify.log" 2>&1; then
    cat "$tmp/verify.log" >&2
    fail "systemd-analyze verify: sharry-memnode.service"
  fi
else
  echo "check.sh: systemd-analyze not found; the unit was not verified"
fi

# sharry-dev: the libraries, only API headers, the CMake config.
dpkg-deb -c "$dev_deb" | awk '{ print $NF }' >"$tmp/dev.contents"
dpkg-deb -I "$dev_deb" >"$tmp/dev.info"
has "$tmp/dev.contents" '^\./usr/include/sharry/verbs/transport\.h$' '^\./usr/include/sharry/compute/runtime\.h$' \
  '^\./usr/lib/cmake/Sharry/SharryConfig\.cmake$' '^\./usr/lib/cmake/Sharry/SharryTargets\.cmake$' \
  '^\./usr/lib/libsharry_base\.a$' '^\./usr/lib/libsharry_compute\.a$' '^\./usr/lib/libsharry_memnode_client\.a$'
lacks "$tmp/dev.contents" '^\./usr/bin/' '^\./etc/' 'systemd'
has "$tmp/dev.info" '^ Package: sharry-dev$' '^ Depends: .*libibverbs-dev.*librdmacm-dev' '^ Depends: .*libisal-dev'
dpkg-deb -x "$dev_deb" "$tmp/dev-root"
check_no_internals "$tmp/dev-root/usr/include/sharry"
build_consumer "$tmp/dev-root/usr"
echo "check.sh: sharry-memnode and sharry-dev $version ($arch) pass"
