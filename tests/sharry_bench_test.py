"""Unit tests of scripts/sharry_bench.py on canned input: parsing the binaries'
csv and JSON lines, the per-point aggregation, the median round, the tables
and the allocator report. Run: python3 tests/sharry_bench_test.py
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
