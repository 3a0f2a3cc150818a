#!/usr/bin/env bash
# The transport benchmark beside its baselines, in ONE run each, printing
# our/baseline ratios (absolute times under emulation mean nothing).
#
#   scripts/bench-transport.sh [--tcp] [--verbs] [--sizes "64 4096 ..."] [--rounds N] [--build DIR] [--out DIR]
#
#   --tcp    on this host: the tcp backend against a plain TCP ping-pong of
#            the same sizes, measured in the same process run.
#   --verbs  the verbs backend against perftest (ib_read_lat, ib_write_lat,
#            ib_write_bw, ib_send_lat) on the same device in the same run:
#            natively if this host has an RDMA device, else inside the
#            SoftRoCE VM (scripts/rxe-vm.sh). One full sweep, then --rounds
#            (default 5) rounds of the three target pairs back to back; the
#            median ratio decides (scripts/vm-bench-transport.sh).
#   (neither: both)
# Raw lines and the ratio tables are written to DIR (default build/bench-results).
# Targets (issue #2): READ 4 KiB p50 <= 1.3x ib_read_lat; WRITE 64 KiB bandwidth
# >= 0.8x ib_write_bw; request/response round trip <= 1.3x twice ib_send_lat;
# tcp 4 KiB read round trip <= 1.5x the plain TCP ping-pong.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."

do_tcp=0 do_verbs=0
sizes="64 256 1024 4096 16384 65536 262144 1048576"
build=build
rounds=5
out=
while [[ $# -gt 0 ]]; do
  case "$1" in
    --sizes) sizes=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) common_opt bench-transport "$@"; shift "$opt_shift" ;;
  esac
done
bench_setup transport_bench
csv_sizes=$(echo "$sizes" | tr ' ' ',')

# ratios.awk-like report: reads "bench ..." and "perftest ..." lines.
report() {
  awk -v mode="$1" -v sizelist="$sizes" '
    function median(arr, n,   i, j, t, v) {
      for (i = 1; i <= n; i++) v[i] = arr[i]
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
      return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    }
    function kv(line, key,   i, n, a, p) {
      n = split(line, a, " ")
      for (i = 1; i <= n; i++) { split(a[i], p, "="); if (p[1] == key) return p[2] }
      return ""
    }
    $1 == "round" { round = $2; next }
    $1 == "bench" && round > 0 {
      op = kv($0, "op"); s = kv($0, "size")
      if (op == "read" && s == 4096) r_read[round] = kv($0, "p50_us")
      if (op == "write_bw" && s == 65536) r_wbw[round] = kv($0, "MBps")
      if (op == "rpc") r_rpc[round] = kv($0, "p50_us")
      nrounds = round
      next
    }
    $1 == "perftest" && round > 0 {
      tool = $2
      if (tool == "ib_read_lat") p_read[round] = kv($0, "p50_us")
      if (tool == "ib_write_bw") p_wbw[round] = kv($0, "MBps")
      if (tool == "ib_send_lat") p_send[round] = kv($0, "p50_us")
      next
    }
    $1 == "bench" {
      t = kv($0, "transport"); op = kv($0, "op"); s = kv($0, "size")
      if (t == "rawtcp") { raw[s] = kv($0, "p50_us"); next }
      if (op ~ /_bw$/) bw[op, s] = kv($0, "MBps"); else { p50[op, s] = kv($0, "p50_us"); p99[op, s] = kv($0, "p99_us") }
      if (op == "rpc") { rpc_size = s }
      sizes[s] = 1
    }
    $1 == "perftest" {
      tool = $2; s = kv($0, "size")
      if (kv($0, "error") != "") next
      if (tool == "ib_write_bw") pbw[s] = kv($0, "MBps"); else pt[tool, s] = kv($0, "p50_us")
    }
    END {
      n = split(sizelist, ss, " ")
      if (mode == "tcp") {
        print "| size | tcp read p50 us | tcp read p99 us | plain TCP ping-pong p50 us | ratio (target <= 1.5 at 4 KiB) | tcp write p50 us | write MB/s |"
        print "|---:|---:|---:|---:|---:|---:|---:|"
        for (i = 1; i <= n; i++) { s = ss[i]
          printf "| %s | %.1f | %.1f | %.1f | %.2f | %.1f | %.1f |\n", s, p50["read", s], p99["read", s], raw[s], (raw[s] > 0 ? p50["read", s] / raw[s] : 0), p50["write", s], bw["write_bw", s] }
        printf "\nrequest/response %s B: p50 %.1f us, p99 %.1f us\n", rpc_size, p50["rpc", rpc_size], p99["rpc", rpc_size]
        r = raw[4096] > 0 ? p50["read", 4096] / raw[4096] : 0
        printf "TARGET tcp 4 KiB read / plain TCP ping-pong = %.2f (<= 1.5): %s\n", r, (r > 0 && r <= 1.5) ? "met" : "MISSED"
      } else {
        print "| size | READ p50 us | ib_read_lat us | ratio | WRITE p50 us | ib_write_lat us | ratio | WRITE MB/s | ib_write_bw MB/s | ratio | READ MB/s |"
        print "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        for (i = 1; i <= n; i++) { s = ss[i]
          rl = pt["ib_read_lat", s]; wl = pt["ib_write_lat", s]; wb = pbw[s]
          printf "| %s | %.1f | %.1f | %.2f | %.1f | %.1f | %.2f | %.1f | %.1f | %.2f | %.1f |\n", s, p50["read", s], rl, (rl > 0 ? p50["read", s] / rl : 0), p50["write", s], wl, (wl > 0 ? p50["write", s] / wl : 0), bw["write_bw", s], wb, (wb > 0 ? bw["write_bw", s] / wb : 0), bw["read_bw", s] }
        sl = pt["ib_send_lat", rpc_size]
        printf "\nrequest/response %s B: p50 %.1f us (p99 %.1f); ib_send_lat p50 %.1f us\n", rpc_size, p50["rpc", rpc_size], p99["rpc", rpc_size], sl
        if (nrounds > 0) {
          printf "\nTarget pairs, measured back to back in %d rounds (ratio per round; median decides):\n", nrounds
          print "| round | READ 4K p50 us | ib_read_lat us | ratio | WRITE 64K MB/s | ib_write_bw MB/s | ratio | rpc p50 us | 2 x ib_send_lat us | ratio |"
          print "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
          for (i = 1; i <= nrounds; i++) {
            a[i] = p_read[i] > 0 ? r_read[i] / p_read[i] : 99
            b[i] = p_wbw[i] > 0 ? r_wbw[i] / p_wbw[i] : 0
            c[i] = p_send[i] > 0 ? r_rpc[i] / (2 * p_send[i]) : 99
            printf "| %d | %.1f | %.1f | %.2f | %.1f | %.1f | %.2f | %.1f | %.1f | %.2f |\n", i, r_read[i], p_read[i], a[i], r_wbw[i], p_wbw[i], b[i], r_rpc[i], 2 * p_send[i], c[i]
          }
          r1 = median(a, nrounds); r2 = median(b, nrounds); r3 = median(c, nrounds)
        } else {
          r1 = pt["ib_read_lat", 4096] > 0 ? p50["read", 4096] / pt["ib_read_lat", 4096] : 0
          r2 = pbw[65536] > 0 ? bw["write_bw", 65536] / pbw[65536] : 0
          r3 = sl > 0 ? p50["rpc", rpc_size] / (2 * sl) : 0
        }
        printf "TARGET READ 4 KiB p50 / ib_read_lat = %.2f (<= 1.3): %s\n", r1, (r1 > 0 && r1 <= 1.3) ? "met" : "MISSED"
        printf "TARGET WRITE 64 KiB MB/s / ib_write_bw = %.2f (>= 0.8): %s\n", r2, (r2 >= 0.8) ? "met" : "MISSED"
        printf "TARGET request/response / (2 x ib_send_lat) = %.2f (<= 1.3): %s\n", r3, (r3 > 0 && r3 <= 1.3) ? "met" : "MISSED"
      }
    }'
}

if [[ $do_tcp == 1 ]]; then
  echo "== tcp backend vs plain TCP ping-pong, on this host ($(nproc) cores, $(uname -r))"
  "$bench" --transport=tcp --addr=127.0.0.1 --sizes="$csv_sizes" --lat_iters=2000 --baseline_tcp 2>/dev/null | tee "$out/tcp.raw"
  report tcp < "$out/tcp.raw" | tee "$out/tcp.md"
fi

if [[ $do_verbs == 1 ]]; then
  # One run: perftest, then our benchmark, on the same device.
  echo "== verbs backend vs perftest, same device, same run ($rounds rounds of the target pairs)"
  # shellcheck disable=SC2086  # $sizes: a list of words
  scripts/run-rxe.sh --timeout 1500 --file "$PWD/scripts/vm-perftest.sh" --file "$bench" \
    -- "$PWD/scripts/vm-bench-transport.sh" "$bench" "$PWD/scripts/vm-perftest.sh" "$rounds" $sizes | tee "$out/verbs.raw"
  report verbs < "$out/verbs.raw" | tee "$out/verbs.md"
fi
