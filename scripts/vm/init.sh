#!/bin/sh
# /init of the Sharry SoftRoCE test VM: scripts/rxe-vm.sh copies this file
# into the VM's base initramfs. busybox sh; reads its per-run parameters
# from /.sharry-run (written by rxe-vm.sh).
# shellcheck disable=SC3045  # ulimit -l: busybox sh has it
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
HOME=/root USER=root LOGNAME=root TERM=dumb
export PATH HOME USER LOGNAME TERM
mount -t devtmpfs -o mode=0755 devtmpfs /dev 2>/dev/null
exec </dev/null >/dev/console 2>&1
R=/.sharry-run
quiet=0; [ -e $R/quiet ] && quiet=1
nonce=none; [ -r $R/nonce ] && read -r nonce <$R/nonce
say() { [ $quiet = 1 ] || echo "sharry-vm: $*"; }
up() { read -r u _ </proc/uptime; echo "$u"; }
fail() {
  echo "sharry-vm: setup failed: $*"
  echo "SHARRY_VM_SETUP_FAILED $nonce"
  sleep 0.3; poweroff -f; sleep 5; exit 1
}
mount -t proc proc /proc || fail "mount /proc"
mount -t sysfs sysfs /sys || fail "mount /sys"
mkdir -p /dev/shm /dev/pts /tmp
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t devpts devpts /dev/pts 2>/dev/null
mount -t tmpfs -o mode=1777,size=80% tmpfs /tmp || fail "mount /tmp"
echo 3 >/proc/sys/kernel/printk

while read -r m; do
  insmod "$m" || fail "insmod $m"
done </etc/sharry-vm/modules

IP=/usr/bin/ip
$IP link set lo up || fail "ip link set lo up"
# loading dummy.ko already creates dummy0 (numdummies=1)
$IP link show dummy0 >/dev/null 2>&1 || $IP link add dummy0 type dummy || fail "ip link add dummy0"
$IP addr add 192.0.2.1/24 dev dummy0 || fail "ip addr add"
$IP link set dummy0 up || fail "ip link set dummy0 up"
/usr/bin/rdma link add rxe0 type rxe netdev dummy0 || fail "rdma link add rxe0"

# 192.0.2.1 as an IPv4-mapped GID
want=0000:0000:0000:0000:0000:ffff:c000:0201
P=/sys/class/infiniband/rxe0/ports/1
gidx='' n=0
while :; do
  st=; { read -r st <$P/state; } 2>/dev/null
  case $st in
    *ACTIVE*)
      for i in 0 1 2 3 4 5 6 7; do
        g=; { read -r g <$P/gids/$i; } 2>/dev/null
        if [ "$g" = "$want" ]; then gidx=$i; break; fi
      done ;;
  esac
  [ -n "$gidx" ] && break
  n=$((n + 1))
  [ $n -ge 500 ] && fail "rxe0 port 1 not ACTIVE with GID $want after 10 s (state: $st)"
  usleep 20000
done
say "rxe0 on dummy0 192.0.2.1: port 1 ACTIVE, IPv4 GID index $gidx (uptime $(up) s)"

# shellcheck source=/dev/null  # the caller's SHARRY_*/GTEST_*/GLOG_* exports
[ -r $R/env ] && . $R/env
export SHARRY_RDMA_ADDR=192.0.2.1 SHARRY_RDMA_DEV=rxe0 SHARRY_RDMA_GID_INDEX=$gidx SHARRY_IN_VM=1

# Put the per-run files at their paths. rename(2) replaces a symlink rather
# than writing through it, and /tmp is already the tmpfs.
if [ -d $R/root ]; then
  cd $R/root || fail "cd $R/root"
  find . -type d | while read -r d; do mkdir -p "/${d#./}"; done
  find . ! -type d | while read -r f; do mv -f "$f" "/${f#./}" || echo "sharry-vm: cannot place /${f#./}"; done
  cd / || fail "cd /"
fi

cwd=/tmp; [ -r $R/cwd ] && read -r cwd <$R/cwd
# shellcheck disable=SC2164  # /tmp is the tmpfs mounted above
cd "$cwd" 2>/dev/null || cd /tmp
ulimit -l unlimited || say "warning: ulimit -l unlimited failed"
say "running in $(pwd) (uptime $(up) s)"
# shellcheck source=/dev/null  # the command, written by rxe-vm.sh
( . $R/cmd )
rc=$?
echo "SHARRY_VM_EXIT=$rc $nonce"
sleep 0.2
poweroff -f
sleep 5
