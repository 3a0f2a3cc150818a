# shellcheck shell=sh
# scripts/lib.sh: helpers for the scripts in this folder. Sourced, never run:
#   . "$(dirname "$0")/lib.sh"
# POSIX sh (the vm-*.sh scripts run under busybox sh).

# The running script, as an absolute path (taken when sourced: the scripts
# cd to the top of the tree afterwards).
lib_script=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")

# script_help: the --help of the running script: its header comment, from
# after the #! line to the first line that is not a comment, without the
# leading "# " and without shellcheck directives (# shellcheck ...).
script_help() {
  awk 'NR == 1 && /^#!/ { next } /^# shellcheck / { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$lib_script"
}

# help_opt "$@": for a script without an option loop: -h or --help as the
# first argument prints the header comment and exits 0.
help_opt() {
  case "${1:-}" in -h|--help) script_help; exit 0 ;; esac
}

# common_opt NAME "$@": the options every script spells the same way, for
# the `*)` branch of its option loop:
#   -h, --help   print the header comment and exit 0
#   --build DIR  sets build
#   --out DIR    sets out (only if the script set `out` before the loop)
#   --tcp        sets do_tcp=1  (only if the script set `do_tcp` before the loop)
#   --verbs      sets do_verbs=1 (likewise)
# Anything else: "NAME: unknown option" and exit 2. Sets opt_shift to the
# number of words used (the loop then does: shift "$opt_shift").
# shellcheck disable=SC2034  # opt_shift, build, out, do_tcp, do_verbs: the caller's
common_opt() {
  _name=$1
  shift
  opt_shift=1
  case "$1" in
    -h|--help) script_help; exit 0 ;;
    --build|--out)
      [ $# -ge 2 ] || { echo "$_name: $1 needs a value (see --help)" >&2; exit 2; }
      if [ "$1" = --build ]; then build=$2
      elif [ -n "${out+set}" ]; then out=$2
      else echo "$_name: unknown option $1 (see --help)" >&2; exit 2
      fi
      opt_shift=2 ;;
    --tcp|--verbs)
      if [ "$1" = --tcp ] && [ -n "${do_tcp+set}" ]; then do_tcp=1
      elif [ "$1" = --verbs ] && [ -n "${do_verbs+set}" ]; then do_verbs=1
      else echo "$_name: unknown option $1 (see --help)" >&2; exit 2
      fi ;;
    *) echo "$_name: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
}

# bench_setup TARGET: after the option loop of a bench-*.sh script: neither
# --tcp nor --verbs means both; out defaults to BUILD/bench-results (created);
# bench is the absolute path of BUILD/bench/TARGET, built first if missing.
# shellcheck disable=SC2034  # do_tcp, do_verbs, bench: the caller's
bench_setup() {
  if [ "$do_tcp" = 0 ] && [ "$do_verbs" = 0 ]; then do_tcp=1 do_verbs=1; fi
  out=${out:-$build/bench-results}
  mkdir -p "$out"
  bench=$PWD/$build/bench/$1
  if [ ! -x "$bench" ]; then
    cmake -S . -B "$build" -G Ninja >/dev/null
    cmake --build "$build" --target "$1" -j 2
  fi
}

# tenants_setup DIR: credentials for a run (docs/security.md), tcp or verbs
# alike. Writes DIR/tenants (mode 0600) with one tenant "demo" and an
# admin, each with a fresh 32-byte secret (DIR/demo.secret,
# DIR/admin.secret), and sets these word lists (DIR must have no spaces: a
# mktemp -d directory):
#   memnode_auth  the memnode's flags (--tenants_file=...)
#   client_auth   a client's flags (--tenant=demo --secret_file=...)
#   admin_auth    memnode_stats' flags to see every client (--admin ...)
# shellcheck disable=SC2034  # the lists are the caller's
tenants_setup() {
  tenants_demo=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
  tenants_admin=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
  (
    umask 077
    printf 'tenant demo secret=%s quota_mb=1048576 max_clients=256\nadmin secret=%s\n' "$tenants_demo" \
      "$tenants_admin" >"$1/tenants"
    printf '%s\n' "$tenants_demo" >"$1/demo.secret"
    printf '%s\n' "$tenants_admin" >"$1/admin.secret"
  )
  unset tenants_demo tenants_admin
  memnode_auth="--tenants_file=$1/tenants"
  client_auth="--tenant=demo --secret_file=$1/demo.secret"
  admin_auth="--admin --secret_file=$1/admin.secret"
}
