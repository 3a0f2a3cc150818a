"""Unit tests of scripts/sharry_bench.py on canned input: parsing the binaries'
csv and JSON lines, the per-point aggregation, the median round, the tables,
the redundancy and failure experiments (many memnodes' stats, medians and
ratios to none, timelines summed on a 100-ms grid, the dip, repair and
recovery times, the expectations under redundancy), the offload experiment
(medians, ratios to never, units offloaded, the checks against local memory,
the targets) and the allocator report. Run: python3 tests/sharry_bench_test.py
(ctest: sharry_bench_py.unit)."""

import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import sharry_bench as sb  # noqa: E402


def fig6_point(k, rnd, mode, tputs, used=(1048576, 3145728)):
    meta = ('{"transport":"tcp","fig":"fig6","k":%d,"total":4,"round":%d,"procs":2,"mode":"%s","sections":2,'
            '"local_pct":50,"ws_mib":16,"ops":1000}' % (k, rnd, mode))
    lines = ["@point " + meta]
    lines += ['@stats {"record":"memnode_stats","used_bytes":%d}' % u for u in used]
    for i, t in enumerate(tputs, 1):
        lines.append("@client %d " % i + json.dumps({
            "record": "sharry_client", "ops_per_s": t, "far_bytes_mine": 1048576, "hit_rate": 0.5 + 0.25 * (i - 1),
            "swap_ins": 10, "swap_outs": 20, "drops": 1, "alloc_rpcs": 3, "free_rpcs": 4, "secs": "2.%03d" % i}))
    return lines + ["@endpoint"]


class ParseTest(unittest.TestCase):
    def test_json_lines_keep_numbers_as_printed(self):
        r = sb.parse_records(['{"record":"bench","secs":2.000,"n":7,"x":null}\r\n', "", "   "])
        self.assertEqual(r, [{"record": "bench", "secs": "2.000", "n": "7", "x": None}])

    def test_csv_with_a_new_header_where_the_keys_change(self):
        lines = ["record,op,p50_us", "bench,read,1.5", "bench,write,2.5", "record,op,MBps", "bench,read_bw,99"]
        r = sb.parse_records(lines)
        self.assertEqual([x["op"] for x in r], ["read", "write", "read_bw"])
        self.assertEqual(r[2]["MBps"], "99")
        self.assertNotIn("p50_us", r[2])

    def test_sum_mean_largest(self):
        rs = [{"a": "1.5", "s": "2.000"}, {"a": "2", "s": "10.5"}, {"a": None, "s": "3"}]
        self.assertEqual(sb.total(rs, "a"), "4")  # 3.5 rounds to even, as awk's %.0f
        self.assertEqual(sb.mean(rs[:2], "a"), "1.7500")
        self.assertEqual(sb.largest(rs, "s"), "10.5")
        self.assertEqual(sb.mib(3 * 1048576 / 2), "1.5")


class MedianTest(unittest.TestCase):
    def test_odd_count_is_the_middle(self):
        rows = [["a", "30"], ["b", "10"], ["c", "20"]]
        self.assertEqual(sb.median_row(rows, 1), ["c", "20"])

    def test_even_count_is_the_lower_middle(self):
        rows = [["a", "40"], ["b", "10"], ["c", "30"], ["d", "20"]]
        self.assertEqual(sb.median_row(rows, 1), ["d", "20"])

    def test_numeric_not_lexical(self):
        rows = [["a", "9"], ["b", "100"], ["c", "20"]]
        self.assertEqual(sb.median_row(rows, 1), ["c", "20"])


class AggregateTest(unittest.TestCase):
    def run_lines(self, lines):
        d = tempfile.mkdtemp()
        echoed = []
        c = sb.aggregate_lines(lines, d, echo=echoed.append)
        return d, c, echoed

    def test_fig6_rows_are_sums_means_and_the_median_round(self):
        lines = ["fig6: a heading for people"]
        lines += fig6_point(1, 1, "unique", [100, 200])
        lines += fig6_point(2, 1, "multi", [400, 400])
        lines += fig6_point(3, 2, "unique", [50, 50])
        lines += fig6_point(4, 2, "multi", [1000, 1000])
        lines += fig6_point(5, 3, "unique", [500, 500])
        lines += ["@endfig fig6"]
        d, c, echoed = self.run_lines(lines)
        self.assertEqual(echoed[0], "fig6: a heading for people")
        self.assertEqual(len(echoed), 6)  # the heading and a progress line per point
        with open(os.path.join(d, "fig6.csv")) as f:
            text = f.read().splitlines()
        self.assertEqual(text[0], sb.FIG_COLUMNS["fig6"])
        # unique: rounds of 300, 100, 1000 ops/s -> the median round, 300;
        # multi: 800 and 2000 -> the lower, 800.
        self.assertEqual(text[1], "fig6,tcp,2,unique,2,50,16,1000,300,150,2.0,3.0,0.6250,20,40,2,6,8,2.002")
        self.assertEqual(text[2].split(",")[8:10], ["800", "400"])
        self.assertEqual(len(text), 3)

    def fig8_lines(self, remote_checksum):
        def point(k, storage, mode, sec, checksum):
            meta = ('{"transport":"tcp","fig":"fig8","k":%d,"total":2,"round":1,"procs":1,"storage":"%s",'
                    '"mode":"%s","sections":%d,"local_pct":50,"rows_per_proc":1000}' % (k, storage, mode, sec))
            res = {"record": "dataframe_bench", "rows_per_s": 5000, "frame_bytes": 57000, "checksum": checksum,
                   "far_bytes_mine": 0, "hit_rate": 1.0, "load_secs": "0.100", "query_secs": "1.000"}
            return ["@point " + meta, "@client 1 " + json.dumps(res), "@endpoint"]
        return point(1, "local", "-", 0, "00ab") + point(2, "remote", "unique", 1, remote_checksum) + ["@endfig fig8"]

    def test_fig8_local_row_and_checksums(self):
        d, _, _ = self.run_lines(self.fig8_lines("00ab"))
        with open(os.path.join(d, "fig8.csv")) as f:
            rows = f.read().splitlines()
        self.assertEqual(rows[1], "fig8,tcp,1,local,-,0,100,1000,0.1,5000,0,0,1,0,0,0,0,0,0.100,1.000,00ab")
        self.assertEqual(rows[2].split(",")[3:7], ["remote", "unique", "1", "50"])
        self.assertEqual(rows[2].split(",")[-1], "00ab")

    def test_fig8_results_that_differ_from_local_memory_fail(self):
        with self.assertRaises(sb.ExperimentError):
            self.run_lines(self.fig8_lines("ffff"))


class TablesTest(unittest.TestCase):
    def test_fig6_table(self):
        cols = lambda procs, mode, tput, far: ["fig6", "tcp", procs, mode, "2", "50", "16", "1", tput, "0", far]  # noqa
        rows = [cols("3", "unique", "90", "10.0"), cols("3", "multi", "100", "40.0"),
                cols("1", "unique", "45", "3"), cols("1", "multi", "50", "12")]
        md = sb.tables_md({"fig6": rows}, "tcp").splitlines()
        self.assertEqual(md[0], "### Fig. 6: sharing vs not sharing (tcp)")
        self.assertEqual(md[4], "| 50 % | 90 | 100 | 10.0 % | 10.0 | 40.0 | 75.0 % | 45 | 50 | 10.0 % |")

    def test_fig8_table_signs(self):
        rows = [["fig8", "tcp", "3", "local", "-", "0", "100", "1", "1", "1000", "0"],
                ["fig8", "tcp", "3", "remote", "unique", "1", "10", "1", "1", "100", "5"],
                ["fig8", "tcp", "3", "remote", "unique", "2", "10", "1", "1", "110", "5"],
                ["fig8", "tcp", "3", "remote", "multi", "2", "10", "1", "1", "100", "10"]]
        md = sb.tables_md({"fig8": rows}, "tcp").splitlines()
        self.assertEqual(md[4], "| 10 % | 100 | 110 | 100 | 1000 | +10.0 % | +10.0 % | 5.0 | 10.0 | 50.0 % |")


def stats_line(memnode, used):
    return '@stats {"record":"memnode_stats","memnode":"%s","used_bytes":%d}' % (memnode, used)


def red_point(k, rnd, mode, tputs, used_total, copy_each, cpu=True):
    """A redundancy point: 4 memnodes' stats (and a total) before and while
    the timed phase runs, then the clients' results."""
    meta = ('{"transport":"tcp","fig":"redundancy","k":%d,"total":8,"round":%d,"procs":%d,"memnodes":4,'
            '"redundancy":"%s","sections":1,"local_pct":50,"ws_mib":16}' % (k, rnd, len(tputs), mode))
    lines = ["@point " + meta, '@busy {"pct":%d,"waited_s":0}' % k]
    # Before the barrier opens: a larger total that must not count (loading).
    lines += [stats_line("127.0.0.1:%d" % (7000 + i), 10 * 1048576) for i in range(4)]
    lines += [stats_line("total", 10 * used_total)]
    lines += ["@phase running"]
    lines += [stats_line("127.0.0.1:%d" % (7000 + i), 99 * 1048576) for i in range(4)]  # per memnode: ignored
    lines += [stats_line("total", used_total), stats_line("total", used_total // 2)]
    if cpu:
        lines.append('@cpu {"busy_pct":99,"memnodes_pct":%d,"window_ms":4000}' % (10 * k))
    for i, t in enumerate(tputs, 1):
        lines.append("@rc %d 0" % i)
        lines.append("@client %d " % i + json.dumps({
            "record": "sharry_client", "ops_per_s": t, "far_copy_bytes": copy_each, "far_bytes_mine": copy_each,
            "hit_rate": 0.5, "stripes": 10 if mode.startswith("ec") else 0, "errors": 0}))
    return lines + ["@endpoint"]


def timeline_rows(ops, step=100, repair=None):
    """A client's timeline file: a row per step with these ops; `repair` maps
    a row index to (repaired_objects, repair_pending, dead_memnodes)."""
    rows = ["t_ms,ops,ops_per_s,errors,degraded_reads,repaired_objects,repair_pending,dead_memnodes"]
    dead = 0
    for j, o in enumerate(ops):
        rep, pend, dead = (repair or {}).get(j, (0, 0, dead))
        rows.append("%d,%d,%d,0,0,%d,%d,%d" % ((j + 1) * step, o, o * 1000 // step, rep, pend, dead))
    return rows


def fail_point(k, rnd, mode, clients, kill_ms=1500):
    """A failure point: `clients` maps a process number to (rc, timeline rows,
    result record or None, stderr lines)."""
    meta = ('{"transport":"tcp","fig":"failure","k":%d,"total":3,"round":%d,"procs":%d,"memnodes":4,'
            '"redundancy":"%s","sections":1,"local_pct":50,"ws_mib":8,"secs":3,"kill_s":1.5}' % (
                k, rnd, len(clients), mode))
    lines = ["@point " + meta, "@phase running",
             '@kill {"ms":%d,"after_s":"1.5","memnode":"127.0.0.1:7001"}' % kill_ms]
    for i, (rc, tl, res, err) in sorted(clients.items()):
        lines.append("@rc %d %d" % (i, rc))
        lines += ["@clienterr %d %s" % (i, e) for e in err]
        lines += ["@timeline %d %s" % (i, row) for row in tl]
        if res is not None:
            lines.append("@client %d %s" % (i, json.dumps(res)))
    return lines + ["@endpoint"]


class RedundancyTest(unittest.TestCase):
    def test_median_value(self):
        self.assertEqual(sb.median_value([3, 1, 2]), 2)
        self.assertEqual(sb.median_value([4, 1, 3, 2]), 2)  # the lower middle, as median_row
        self.assertEqual(sb.median_value([None, 5, None]), None)  # never reached counts as the largest
        self.assertEqual(sb.median_value([None, 5, 7]), 7)
        self.assertIsNone(sb.median_value([]))

    def test_collector_many_memnodes_and_the_running_peak(self):
        c = sb.Collector(tempfile.mkdtemp(), echo=lambda s: None)
        for line in red_point(1, 1, "none", [100, 200], 8 * 1048576, 1048576):
            c.feed(line)
        p = c.points["redundancy"][0]
        self.assertEqual(p.peak, 80 * 1048576)          # loading included
        self.assertEqual(p.peak_running, 8 * 1048576)   # the totals after "@phase running" only
        self.assertEqual(p.rcs, {1: 0, 2: 0})
        r = sb.redundancy_round(p)
        self.assertEqual((r["ops_per_s"], r["far_used"], r["far_copy"]), (300, 8 * 1048576, 2 * 1048576))

    def test_redundancy_csv_medians_and_ratios_to_none(self):
        lines = []
        k = 0
        # Three rounds, modes interleaved; none's median round: 300 ops/s, 8 MiB.
        for rnd, (none_t, rep_t, rep_used) in enumerate(((100, 50, 20), (300, 90, 16), (200, 120, 17)), 1):
            k += 1
            lines += red_point(k, rnd, "none", [none_t / 2, none_t / 2], 8 * 1048576, 2 * 1048576)
            k += 1
            lines += red_point(k, rnd, "replicate:2", [rep_t], rep_used * 1048576, 8 * 1048576)
        lines.append("@endfig redundancy")
        d = tempfile.mkdtemp()
        c = sb.aggregate_lines(lines, d, echo=lambda s: None)
        rows = sb.read_dicts(os.path.join(d, "redundancy.csv"))
        self.assertEqual([r["redundancy"] for r in rows], ["none", "replicate:2"])
        none, rep = rows
        self.assertEqual((none["ops_per_s"], none["ops_vs_none"], none["far_used_mib"]), ("200", "1.00", "8.0"))
        self.assertEqual(none["far_copy_mib"], "4.0")
        self.assertEqual(none["rounds"], "3")
        self.assertEqual(none["ops_per_s_rounds"], "100;300;200")
        # replicate:2: medians 90 ops/s and 17 MiB, each on its own (not one round's row).
        self.assertEqual((rep["ops_per_s"], rep["ops_vs_none"]), ("90", "0.45"))
        self.assertEqual((rep["far_used_mib"], rep["far_used_vs_none"]), ("17.0", "2.12"))
        self.assertEqual((rep["far_copy_mib"], rep["far_copy_vs_none"]), ("8.0", "2.00"))
        self.assertEqual(c.violations, [])
        self.assertEqual((none["busy_pct_max"], rep["busy_pct_max"]), ("5", "6"))  # the @busy before each point
        md = sb.tables_md(sb.read_figures(d)[0], "tcp").splitlines()
        self.assertEqual(md[0], "### Redundancy across memnodes: 2 processes on 4 memnodes (tcp)")
        self.assertEqual(md[5], "| replicate:2 | 90 | 0.45 | 17.0 | 2.12 | 8.0 | 2.00 | 50, 90, 120 | 99 % | 40 % |")
        self.assertEqual((rep["cpu_busy_pct"], rep["memnodes_cpu_pct"]), ("99", "40"))  # @cpu of points 2, 4, 6
        self.assertIn("at most 6 % busy", md[7])

    def test_ratio_without_none_is_unknown(self):
        d = tempfile.mkdtemp()
        sb.aggregate_lines(red_point(1, 1, "ec:2+1", [10], 1048576, 1048576, cpu=False) + ["@endfig redundancy"], d,
                           echo=lambda s: None)
        row = sb.read_dicts(os.path.join(d, "redundancy.csv"))[0]
        self.assertEqual((row["ops_vs_none"], row["memnodes_cpu_pct"]), ("?", "?"))


class TimelineTest(unittest.TestCase):
    def test_parse_timeline_skips_the_header(self):
        rows = sb.parse_timeline(timeline_rows([5, 7]))
        self.assertEqual([(r["t_ms"], r["ops"]) for r in rows], [(100, 5), (200, 7)])

    def test_resample_spreads_a_late_tick_over_its_buckets(self):
        rows = sb.parse_timeline(["t_ms,ops", "100,10", "250,30", "300,5"])
        self.assertEqual(sb.resample(rows), [10, 20, 15])
        self.assertEqual(sum(sb.resample(rows)), 45)  # nothing lost or made up

    def test_summed_series_ends_with_the_first_client_done_and_counts_failed_ones_as_0(self):
        tl = {1: sb.parse_timeline(["t_ms,ops", "100,1", "200,1", "300,1", "340,1"]),
              2: sb.parse_timeline(["t_ms,ops", "100,2", "200,2", "300,2", "400,2", "450,1"]),
              3: sb.parse_timeline(["t_ms,ops", "100,4", "150,2"])}  # exited 2 at 150 ms
        series = sb.summed_series(tl, {1: 0, 2: 0, 3: 2})
        # client 1's last full bucket is [200, 300): 3 buckets; client 3 adds 4, then 2, then 0.
        self.assertEqual(series, [70.0, 50.0, 30.0])

    def test_summed_series_when_all_failed(self):
        tl = {1: sb.parse_timeline(["t_ms,ops", "100,4", "150,2"]), 2: sb.parse_timeline(["t_ms,ops", "100,1"])}
        self.assertEqual(sb.summed_series(tl, {1: 2, 2: 2}), [50.0, 20.0])

    def test_recovery_dip_and_time(self):
        series = [100.0] * 15 + [0.0] * 3 + [100.0] * 12
        pre, dip, rec = sb.recovery(series, 1500)
        self.assertEqual((pre, dip), (100.0, 0.0))
        # windows of 10 buckets from 1500 ms: 70 % (3 zeros), 80 % (2 zeros) -> from 1600 ms on.
        self.assertEqual(rec, 100)
        self.assertEqual(sb.recovery(series, 1530)[2], 70)

    def test_recovery_never_and_at_once(self):
        self.assertIsNone(sb.recovery([100.0] * 15 + [50.0] * 15, 1500)[2])
        self.assertEqual(sb.recovery([100.0] * 30, 1500)[2], 0)
        # It must stay: a second dip late in the run moves the time past it.
        series = [100.0] * 15 + [0.0] * 3 + [100.0] * 10 + [0.0] * 5 + [100.0] * 12
        # zeros at buckets 28..32: the last window holding 3 of them starts at bucket 30.
        self.assertEqual(sb.recovery(series, 1500)[2], 3100 - 1500)
        # No window fits after the kill: unknown.
        self.assertIsNone(sb.recovery([100.0] * 20, 1500)[2])

    def test_post_mean_from_a_second_after_the_kill(self):
        series = [100.0] * 15 + [0.0] * 10 + [300.0] * 5
        self.assertEqual(sb.post_mean(series, 1500), 300.0)
        self.assertEqual(sb.post_mean(series, 1550), 300.0)  # from the bucket after 2550 ms: 2600
        self.assertEqual(sb.post_mean(series[:20], 1500), 0.0)

    def test_recovery_leaves_out_the_warmup(self):
        pre = sb.recovery([1000.0] * 5 + [100.0] * 10 + [100.0] * 15, 1500)[0]
        self.assertEqual(pre, 100.0)

    def test_repair_done_replicate(self):
        rows = sb.parse_timeline(timeline_rows([5] * 6, repair={2: (10, 50, 1), 3: (50, 0, 1), 4: (0, 0, 1)}))
        self.assertEqual(sb.repair_done_ms(rows, 250), 150)  # the 400-ms row, kill at 250

    def test_repair_done_ec_counts_from_the_level_before_the_kill(self):
        before = {0: (0, 20, 0), 1: (0, 35, 0)}
        rows = sb.parse_timeline(timeline_rows([5] * 6, repair={
            **before, 2: (100, 500, 1), 3: (20, 30, 1), 4: (0, 40, 1), 5: (0, 12, 1)}))
        self.assertEqual(sb.repair_done_ms(rows, 250), 150)  # 30 <= 35, the level before the kill
        rows = sb.parse_timeline(timeline_rows([5] * 6, repair={
            **before, 2: (100, 500, 1), 3: (20, 60, 1), 4: (0, 40, 1), 5: (0, 12, 1)}))
        self.assertEqual(sb.repair_done_ms(rows, 250), 350)  # 60 and 40 are above 35: the 600-ms row

    def test_repair_never_done_or_death_never_seen(self):
        rows = sb.parse_timeline(timeline_rows([5] * 4, repair={2: (1, 500, 1), 3: (1, 400, 1)}))
        self.assertIsNone(sb.repair_done_ms(rows, 150))
        self.assertIsNone(sb.repair_done_ms(sb.parse_timeline(timeline_rows([5] * 4)), 150))

    def test_key_values(self):
        kv = sb.key_values(["sharry_client: far memory: Unavailable: x", "sharry_client: lost_objects=7 errors=0"])
        self.assertEqual((kv["lost_objects"], kv["errors"]), ("7", "0"))


class FailureTest(unittest.TestCase):
    def lines(self, rep_lost=0):
        ops = [10] * 15 + [0, 0, 0] + [10] * 12  # 30 rows of 100 ms per client, kill at 1500
        rep = {j: (0, 0, 0) for j in range(15)}
        rep.update({15: (40, 300, 1), 16: (60, 0, 1)})
        tail = ["3040,4,100,0,0,0,0,1"]  # the last, partial interval
        def res(lost):
            return {"record": "sharry_client", "lost_objects": lost, "errors": 0, "repaired_objects": 100,
                    "degraded_reads": 3, "dead_memnodes": 1}
        lines = ["failure: a heading"]
        lines += fail_point(1, 1, "replicate:2", {1: (0, timeline_rows(ops, repair=rep) + tail, res(rep_lost), []),
                                                  2: (0, timeline_rows(ops, repair=rep) + tail, res(0), [])})
        err = ["sharry_client: far memory: Unavailable: swap-in: memnode 127.0.0.1:7001 unreachable",
               "sharry_client: peak_local_bytes=1 lost_objects=7 dead_memnodes=1 degraded_reads=0 repaired_objects=0"]
        lines += fail_point(2, 1, "none", {1: (2, timeline_rows([10] * 15 + [4]), None, err),
                                           2: (2, timeline_rows([10] * 15), None, err)})
        return lines + ["@endfig failure"]

    def test_failure_csv_timeline_and_table(self):
        d = tempfile.mkdtemp()
        echoed = []
        c = sb.aggregate_lines(self.lines(), d, echo=echoed.append)
        self.assertEqual(c.violations, [])
        rows = sb.read_dicts(os.path.join(d, "failure.csv"))
        rep, none = rows
        self.assertEqual((rep["redundancy"], rep["exit_statuses"], rep["lost_objects"], rep["errors"]),
                         ("replicate:2", "0", "0", "0"))
        self.assertEqual((rep["kill_ms"], rep["pre_ops_per_s"], rep["dip_pct"]), ("1500", "200", "0.0"))
        self.assertEqual(rep["detect_ms"], "100")  # the 1600-ms row shows the death
        self.assertEqual(rep["repair_ms"], "200")  # the 1700-ms row: nothing pending, no repair after
        self.assertEqual(rep["recovery_ms"], "100")  # 1-s windows from 1500: 70 %, then 80 % from 1600
        self.assertEqual((rep["repaired_objects"], rep["degraded_reads"]), ("200", "6"))
        self.assertEqual((none["exit_statuses"], none["lost_objects"], none["repair_ms"], none["recovery_ms"]),
                         ("2", "14", "-", "-"))
        self.assertEqual(none["lost_objects_rounds"], "14")
        self.assertEqual(none["detect_ms"], "100")  # none's clients: their last rows, 1600 and 1500 ms
        self.assertEqual((none["pre_ops_per_s"], none["post_ops_per_s"]), ("200", "0"))  # its clients exited
        with open(os.path.join(d, "failure-timeline.csv")) as f:
            tl = f.read().splitlines()
        self.assertEqual(tl[0], "t_ms,replicate:2,none")
        # rep: 2 clients x 10 ops per 100 ms = 200 ops/s; none: its clients' last rows, then "?".
        self.assertEqual(tl[15], "1500,200,200")
        self.assertEqual(tl[16], "1600,0,40")
        self.assertEqual(tl[17], "1700,0,?")
        self.assertEqual(tl[-1], "3000,200,?")  # rep's series stops before the clients' last (partial) bucket
        md = sb.tables_md(sb.read_figures(d)[0], "tcp").splitlines()
        self.assertEqual(md[0], "### Failure: one of 4 memnodes SIGKILLed under 2 processes (tcp)")
        self.assertEqual(md[4], "| replicate:2 | 0 | 0 | 0 | 200 | 200 | 0.0 % | 100 ms | 200 ms | 100 ms | 200 | 6 "
                                "| 200 | 100 |")
        self.assertTrue(any(s.startswith("[failure  2/3] none") and "exits 2/2" in s for s in echoed))

    def test_a_lost_object_under_redundancy_is_a_violation(self):
        c = sb.aggregate_lines(self.lines(rep_lost=1), tempfile.mkdtemp(), echo=lambda s: None)
        self.assertEqual(c.violations, ["failure: replicate:2 round 1: lost_objects=1, want 0"])


def offload_point(k, rnd, storage, mode, pct, off, clients):
    """An offload point: `clients` is a list of (rows_per_s, bytes_per_query,
    (local, pulled, offloaded units), memnode_cpu_ns_per_row, checksum), one
    per process."""
    meta = ('{"transport":"tcp","fig":"offload","k":%d,"total":14,"round":%d,"procs":%d,"storage":"%s",'
            '"queries":"aggregate","mode":"%s","offload":"%s","sections":%d,"local_pct":%d,"rows_per_proc":1000}' % (
                k, rnd, len(clients), storage, mode, off, 0 if storage == "local" else 1, pct))
    lines = ["@point " + meta]
    if storage == "remote":
        lines += ["@phase running", '@cpu {"busy_pct":90,"memnodes_pct":%d,"window_ms":2000}' % (5 * k)]
    for i, (tput, moved, units, cpu, checksum) in enumerate(clients, 1):
        lines.append("@rc %d 0" % i)
        lines.append("@client %d " % i + json.dumps({
            "record": "dataframe_bench", "storage": storage, "queries": "aggregate", "offload": off,
            "rows_per_s": tput, "bytes_moved": moved * 10, "bytes_per_query": moved, "local_units": units[0],
            "pulled_units": units[1], "offloaded_units": units[2], "offload_jobs": 1 if units[2] else 0,
            "offload_refused": 0, "memnode_cpu_ns_per_row": cpu, "frame_bytes": 1048576, "checksum": checksum,
            "swap_ins": units[1], "swap_outs": 0, "far_bytes_mine": 1048576 if off == "always" else 0,
            "query_secs": "2.000"}))
    return lines + ["@endpoint"]


class OffloadTest(unittest.TestCase):
    """A canned offload run: plain local memory, then Unique-Copy at 10 %
    local (3 rounds, the settings rotated) and both modes at 100 %."""

    def lines(self, never_offloads=False, bad_checksum=False):
        ck = ["00aa", "00bb"]  # the two processes' results on plain local memory
        lines = ["offload: a heading"]
        lines += offload_point(1, 1, "local", "-", 100, "-", [(900, 0, (5, 0, 0), 0.0, ck[0]),
                                                               (1000, 0, (5, 0, 0), 0.0, ck[1])])
        k = 1
        # unique, 10 %: never's rounds 100, 300, 200 rows/s (summed), bytes 900 KiB per query;
        # always 4x the rows/s and 2 % of the bytes; auto 2x, 50 %.
        for rnd, (n_t, a_t, al_t) in enumerate(((100, 200, 400), (300, 600, 1200), (200, 400, 800)), 1):
            order = sb.OFFLOAD_SETTINGS[rnd - 1:] + sb.OFFLOAD_SETTINGS[:rnd - 1]
            for off in order:
                k += 1
                if off == "never":
                    off_units = (1, 9, 1 if never_offloads else 0)
                    cl = [(n_t / 2, 921600, off_units, 0.0, ck[0]), (n_t / 2, 921600, off_units, 0.0, ck[1])]
                elif off == "auto":
                    cl = [(a_t / 2, 460800, (1, 4, 5), 30.0, ck[0]), (a_t / 2, 460800, (1, 4, 5), 50.0, ck[1])]
                else:
                    cl = [(al_t / 2, 18432, (1, 0, 9), 20.0, ck[0]),
                          (al_t / 2, 18432 + (1 if rnd == 3 else 0), (1, 0, 9), 20.0,
                           "ffff" if bad_checksum else ck[1])]
                lines += offload_point(k, rnd, "remote", "unique", 10, off, cl)
        # 100 %: nothing moves; auto at 0.95x never under unique, 0.85x under multi.
        for mode, auto_t in (("unique", 950), ("multi", 850)):
            for off, t in (("never", 1000), ("auto", auto_t)):
                k += 1
                lines += offload_point(k, 1, "remote", mode, 100, off, [(t / 2, 0, (10, 0, 0), 0.0, ck[0]),
                                                                       (t / 2, 0, (10, 0, 0), 0.0, ck[1])])
        return lines + ["@endfig offload"]

    def run_lines(self, lines):
        d = tempfile.mkdtemp()
        echoed = []
        c = sb.aggregate_lines(lines, d, echo=echoed.append)
        return d, c, echoed

    def test_offload_csv_medians_ratios_and_shares(self):
        d, c, echoed = self.run_lines(self.lines())
        self.assertEqual(c.violations, [])
        with open(os.path.join(d, "offload.csv")) as f:
            self.assertEqual(f.readline().rstrip("\n"), sb.OFFLOAD_COLUMNS)
        rows = sb.read_dicts(os.path.join(d, "offload.csv"))
        # Plain local memory first, then by local %, mode and setting (not the rotated order measured).
        self.assertEqual([(r["storage"], r["mode"], r["local_pct"], r["offload"]) for r in rows], [
            ("local", "-", "100", "local"), ("remote", "unique", "10", "never"), ("remote", "unique", "10", "auto"),
            ("remote", "unique", "10", "always"), ("remote", "unique", "100", "never"),
            ("remote", "unique", "100", "auto"), ("remote", "multi", "100", "never"),
            ("remote", "multi", "100", "auto")])
        loc, never, auto, always = rows[:4]
        self.assertEqual((loc["rows_per_s"], loc["rows_per_s_vs_never"], loc["checksum"]), ("1900", "-", "00aa"))
        self.assertEqual((never["rounds"], never["rows_per_s"], never["rows_per_s_vs_never"]), ("3", "200", "1.00"))
        self.assertEqual(never["rows_per_s_rounds"], "100;300;200")
        self.assertEqual((never["bytes_per_query"], never["moved_pct_of_frame"]), ("921600", "87.89"))
        self.assertEqual((never["offloaded_pct"], never["memnode_cpu_ns_per_row"]), ("0.0", "-"))
        self.assertEqual((auto["rows_per_s"], auto["rows_per_s_vs_never"], auto["bytes_vs_never"]),
                         ("400", "2.00", "0.50"))
        self.assertEqual((auto["offloaded_pct"], auto["memnode_cpu_ns_per_row"]), ("50.0", "40.00"))
        # always: bytes per query is the mean over the processes (18432.5 in round 3), median over rounds.
        self.assertEqual((always["rows_per_s"], always["rows_per_s_vs_never"]), ("800", "4.00"))
        self.assertEqual((always["bytes_per_query"], always["bytes_vs_never"]), ("18432", "0.02"))
        self.assertEqual(always["bytes_per_query_rounds"], "18432;18432;18432")  # "%.0f" of 18432.5: even
        self.assertEqual((always["offloaded_pct"], always["offload_jobs"]), ("90.0", "2"))
        self.assertEqual(always["memnodes_cpu_pct"], "30")  # @cpu of points 4, 6, 8 (rotated): the median
        self.assertEqual(rows[4]["bytes_vs_never"], "?")  # 100 %: nothing moved under never
        self.assertEqual(rows[7]["rows_per_s_vs_never"], "0.85")
        # The progress lines and the targets, printed at the end of the figure.
        self.assertTrue(any(s.startswith("[offload  1/14] plain local memory (aggregate):       1900 rows/s")
                            for s in echoed))
        self.assertIn("[offload  4/14] unique local  10 % always round 1:        400 rows/s, 18.0 KiB per query "
                      "(1.76 % of the frame), 90 % of units offloaded, memnode 20.0 ns/row, results = local",
                      [s.rsplit("  [", 1)[0] for s in echoed])
        targets = [s for s in echoed if s.startswith("offload target")]
        self.assertEqual(targets, [
            "offload target: 10 % local, Unique-Copy, always vs never: rows/s 4.00x (>= 3x: met), bytes per query "
            "2.0 % of never's (<= 10 %: met)",
            "offload target: 10 % local, Unique-Copy, auto vs never: rows/s 2.00x (>= 3x: MISSED), bytes per query "
            "50.0 % of never's (<= 10 %: MISSED)",
            "offload target: 10 % local, Unique-Copy (always or auto): met",
            "offload target: 100 % local, unique: auto at 0.95x never's rows/s (>= 0.90: met)",
            "offload target: 100 % local, multi: auto at 0.85x never's rows/s (>= 0.90: MISSED)"])

    def test_offload_table_and_plots(self):
        d, _, _ = self.run_lines(self.lines())
        figs, where = sb.read_figures(d)
        self.assertEqual(where, "tcp")
        md = sb.tables_md(figs, where).splitlines()
        self.assertEqual(md[0], "### Fig. 8 with offloaded aggregates: 2 processes, one memnode (1 section, 1 offload "
                                "thread) (tcp)")
        self.assertEqual(md[4], "| plain local memory | - | - | 1900 | - | 0 | - | 0 % | - | - | 0.0 | 1900 |")
        self.assertEqual(md[7], "| 10 % | unique | always | 800 | 4.00 | 18.0 KiB | 0.02 | 1.76 % | 90.0 % | 20.00 "
                                "| 2.0 | 400, 1200, 800 |")  # far: 2 processes x 1 MiB
        self.assertIn("- offload target: 10 % local, Unique-Copy (always or auto): met", md)
        with tempfile.TemporaryDirectory() as tmp:
            script = "".join(sb.gnuplot_scripts(d, figs, where, tmp))
            self.assertIn(d + "/offload-throughput.png", script)
            self.assertIn(d + "/offload-bytes.png", script)
            self.assertIn("1900 w l lw 2 dt 3", script)  # plain local memory
            with open(os.path.join(tmp, "off-bytes_per_query-unique-never")) as f:
                self.assertEqual(f.read(), "10 921600\n")  # 100 %: 0 bytes, left out of the log plot
            with open(os.path.join(tmp, "off-rows_per_s-unique-never")) as f:
                self.assertEqual(f.read(), "10 200\n100 1000\n")

    def test_results_that_differ_from_local_memory_fail(self):
        with self.assertRaises(sb.ExperimentError):
            self.run_lines(self.lines(bad_checksum=True))

    def test_never_that_offloads_is_a_violation(self):
        _, c, _ = self.run_lines(self.lines(never_offloads=True))
        self.assertEqual(len(c.violations), 3)
        self.assertEqual(c.violations[0], "offload: unique 10 % local round 1: --offload=never offloaded 2 units in "
                                          "2 jobs, want 0")


class AllocReportTest(unittest.TestCase):
    def test_targets(self):
        lines = ['{"record":"machine","cores":2}']
        for mode, rate in (("sharry-1", 3.0), ("sharry-K", 5.0), ("mutex", 2.0), ("glibc", 9.0)):
            lines.append(json.dumps({"record": "row", "workload": "4k", "mode": mode, "batch": 16, "threads": 8,
                                     "mobjs": rate, "p99_us": 1.25}))
        for live, clean in ((1000, 10.0), (10000000, 11.0)):
            lines.append(json.dumps({"record": "scale", "mode": "sharry-1p", "live": live, "batch": 16,
                                     "pair_ns": clean, "clean_pair_ns": clean, "cut_pct": 0.5,
                                     "faults_per_kop": 0.0}))
        report = sb.alloc_report(sb.parse_records(lines), "8").splitlines()
        self.assertIn("| 4 KiB | 16 | 8 | 3.00 / 1.2 | n/a | 5.00 / 1.2 | 2.00 / 1.2 | 9.00 / 1.2 | n/a | n/a | n/a |",
                      report)
        self.assertIn("| 4 KiB | 16 | 8 | sharry-K | 5.00 | 2.00 | 2.50 | met |", report)
        self.assertIn("Target 1: 1 of 1 rows met, ratio 2.50 .. 2.50: met", report)
        self.assertEqual(report[-1],
                         "Target 2: sharry-1p at 10000000 live / at 1000 live = 1.10 clean (1.10 all calls) (<= 1.2): met")


if __name__ == "__main__":
    unittest.main()
