#!/usr/bin/env bash
# rxe-vm.sh — run one command inside a throwaway qemu VM (TCG, no KVM) whose
# kernel has SoftRoCE (rdma_rxe) up on a dummy netdev, and exit with the
# command's status. For hosts whose kernel has no RDMA support.
#
# Usage:
#   scripts/rxe-vm.sh [--timeout SECS] [--smp N] [--mem MB] [--file PATH]...
#                     [--cache-dir DIR] [--quiet] -- COMMAND [ARGS...]
#   scripts/rxe-vm.sh --build-only [--cache-dir DIR]
#
#   --timeout SECS  kill the VM after SECS seconds (default 600); exit 124
#   --smp N         virtual CPUs (default 2)
#   --mem MB        guest memory in MB (default 1024); /tmp is a tmpfs of 80% of it
#   --file PATH     copy PATH (file or directory, recursively) into the VM at the
#                   same absolute path, with the shared libraries its ELF files
#                   need (ldd). Repeatable. COMMAND itself is copied the same way
#                   when it names an existing file (or a host program that the
#                   VM image lacks); a script's #! interpreter is added too.
#   --cache-dir DIR where the base image is cached
#                   (default ${SHARRY_VM_CACHE:-$HOME/.cache/sharry-vm})
#   --quiet         no progress messages; only the command's output, kernel
#                   errors and failure messages
#   --build-only    build (or find fresh) the cached base image, print its path
#                   and exit 0; no VM is started and no COMMAND is needed
#
# Inside the VM: rxe0 on dummy0 (192.0.2.1/24), port 1 ACTIVE, IPv4 GID at
# index 1; environment SHARRY_RDMA_ADDR=192.0.2.1 SHARRY_RDMA_DEV=rxe0
# SHARRY_RDMA_GID_INDEX=1 SHARRY_IN_VM=1 (plus the caller's SHARRY_*, GTEST_*,
# GLOG_* variables); cwd = the caller's cwd if it exists there, else /tmp;
# ulimit -l unlimited; stdin is /dev/null; busybox provides the shell and
# tools; iproute2 ip/rdma, ibverbs-utils, rping, perftest are included.
#
# Exit status: the command's status; 124 if the VM timed out; 125 if the VM
# failed (kernel panic, SoftRoCE setup failure, no exit marker); 2 on usage
# errors.
#
# The base initramfs (busybox, kernel modules, rdma-core, tools, and the VM's
# /init: scripts/vm/init.sh) is built once per kernel version and version of
# this script and of init.sh, and cached; every run appends a small second
# cpio archive with the files and the command.
# Environment: SHARRY_VM_CACHE (cache dir), SHARRY_VM_KVER (kernel version to
# use instead of the newest /boot/vmlinuz-* with /lib/modules), SHARRY_VM_APPEND
# (extra kernel command line, e.g. "loglevel=7" to see the boot messages).
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
# shellcheck source=scripts/lib.sh
. "$(dirname "$SELF")/lib.sh"
PROG=rxe-vm

timeout_s=600
smp=2
mem=1024
quiet=false
build_only=false
cache_dir=${SHARRY_VM_CACHE:-${HOME:-/tmp}/.cache/sharry-vm}
files=()

usage() { script_help >&2; exit 2; }
die() { echo "$PROG: error: $*" >&2; exit 2; }
say() { $quiet || echo "$PROG: $*" >&2; }
warn() { echo "$PROG: warning: $*" >&2; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

while [[ $# -gt 0 ]]; do
  case $1 in
    --timeout) [[ $# -ge 2 ]] || usage; timeout_s=$2; shift 2 ;;
    --timeout=*) timeout_s=${1#*=}; shift ;;
    --smp) [[ $# -ge 2 ]] || usage; smp=$2; shift 2 ;;
    --smp=*) smp=${1#*=}; shift ;;
    --mem) [[ $# -ge 2 ]] || usage; mem=$2; shift 2 ;;
    --mem=*) mem=${1#*=}; shift ;;
    --file) [[ $# -ge 2 ]] || usage; files+=("$2"); shift 2 ;;
    --file=*) files+=("${1#*=}"); shift ;;
    --cache-dir) [[ $# -ge 2 ]] || usage; cache_dir=$2; shift 2 ;;
    --cache-dir=*) cache_dir=${1#*=}; shift ;;
    --quiet|-q) quiet=true; shift ;;
    --build-only) build_only=true; shift ;;
    -h|--help) script_help; exit 0 ;;
    --) shift; break ;;
    -*) echo "$PROG: unknown option: $1" >&2; usage ;;
    *) break ;;
  esac
done
$build_only || [[ $# -ge 1 ]] || { echo "$PROG: no command given" >&2; usage; }
if ! is_uint "$timeout_s" || [[ $timeout_s -eq 0 ]]; then die "--timeout wants a positive integer"; fi
if ! is_uint "$smp" || [[ $smp -eq 0 ]]; then die "--smp wants a positive integer"; fi
if ! is_uint "$mem" || [[ $mem -lt 256 ]]; then die "--mem wants an integer >= 256 (MB)"; fi

for tool in qemu-system-x86_64 timeout cpio ldd flock; do
  command -v "$tool" >/dev/null || die "$tool not found; run scripts/install-deps.sh"
done

# ---------------------------------------------------------------- kernel ----
pick_kernel() {
  if [[ -n ${SHARRY_VM_KVER:-} ]]; then echo "$SHARRY_VM_KVER"; return; fi
  local f v vers=()
  for f in /boot/vmlinuz-*; do
    [[ -e $f ]] || continue
    v=${f#/boot/vmlinuz-}
    [[ -f /lib/modules/$v/modules.dep ]] && vers+=("$v")
  done
  [[ ${#vers[@]} -gt 0 ]] || return 1
  printf '%s\n' "${vers[@]}" | sort -V | tail -n1
}
kver=$(pick_kernel) || die "no /boot/vmlinuz-<ver> with matching /lib/modules/<ver>; install linux-image-amd64 (scripts/install-deps.sh)"
vmlinuz=/boot/vmlinuz-$kver
moddir=/lib/modules/$kver
[[ -f $vmlinuz && -f $moddir/modules.dep ]] || die "kernel $kver: $vmlinuz or $moddir/modules.dep missing"
[[ -r $vmlinuz ]] || die "$vmlinuz is not readable (try: sudo chmod 0644 $vmlinuz)"

# ----------------------------------------------------------- file helpers ---
# Key under which a path is known in the VM: the directory with symlinks
# resolved (the VM copies the host's /bin -> usr/bin etc.), the name as is.
vm_key() {
  local d=${1%/*} b=${1##*/}
  [[ -n $d ]] || d=/
  d=$(realpath -m -- "$d")
  [[ $d == / ]] && d=
  printf '%s/%s\n' "$d" "$b"
}

is_elf() {
  local m=
  [[ -f $1 ]] || return 1
  LC_ALL=C IFS= read -r -n4 -d '' m <"$1" 2>/dev/null || true
  [[ $m == $'\x7fELF' ]]
}

# Absolute paths of the shared libraries an ELF file needs.
lib_deps() {
  local line out
  local re_missing='^[[:space:]]*([^[:space:]]+) => not found'
  local re_lib='=> (/[^[:space:]]+)' re_loader='^[[:space:]]*(/[^[:space:]]+)'
  out=$(LC_ALL=C ldd "$1" 2>/dev/null) || return 0
  while IFS= read -r line; do
    if [[ $line =~ $re_missing ]]; then
      warn "$1 needs ${BASH_REMATCH[1]}, which ldd cannot find on this host"
    elif [[ $line =~ $re_lib ]]; then
      echo "${BASH_REMATCH[1]}"
    elif [[ $line =~ $re_loader ]]; then
      echo "${BASH_REMATCH[1]}"
    fi
  done <<<"$out"
}

# ------------------------------------------------------------- base image ---
MODULES=(configfs crc32_generic ib_core ib_uverbs iw_cm ib_cm rdma_cm rdma_ucm
         udp_tunnel ip6_udp_tunnel rdma_rxe dummy)
REQUIRED_MODULES=" ib_core ib_uverbs rdma_ucm rdma_rxe dummy "
# Host programs put into the base image: required ones, then optional ones.
BASE_PROGS=(ip rdma ibv_devinfo ibv_devices rping
            ib_read_lat ib_write_bw ib_send_lat ib_write_lat ib_read_bw)
OPT_PROGS=(ib_send_bw ib_atomic_lat ib_atomic_bw ibv_rc_pingpong ibv_ud_pingpong
           ibv_srq_pingpong ibv_uc_pingpong ucmatose udaddy)

# init(8) of the VM (scripts/vm/init.sh); reads its per-run parameters from
# /.sharry-run.
VM_INIT=$(dirname "$SELF")/vm/init.sh
[[ -r $VM_INIT ]] || die "$VM_INIT missing (it is part of the source tree)"

# Copy host file $2 (dereferenced) into root dir $1 at the same path; records
# it in the base manifest/sources. Libraries with base_add_elf.
declare -A BASE_SEEN=()
base_add() {
  local root=$1 src=$2 key
  key=$(vm_key "$src")
  [[ -n ${BASE_SEEN[$key]:-} ]] && return 0
  BASE_SEEN[$key]=1
  mkdir -p "$root${key%/*}"
  cp -L --preserve=mode,timestamps -- "$src" "$root$key"
  echo "$key" >>"$root.manifest"
  echo "$src" >>"$root.sources"
}
base_add_elf() {
  local root=$1 src=$2 lib
  base_add "$root" "$src"
  while IFS= read -r lib; do base_add "$root" "$lib"; done < <(lib_deps "$src")
}

# Emit the module load order (paths inside the VM), dependencies first.
declare -A MOD_REL=() MOD_DEPS=() MOD_DONE=()
module_order() {
  local line rel name dep deps=() i
  while IFS= read -r line; do
    rel=${line%%:*}
    name=${rel##*/}; name=${name%%.ko*}; name=${name//-/_}
    MOD_REL[$name]=$rel
    MOD_DEPS[$rel]=${line#*:}
  done <"$moddir/modules.dep"
  local builtin=" "
  if [[ -f $moddir/modules.builtin ]]; then
    while IFS= read -r line; do
      name=${line##*/}; name=${name%%.ko*}; builtin+="${name//-/_} "
    done <"$moddir/modules.builtin"
  fi
  for name in "${MODULES[@]}"; do
    rel=${MOD_REL[$name]:-}
    if [[ -z $rel ]]; then
      [[ $builtin == *" $name "* ]] && continue
      [[ $REQUIRED_MODULES == *" $name "* ]] && die "kernel $kver has no module $name (needed for SoftRoCE)"
      continue
    fi
    # modules.dep lists the full dependency closure; loading it in reverse works.
    read -r -a deps <<<"${MOD_DEPS[$rel]}"
    for ((i = ${#deps[@]} - 1; i >= 0; i--)); do
      dep=${deps[i]}
      [[ -n ${MOD_DONE[$dep]:-} ]] || { MOD_DONE[$dep]=1; echo "$dep"; }
    done
    [[ -n ${MOD_DONE[$rel]:-} ]] || { MOD_DONE[$rel]=1; echo "$rel"; }
  done
}

build_base() {
  local out=$1 root=$2 d p rel dst name bb
  rm -rf "$root" "$root.manifest" "$root.sources"
  mkdir -p "$root"
  : >"$root.manifest"; : >"$root.sources"
  # Same /usr layout as the host (Debian 12: /bin -> usr/bin etc.).
  for d in bin sbin lib lib32 lib64 libx32; do
    if [[ -L /$d ]]; then
      ln -s "$(readlink "/$d")" "$root/$d"
      mkdir -p "$root/$(readlink -f "/$d")"
    elif [[ -d /$d && $d != lib32 && $d != libx32 ]]; then
      mkdir -p "$root/$d"
    fi
  done
  mkdir -p "$root"/{dev,proc,sys,tmp,run,root,mnt,etc/sharry-vm,usr/bin,usr/sbin,var/tmp,.sharry-run}
  chmod 1777 "$root/tmp" "$root/var/tmp"
  # /init also reopens /dev/console after mounting devtmpfs, so this may fail
  if [[ $(id -u) -eq 0 ]]; then mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true; fi

  # busybox (static) as /bin/sh and the other applets
  bb=$(command -v busybox) || die "busybox not found; install busybox-static"
  base_add_elf "$root" "$bb"
  bb=$(vm_key "$bb")

  # host programs
  for p in "${BASE_PROGS[@]}"; do
    case $p in
      ip) p=/usr/bin/ip; [[ -x $p ]] || p=$(command -v ip) ;;  # iproute2, not busybox
      *) p=$(command -v "$p") || die "$p not found; run scripts/install-deps.sh" ;;
    esac
    base_add_elf "$root" "$p"
  done
  [[ -x $root/usr/bin/ip ]] || die "iproute2's ip must be at /usr/bin/ip"
  for p in "${OPT_PROGS[@]}"; do
    if p=$(command -v "$p"); then base_add_elf "$root" "$p"; fi
  done

  # verbs provider (dlopen'ed, invisible to ldd)
  local prov
  prov=$(compgen -G '/usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav*.so' | head -n1) ||
    die "no librxe-rdmav*.so; install rdma-core"
  base_add_elf "$root" "$prov"
  [[ -f /etc/libibverbs.d/rxe.driver ]] || die "/etc/libibverbs.d/rxe.driver missing; install rdma-core"
  base_add "$root" /etc/libibverbs.d/rxe.driver

  # glibc dlopens libgcc_s for pthread_exit/pthread_cancel (rping needs it)
  local gcc_s
  gcc_s=$(ldconfig -p 2>/dev/null | awk '/libgcc_s\.so\.1 .*x86-64/ { print $NF; exit }' || true)
  [[ -n $gcc_s ]] || gcc_s=$(compgen -G '/usr/lib/x86_64-linux-gnu/libgcc_s.so.1' || true)
  if [[ -n $gcc_s ]]; then base_add_elf "$root" "$gcc_s"; else warn "libgcc_s.so.1 not found"; fi

  # kernel modules, decompressed so busybox insmod can load them
  : >"$root/etc/sharry-vm/modules"
  while IFS= read -r rel; do
    dst=${rel%.xz}; dst=${dst%.zst}; dst=/lib/modules/$kver/${dst%.gz}
    mkdir -p "$root${dst%/*}"
    case $rel in
      *.xz) xz -dc "$moddir/$rel" >"$root$dst" ;;
      *.zst) zstd -qdc "$moddir/$rel" >"$root$dst" ;;
      *.gz) gzip -dc "$moddir/$rel" >"$root$dst" ;;
      *) cp "$moddir/$rel" "$root$dst" ;;
    esac
    echo "$dst" >>"$root/etc/sharry-vm/modules"
    echo "$moddir/$rel" >>"$root.sources"
  done < <(module_order)
  echo "$moddir/modules.dep" >>"$root.sources"

  # /etc
  [[ -f /etc/ld.so.conf ]] && cp /etc/ld.so.conf "$root/etc/"
  [[ -d /etc/ld.so.conf.d ]] && cp -r /etc/ld.so.conf.d "$root/etc/"
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
  printf 'root:x:0:\n' >"$root/etc/group"
  printf '127.0.0.1 localhost\n::1 localhost\n192.0.2.1 sharry-vm\n' >"$root/etc/hosts"
  printf 'passwd: files\ngroup: files\nhosts: files\n' >"$root/etc/nsswitch.conf"
  echo sharry-vm >"$root/etc/hostname"
  if command -v ldconfig >/dev/null || [[ -x /sbin/ldconfig ]]; then
    "$(command -v ldconfig || echo /sbin/ldconfig)" -X -r "$root" 2>/dev/null ||
      warn "ldconfig -r failed; the VM relies on the default library paths"
  fi

  # applets after the real programs, so that ip, rdma... stay the real ones
  while IFS= read -r p; do
    [[ -n $p ]] || continue
    dst=$root/$p
    if [[ ! -e $dst && ! -L $dst ]]; then
      mkdir -p "${dst%/*}"
      ln -s "$bb" "$dst"
    fi
    vm_key "/$p" >>"$root.manifest"
  done < <("$root$bb" --list-full)
  [[ -e $root/bin/sh || -L $root/bin/sh ]] || ln -s "$bb" "$root/bin/sh"

  cp -- "$VM_INIT" "$root/init"
  chmod 755 "$root/init"

  (cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$out.tmp"
  mv "$root.manifest" "$out.manifest.tmp"
  sort -u "$root.sources" >"$out.sources.tmp"
  mv "$out.manifest.tmp" "${out%.cpio}.manifest"
  mv "$out.sources.tmp" "${out%.cpio}.sources"
  mv "$out.tmp" "$out"
  rm -rf "$root" "$root.sources"
}

# Uncompressed ELF vmlinux out of bzImage $1 into $2; fails unless it has a
# PVH entry note (which qemu's -kernel needs to boot an ELF kernel).
extract_vmlinux() {
  local k=$1 out=$2 ss off len start magic dec
  ss=$(od -An -tu1 -N1 -j $((0x1f1)) "$k" | tr -d ' ')
  off=$(od -An -tu4 -N4 -j $((0x248)) "$k" | tr -d ' ')
  len=$(od -An -tu4 -N4 -j $((0x24c)) "$k" | tr -d ' ')
  is_uint "$ss" && is_uint "$off" && is_uint "$len" && [[ $len -gt 0 ]] || return 1
  [[ $ss -eq 0 ]] && ss=4
  start=$(( (ss + 1) * 512 + off ))
  magic=$(od -An -tx1 -N4 -j "$start" "$k" | tr -d ' ')
  case $magic in
    fd377a58) dec="xz -dc --single-stream" ;;
    1f8b*) dec="gzip -dc" ;;
    28b52ffd) dec="zstd -qdc" ;;
    *) return 1 ;;
  esac
  command -v "${dec%% *}" >/dev/null || return 1
  # the payload ends with 4 bytes of decompressed size: decompressors may complain
  tail -c +$((start + 1)) "$k" | head -c "$len" | $dec >"$out" 2>/dev/null || true
  [[ $(od -An -tx1 -N4 "$out" | tr -d ' ') == 7f454c46 ]] || return 1
  # ELF note: namesz 4, descsz 4 or 8, type 18 (XEN_ELFNOTE_PHYS32_ENTRY), "Xen"
  LC_ALL=C grep -qaP '\x04\x00\x00\x00[\x04\x08]\x00\x00\x00\x12\x00\x00\x00Xen\x00' "$out"
}

base_is_fresh() {
  local img=$1 f
  [[ -s $img && -s ${img%.cpio}.manifest && -s ${img%.cpio}.sources ]] || return 1
  while IFS= read -r f; do
    [[ -e $f && ! $f -nt $img ]] || return 1
  done <"${img%.cpio}.sources"
}

# ------------------------------------------------------------------ run ----
work=$(mktemp -d "${TMPDIR:-/tmp}/rxe-vm.XXXXXX")
vm_pid=
reader_pid=
# shellcheck disable=SC2317  # invoked by trap
cleanup() {
  if [[ -n $vm_pid ]]; then kill -TERM "$vm_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$cache_dir" || die "cannot create cache dir $cache_dir"
script_hash=$(cat "$SELF" "$VM_INIT" | sha256sum | cut -c1-16)
base_img=$cache_dir/base-$kver-$script_hash.cpio

exec {lock_fd}>"$cache_dir/lock"
flock -x "$lock_fd"
if ! base_is_fresh "$base_img"; then
  say "building base image for kernel $kver in $cache_dir ..."
  t0=$SECONDS
  for old in "$cache_dir"/base-*.cpio; do
    [[ -e $old && $old != "$base_img" ]] && rm -f "$old" "${old%.cpio}.manifest" "${old%.cpio}.sources"
  done
  build_base "$base_img" "$work/base"
  say "base image built in $((SECONDS - t0)) s ($(du -h "$base_img" | cut -f1))"
fi
# A bzImage spends ~4 s under TCG decompressing itself; qemu can boot the
# uncompressed ELF vmlinux through its PVH entry instead. It is extracted
# once (cached); without a PVH note or on any trouble, the bzImage is used.
vmlinux=$cache_dir/vmlinux-$kver
if [[ ! -s $vmlinux || $vmlinux -ot $vmlinuz ]] && [[ ! -e $vmlinux.none || $vmlinux.none -ot $vmlinuz ]]; then
  rm -f "$vmlinux" "$vmlinux.none"
  if extract_vmlinux "$vmlinuz" "$vmlinux.tmp"; then mv "$vmlinux.tmp" "$vmlinux"
  else rm -f "$vmlinux.tmp"; : >"$vmlinux.none"; fi
fi
# Shared from here to the end of the run: a concurrent rebuild waits until
# qemu no longer needs the cached files.
flock -s "$lock_fd"
if $build_only; then
  echo "$base_img"
  exit 0
fi

declare -A IN_BASE=()
while IFS= read -r p; do IN_BASE[$p]=1; done <"${base_img%.cpio}.manifest"

# ---- per-run archive
stage=$work/run
R=$stage/.sharry-run
mkdir -p "$R/root"
declare -A RUN_SEEN=()

run_add_libs() {
  local lib key
  while IFS= read -r lib; do
    key=$(vm_key "$lib")
    [[ -n ${IN_BASE[$key]:-} || -n ${RUN_SEEN[$lib]:-} ]] && continue
    RUN_SEEN[$lib]=1
    mkdir -p "$R/root${lib%/*}"
    cp -L --preserve=mode,timestamps -- "$lib" "$R/root$lib"
  done < <(lib_deps "$1")
}

# A script's interpreter, when the base image lacks it.
run_add_interp() {
  local line interp arg
  LC_ALL=C IFS= read -r line <"$1" 2>/dev/null || return 0
  [[ $line == '#!'* ]] || return 0
  read -r interp arg _ <<<"${line#\#!}"
  [[ $interp == */env && -n ${arg:-} && $arg != -* ]] && interp=$arg
  run_add_cmd "$interp"
}

# A bare command name: add the host's program if the VM has none in PATH.
run_add_cmd() {
  local c=$1 d host
  [[ -n $c ]] || return 0
  if [[ $c == /* ]]; then
    [[ -n ${IN_BASE[$(vm_key "$c")]:-} ]] && return 0
    [[ -f $c ]] && run_add "$c"
    return 0
  fi
  [[ $c == */* ]] && return 0
  for d in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
    [[ -n ${IN_BASE[$(vm_key "$d/$c")]:-} ]] && return 0
  done
  host=$(type -P "$c") || return 0
  run_add "$(realpath -s -- "$host")"
}

run_add() {
  local src=$1 dst f
  [[ $src == /* ]] || src=$PWD/$src
  src=$(realpath -s -m -- "$src")
  [[ -e $src ]] || die "--file $1: no such file or directory"
  case $(vm_key "$src") in
    /init|/usr/bin/busybox|/usr/bin/sh|/.sharry-run*) die "refusing to replace $src in the VM" ;;
  esac
  [[ -n ${RUN_SEEN[$src]:-} ]] && return 0
  RUN_SEEN[$src]=1
  dst=$R/root$src
  mkdir -p "${dst%/*}"
  if [[ -d $src ]]; then
    mkdir -p "$dst"
    cp -a -- "$src/." "$dst/"
    while IFS= read -r -d '' f; do
      if is_elf "$f"; then run_add_libs "$f"; fi
    done < <(find "$src" -type f -print0)
  else
    cp -L --preserve=mode,timestamps -- "$src" "$dst"
    if is_elf "$src"; then run_add_libs "$src"; else run_add_interp "$src"; fi
  fi
}

for f in ${files[@]+"${files[@]}"}; do run_add "$f"; done
if [[ $1 == */* ]]; then
  [[ -f $1 ]] && run_add "$1"
else
  run_add_cmd "$1"
fi

shq() { local s=${1//\'/\'\\\'\'}; printf "'%s'" "$s"; }
{
  printf 'set --'
  for a in "$@"; do printf ' %s' "$(shq "$a")"; done
  printf '\nexec "$@"\n'
} >"$R/cmd"
printf '%s\n' "$PWD" >"$R/cwd"
nonce=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
echo "$nonce" >"$R/nonce"
$quiet && : >"$R/quiet"
while IFS= read -r -d '' kv; do
  name=${kv%%=*}
  [[ $name =~ ^(SHARRY|GTEST|GLOG)_[A-Za-z0-9_]*$ ]] || continue
  case $name in SHARRY_VM_*|SHARRY_RDMA_ADDR|SHARRY_RDMA_DEV|SHARRY_RDMA_GID_INDEX|SHARRY_IN_VM) continue ;; esac
  printf 'export %s=%s\n' "$name" "$(shq "${kv#*=}")"
done < <(env -0) >"$R/env"

initrd=$work/initrd.cpio
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$work/run.cpio"
cat "$base_img" "$work/run.cpio" >"$initrd"
run_kb=$(( $(stat -c %s "$work/run.cpio") / 1024 ))
[[ $run_kb -gt $((mem * 1024 / 3)) ]] &&
  warn "the per-run files take ${run_kb} KiB of the VM's ${mem} MB; consider --mem"

# ---- boot
kernel=$vmlinuz
[[ -s $vmlinux ]] && kernel=$vmlinux

append="console=ttyS0 panic=-1 oops=panic quiet loglevel=3 mitigations=off"
# TCG guest TSCs all read the host TSC, so they are in sync; without this the
# kernel falls back to hpet and clock_gettime costs a trap (~1.5 us vs ~0.2 us).
append+=" tsc=reliable"
# Preset delay-loop calibration: calibrating each extra vCPU costs ~1 s under TCG.
hz=$(sed -n 's/^CONFIG_HZ=//p' "/boot/config-$kver" 2>/dev/null || true)
mhz=$(awk -F: '/^cpu MHz/ { printf "%d", $2; exit }' /proc/cpuinfo 2>/dev/null || true)
if is_uint "${hz:-x}" && is_uint "${mhz:-x}" && [[ $hz -gt 0 && $mhz -gt 0 ]]; then
  append+=" lpj=$((mhz * 1000000 / hz))"
fi
append+=${SHARRY_VM_APPEND:+ $SHARRY_VM_APPEND}
qemu=(qemu-system-x86_64 -accel tcg -cpu max -smp "$smp" -m "$mem"
      -kernel "$kernel" -initrd "$initrd" -append "$append"
      -display none -monitor none -serial stdio -no-reboot -nic none)

say "booting kernel $kver (TCG, smp $smp, ${mem} MB, per-run files ${run_kb} KiB, timeout ${timeout_s} s)"
log=$work/console.log
mkfifo "$work/console"
console_filter() {
  if $quiet; then
    sed -u -e "/^SHARRY_VM_EXIT=[0-9]* $nonce\$/d" -e "s/SHARRY_VM_EXIT=[0-9]* $nonce\$//" \
           -e '/^\[ *[0-9.]*\] reboot: Power down$/d'
  else
    cat
  fi
}
sed -u 's/\r$//' <"$work/console" {lock_fd}>&- | tee "$log" {lock_fd}>&- | console_filter {lock_fd}>&- &
reader_pid=$!
# If this script is killed outright (SIGKILL), take the VM down too.
pdeath=()
if setpriv --help 2>/dev/null | grep -q -- --pdeathsig; then pdeath=(setpriv --pdeathsig TERM --); fi
t_start=$SECONDS
${pdeath[@]+"${pdeath[@]}"} timeout -k 5 "$timeout_s" "${qemu[@]}" <"/dev/null" >"$work/console" {lock_fd}>&- &
vm_pid=$!

got_signal=
# shellcheck disable=SC2317  # invoked by trap
on_signal() { got_signal=$1; kill -TERM "$vm_pid" 2>/dev/null || true; }
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM
trap 'on_signal HUP' HUP

vm_rc=0
while :; do
  rc=0
  wait "$vm_pid" || rc=$?
  # wait returns > 128 when a trapped signal interrupts it; the VM is then still going
  if kill -0 "$vm_pid" 2>/dev/null; then continue; fi
  vm_rc=$rc
  break
done
vm_pid=
wait "$reader_pid" 2>/dev/null || true
elapsed=$((SECONDS - t_start))

if [[ -n $got_signal ]]; then
  echo "$PROG: interrupted (SIG$got_signal); VM killed" >&2
  case $got_signal in INT) exit 130 ;; HUP) exit 129 ;; *) exit 143 ;; esac
fi

marker=$(grep -ao "SHARRY_VM_EXIT=[0-9]* $nonce\$" "$log" | tail -n1 || true)
if [[ -n $marker ]]; then
  rc=${marker#SHARRY_VM_EXIT=}; rc=${rc%% *}
  if [[ $vm_rc -eq 124 || $vm_rc -eq 137 ]]; then
    warn "the command finished (status $rc) but the VM did not power off within ${timeout_s} s"
  fi
  say "VM done in ${elapsed} s; command exit status $rc"
  exit "$rc"
fi
if [[ $vm_rc -eq 124 || $vm_rc -eq 137 ]]; then
  echo "$PROG: TIMEOUT: the VM did not finish within ${timeout_s} s and was killed" >&2
  exit 124
fi
if grep -q "SHARRY_VM_SETUP_FAILED $nonce" "$log"; then
  echo "$PROG: FAILED: SoftRoCE setup inside the VM failed (see the console output above)" >&2
elif grep -qa 'Kernel panic' "$log"; then
  echo "$PROG: FAILED: kernel panic in the VM (see the console output above)" >&2
else
  echo "$PROG: FAILED: the VM stopped without reporting the command's exit status (qemu status $vm_rc)" >&2
fi
exit 125
