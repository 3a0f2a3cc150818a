#!/usr/bin/env python3
"""sharry_bench.py: the experiment and benchmark drivers that read results.

The binaries print their results as csv or JSON lines (--format,
tools/cli/output.h); this program runs them, aggregates what they print
(sums, means, medians over rounds), writes the CSVs, the markdown tables and
the reports, and draws the plots with gnuplot. Python 3, standard library only.

  scripts/sharry_bench.py experiments [...]   the paper's Figs. 6, 7, 8, and redundancy/failure
                                              across memnodes (scripts/experiments.sh)
  scripts/sharry_bench.py plot DIR            tables.md + PNGs of DIR's CSVs (scripts/plot-experiments.sh)
  scripts/sharry_bench.py aggregate RAW DIR   the CSVs again from a raw log of the experiments
  scripts/sharry_bench.py alloc [...]         the allocator matrix and its targets (scripts/bench-alloc.sh)

`scripts/sharry_bench.py COMMAND --help` describes each.
"""

import csv
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------- reading results

def parse_records(lines):
    """The results in `lines`, as dicts of strings: JSON Lines (one object a
    line) or csv (a header line, then rows; a new header where the keys
    change). Numbers stay the text the binary printed ("2.000" stays
    "2.000"); a JSON null becomes None. Blank lines are skipped."""
    records = []
    header = None
    for line in lines:
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            records.append(json.loads(line, parse_float=str, parse_int=str))
            continue
        row = next(csv.reader([line]))
        if row and row[0] == "record":
            header = row
        elif header is not None:
            records.append(dict(zip(header, row)))
    return records


def num(x):
    """A result's value as a float (None and "" are 0, as awk reads them)."""
    return float(x) if x not in (None, "") else 0.0


def total(records, key):
    """The sum of `key` over `records`, printed as awk's "%.0f"."""
    return "%.0f" % sum(num(r.get(key)) for r in records)


def mean(records, key, fmt="%.4f"):
    return fmt % (sum(num(r.get(key)) for r in records) / len(records))


def largest(records, key):
    """The largest value of `key`, as printed."""
    return max((r.get(key) for r in records), key=num)


def median_row(rows, col):
    """Of CSV rows (lists) of one configuration, one per round, the one whose
    column `col` (0-based) is the median (the lower middle for an even count)."""
    ordered = sorted(rows, key=lambda r: num(r[col]))
    return ordered[(len(ordered) + 1) // 2 - 1]


def mib(nbytes):
    return "%.1f" % (num(nbytes) / 1048576)


# ---------------------------------------------------------------- experiments: aggregation

FIG_COLUMNS = {
    "fig6": "experiment,transport,procs,mode,sections,local_pct,ws_mib,ops_per_proc,ops_per_s,ops_per_s_per_proc,"
            "far_mib_end,far_mib_peak,hit_rate,swap_ins,swap_outs,drops,alloc_rpcs,free_rpcs,secs",
    "fig7": "experiment,transport,procs,mode,sections,objects,object_bytes,ws_mib,local_mib_per_proc,ops_per_s,"
            "far_mib_end,far_mib_peak,hit_rate,alloc_rpcs,free_rpcs,fill_secs,secs",
    "fig8": "experiment,transport,procs,storage,mode,sections,local_pct,rows_per_proc,frame_mib_per_proc,rows_per_s,"
            "far_mib_end,far_mib_peak,hit_rate,swap_ins,swap_outs,drops,alloc_rpcs,free_rpcs,load_secs,query_secs,"
            "checksum",
}
# The column whose median round is kept, per figure (fig7 runs once).
MEDIAN_COLUMN = {"fig6": 8, "fig7": 9, "fig8": 9}


class Point:
    """One measured point: its @point metadata, the memnode's peak far memory
    (with many memnodes: their total), the clients' results, and what the
    redundancy experiments add: exit statuses, stderr summaries, timelines,
    the kill."""

    def __init__(self, meta):
        self.meta = meta
        self.peak = 0.0
        self.peak_running = 0.0  # the peak while the timed phase ran (after "@phase running")
        self.running = False
        self.clients = {}    # process number -> result record
        self.rcs = {}        # process number -> exit status
        self.errs = {}       # process number -> its stderr's "sharry_client:" lines
        self.timelines = {}  # process number -> its timeline's lines (CSV, with the header)
        self.kill = None     # the @kill record
        self.busy = None     # the @busy record: how busy the machine was before the point
        self.cpu = None      # the @cpu record: CPU shares while all clients and memnodes ran

    def results(self):
        return [self.clients[i] for i in sorted(self.clients)]


def point_row(p, local_checksum):
    """The CSV row (a list of strings) of point `p`, as the old shell script printed it."""
    m, c = p.meta, p.results()
    fig = m["fig"]
    far, peak = mib(total(c, "far_bytes_mine")), mib(p.peak)
    if fig == "fig6":
        tput = total(c, "ops_per_s")
        return ["fig6", m["transport"], m["procs"], m["mode"], m["sections"], m["local_pct"], m["ws_mib"], m["ops"],
                tput, str(int(tput) // int(m["procs"])), far, peak, mean(c, "hit_rate"),
                total(c, "swap_ins"), total(c, "swap_outs"), total(c, "drops"), total(c, "alloc_rpcs"),
                total(c, "free_rpcs"), largest(c, "secs")]
    if fig == "fig7":
        return ["fig7", m["transport"], m["procs"], m["mode"], m["sections"], m["objects"], m["object_bytes"],
                mib(num(m["objects"]) * num(m["object_bytes"])), m["local_mib_per_proc"], total(c, "ops_per_s"),
                far, peak, mean(c, "hit_rate"), total(c, "alloc_rpcs"), total(c, "free_rpcs"),
                largest(c, "fill_secs"), largest(c, "secs")]
    frame = mib(c[0]["frame_bytes"])
    if m["storage"] == "local":
        return ["fig8", m["transport"], m["procs"], "local", "-", "0", "100", m["rows_per_proc"], frame,
                total(c, "rows_per_s"), "0", "0", "1", "0", "0", "0", "0", "0", largest(c, "load_secs"),
                largest(c, "query_secs"), local_checksum]
    return ["fig8", m["transport"], m["procs"], "remote", m["mode"], m["sections"], m["local_pct"], m["rows_per_proc"],
            frame, total(c, "rows_per_s"), far, peak, mean(c, "hit_rate"), total(c, "swap_ins"),
            total(c, "swap_outs"), total(c, "drops"), total(c, "alloc_rpcs"), total(c, "free_rpcs"),
            largest(c, "load_secs"), largest(c, "query_secs"), local_checksum]


def config_key(meta):
    """What identifies a configuration across rounds."""
    return tuple((k, v) for k, v in meta.items() if k not in ("k", "total", "round"))


def figure_csv(fig, points):
    """The CSV text of one figure from its points: one row per configuration,
    its median round, in the order the configurations were first measured."""
    groups = {}
    local_checksums = {}
    for p in points:
        if p.meta.get("storage") == "local":
            local_checksums = {i: r["checksum"] for i, r in p.clients.items()}
    for p in points:
        groups.setdefault(config_key(p.meta), []).append(point_row(p, local_checksums.get(1, "")))
    out = [FIG_COLUMNS[fig]]
    for rows in groups.values():
        out.append(",".join(median_row(rows, MEDIAN_COLUMN[fig])))
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- redundancy and failure (issue #12)

REDUNDANCY_COLUMNS = ("experiment,transport,procs,memnodes,redundancy,local_pct,ws_mib,rounds,ops_per_s,ops_vs_none,"
                      "far_used_mib,far_used_vs_none,far_copy_mib,far_copy_vs_none,far_mine_mib,hit_rate,stripes,"
                      "errors,ops_per_s_rounds,far_used_mib_rounds,busy_pct_max,cpu_busy_pct,memnodes_cpu_pct")
FAILURE_COLUMNS = ("experiment,transport,procs,memnodes,redundancy,local_pct,ws_mib,rounds,kill_ms,exit_statuses,"
                   "lost_objects,errors,pre_ops_per_s,post_ops_per_s,dip_pct,detect_ms,repair_ms,recovery_ms,"
                   "repaired_objects,"
                   "degraded_reads,plotted_round,repair_ms_rounds,recovery_ms_rounds,lost_objects_rounds,busy_pct_max,"
                   "cpu_busy_pct,memnodes_cpu_pct")
STEP_MS = 100          # the clients' --timeline_ms: one bucket of the summed timeline
WARMUP_MS = 500        # the first part of the timed phase, left out of the pre-failure average
WINDOW_MS = 1000       # the moving average that must stay within 20 % after the failure
RECOVERED_FRAC = 0.8


def median_value(xs):
    """The median of numbers (the lower middle for an even count), None for
    no numbers; None values count as larger than any number (never reached)."""
    if not xs:
        return None
    ordered = sorted(xs, key=lambda x: (x is None, x if x is not None else 0))
    return ordered[(len(ordered) + 1) // 2 - 1]


def ratio(a, b):
    """a / b as "%.2f", "?" where b is 0 or missing."""
    return "%.2f" % (a / b) if b else "?"


def busy_max(points):
    """The highest @busy percentage before these points, "?" if not measured."""
    b = [num(p.busy["pct"]) for p in points if p.busy]
    return "%.0f" % max(b) if b else "?"


def cpu_share(points, key):
    """The median over points of an @cpu share (percent of all CPUs), "?" if not measured."""
    v = median_value([num(p.cpu[key]) for p in points if p.cpu])
    return "?" if v is None else "%.0f" % v


def by_mode(points):
    """Points grouped by their redundancy mode, in the order first measured."""
    groups = {}
    for p in points:
        groups.setdefault(p.meta["redundancy"], []).append(p)
    return groups


def redundancy_round(p):
    """One round of one mode: the clients' summed throughput and far copies,
    and the memnodes' far memory (the total of memnode_stats, the highest
    while the timed phase ran)."""
    c = p.results()
    return {"ops_per_s": sum(num(r.get("ops_per_s")) for r in c),
            "far_used": p.peak_running if p.running else p.peak,
            "far_copy": sum(num(r.get("far_copy_bytes")) for r in c),
            "far_mine": sum(num(r.get("far_bytes_mine")) for r in c),
            "hit_rate": sum(num(r.get("hit_rate")) for r in c) / len(c) if c else 0.0,
            "stripes": sum(num(r.get("stripes")) for r in c),
            "errors": sum(num(r.get("errors")) for r in c)}


def redundancy_csv(points):
    """redundancy.csv: one row per mode, the median over rounds of each
    number (each taken on its own), and its ratio to none's median."""
    groups = by_mode(points)
    med = {}
    for mode, ps in groups.items():
        rounds = [redundancy_round(p) for p in ps]
        med[mode] = {k: median_value([r[k] for r in rounds]) for k in rounds[0]}
        med[mode]["rounds"] = rounds
    base = med.get("none", {})
    out = [REDUNDANCY_COLUMNS]
    for mode, ps in groups.items():
        m, meta = med[mode], ps[0].meta
        out.append(",".join(str(x) for x in [
            "redundancy", meta["transport"], meta["procs"], meta["memnodes"], mode, meta["local_pct"],
            meta["ws_mib"], len(ps), "%.0f" % m["ops_per_s"], ratio(m["ops_per_s"], base.get("ops_per_s")),
            mib(m["far_used"]), ratio(m["far_used"], base.get("far_used")), mib(m["far_copy"]),
            ratio(m["far_copy"], base.get("far_copy")), mib(m["far_mine"]), "%.4f" % m["hit_rate"],
            "%.0f" % m["stripes"], "%.0f" % max(r["errors"] for r in m["rounds"]),
            ";".join("%.0f" % r["ops_per_s"] for r in m["rounds"]),
            ";".join(mib(r["far_used"]) for r in m["rounds"]), busy_max(ps), cpu_share(ps, "busy_pct"),
            cpu_share(ps, "memnodes_pct")]))
    return "\n".join(out) + "\n"


def parse_timeline(lines):
    """A client's --timeline_file rows (CSV, a header line first) as dicts of floats."""
    rows, header = [], None
    for line in lines:
        line = line.strip()
        if not line:
            continue
        cells = line.split(",")
        if cells[0] == "t_ms":
            header = cells
        elif header is not None:
            rows.append(dict(zip(header, (float(x) for x in cells))))
    return rows


def resample(rows, step=STEP_MS):
    """A client's timeline on a grid: the ops of bucket j, [j*step, (j+1)*step)
    ms of the timed phase. A row covers (previous t_ms, t_ms] (a late tick
    makes it longer than a step); its ops are spread over the buckets it
    overlaps in proportion. The last bucket may be partial."""
    if not rows:
        return []
    n = -(-int(rows[-1]["t_ms"]) // step)
    out = [0.0] * n
    prev = 0.0
    for r in rows:
        t, ops = r["t_ms"], r["ops"]
        if t > prev:
            j = int(prev // step)
            while j * step < t and j < n:
                lo, hi = max(prev, j * step), min(t, (j + 1) * step)
                if hi > lo:
                    out[j] += ops * (hi - lo) / (t - prev)
                j += 1
        prev = t
    return out


def summed_series(timelines, rcs, step=STEP_MS):
    """The clients' throughput per bucket (ops/s), summed. It ends with the
    first client that finished normally (exit 0: its last bucket is partial,
    so the series stops before it); a client that failed (exit != 0)
    counts 0 after its last row. If all failed, it ends with the last row."""
    per = {i: resample(rows, step) for i, rows in timelines.items()}
    ends = [int(timelines[i][-1]["t_ms"]) // step for i in per if rcs.get(i, 0) == 0 and timelines[i]]
    n = min(ends) if ends else max((len(b) for b in per.values()), default=0)
    return [sum(b[j] if j < len(b) else 0.0 for b in per.values()) * 1000.0 / step for j in range(n)]


def recovery(series, kill_ms, step=STEP_MS, warmup_ms=WARMUP_MS, window_ms=WINDOW_MS, frac=RECOVERED_FRAC):
    """(pre, dip, recovered_ms) of a summed series: the mean throughput of the
    buckets between warmup_ms and the kill; the lowest bucket from the kill
    on; and how long after the kill a moving average over window_ms,
    starting at a bucket boundary, reaches frac x pre and stays there to the
    end of the series (0: it never fell below; None: never)."""
    pre_b = [v for j, v in enumerate(series) if j * step >= warmup_ms and (j + 1) * step <= kill_ms]
    pre = sum(pre_b) / len(pre_b) if pre_b else 0.0
    first = int(kill_ms // step)
    after = series[first:]
    dip = min(after) if after else None
    w = max(1, window_ms // step)
    starts = range(first, len(series) - w + 1)
    good = [sum(series[s:s + w]) / w >= frac * pre for s in starts]
    if not good or not good[-1] or pre <= 0:
        return pre, dip, None
    k = len(good)
    while k > 0 and good[k - 1]:
        k -= 1
    return pre, dip, max(0.0, starts[k] * step - kill_ms)


def post_mean(series, kill_ms, step=STEP_MS, skip_ms=WINDOW_MS):
    """The mean throughput from skip_ms after the kill to the end of the
    series (0 if nothing is left: the clients exited)."""
    after = series[-(-int(kill_ms + skip_ms) // step):]
    return sum(after) / len(after) if after else 0.0


def repair_done_ms(rows, kill_ms):
    """How long after the kill a client's repair was done: the first row from
    the kill on whose repair_pending is back at its level before the kill
    (the highest then: under ec it counts stripes waiting to shed holes,
    which is never 0 for long) and after which no object is repaired. None:
    not done by the end, or the death never seen."""
    before = [r["repair_pending"] for r in rows if r["t_ms"] <= kill_ms]
    base = max(before) if before else 0.0
    later = [i for i, r in enumerate(rows) if r["t_ms"] > kill_ms]
    if not later or not any(r["dead_memnodes"] >= 1 for r in rows):
        return None
    last_repair = max((i for i in later if rows[i]["repaired_objects"] > 0), default=later[0])
    for i in later:
        if i >= last_repair and rows[i]["repair_pending"] <= base:
            return rows[i]["t_ms"] - kill_ms
    return None


def key_values(lines):
    """key=value pairs of text lines (the stderr summary of a failed client)."""
    out = {}
    for line in lines:
        for m in re.finditer(r"(\w+)=(\S+)", line):
            out[m.group(1)] = m.group(2)
    return out


def failure_round(p, step=STEP_MS):
    """One failure run: the summed series and its numbers."""
    kill_ms = num(p.kill["ms"]) if p.kill else 0.0
    tls = {i: parse_timeline(rows) for i, rows in p.timelines.items()}
    series = summed_series(tls, p.rcs, step)
    pre, dip, rec = recovery(series, kill_ms, step)
    lost = errors = repaired = degraded = 0.0
    for i in sorted(set(p.rcs) | set(p.clients)):
        r = p.clients.get(i) or key_values(p.errs.get(i, []))
        lost += num(r.get("lost_objects"))
        errors += num(r.get("errors"))
        repaired += num(r.get("repaired_objects"))
        degraded += num(r.get("degraded_reads"))
    repairs = [repair_done_ms(rows, kill_ms) for i, rows in tls.items() if p.rcs.get(i, 0) == 0]
    # When each client saw the death: its first row counting a dead memnode,
    # or, for one that failed (none), its last row (the access that failed).
    detects = [next((r["t_ms"] - kill_ms for r in rows if r["dead_memnodes"] >= 1),
                    rows[-1]["t_ms"] - kill_ms if p.rcs.get(i, 0) != 0 and rows else None)
               for i, rows in tls.items()]
    failed = any(rc != 0 for rc in p.rcs.values())
    return {"kill_ms": kill_ms, "series": series, "pre": pre, "post": post_mean(series, kill_ms),
            "dip_pct": 100.0 * dip / pre if pre and dip is not None else None, "recovery_ms": None if failed else rec,
            "repair_ms": None if failed or not repairs or None in repairs else max(repairs),
            "detect_ms": None if not detects or None in detects else max(detects),
            "lost": lost, "errors": errors, "repaired": repaired, "degraded": degraded,
            "rcs": [p.rcs[i] for i in sorted(p.rcs)], "round": p.meta["round"]}


def failure_expectations(mode, rnd):
    """What a failure run under redundancy must show, as messages (empty: all met)."""
    if mode == "none":
        return []
    bad = []
    if any(rc != 0 for rc in rnd["rcs"]):
        bad.append("exit statuses %s, want 0" % " ".join(map(str, rnd["rcs"])))
    if rnd["lost"] != 0:
        bad.append("lost_objects=%.0f, want 0" % rnd["lost"])
    if rnd["errors"] != 0:
        bad.append("errors=%.0f (wrong values read), want 0" % rnd["errors"])
    return bad


def fmt_ms(x, none="never"):
    return none if x is None else "%.0f" % x


def with_ms(x):
    """A time from fmt_ms with its unit ("-", "never" and "?" stay as they are)."""
    return x if x in ("-", "never", "?") else x + " ms"


def failure_tables(points, step=STEP_MS):
    """failure.csv (one row per mode: medians over rounds; objects lost and
    wrong values: the largest) and failure-timeline.csv (t_ms, then each
    mode's summed ops/s of its median round by recovery time, "?" past its
    end)."""
    groups = by_mode(points)
    out, plotted = [FAILURE_COLUMNS], {}
    for mode, ps in groups.items():
        rounds = [failure_round(p, step) for p in ps]
        pick = sorted(rounds, key=lambda r: (r["recovery_ms"] is None, r["recovery_ms"] or 0, r["pre"]))
        chosen = pick[(len(pick) + 1) // 2 - 1]
        plotted[mode] = chosen
        failed = mode == "none"
        na = "-" if failed else "never"
        meta = ps[0].meta
        med = lambda k: median_value([r[k] for r in rounds])  # noqa: E731
        dip = med("dip_pct")
        out.append(",".join(str(x) for x in [
            "failure", meta["transport"], meta["procs"], meta["memnodes"], mode, meta["local_pct"], meta["ws_mib"],
            len(ps), "%.0f" % med("kill_ms"), "/".join(str(x) for x in sorted({rc for r in rounds for rc in r["rcs"]})),
            "%.0f" % max(r["lost"] for r in rounds), "%.0f" % max(r["errors"] for r in rounds), "%.0f" % med("pre"),
            "%.0f" % med("post"),
            "%.1f" % dip if dip is not None else "?", fmt_ms(med("detect_ms")), fmt_ms(med("repair_ms"), na),
            fmt_ms(med("recovery_ms"), na), "%.0f" % med("repaired"), "%.0f" % med("degraded"), chosen["round"],
            ";".join(fmt_ms(r["repair_ms"], na) for r in rounds),
            ";".join(fmt_ms(r["recovery_ms"], na) for r in rounds),
            ";".join("%.0f" % r["lost"] for r in rounds), busy_max(ps), cpu_share(ps, "busy_pct"),
            cpu_share(ps, "memnodes_pct")]))
    n = max((len(r["series"]) for r in plotted.values()), default=0)
    tl = ["t_ms," + ",".join(plotted)]
    for j in range(n):
        tl.append("%d," % ((j + 1) * step) + ",".join(
            "%.0f" % r["series"][j] if j < len(r["series"]) else "?" for r in plotted.values()))
    return "\n".join(out) + "\n", "\n".join(tl) + "\n"


# ---------------------------------------------------------------- offload (issue #13)

OFFLOAD_COLUMNS = ("experiment,transport,procs,storage,mode,sections,local_pct,rows_per_proc,frame_mib_per_proc,"
                   "offload,rounds,rows_per_s,rows_per_s_vs_never,bytes_per_query,bytes_vs_never,moved_pct_of_frame,"
                   "offloaded_pct,memnode_cpu_ns_per_row,local_units,pulled_units,offloaded_units,offload_jobs,"
                   "offload_refused,swap_ins,swap_outs,far_mib_end,query_secs,rows_per_s_rounds,"
                   "bytes_per_query_rounds,busy_pct_max,cpu_busy_pct,memnodes_cpu_pct,checksum")
OFFLOAD_SETTINGS = ("never", "auto", "always")
OFFLOAD_MODES = ("unique", "multi")
UNIT_KEYS = ("local_units", "pulled_units", "offloaded_units")


def offload_round(p):
    """One round of one offload configuration: the clients' summed rows/s
    and counters; bytes per query: the mean of each process's bytes moved
    over the transport per query (each runs the same queries on its own
    frame); offloaded: the share of all aggregate units run at the memnode;
    memnode CPU per offloaded row: the mean over the processes that
    offloaded (None: none did)."""
    c = p.results()
    r = {k: sum(num(x.get(k)) for x in c) for k in UNIT_KEYS + (
        "rows_per_s", "offload_jobs", "offload_refused", "swap_ins", "swap_outs", "far_bytes_mine")}
    units = sum(r[k] for k in UNIT_KEYS)
    cpu = [num(x.get("memnode_cpu_ns_per_row")) for x in c if num(x.get("offloaded_units")) > 0]
    r.update({"bytes_per_query": sum(num(x.get("bytes_per_query")) for x in c) / len(c) if c else 0.0,
              "offloaded_pct": 100.0 * r["offloaded_units"] / units if units else 0.0,
              "cpu_ns": sum(cpu) / len(cpu) if cpu else None,
              "query_secs": max((num(x.get("query_secs")) for x in c), default=0.0)})
    return r


def offload_key(meta):
    """Where a configuration sorts in offload.csv: plain local memory first,
    then by local %, copy mode and offload setting."""
    if meta.get("storage") == "local":
        return (0, 0.0, 0, 0)
    mode, off = meta.get("mode"), meta.get("offload")
    return (1, num(meta.get("local_pct")), OFFLOAD_MODES.index(mode) if mode in OFFLOAD_MODES else 9,
            OFFLOAD_SETTINGS.index(off) if off in OFFLOAD_SETTINGS else 9)


def offload_csv(points):
    """offload.csv: one row per (copy mode, local %, offload setting), the
    median over rounds of each number on its own, and rows/s and bytes per
    query against never's medians at the same mode and local %."""
    groups = {}
    for p in points:
        groups.setdefault(config_key(p.meta), []).append(p)
    med = {}
    for key, ps in groups.items():
        rounds = [offload_round(p) for p in ps]
        m = {k: median_value([r[k] for r in rounds if r[k] is not None]) for k in rounds[0]}
        m["rounds"] = rounds
        med[key] = m
    never = {(ps[0].meta.get("mode"), ps[0].meta.get("local_pct")): med[key] for key, ps in groups.items()
             if ps[0].meta.get("offload") == "never"}
    out = [OFFLOAD_COLUMNS]
    for key in sorted(groups, key=lambda k: offload_key(groups[k][0].meta)):
        ps, m = groups[key], med[key]
        meta, c0 = ps[0].meta, ps[0].results()
        local = meta.get("storage") == "local"
        base = {} if local else never.get((meta.get("mode"), meta.get("local_pct")), {})
        frame = num(c0[0].get("frame_bytes")) if c0 else 0.0
        cpu = m["cpu_ns"]
        out.append(",".join(str(x) for x in [
            "offload", meta["transport"], meta["procs"], meta["storage"], meta["mode"], meta["sections"],
            meta["local_pct"], meta["rows_per_proc"], mib(frame), "local" if local else meta["offload"], len(ps),
            "%.0f" % m["rows_per_s"], "-" if local else ratio(m["rows_per_s"], base.get("rows_per_s")),
            "%.0f" % m["bytes_per_query"], "-" if local else ratio(m["bytes_per_query"], base.get("bytes_per_query")),
            "%.2f" % (100.0 * m["bytes_per_query"] / frame if frame else 0.0), "%.1f" % m["offloaded_pct"],
            "-" if cpu is None else "%.2f" % cpu, "%.0f" % m["local_units"], "%.0f" % m["pulled_units"],
            "%.0f" % m["offloaded_units"], "%.0f" % m["offload_jobs"], "%.0f" % m["offload_refused"],
            "%.0f" % m["swap_ins"], "%.0f" % m["swap_outs"], mib(m["far_bytes_mine"]), "%.3f" % m["query_secs"],
            ";".join("%.0f" % r["rows_per_s"] for r in m["rounds"]),
            ";".join("%.0f" % r["bytes_per_query"] for r in m["rounds"]), busy_max(ps), cpu_share(ps, "busy_pct"),
            cpu_share(ps, "memnodes_pct"), c0[0].get("checksum", "") if c0 else ""]))
    return "\n".join(out) + "\n"


def offload_targets(rows):
    """The issue's targets as lines for people (not failures), from
    offload.csv's rows (dicts): at 10 % local under Unique-Copy, always or
    auto >= 3x never's rows/s with <= 10 % of its bytes per query; at 100 %
    local, auto within 10 % of never's rows/s (not slower by more)."""
    by = {(r["mode"], num(r["local_pct"]), r["offload"]): r for r in rows if r["storage"] == "remote"}
    out = []
    never = by.get(("unique", 10.0, "never"))
    if never is None:
        out.append("offload target: 10 % local, Unique-Copy: not measured")
    else:
        met_any = False
        for s in ("always", "auto"):
            r = by.get(("unique", 10.0, s))
            if r is None:
                out.append("offload target: 10 %% local, Unique-Copy, %s: not measured" % s)
                continue
            tput = num(r["rows_per_s"]) / num(never["rows_per_s"]) if num(never["rows_per_s"]) else 0.0
            nb = num(never["bytes_per_query"])
            moved = 100.0 * num(r["bytes_per_query"]) / nb if nb else float("inf")
            met = tput >= 3 and moved <= 10
            met_any = met_any or met
            out.append("offload target: 10 %% local, Unique-Copy, %s vs never: rows/s %.2fx (>= 3x: %s), bytes per "
                       "query %.1f %% of never's (<= 10 %%: %s)" % (
                           s, tput, "met" if tput >= 3 else "MISSED", moved, "met" if moved <= 10 else "MISSED"))
        out.append("offload target: 10 %% local, Unique-Copy (always or auto): %s" % ("met" if met_any else "MISSED"))
    for mode in OFFLOAD_MODES:
        n, a = by.get((mode, 100.0, "never")), by.get((mode, 100.0, "auto"))
        if n is None or a is None:
            out.append("offload target: 100 %% local, %s: auto or never not measured" % mode)
            continue
        x = num(a["rows_per_s"]) / num(n["rows_per_s"]) if num(n["rows_per_s"]) else 0.0
        out.append("offload target: 100 %% local, %s: auto at %.2fx never's rows/s (>= 0.90: %s)" % (
            mode, x, "met" if x >= 0.9 else "MISSED"))
    return out


def fmt_bytes(x):
    """Bytes for people: B, KiB or MiB."""
    x = num(x)
    if x >= 1048576:
        return "%.1f MiB" % (x / 1048576)
    if x >= 1024:
        return "%.1f KiB" % (x / 1024)
    return "%.0f B" % x


class ExperimentError(Exception):
    pass


class Collector:
    """Reads the measuring script's lines (scripts/experiments-measure.sh):
    echoes the ones for people, keeps the points, prints a progress line per
    point, checks fig8's results against plain local memory, and writes
    DIR/<fig>.csv at the end of each figure."""

    def __init__(self, out_dir, raw=None, echo=print, live=False):
        self.out_dir, self.raw, self.echo, self.live = out_dir, raw, echo, live
        self.points = {}     # fig -> [Point]
        self.current = None
        self.used = None     # the memnode's far memory in the last @stats, bytes
        self.t_start = time.time()
        self.written = []
        self.violations = []  # what a redundancy run must show and did not

    def feed(self, line):
        line = line.rstrip("\r\n")
        if self.raw is not None and not line.startswith("@tick"):
            self.raw.write(line + "\n")
        if not line.startswith("@"):
            if line:
                self.clear_live()
                self.echo(line)
            return
        tag, _, rest = line.partition(" ")
        if tag == "@point":
            self.current = Point(parse_records([rest])[0])
            self.used = None
        elif tag == "@stats" and self.current is not None:
            r = parse_records([rest])[0]
            if r.get("memnode") not in (None, "total"):
                return  # one of many memnodes: their total follows
            self.used = num(r.get("used_bytes"))
            self.current.peak = max(self.current.peak, self.used)
            if self.current.running:
                self.current.peak_running = max(self.current.peak_running, self.used)
        elif tag == "@phase" and self.current is not None:
            self.current.running = rest.strip() == "running"
        elif tag == "@cpu" and self.current is not None:
            self.current.cpu = json.loads(rest)
        elif tag == "@busy" and self.current is not None:
            self.current.busy = json.loads(rest)
        elif tag == "@kill" and self.current is not None:
            self.current.kill = json.loads(rest)
        elif tag == "@rc" and self.current is not None:
            i, _, rc = rest.partition(" ")
            self.current.rcs[int(i)] = int(rc)
        elif tag == "@clienterr" and self.current is not None:
            i, _, text = rest.partition(" ")
            self.current.errs.setdefault(int(i), []).append(text)
        elif tag == "@timeline" and self.current is not None:
            i, _, row = rest.partition(" ")
            self.current.timelines.setdefault(int(i), []).append(row)
        elif tag == "@tick" and self.live:
            t = json.loads(rest)
            used = "?" if self.used is None else mib(self.used)
            sys.stdout.write("\r  %-48s %4ds %s, %d/%d running, far %s MiB   " % (
                t["label"], t["secs"], t["phase"], t["running"], t["procs"], used))
            sys.stdout.flush()
        elif tag == "@client" and self.current is not None:
            i, _, js = rest.partition(" ")
            self.current.clients[int(i)] = parse_records([js])[0]
        elif tag == "@endpoint" and self.current is not None:
            self.clear_live()
            self.end_point(self.current)
            self.current = None
        elif tag == "@endfig":
            self.write_figure(rest.strip())

    def clear_live(self):
        if self.live:
            sys.stdout.write("\r%*s\r" % (110, ""))

    def end_point(self, p):
        fig, m = p.meta["fig"], p.meta
        self.points.setdefault(fig, []).append(p)
        c = p.results()
        secs = int(time.time() - self.t_start)
        if p.busy:
            self.echo("  (the machine was %s %% busy before it, after %s s of waiting)" % (
                p.busy["pct"], p.busy["waited_s"]))
        far = mib(total(c, "far_bytes_mine"))
        if fig == "fig6":
            self.echo("[fig6 %2d/%s] %-6s x%s local %3s %%: %8s ops/s, far %7s MiB (peak %s)  [%ds]" % (
                int(m["k"]), m["total"], m["mode"], m["procs"], m["local_pct"], total(c, "ops_per_s"), far,
                mib(p.peak), secs))
        elif fig == "redundancy":
            r = redundancy_round(p)
            self.echo("[redundancy %2d/%s] %-11s round %s: %8.0f ops/s, far at the memnodes %7s MiB, "
                      "copies %7s MiB  [%ds]"
                      % (int(m["k"]), m["total"], m["redundancy"], m["round"], r["ops_per_s"], mib(r["far_used"]),
                         mib(r["far_copy"]), secs))
        elif fig == "failure":
            r = failure_round(p)
            na = "-" if m["redundancy"] == "none" else "never"
            self.echo("[failure %2d/%s] %-11s round %s: killed at %.0f ms, exits %s, %.0f lost, %.0f wrong; "
                      "%.0f ops/s before, lowest 100 ms %s %%; repair done %s, within 20 %% after %s  [%ds]" % (
                          int(m["k"]), m["total"], m["redundancy"], m["round"], r["kill_ms"],
                          "/".join(map(str, r["rcs"])), r["lost"], r["errors"], r["pre"],
                          "?" if r["dip_pct"] is None else "%.0f" % r["dip_pct"], with_ms(fmt_ms(r["repair_ms"], na)),
                          with_ms(fmt_ms(r["recovery_ms"], na)), secs))
            for bad in failure_expectations(m["redundancy"], r):
                msg = "failure: %s round %s: %s" % (m["redundancy"], m["round"], bad)
                self.violations.append(msg)
                self.echo("experiments: UNEXPECTED: " + msg)
        elif fig == "fig7":
            self.echo("[fig7 %2d/%s] %-6s %9s objects, %s sections: %8s ops/s, far %8s MiB, load %6ss  [%ds]" % (
                int(m["k"]), m["total"], m["mode"], m["objects"], m["sections"], total(c, "ops_per_s"), far,
                largest(c, "fill_secs"), secs))
        elif fig == "offload":
            self.end_offload_point(p, secs)
        elif m["storage"] == "local":
            self.echo("[fig8 %2d/%s] plain local memory: %10s rows/s  [%ds]" % (
                int(m["k"]), m["total"], total(c, "rows_per_s"), secs))
        else:
            self.check_against_local(p)
            self.echo("[fig8 %2d/%s] %-6s %s sections local %3s %%: %10s rows/s, far %7s MiB, results = local  [%ds]"
                      % (int(m["k"]), m["total"], m["mode"], m["sections"], m["local_pct"], total(c, "rows_per_s"),
                         far, secs))

    def check_against_local(self, p):
        """A remote point's results must be those of plain local memory, per
        process (its --seed): the checksums of the figure's local point."""
        fig = p.meta["fig"]
        local = [q for q in self.points[fig] if q.meta["storage"] == "local"]
        want = local[0].clients if local else {}
        for i, r in sorted(p.clients.items()):
            if i in want and r["checksum"] != want[i]["checksum"]:
                raise ExperimentError("experiments: %s process %d: results %s, local memory %s" % (
                    fig, i, r["checksum"], want[i]["checksum"]))
        return bool(want)

    def end_offload_point(self, p, secs):
        m = p.meta
        r = offload_round(p)
        head = "[offload %2d/%s]" % (int(m["k"]), m["total"])
        if m["storage"] == "local":
            self.echo("%s plain local memory (aggregate): %10.0f rows/s  [%ds]" % (head, r["rows_per_s"], secs))
            return
        checked = self.check_against_local(p)
        frame = num(p.results()[0].get("frame_bytes")) if p.clients else 0.0
        self.echo("%s %-6s local %3s %% %-6s round %s: %10.0f rows/s, %s per query (%.2f %% of the frame), "
                  "%.0f %% of units offloaded, memnode %s ns/row, results %s  [%ds]" % (
                      head, m["mode"], m["local_pct"], m["offload"], m["round"], r["rows_per_s"],
                      fmt_bytes(r["bytes_per_query"]), 100.0 * r["bytes_per_query"] / frame if frame else 0.0,
                      r["offloaded_pct"], "-" if r["cpu_ns"] is None else "%.1f" % r["cpu_ns"],
                      "= local" if checked else "unchecked (no local point)", secs))
        if m["offload"] == "never" and (r["offloaded_units"] or r["offload_jobs"]):
            msg = "offload: %s %s %% local round %s: --offload=never offloaded %.0f units in %.0f jobs, want 0" % (
                m["mode"], m["local_pct"], m["round"], r["offloaded_units"], r["offload_jobs"])
            self.violations.append(msg)
            self.echo("experiments: UNEXPECTED: " + msg)

    def write_figure(self, fig):
        if not self.points.get(fig):
            return
        if fig == "redundancy":
            files = {"redundancy.csv": redundancy_csv(self.points[fig])}
        elif fig == "failure":
            summary, timeline = failure_tables(self.points[fig])
            files = {"failure.csv": summary, "failure-timeline.csv": timeline}
        elif fig == "offload":
            files = {"offload.csv": offload_csv(self.points[fig])}
        else:
            files = {fig + ".csv": figure_csv(fig, self.points[fig])}
        for name, text in files.items():
            path = os.path.join(self.out_dir, name)
            with open(path, "w") as f:
                f.write(text)
            self.written.append(path)
        if fig == "offload":
            rows = list(csv.DictReader(files["offload.csv"].splitlines()))
            for line in offload_targets(rows):
                self.echo(line)


def aggregate_lines(lines, out_dir, echo=print):
    c = Collector(out_dir, echo=echo)
    for line in lines:
        c.feed(line)
    for fig in sorted(c.points):
        if os.path.join(out_dir, fig + ".csv") not in c.written:
            c.write_figure(fig)
    return c


# ---------------------------------------------------------------- tables and plots

def read_csv(path):
    """A figure's CSV as lists of strings, without its header; [] if missing or empty."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return []
    with open(path) as f:
        return list(csv.reader(f))[1:]


def pct_of(a, b):
    """100 * (1 - a / b), 0 where b is 0."""
    return 100 * (1 - a / b) if b else 0.0


def table_head(title, where, columns):
    """A markdown table's heading, header row and right-aligned rule."""
    return ["### %s (%s)" % (title, where), "", "| " + " | ".join(columns) + " |", "|" + "---:|" * len(columns)]


def tables_md(figs, where):
    """DIR/tables.md: markdown tables of the figures' numbers, with the savings
    and slowdowns in percent. `figs` maps fig6/fig7/fig8 to their CSV rows."""
    out = []
    rows = figs.get("fig6")
    if rows:
        out += table_head("Fig. 6: sharing vs not sharing", where, [
            "local", "Unique x3 ops/s", "Multi x3 ops/s", "slowdown", "Unique far MiB", "Multi far MiB", "far saved",
            "Unique alone ops/s", "Multi alone ops/s", "slowdown alone"])
        t, f = {}, {}
        for r in rows:
            t[r[5], r[2], r[3]] = num(r[8])
            f[r[5], r[2], r[3]] = num(r[10])
        for k in sorted({r[5] for r in rows}, key=num):
            g = lambda d, p, m: d.get((k, p, m), 0.0)  # noqa: E731
            out.append("| %d %% | %.0f | %.0f | %.1f %% | %.1f | %.1f | %.1f %% | %.0f | %.0f | %.1f %% |" % (
                num(k), g(t, "3", "unique"), g(t, "3", "multi"), pct_of(g(t, "3", "unique"), g(t, "3", "multi")),
                g(f, "3", "unique"), g(f, "3", "multi"), pct_of(g(f, "3", "unique"), g(f, "3", "multi")),
                g(t, "1", "unique"), g(t, "1", "multi"), pct_of(g(t, "1", "unique"), g(t, "1", "multi"))))
        out.append("")
    rows = figs.get("fig7")
    if rows:
        out += table_head("Fig. 7: scale", where, [
            "objects", "data MiB", "Unique 1 section ops/s", "Unique 2 sections", "Multi 1 section", "Multi 2 sections",
            "Unique far MiB", "Multi far MiB", "load s (Unique, 2 sections)"])
        t, f, ws, load = {}, {}, {}, {}
        for r in rows:
            ws[r[5]] = num(r[7])
            t[r[5], r[3], r[4]] = num(r[9])
            f[r[5], r[3]] = num(r[10])
            if r[3] == "unique" and r[4] == "2":
                load[r[5]] = r[15]
        for k in sorted({r[5] for r in rows}, key=num):
            out.append("| %d | %.1f | %.0f | %.0f | %.0f | %.0f | %.1f | %.1f | %s |" % (
                num(k), ws[k], t.get((k, "unique", "1"), 0), t.get((k, "unique", "2"), 0),
                t.get((k, "multi", "1"), 0), t.get((k, "multi", "2"), 0), f.get((k, "unique"), 0),
                f.get((k, "multi"), 0), load.get(k, "")))
        out.append("")
    rows = figs.get("fig8")
    if rows:
        out += table_head("Fig. 8: data frame", where, [
            "local", "Unique 1 section rows/s", "Unique 2 sections", "Multi-Copy", "plain local", "Unique (2) vs Multi",
            "2 vs 1 section", "Unique far MiB", "Multi far MiB", "far saved"])
        loc, t, f = 0.0, {}, {}
        for r in rows:
            if r[3] == "local":
                loc = num(r[9])
            elif r[3] == "remote":
                t[r[6], r[4], r[5]] = num(r[9])
                f[r[6], r[4], r[5]] = num(r[10])
        for k in sorted({r[6] for r in rows if r[3] == "remote"}, key=num):
            u1, u2, m2 = (t.get((k, m, s), 0.0) for m, s in (("unique", "1"), ("unique", "2"), ("multi", "2")))
            fu, fm = f.get((k, "unique", "2"), 0.0), f.get((k, "multi", "2"), 0.0)
            out.append("| %d %% | %.0f | %.0f | %.0f | %.0f | %+.1f %% | %+.1f %% | %.1f | %.1f | %.1f %% |" % (
                num(k), u1, u2, m2, loc, -pct_of(u2, m2), -pct_of(u2, u1), fu, fm, pct_of(fu, fm)))
        out.append("")
    out += redundancy_md(figs.get("redundancy"), where) + failure_md(figs.get("failure"), where)
    out += offload_md(figs.get("offload"), where)
    return "\n".join(out) + ("\n" if out else "")


def busy_note(rows):
    """" The machine was at most N % busy ..." from the rows' busy_pct_max, or ""."""
    b = [num(r["busy_pct_max"]) for r in rows if r.get("busy_pct_max") not in (None, "", "?")]
    return " The machine was at most %.0f %% busy in the second before each point." % max(b) if b else ""


def redundancy_md(rows, where):
    """The redundancy table's lines from redundancy.csv's rows (dicts)."""
    if not rows:
        return []
    r0 = rows[0]
    out = table_head("Redundancy across memnodes: %s processes on %s memnodes" % (r0["procs"], r0["memnodes"]), where, [
        "redundancy", "ops/s (%s processes)" % r0["procs"], "vs none", "far memory at the memnodes, MiB", "vs none",
        "far copies, MiB", "vs none", "ops/s per round", "CPU busy", "of which the memnodes"])
    for r in rows:
        out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s %% | %s %% |" % (
            r["redundancy"], r["ops_per_s"], r["ops_vs_none"], r["far_used_mib"], r["far_used_vs_none"],
            r["far_copy_mib"], r["far_copy_vs_none"], r["ops_per_s_rounds"].replace(";", ", "),
            r.get("cpu_busy_pct", "?"), r.get("memnodes_cpu_pct", "?")))
    out += ["", "(%s MiB per process, %s %% local; median of %s rounds, each number on its own. Far memory at the "
            "memnodes: the highest sum of their used bytes (memnode_stats) while the timed phase ran; far copies: the "
            "clients' far_copy_bytes, summed. CPU: the share of all cores' time that was busy, and that the "
            "memnode processes used, while every process ran (median).%s)" % (
                r0["ws_mib"], r0["local_pct"], r0["rounds"], busy_note(rows)), ""]
    return out


def failure_md(rows, where):
    """The failure table's lines from failure.csv's rows (dicts)."""
    if not rows:
        return []
    r0 = rows[0]
    title = "Failure: one of %s memnodes SIGKILLed under %s processes" % (r0["memnodes"], r0["procs"])
    out = table_head(title, where, [
        "redundancy", "clients' exit", "objects lost", "wrong values read", "ops/s before", "ops/s after",
        "lowest 100 ms after",
        "death seen after", "repair done after", "back within 20 % after", "repaired objects", "degraded reads",
        "repair done, per round", "within 20 %, per round"])
    for r in rows:
        out.append("| %s | %s | %s | %s | %s | %s | %s %% | %s | %s | %s | %s | %s | %s | %s |" % (
            r["redundancy"], r["exit_statuses"], r["lost_objects"], r["errors"], r["pre_ops_per_s"],
            r["post_ops_per_s"], r["dip_pct"],
            with_ms(r["detect_ms"]), with_ms(r["repair_ms"]), with_ms(r["recovery_ms"]), r["repaired_objects"],
            r["degraded_reads"],
            r["repair_ms_rounds"].replace(";", ", "), r["recovery_ms_rounds"].replace(";", ", ")))
    out += ["", "(%s MiB per process, %s %% local, reads checked exactly; median of %s rounds, objects lost and wrong "
            "values: the largest; the kill %s ms into the timed phase. ops/s: the clients' sum per 100 ms; before: "
            "from %d ms to the kill; after: from 1 s after the kill to the end; lowest: the lowest 100 ms from the "
            "kill on, in %% of before. Repair done: the first 100 ms row of every client with repair_pending back at "
            "its level before the kill and no repair after it. Within 20 %%: from then on every 1-s average is "
            ">= 80 %% of before.%s)" % (
                r0["ws_mib"], r0["local_pct"], r0["rounds"], r0["kill_ms"], WARMUP_MS, busy_note(rows)), ""]
    return out


def offload_md(rows, where):
    """The offload table's lines from offload.csv's rows (dicts), and the targets."""
    if not rows:
        return []
    r0 = next((r for r in rows if r["storage"] == "remote"), rows[0])
    title = "Fig. 8 with offloaded aggregates: %s processes, one memnode (%s section, 1 offload thread)" % (
        r0["procs"], r0["sections"])
    out = table_head(title, where, [
        "local", "copy mode", "offload", "rows/s (%s processes)" % r0["procs"], "vs never", "bytes per query",
        "vs never", "of the frame", "units offloaded", "memnode CPU ns per offloaded row",
        "far MiB (%s processes)" % r0["procs"], "rows/s per round"])
    for r in rows:
        if r["storage"] == "local":
            out.append("| plain local memory | - | - | %s | - | 0 | - | 0 %% | - | - | 0.0 | %s |" % (
                r["rows_per_s"], r["rows_per_s_rounds"].replace(";", ", ")))
            continue
        out.append("| %s %% | %s | %s | %s | %s | %s | %s | %s %% | %s %% | %s | %s | %s |" % (
            r["local_pct"], r["mode"], r["offload"], r["rows_per_s"], r["rows_per_s_vs_never"],
            fmt_bytes(r["bytes_per_query"]), r["bytes_vs_never"], r["moved_pct_of_frame"], r["offloaded_pct"],
            r["memnode_cpu_ns_per_row"], r["far_mib_end"], r["rows_per_s_rounds"].replace(";", ", ")))
    out += ["", "(%s trips per process (%s MiB frame), Fig. 8's five group-bys through compute::Aggregate "
            "(--queries=aggregate), at least 2 s of queries; median of %s rounds, each number on its own, the "
            "three settings interleaved. never: far chunks swapped in and scanned here (as Fig. 8); always: the far "
            "part aggregated at the memnode; auto: as the cost decision says. Bytes per query: object data both "
            "ways, OFFLOAD requests and results over the transport, per query of one process (the mean over the "
            "processes); units offloaded: the share of all aggregate units run at the memnode; far MiB: what the "
            "processes hold at the memnode at the end (their far_bytes_mine, summed). Every point's results "
            "equal plain local memory's bit for bit.%s)" % (
                r0["rows_per_proc"], r0["frame_mib_per_proc"], r0["rounds"], busy_note(rows)), ""]
    out += ["- " + t for t in offload_targets(rows)] + [""]
    return out


GNUPLOT_COMMON = ('set terminal pngcairo size 900,560 font "sans,11"; set grid; set key top left; '
                  'set datafile missing "?"')


def series(tmp, name, rows, pred, xcol, ycol):
    """Writes the rows matching `pred`, "x y" sorted by x, to tmp/name; returns the path."""
    pts = sorted(((r[xcol], r[ycol]) for r in rows if pred(r)), key=lambda p: (num(p[0]), num(p[1])))
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.writelines("%s %s\n" % p for p in pts)
    return path


def gnuplot_scripts(d, figs, where, tmp):
    """The gnuplot programs that draw DIR's PNGs (one per figure with rows)."""
    scripts = []
    rows = figs.get("fig6")
    if rows:
        s = lambda n, p, m, y: series(tmp, n, rows, lambda r: r[2] == p and r[3] == m, 5, y)  # noqa: E731
        u3, m3, u1, m1 = s("u3", "3", "unique", 9), s("m3", "3", "multi", 9), s("u1", "1", "unique", 9), \
            s("m1", "1", "multi", 9)
        fu, fm, pu = s("fu", "3", "unique", 10), s("fm", "3", "multi", 10), s("pu", "3", "unique", 11)
        ws = rows[0][6]
        scripts.append(f"""{GNUPLOT_COMMON}
set output "{d}/fig6-throughput.png"
set title "Fig. 6a: throughput, 3 processes sharing one memnode ({where})"
set xlabel "local memory (% of the working set)"; set ylabel "operations/s per process (log scale)"
set logscale y
plot "{u3}" w lp lw 2 pt 7 t "Unique-Copy (Sharry), 3 sharing", \\
     "{m3}" w lp lw 2 pt 5 t "Multi-Copy (AIFM-style), 3 sharing", \\
     "{u1}" w lp dt 2 pt 6 t "Unique-Copy, 1 alone", \\
     "{m1}" w lp dt 2 pt 4 t "Multi-Copy, 1 alone"
set output "{d}/fig6-far-memory.png"
set title "Fig. 6b: far memory used by 3 processes ({ws} MiB working set each)"
set ylabel "far memory (MiB)"; set key top right; unset logscale y; set yrange [0:*]
plot "{fu}" w lp lw 2 pt 7 t "Unique-Copy (Sharry), at the end", \\
     "{pu}" w lp dt 3 pt 6 t "Unique-Copy, peak while running", \\
     "{fm}" w lp lw 2 pt 5 t "Multi-Copy (AIFM-style)", \\
     3 * {ws} * (1 - x / 100) w l dt 2 lc rgb "gray40" t "working set - local"
""")
    rows = figs.get("fig7")
    if rows:
        plots = []
        for mode in ("unique", "multi"):
            for sec in sorted({r[4] for r in rows}, key=num):
                path = series(tmp, "s-%s-%s" % (mode, sec), rows, lambda r: r[3] == mode and r[4] == sec, 5, 9)
                if os.path.getsize(path) == 0:
                    continue
                name, dt = ("Multi-Copy (AIFM-style)", 2) if mode == "multi" else ("Unique-Copy (Sharry)", 1)
                plural = "" if sec == "1" else "s"
                plots.append('"%s" w lp lw 2 dt %d t "%s, %s section%s"' % (path, dt, name, sec, plural))
        scripts.append(f"""{GNUPLOT_COMMON}
set output "{d}/fig7-scale.png"
set title "Fig. 7: throughput against the number of objects (3 processes, {rows[0][8]} MiB local each, {where})"
set xlabel "objects in the system (256 B each)"; set ylabel "operations/s (3 processes)"
set logscale x; set format x "10^{{%T}}"; set yrange [0:*]; set key top right
plot {",".join(plots)}
""")
    rows = figs.get("fig8")
    if rows:
        def s(n, mode, sec, y):
            return series(tmp, n, rows, lambda r: r[3] == "remote" and r[4] == mode and r[5] == sec, 6, y)
        u1, u2, m2 = s("u1", "unique", "1", 9), s("u2", "unique", "2", 9), s("m2", "multi", "2", 9)
        fu1, fu2, fm2 = s("fu1", "unique", "1", 10), s("fu2", "unique", "2", 10), s("fm2", "multi", "2", 10)
        local = [r for r in rows if r[3] == "local"]
        loc = local[-1][9] if local else "0"
        frame = local[-1][8] if local else ""
        scripts.append(f"""{GNUPLOT_COMMON}
set output "{d}/fig8-throughput.png"
set title "Fig. 8a: data-frame throughput, 3 processes ({where})"
set xlabel "local memory (% of the data frame)"; set ylabel "rows scanned/s (3 processes)"
set logscale y; set key bottom right
plot "{u1}" w lp lw 2 pt 7 t "Sharry, Unique-Copy, 1 section", \\
     "{u2}" w lp lw 2 pt 9 t "Sharry, Unique-Copy, 2 sections", \\
     "{m2}" w lp lw 2 pt 5 t "Multi-Copy (AIFM-style), 2 sections", \\
     {loc} w l lw 2 dt 2 lc rgb "black" t "plain local memory"
set output "{d}/fig8-far-memory.png"
unset logscale y; set yrange [0:*]; set key top right
set title "Fig. 8b: far memory used by 3 processes ({frame} MiB data frame each)"
set ylabel "far memory (MiB)"
plot "{fu1}" w lp lw 2 pt 7 t "Unique-Copy, 1 section", \\
     "{fu2}" w lp lw 2 pt 9 t "Unique-Copy, 2 sections", \\
     "{fm2}" w lp lw 2 pt 5 t "Multi-Copy (AIFM-style)", \\
     3 * {frame} * (1 - x / 100) w l dt 2 lc rgb "gray40" t "data - local"
""")
    scripts += redundancy_plots(d, figs, where, tmp)
    scripts += offload_plots(d, figs, where, tmp)
    return scripts


def redundancy_plots(d, figs, where, tmp):
    """The gnuplot programs of redundancy.png (bars) and failure.png (the timeline)."""
    scripts = []
    rows = figs.get("redundancy")
    if rows:
        data = os.path.join(tmp, "redundancy.dat")
        with open(data, "w") as f:
            for r in rows:
                f.write('"%s" %s %s %s %s %s %s\n' % (r["redundancy"], r["ops_per_s"], r["ops_vs_none"],
                                                      r["far_used_mib"], r["far_used_vs_none"], r["far_copy_mib"],
                                                      r["far_copy_vs_none"]))
        r0 = rows[0]
        top_ops = 1.15 * max(num(r["ops_per_s"]) for r in rows) or 1
        top_far = 1.3 * max(max(num(r["far_used_mib"]), num(r["far_copy_mib"])) for r in rows) or 1
        scripts.append(f"""{GNUPLOT_COMMON}
set terminal pngcairo size 1200,520 font "sans,11" noenhanced
set output "{d}/redundancy.png"
set multiplot layout 1,2 title "Redundancy across {r0['memnodes']} memnodes: {r0['procs']} processes, {r0['ws_mib']} MiB each, {r0['local_pct']} % local ({where}; median of {r0['rounds']} rounds)"
set style fill solid 0.75 border -1; set xrange [-0.6:{len(rows) - 0.4}]; set grid noxtics
set title "throughput (labels: vs none)"; set ylabel "operations/s ({r0['procs']} processes)"; set key off
set yrange [0:{top_ops:.0f}]
plot "{data}" using 0:2:(0.6):xtic(1) with boxes lc rgb "#4472c4", \\
     "" using 0:2:(sprintf("%.2fx", $3)) with labels offset 0,0.8 notitle
set title "far memory (labels: vs none)"; set ylabel "MiB"; set key top left
set yrange [0:{top_far:.1f}]
plot "{data}" using ($0-0.19):4:(0.36):xtic(1) with boxes lc rgb "#ed7d31" t "at the memnodes: used bytes, peak while running", \\
     "" using ($0+0.19):6:(0.36) with boxes lc rgb "#a5a5a5" t "the clients' far copies (far_copy_bytes)", \\
     "" using ($0-0.19):4:(sprintf("%.2fx", $5)) with labels offset 0,0.8 notitle, \\
     "" using ($0+0.19):6:(sprintf("%.2fx", $7)) with labels offset 0,0.8 notitle
unset multiplot
""")
    tl, summary = figs.get("failure-timeline"), figs.get("failure")
    if tl and summary:
        modes = [k for k in tl[0] if k != "t_ms"]
        top = 1.2 * max((num(r[m]) for r in tl for m in modes if r[m] not in ("?", "")), default=1) or 1
        kill = median_value([num(r["kill_ms"]) for r in summary]) / 1000.0
        path = os.path.join(d, "failure-timeline.csv")
        r0 = summary[0]
        styles = {"none": 'lc rgb "gray50" dt 2', "replicate:2": 'lc rgb "#4472c4"', "ec:2+1": 'lc rgb "#ed7d31"'}
        plots = ", ".join('"%s" using ($1/1000):%d with fsteps lw 2 %s t "%s"' % (
            path, i + 2, styles.get(m, ""), m + (" (clients exit 2)" if m == "none" else ""))
            for i, m in enumerate(modes))
        scripts.append(f"""{GNUPLOT_COMMON}
set datafile separator ","
set terminal pngcairo size 900,560 font "sans,11" noenhanced
set output "{d}/failure.png"
set title "One of {r0['memnodes']} memnodes SIGKILLed: {r0['procs']} processes, {r0['ws_mib']} MiB each, {r0['local_pct']} % local ({where})"
set xlabel "time since the timed phase began (s)"; set ylabel "operations/s ({r0['procs']} processes, per 100 ms)"
set yrange [0:{top:.0f}]; set key top right horizontal
set arrow from {kill:.3f}, graph 0 to {kill:.3f}, graph 1 nohead lw 2 dt 3 lc rgb "red"
set label "memnode SIGKILLed" at {kill:.3f}, graph 0.9 offset 0.5,0 tc rgb "red"
plot {plots}
set output "{d}/failure-zoom.png"
set title "The same, from 1 s before the kill to 2.5 s after it"
set xrange [{max(0.0, kill - 1):.3f}:{kill + 2.5:.3f}]; set yrange [0:*]; set offsets 0, 0, graph 0.25, 0
replot
""")
    return scripts


def offload_plots(d, figs, where, tmp):
    """The gnuplot program of offload-throughput.png (rows/s against local %,
    a colour per offload setting, solid Unique-Copy, dashed Multi-Copy) and
    offload-bytes.png (bytes per query, log scale; points of 0 bytes left out)."""
    rows = figs.get("offload")
    remote = [r for r in rows or [] if r["storage"] == "remote"]
    if not remote:
        return []
    colours = {"never": "#a5a5a5", "auto": "#4472c4", "always": "#ed7d31"}
    names = {"unique": "Unique-Copy", "multi": "Multi-Copy"}

    def data(name, mode, off, col):
        pts = sorted((num(r["local_pct"]), num(r[col])) for r in remote
                     if r["mode"] == mode and r["offload"] == off and num(r[col]) > 0)
        path = os.path.join(tmp, name)
        with open(path, "w") as f:
            f.writelines("%g %g\n" % p for p in pts)
        return path if pts else None

    def plots(col):
        out = []
        for mode in OFFLOAD_MODES:
            for off in OFFLOAD_SETTINGS:
                path = data("off-%s-%s-%s" % (col, mode, off), mode, off, col)
                if path:
                    out.append('"%s" w lp lw 2 dt %d pt %d lc rgb "%s" t "%s, %s"' % (
                        path, 1 if mode == "unique" else 2, 7 if mode == "unique" else 4, colours[off],
                        names[mode], off))
        return out

    local = [r for r in rows if r["storage"] == "local"]
    tput = plots("rows_per_s")
    if local:
        tput.append('%s w l lw 2 dt 3 lc rgb "black" t "plain local memory"' % local[0]["rows_per_s"])
    frame = num(remote[0]["frame_mib_per_proc"]) * 1048576
    moved = plots("bytes_per_query") + [
        '(x < 100 ? %.0f * (1 - x / 100) : 1/0) w l dt 3 lc rgb "gray40" t "far part of one frame"' % frame]
    r0 = remote[0]
    return [f"""{GNUPLOT_COMMON}
set terminal pngcairo size 900,560 font "sans,11" noenhanced
set output "{d}/offload-throughput.png"
set title "Fig. 8 with offloaded aggregates: {r0['procs']} processes, {r0['rows_per_proc']} trips each ({where})"
set xlabel "local memory (% of the data frame)"; set ylabel "rows scanned/s ({r0['procs']} processes, log scale)"
set logscale y; set format y "%.0s%c"; set key bottom right; set xrange [0:105]
plot {", ".join(tput)}
set output "{d}/offload-bytes.png"
set title "Bytes over the transport per query (one process; log scale; {where})"
set ylabel "bytes per query"; set format y "%.0s %cB"; set key bottom left
plot {", ".join(moved)}
"""]


def read_dicts(path):
    """A CSV as dicts by its header; [] if missing or empty."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def read_figures(d):
    """DIR's figures: fig6..fig8 as lists of strings (no header); redundancy,
    failure, failure-timeline and offload as dicts."""
    figs = {fig: read_csv(os.path.join(d, fig + ".csv")) for fig in ("fig6", "fig7", "fig8")}
    for fig in ("redundancy", "failure", "failure-timeline", "offload"):
        figs[fig] = read_dicts(os.path.join(d, fig + ".csv"))
    where = next((rows[0][1] for f, rows in figs.items() if rows and f.startswith("fig")), "")
    where = where or next((rows[0]["transport"] for f, rows in figs.items() if rows and "transport" in rows[0]), "")
    return figs, where


def cmd_plot(args):
    """Draws the PNG plots of scripts/experiments.sh from the CSVs in DIR, with
gnuplot (Debian's gnuplot-nox), and writes DIR/tables.md (markdown tables of
the same numbers, with the savings and slowdowns in percent):
  fig6-throughput.png  fig6-far-memory.png  fig7-scale.png
  fig8-throughput.png  fig8-far-memory.png
  redundancy.png (bars: throughput and far memory per mode, against none)
  failure.png (throughput per 100 ms, a line at the kill), failure-zoom.png (around the kill)
  offload-throughput.png (rows/s against local %, never/auto/always, both copy modes),
  offload-bytes.png (bytes over the transport per query, log scale)

  scripts/plot-experiments.sh DIR
  scripts/sharry_bench.py plot DIR
"""
    if len(args) != 1 or args[0].startswith("-"):
        return usage_error("plot", "usage: plot-experiments.sh DIR")
    return plot_dir(args[0])


def plot_dir(d):
    if shutil.which("gnuplot") is None:
        print("plot-experiments: gnuplot is missing (apt-get install gnuplot-nox)", file=sys.stderr)
        return 1
    figs, where = read_figures(d)
    with tempfile.TemporaryDirectory() as tmp:
        for script in gnuplot_scripts(d, figs, where, tmp):
            subprocess.run(["gnuplot"], input=script, text=True, check=True)
    with open(os.path.join(d, "tables.md"), "w") as f:
        f.write(tables_md(figs, where))
    wrote = sorted([os.path.join(d, n) for n in os.listdir(d) if n.endswith(".png")] + [os.path.join(d, "tables.md")])
    for path in wrote:
        print("plot-experiments: wrote " + path)
    return 0


# ---------------------------------------------------------------- experiments: the driver

def cmd_experiments(args):
    """The paper's experiments (section 6), scaled to this machine, each writing a
CSV and drawing PNG plots with gnuplot:
  fig6  sharing vs not sharing: 3 processes (and 1 alone) against one
        memnode, 8 remoteable arrays of 4 KiB objects each, local memory 10..100 %
        of the working set; throughput and far memory, Unique- vs Multi-Copy.
  fig7  scale: fixed local memory, 10^3..10^7 objects in the system (256 B
        each: 10^7 x 4 KiB would not fit in 24 GiB); 1 and 2 sections.
  fig8  data analysis: NYC-taxi-shaped data frame (bench/dataframe_bench.cc),
        3 processes; Unique-Copy with 1 and 2 sections, Multi-Copy, and
        plain local memory; local memory 10..100 %.
and, on the host only and only when named in --only, the redundancy across
memnodes of issue #12 (docs/redundancy.md):
  redundancy  3 processes at 50 % local on 4 memnode processes of this host,
        --redundancy none, replicate:2, ec:2+1, ec:3+1 (interleaved, each
        round starting with the next mode): throughput, far memory at the
        memnodes (memnode_stats, while the clients run) and the clients' far
        copies, each against none -> redundancy.csv, redundancy.png
  failure  the same clients (reads checked exactly), memnode 1 of 4
        SIGKILLed 3 s into a 10-s timed phase, under replicate:2, ec:2+1 and
        none (whose clients exit 2); every client writes a timeline row per
        100 ms -> failure-timeline.csv (ops/s summed over the clients),
        failure.png, failure.csv: objects lost, wrong values, the dip, when
        the death was seen, when the repair was done, and when throughput
        was back within 20 % of its level before the kill for good. A run
        under redundancy that loses an object, reads a wrong value or fails
        a client is reported as UNEXPECTED and the command exits 1.
and, only when named in --only, Fig. 8 with offloaded aggregates (issue #13):
  offload  Fig. 8's 5 group-bys through compute::Aggregate (dataframe_bench
        --queries=aggregate), 3 processes against one memnode (1 section,
        --offload_threads=1), local memory 10..100 %, Unique- and
        Multi-Copy, each with --offload=never (far chunks swapped in, as
        Fig. 8), auto and always, interleaved (each group of three starting
        with the next setting), and the same queries on plain local memory
        (the checksums every point must equal) -> offload.csv: rows/s and
        bytes over the transport per query (medians over rounds) and both
        against never at the same mode and local %, the share of units
        offloaded, memnode CPU per offloaded row; offload-throughput.png,
        offload-bytes.png, and the issue's targets as printed lines (met or
        MISSED; not a failure). --offload=never offloading anything is
        UNEXPECTED. About 12 minutes with 3 rounds; --quick: 10/50/100 %,
        a quarter of the rows, 1 round unless --rounds.

  scripts/experiments.sh [--vm] [--quick] [--only fig6,fig7,fig8,redundancy,failure,offload]
                         [--out DIR] [--build DIR] [--rounds N] [--quiet-wait S]

  (default)  tcp transport on this host; results in results/host/
  --vm       verbs over SoftRoCE in the throwaway VM (scripts/rxe-vm.sh), at a
             smaller scale; results in results/vm/
  --quick    fewer points and smaller sizes (a few minutes; for a smoke test;
             redundancy, failure and offload: 1 round unless --rounds;
             redundancy and failure < 60 s together)
  --rounds N each fig6/fig8 point N times, Unique and Multi interleaved; the
             median round is kept (default 3; fig7 runs once: its loads are long);
             redundancy, failure and offload: N rounds of all their modes
  --quiet-wait S  redundancy, failure and offload: before each point wait up to S
             seconds for the machine to be under 15 % busy (default: no
             wait); how busy it was goes into the CSVs (busy_pct_max)

Every run prints a progress line; each figure ends in DIR/<fig>.csv and
DIR/<fig>*.png, DIR/tables.md; DIR/raw.log keeps the run's output with every
result line (`scripts/sharry_bench.py aggregate DIR/raw.log DIR` rebuilds the
CSVs). The
measuring is scripts/experiments-measure.sh (bash: it also runs inside the VM,
which has no python3); this program reads what it prints.
"""
    opts = {"vm": False, "quick": False, "rounds": None, "only": "fig6,fig7,fig8", "out": None, "build": "build",
            "quiet-wait": None}
    err = parse_options("experiments", args, opts, flags=("vm", "quick"))
    if err is not None:
        return err
    if opts["rounds"] is not None and not re.fullmatch(r"[1-9][0-9]{0,3}", opts["rounds"]):
        return usage_error("experiments", "--rounds %s: want an integer in 1..9999" % opts["rounds"])
    figs = "(fig6|fig7|fig8|redundancy|failure|offload)"
    if not re.fullmatch(r"%s(,%s)*" % (figs, figs), opts["only"]):
        return usage_error("experiments", "--only %s: want a comma-separated list of fig6, fig7, fig8, redundancy, "
                           "failure, offload" % opts["only"])
    if opts["quiet-wait"] is not None and not re.fullmatch(r"[0-9]{1,5}", opts["quiet-wait"]):
        return usage_error("experiments", "--quiet-wait %s: want seconds in 0..99999" % opts["quiet-wait"])
    if opts["vm"] and re.search("redundancy|failure", opts["only"]):
        return usage_error("experiments", "--only %s: redundancy and failure run on the host only (4 memnodes and 3 "
                           "clients; untested in the VM)" % opts["only"])
    os.chdir(ROOT)
    build = opts["build"]
    subprocess.run(["scripts/install-deps.sh"], stdout=subprocess.DEVNULL, check=True)
    subprocess.run(["cmake", "-S", ".", "-B", build, "-G", "Ninja"], stdout=subprocess.DEVNULL, check=True)
    print("experiments: building ...", flush=True)
    subprocess.run(["cmake", "--build", build, "--target", "memnode", "memnode_stats", "sharry_client",
                    "dataframe_bench"], stdout=subprocess.DEVNULL, check=True)
    measure = [os.path.join(ROOT, "scripts/experiments-measure.sh"), "--only", opts["only"], "--build", build] + \
        (["--rounds", opts["rounds"]] if opts["rounds"] else []) + (["--quick"] if opts["quick"] else []) + \
        (["--quiet-wait", opts["quiet-wait"]] if opts["quiet-wait"] else [])
    if opts["vm"]:
        out = opts["out"] or "results/vm"
        b = os.path.join(ROOT, build)
        files = []
        for f in ("tools/memnode", "tools/memnode_stats", "tools/sharry_client", "bench/dataframe_bench"):
            files += ["--file", os.path.join(b, f)]
        files += ["--file", os.path.join(ROOT, "scripts/lib.sh")]
        cmd = ["scripts/rxe-vm.sh", "--timeout", "5400", "--mem", "3072"] + files + ["--"] + measure + \
            ["--transport", "verbs", "--scale", "vm"]
        print("experiments: verbs over SoftRoCE in the VM (emulated, so smaller); results in " + out, flush=True)
    else:
        out = opts["out"] or "results/host"
        cmd = measure + ["--transport", "tcp", "--scale", "host"]
        print("experiments: writing to " + out, flush=True)
    os.makedirs(out, exist_ok=True)
    start = time.time()
    with open(os.path.join(out, "raw.log"), "w") as raw:
        collector = Collector(out, raw=raw, echo=lambda s: print(s, flush=True),
                              live=sys.stdout.isatty() and not opts["vm"])
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1)
        try:
            for line in proc.stdout:
                collector.feed(line)
        except (ExperimentError, KeyboardInterrupt) as e:
            proc.send_signal(signal.SIGTERM)
            proc.wait()
            if isinstance(e, ExperimentError):
                print(e, flush=True)
            return 1
        rc = proc.wait()
    if rc != 0:
        print("experiments: the measuring failed (exit status %d)" % rc, file=sys.stderr)
        return rc
    print("experiments: done in %d s" % (time.time() - start), flush=True)
    if shutil.which("gnuplot") is None:
        print("experiments: gnuplot is missing (scripts/install-deps.sh); CSVs only")
        rc = 0
    else:
        rc = plot_dir(out)
    for v in collector.violations:
        print("experiments: UNEXPECTED: " + v, file=sys.stderr)
    return 1 if collector.violations else rc


def cmd_aggregate(args):
    """The CSVs of scripts/experiments.sh again, from the raw log a run left
(DIR/raw.log: the lines of scripts/experiments-measure.sh; RAW may be
gzipped, raw.log.gz), into OUT:

  scripts/sharry_bench.py aggregate RAW OUT
"""
    if len(args) != 2:
        return usage_error("aggregate", "usage: sharry_bench.py aggregate RAW OUT")
    os.makedirs(args[1], exist_ok=True)
    with (gzip.open(args[0], "rt") if args[0].endswith(".gz") else open(args[0])) as f:
        c = aggregate_lines(f, args[1], echo=lambda s: None)
    for path in c.written:
        print("aggregate: wrote " + path)
    for v in c.violations:
        print("aggregate: UNEXPECTED: " + v, file=sys.stderr)
    return 1 if c.violations else 0


# ---------------------------------------------------------------- the allocator matrix

ALLOC_PRELOAD = {
    "jemalloc": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "tcmalloc": "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "mimalloc": "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2",
}
ALLOC_COLUMNS = ["sharry-1", "sharry-1p", "sharry-K", "mutex", "glibc", "jemalloc", "tcmalloc", "mimalloc"]
OFFLOADED = ["sharry-1", "sharry-1p", "sharry-K"]


def busy_pct():
    """Busy percentage of all CPUs over one second."""
    def sample():
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:9]]
    a = sample()
    time.sleep(1)
    b = sample()
    d = [y - x for x, y in zip(a, b)]
    tot, idle = sum(d), d[3] + d[4]
    return 100 * (tot - idle) // tot if tot > 0 else 0


def wait_quiet(seconds):
    """Waits (at most `seconds`) until the machine is below 15 % busy; returns how busy it was last."""
    deadline = time.time() + seconds
    pct = busy_pct()
    while pct >= 15 and time.time() < deadline:
        pct = busy_pct()
    return pct


def alloc_report(records, threads):
    """The markdown report of bench-alloc from alloc_bench's row and scale records."""
    rate, p99, scale, order = {}, {}, {}, []
    for r in records:
        if r["record"] == "row":
            key = (r["workload"], r["batch"], r["threads"], r["mode"])
            rate[key], p99[key] = r["mobjs"], r["p99_us"]
        elif r["record"] == "scale":
            m = r["mode"]
            if m not in scale:
                order.append(m)
                scale[m] = {"batch": r["batch"], "first": r["live"], "points": {}}
            scale[m]["batch"] = r["batch"]
            scale[m]["last"] = r["live"]
            scale[m]["points"][r["live"]] = r
    ts = [t for t in threads.split(",") if t]
    cells = [(w, b, t) for w in ("4k", "mixed") for b in ("1", "16") for t in ts]
    wname = lambda w: "4 KiB" if w == "4k" else "mixed"  # noqa: E731
    out = ["Throughput in M objects/s (allocations + frees), then p99 of one call (a whole batch) in us.",
           "sharry-1p: section thread on core 1, all requesters on core 0; the others unpinned.", "",
           "| workload | batch | threads |" + "".join(" %s |" % c for c in ALLOC_COLUMNS),
           "|---|---|---|" + "---|" * len(ALLOC_COLUMNS)]
    for w, b, t in cells:
        line = "| %s | %s | %s |" % (wname(w), b, t)
        for m in ALLOC_COLUMNS:
            k = (w, b, t, m)
            line += " %.2f / %.1f |" % (num(rate[k]), num(p99[k])) if k in rate else " n/a |"
        out.append(line)
    out += ["", "Target 1: offloaded Sharry >= 2x the mutex allocator at 8+ requester threads",
            "(best of sharry-1, sharry-1p, sharry-K against mutex, same process, same reps).", "",
            "| workload | batch | threads | best offloaded | M obj/s | mutex M obj/s | ratio | >= 2 |",
            "|---|---|---|---|---|---|---|---|"]
    ratios = []
    for w, b, t in cells:
        if num(t) < 8 or (w, b, t, "mutex") not in rate:
            continue
        best = max((m for m in OFFLOADED if (w, b, t, m) in rate), key=lambda m: num(rate[w, b, t, m]), default=None)
        if best is None:
            continue
        bv, mv = num(rate[w, b, t, best]), num(rate[w, b, t, "mutex"])
        ratios.append(bv / mv)
        out.append("| %s | %s | %s | %s | %.2f | %.2f | %.2f | %s |" % (
            wname(w), b, t, best, bv, mv, bv / mv, "met" if bv / mv >= 2 else "MISSED"))
    out.append("")
    if ratios:
        met = sum(r >= 2 for r in ratios)
        out.append("Target 1: %d of %d rows met, ratio %.2f .. %.2f: %s" % (
            met, len(ratios), min(ratios), max(ratios), "met" if met == len(ratios) else "MISSED"))
    else:
        out.append("Target 1: no rows with 8+ threads measured")
    out += ["", "Target 2: cost of one alloc + one free, ns per object. all: median over interleaved",
            "rounds of the round mean, every call; clean: mean of the calls not longer than 10 us",
            "(longer ones were preempted or woke a sleeping thread; cut: their share of the calls).", "",
            "| mode | batch | all, first N | all, last N | clean, first N | clean, last N | cut, last N "
            "| ratio (clean) | ratio (all) | faults per 1000 ops, last N |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for m in order:
        s = scale[m]
        f, l = s["points"][s["first"]], s["points"][s["last"]]
        out.append("| %s (%s vs %s live) | %s | %.1f | %.1f | %.1f | %.1f | %.2f%% | %.2f | %.2f | %.2f |" % (
            m, s["first"], s["last"], s["batch"], num(f["pair_ns"]), num(l["pair_ns"]), num(f["clean_pair_ns"]),
            num(l["clean_pair_ns"]), num(l["cut_pct"]), num(l["clean_pair_ns"]) / num(f["clean_pair_ns"]),
            num(l["pair_ns"]) / num(f["pair_ns"]), num(l["faults_per_kop"])))
    out.append("")
    if "sharry-1p" in scale:
        s = scale["sharry-1p"]
        f, l = s["points"][s["first"]], s["points"][s["last"]]
        r = num(l["clean_pair_ns"]) / num(f["clean_pair_ns"])
        ra = num(l["pair_ns"]) / num(f["pair_ns"])
        out.append("Target 2: sharry-1p at %s live / at %s live = %.2f clean (%.2f all calls) (<= 1.2): %s" % (
            s["last"], s["first"], r, ra, "met" if r <= 1.2 else "MISSED"))
    else:
        out.append("Target 2: sharry-1p not measured")
    return "\n".join(out) + "\n"


def cmd_alloc(args):
    """The allocator benchmark matrix in one run, printed as ONE markdown table
plus the two targets of the issue, each marked met or MISSED.

  scripts/bench-alloc.sh [--duration-ms N] [--reps N] [--threads "1,2,4,8,16"]
                         [--sections K] [--scale-live "1000,10000000"]
                         [--scale-ops N] [--scale-rounds N] [--quiet-wait S]
                         [--build DIR] [--out DIR] [--no-install]

Part 1: alloc+free throughput (objects/s) and p99 of one call, for 1..16
requester threads x {4 KiB, mixed 16 B..64 KiB} x batch {1, 16} x
  sharry-1   Sharry, 1 section, offloaded to its section thread, unpinned
  sharry-1p  the same, section thread pinned to core 1, requesters to core 0
  sharry-K   Sharry, K sections (default 2: one per core), unpinned
  mutex      the same SectionAllocator behind one mutex, called directly
  glibc, jemalloc, tcmalloc, mimalloc  malloc/free on the same request
             stream (the last three by LD_PRELOAD of the Debian packages)
Part 2: cost of one alloc + free (64 B, FIFO) with 10^3 vs 10^7 live
objects, measured in interleaved rounds (bench/alloc_bench.cc).
Targets: offloaded Sharry >= 2x the mutex allocator at 8+ requester
threads; Sharry's alloc/free at 10^7 live <= 1.2x its cost at 10^3.

Installs only through scripts/install-deps.sh; builds bench/alloc_bench
(Release) in DIR (default build-alloc-bench). Raw results (alloc_bench
--format=json, one file per allocator, each starting with a "busy" record)
go to OUT (default DIR/bench-results), the report to OUT/report.md. Before
each process it waits up to --quiet-wait seconds (default 60) for the other
processes on the machine to go quiet, and prints how busy the machine was.
With the defaults the whole script takes about 2 minutes on the quiet 2-core
dev VM, plus up to 4 x 60 s of waiting when other work is running.
"""
    opts = {"duration-ms": "200", "reps": "3", "threads": "1,2,4,8,16", "sections": "2",
            "scale-live": "1000,10000000", "scale-ops": "400000", "scale-rounds": "20", "quiet-wait": "60",
            "build": "build-alloc-bench", "out": None, "no-install": False}
    err = parse_options("bench-alloc", args, opts, flags=("no-install",))
    if err is not None:
        return err
    os.chdir(ROOT)
    build = opts["build"]
    out = opts["out"] or os.path.join(build, "bench-results")
    if not opts["no-install"]:
        subprocess.run(["scripts/install-deps.sh"], check=True)
    subprocess.run(["cmake", "-S", ".", "-B", build, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
                    "-DSHARRY_BUILD_TESTS=OFF", "-DSHARRY_BUILD_EXAMPLES=OFF"], stdout=subprocess.DEVNULL, check=True)
    subprocess.run(["cmake", "--build", build, "--target", "alloc_bench"], stdout=subprocess.DEVNULL, check=True)
    bench = os.path.join(ROOT, build, "bench", "alloc_bench")
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(out):
        if name.endswith(".jsonl") or name.endswith(".txt"):
            os.remove(os.path.join(out, name))
    common = ["--threads=" + opts["threads"], "--duration_ms=" + opts["duration-ms"], "--reps=" + opts["reps"],
              "--sections=" + opts["sections"], "--scale_live=" + opts["scale-live"],
              "--scale_ops=" + opts["scale-ops"], "--scale_rounds=" + opts["scale-rounds"], "--format=json"]
    runs = [("main", "sharry, mutex, glibc", None,
             ["--modes=sharry-1,sharry-1p,sharry-K,mutex,malloc", "--malloc_name=glibc",
              "--scale_modes=sharry-1p,mutex,malloc"])]
    for name, lib in ALLOC_PRELOAD.items():
        runs.append((name, name, lib, ["--modes=malloc", "--malloc_name=" + name, "--scale_modes=malloc"]))
    start = time.time()
    records, busy = [], []
    for name, what, lib, extra in runs:
        if lib is not None and not os.path.exists(lib):
            print("bench-alloc: %s missing; %s skipped (scripts/install-deps.sh installs it)" % (lib, name),
                  file=sys.stderr)
            continue
        pct = wait_quiet(int(opts["quiet-wait"]))
        print("bench-alloc: %s (machine %d%% busy before)" % (what, pct), file=sys.stderr, flush=True)
        env = dict(os.environ, **({"LD_PRELOAD": lib} if lib else {}))
        res = subprocess.run([bench] + common + extra, env=env, stdout=subprocess.PIPE, text=True, check=True)
        with open(os.path.join(out, name + ".jsonl"), "w") as f:
            f.write(json.dumps({"record": "busy", "before": pct}) + "\n" + res.stdout)
        records += parse_records(res.stdout.splitlines())
        busy.append("%d%%" % pct)
    elapsed = int(time.time() - start)
    with open("/proc/meminfo") as f:
        mem_gib = next("%.0f" % (int(l.split()[1]) / 1048576) for l in f if l.startswith("MemTotal"))
    with open("/etc/os-release") as f:
        os_name = next((l.split("=", 1)[1].strip().strip('"') for l in f if l.startswith("PRETTY_NAME=")), "")
    with open("/proc/cpuinfo") as f:
        cpu = next((l.split(": ", 1)[1].strip() for l in f if l.startswith("model name")), "")
    print()
    print("Machine: %d cores (%s), %s GiB, %s, kernel %s." % (len(os.sched_getaffinity(0)), cpu, mem_gib, os_name,
                                                              os.uname().release))
    print("Command: scripts/bench-alloc.sh --duration-ms %s --reps %s --threads %s --sections %s --scale-live %s "
          "--scale-ops %s --scale-rounds %s (%d s; machine busy before each process: %s)" % (
              opts["duration-ms"], opts["reps"], opts["threads"], opts["sections"], opts["scale-live"],
              opts["scale-ops"], opts["scale-rounds"], elapsed, ", ".join(busy)))
    print()
    report = alloc_report(records, opts["threads"])
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(report)
    sys.stdout.write(report)
    return 0


# ---------------------------------------------------------------- command line

def usage_error(name, message):
    print("%s: %s (see --help)" % (name, message), file=sys.stderr)
    return 2


def parse_options(name, args, opts, flags=()):
    """Fills `opts` from "--key VALUE" and "--flag" arguments (keys as in
    `opts`); -h/--help prints the caller's docstring. Returns None, or an exit
    status for the caller to return."""
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-h", "--help"):
            print_help(name)
            return 0
        key = a[2:] if a.startswith("--") else None
        if key in flags:
            opts[key] = True
            i += 1
        elif key in opts:
            if i + 1 >= len(args):
                return usage_error(name, "%s needs a value" % a)
            opts[key] = args[i + 1]
            i += 2
        else:
            return usage_error(name, "unknown option " + a)
    return None


COMMANDS = {"experiments": cmd_experiments, "plot": cmd_plot, "aggregate": cmd_aggregate, "alloc": cmd_alloc}
# The names the wrapper scripts use in messages, for their --help.
ALIASES = {"bench-alloc": "alloc", "plot-experiments": "plot"}


def print_help(name):
    fn = COMMANDS.get(ALIASES.get(name, name))
    sys.stdout.write((fn.__doc__ if fn else __doc__).rstrip() + "\n")


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(__doc__.lstrip())
        return 0 if argv else 2
    cmd = COMMANDS.get(argv[0])
    if cmd is None:
        return usage_error("sharry_bench", "unknown command " + argv[0])
    if any(a in ("-h", "--help") for a in argv[1:2]):
        print_help(argv[0])
        return 0
    return cmd(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
