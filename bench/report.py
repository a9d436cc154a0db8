#!/usr/bin/env python3
"""Turns the JSON in bench/results/ into the summary table and the plots.

Reads storage.json, compare.json and load-replica-set.json (any may be
missing: its rows are then left out), prints one table -- figure, baseline,
ratio, target, met -- writes it with the machine and the command into
bench/README.md between the results markers, and draws SVG plots with
gnuplot into bench/results/. Standard library only. Targets are the issue's;
a figure is compared with its target here, never asserted.
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys

BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"

ENCRYPTION_RATIO_TARGET = 0.90
WRITE_RATIO_TARGET = 2.0
FAILOVER_MEDIAN_TARGET_MS = 1000
BOUNDED_K = 100000  # geo.bounded_max_writes, bulwarkd's default (geo-bench does not change it)


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ram_gib = 0.0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    ram_gib = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return "%d cores (nproc), %s, %.1f GiB RAM, Linux %s" % (
        os.cpu_count() or 0, model, ram_gib, platform.release())


class Table:
    def __init__(self):
        self.rows = []

    def add(self, figure, value, baseline, ratio, target="", met=None, note=""):
        self.rows.append((figure, value, baseline, ratio, target, met, note))

    def markdown(self):
        out = ["| figure | Bulwark | baseline | ratio | target | met? |",
               "| --- | ---: | ---: | ---: | --- | --- |"]
        for figure, value, baseline, ratio, target, met, note in self.rows:
            met_text = "" if met is None else ("met" if met else "**missed**")
            if note:
                met_text = (met_text + " " if met_text else "") + "(" + note + ")"
            out.append("| %s | %s | %s | %s | %s | %s |" % (figure, value, baseline, ratio, target, met_text))
        return "\n".join(out)


def fmt_ops(x):
    return "%.0f ops/s" % x


def storage_rows(t, storage):
    if not storage:
        return
    # fsync times on a shared disk vary a lot between runs: say so when the
    # medians come from fewer than three repetitions.
    noisy = "median of %d run(s): noisy" % storage.get("repeats", 1) if storage.get("repeats", 1) < 3 else ""
    for r in storage["results"]:
        if r["op"] == "get-cold":
            continue
        what = "%s, sync %s, %d thr" % ("fillrandom" if r["op"] == "put" else "readrandom",
                                        "on" if r["sync"] else "off", r["threads"])
        if "ops_s_rocksdb" in r:
            t.add("storage engine vs raw RocksDB: " + what, fmt_ops(r["ops_s_full"]),
                  "RocksDB " + fmt_ops(r["ops_s_rocksdb"]), "%.2f" % r["engine_to_rocksdb_ratio"],
                  "(none set)", None, noisy)
    for r in storage["results"]:
        if r["op"] == "get-cold" or "encryption_ratio" not in r:
            continue
        what = "%s, sync %s, %d thr" % (r["op"], "on" if r["sync"] else "off", r["threads"])
        ratio = r["encryption_ratio"]
        cpu = ""
        if "cpu_us_per_op_full" in r:
            cpu = "CPU %.1f vs %.1f us/op" % (r["cpu_us_per_op_full"], r["cpu_us_per_op_plain"])
        t.add("encryption cost (engine level): " + what, fmt_ops(r["ops_s_full"]),
              "both off " + fmt_ops(r["ops_s_plain"]), "%.2f" % ratio, ">= 0.90",
              ratio >= ENCRYPTION_RATIO_TARGET, "; ".join(x for x in (cpu, noisy) if x))


def encryption_rows(t, enc):
    """The full stack: 4-node sets with sealed items on encrypted files vs
    bulwarkd --benchmark-unencrypted, the same closed-loop writes."""
    if not enc or "writes" not in enc:
        t.add("encryption cost (full stack, bulwarkd)", "not measured", "", "", ">= 0.90", None,
              "run compare-bench --systems bulwark bulwark-plain")
        return
    runs = {}
    for r in enc["writes"]:
        runs.setdefault((r["key_bytes"], r["value_bytes"], r["clients"]), {})[r["system"]] = r
    for (kb, vb, clients), by in sorted(runs.items()):
        if "bulwark" not in by or "bulwark-plain" not in by:
            continue
        full, plain = by["bulwark"], by["bulwark-plain"]
        ratio = full["ops_s"] / plain["ops_s"] if plain["ops_s"] > 0 else 0
        cpu = "server CPU %.0f vs %.0f us/op" % (full["server_cpu_us_per_op"], plain["server_cpu_us_per_op"])
        t.add("encryption cost (full stack): writes %dB/%dB, %d clients" % (kb, vb, clients), fmt_ops(full["ops_s"]),
              "both off " + fmt_ops(plain["ops_s"]), "%.2f" % ratio, ">= 0.90", ratio >= ENCRYPTION_RATIO_TARGET,
              cpu)


def compare_rows(t, compare):
    if not compare:
        return
    writes = {}
    for r in compare.get("writes", []):
        writes[(r["system"], r["key_bytes"], r["value_bytes"], r["clients"])] = r
    for target in compare.get("targets", []):
        m = re.search(r"(\d+)B/(\d+)B, (\d+) clients", target["name"])
        cpu = ""
        if m:
            cell = tuple(int(x) for x in m.groups())
            b, e = writes.get(("bulwark",) + cell), writes.get(("etcd",) + cell)
            if b and e:
                cpu = "server CPU %.0f vs %.0f us/op" % (b["server_cpu_us_per_op"], e["server_cpu_us_per_op"])
        t.add(target["name"] + " (p99 %.1f vs %.1f ms)" % (target["bulwark_p99_ms"], target["etcd_p99_ms"]),
              fmt_ops(target["figure"]), "etcd " + fmt_ops(target["baseline"]), "%.2f" % target["ratio"],
              ">= 2x, p99 no worse", target["met"], cpu)
    reads = {}
    for r in compare.get("reads", []):
        reads[(r["system"], r["level"], r["clients"])] = r
    for (level, etcd_level) in (("strong", "linearizable"), ("session", "serializable"),
                                ("eventual", "serializable")):
        for (system, lvl, clients), b in sorted(reads.items()):
            if system != "bulwark" or lvl != level:
                continue
            e = reads.get(("etcd", etcd_level, clients))
            if not e:
                continue
            t.add("read %s vs etcd %s, %d clients (p99 %.1f vs %.1f ms)" % (
                level, etcd_level, clients, b["p99_ms"], e["p99_ms"]), fmt_ops(b["ops_s"]),
                  "etcd " + fmt_ops(e["ops_s"]), "%.2f" % (b["ops_s"] / e["ops_s"] if e["ops_s"] else 0))
    ycsb = {}
    for r in compare.get("ycsb", []):
        ycsb[(r["workload"], r["load"], r["system"])] = r
    for workload in "ABCDF":
        for load_kind in ("fixed", "saturation"):
            b = ycsb.get((workload, load_kind, "bulwark"))
            e = ycsb.get((workload, load_kind, "etcd"))
            if not b or not e:
                continue
            label = "YCSB %s %s" % (workload, "at %.0f ops/s offered" % b["offered_ops_s"]
                                   if load_kind == "fixed" else "at saturation (%d clients)" % b["clients"])
            if load_kind == "fixed":
                t.add(label + ": p99 latency", "%.1f ms" % b["p99_ms"], "etcd %.1f ms" % e["p99_ms"],
                      "%.2f" % (b["p99_ms"] / e["p99_ms"] if e["p99_ms"] else 0))
            else:
                t.add(label + " (p99 %.1f vs %.1f ms)" % (b["p99_ms"], e["p99_ms"]), fmt_ops(b["ops_s"]),
                      "etcd " + fmt_ops(e["ops_s"]), "%.2f" % (b["ops_s"] / e["ops_s"] if e["ops_s"] else 0))
    for system in ("bulwark", "etcd"):
        peak = max((r.get("peak_rss_mib", 0) for r in compare.get("writes", []) if r["system"] == system), default=0)
        if peak:
            compare.setdefault("_peak", {})[system] = peak
    peaks = compare.get("_peak", {})
    if "bulwark" in peaks and "etcd" in peaks:
        t.add("server RSS, peak summed over the servers", "%.0f MiB (4 nodes)" % peaks["bulwark"],
              "etcd %.0f MiB (3 members)" % peaks["etcd"], "%.2f" % (peaks["bulwark"] / peaks["etcd"]))


def failover_rows(t, load_rs, regions=None, cutoffs=None):
    if load_rs and "failover" in load_rs:
        f = load_rs["failover"]
        n = len(f["samples"])
        t.add("leader failover RTO median (%d kills)" % n, "%.0f ms" % f["median_ms"], "", "", "<= 1000 ms",
              f["median_ms"] <= FAILOVER_MEDIAN_TARGET_MS)
        t.add("leader failover RTO max (%d kills)" % n, "%.0f ms" % f["max_ms"], "", "", "(none set)")
        if "writes_lost" in f:
            t.add("leader failover RPO: acknowledged writes lost", "%d of %d read back" % (
                f["writes_lost"], f["writes_checked"]), "", "", "0", f["writes_lost"] == 0)
    if regions and regions.get("levels"):
        for lv in regions["levels"]:
            t.add("planned region failover at %s: write gap median / max (%d)" % (lv["level"], lv["failovers"]),
                  "%.0f / %.0f ms" % (lv["write_gap_p50_ms"], lv["write_gap_max_ms"]), "", "", "(none set)")
            t.add("planned region failover at %s: acknowledged writes lost" % lv["level"],
                  "%d of %d" % (lv["acked_writes_lost"], lv["acked_writes"]), "", "", "0",
                  lv["acked_writes_lost"] == 0)
    if cutoffs and cutoffs.get("levels"):
        for lv in cutoffs["levels"]:
            target = lv["rto_target_ms"]
            t.add("write-region cutoff at %s: RTO median / max (%d cutoffs, grace %d ms)" % (
                lv["level"], lv["cutoffs"], cutoffs["grace_ms"]),
                  "%.0f / %.0f ms" % (lv["rto_p50_ms"], lv["rto_max_ms"]), "", "", "<= grace + 5 s (%.0f ms)" % target,
                  lv["rto_max_ms"] <= target)
            lost = lv["acked_writes_lost"]
            if lv["level"] == "Strong":
                lost_target, met = "0", lost == 0
            elif lv["level"] == "BoundedStaleness":
                lost_target, met = "<= K (%d writes)" % BOUNDED_K, lost <= BOUNDED_K
            else:
                lost_target, met = "(none set)", None
            note = "" if lost == 0 else \
                "acknowledged in the cut-off region's last lease, never shipped: its conflict feed keeps them when it rejoins"
            t.add("write-region cutoff at %s: acknowledged writes lost" % lv["level"],
                  "%d of %d" % (lost, lv["acked_writes"]), "", "", lost_target, met, note)
    else:
        t.add("write-region cutoff across regions (automatic failover)", "not measured", "", "", "RTO/RPO by level",
              None, "geo-bench --cutoffs (full run only) left no results")


def backup_rows(t, backup):
    if not backup or "backup" not in backup:
        return
    b, r = backup["backup"], backup["restore"]
    t.add("backup throughput (%d x 1 KiB items)" % backup["items"],
          "%.1f MiB/s, %.0f items/s" % (b["mib_per_s"], b["items_per_s"]), "", "", "(none set)")
    t.add("restore throughput", "%.1f MiB/s, %.0f items/s" % (r["mib_per_s"], r["items_per_s"]), "", "",
          "(none set)")
    if "replay" in backup:
        t.add("point-in-time replay (archived commands)", "%.0f commands/s" % backup["replay"]["commands_per_s"],
              "", "", "(none set)")
    w = backup.get("write_latency")
    if w:
        t.add("fsync'd write p99 while a backup runs", "%.2f ms" % w["with_backup"]["p99_ms"],
              "%.2f ms without" % w["without_backup"]["p99_ms"], "%.2f" % w["p99_ratio"], "(none set)")


def gnuplot(script):
    try:
        subprocess.run(["gnuplot"], input=script, text=True, check=True, capture_output=True)
        return True
    except (OSError, subprocess.CalledProcessError) as e:
        print("gnuplot failed: %s" % e, file=sys.stderr)
        return False


def plot_failover(load_rs, results):
    if not load_rs or "failover" not in load_rs:
        return None
    samples = [s for s in load_rs["failover"]["samples"] if s.get("timeline_ms_ops_s")]
    if not samples:
        return None
    dat = os.path.join(results, "failover-timeline.dat")
    with open(dat, "w") as f:
        for i, s in enumerate(samples):
            f.write("# kill %d (node %d), first write after %.0f ms\n" % (i + 1, s["killed_node"],
                                                                       s["unavailable_ms"]))
            for t_ms, ops in s["timeline_ms_ops_s"]:
                f.write("%.0f %.1f\n" % (t_ms, ops))
            f.write("\n\n")
    svg = os.path.join(results, "failover-timeline.svg")
    plots = ", ".join("'%s' index %d with steps title 'kill %d'" % (dat, i, i + 1) for i in range(len(samples)))
    ok = gnuplot("""set terminal svg size 900,500 dynamic
set output '%s'
set title 'Acknowledged writes around a leader kill -9 (50 ms buckets; kill at t = 0)'
set xlabel 'ms from the kill'
set ylabel 'acknowledged writes/s'
set key outside right
set yrange [0:*]
set arrow from 0, graph 0 to 0, graph 1 nohead dashtype 2
plot %s
""" % (svg, plots))
    return svg if ok else None


def plot_writes(compare, results):
    if not compare or not compare.get("writes"):
        return None
    dat = os.path.join(results, "writes.dat")
    cells = {}
    for r in compare["writes"]:
        label = "%dB/%dB c=%d" % (r["key_bytes"], r["value_bytes"], r["clients"])
        cells.setdefault(label, {})[r["system"]] = r["ops_s"]
    with open(dat, "w") as f:
        f.write("cell bulwark etcd\n")
        for label, v in cells.items():
            f.write('"%s" %.1f %.1f\n' % (label, v.get("bulwark", 0), v.get("etcd", 0)))
    svg = os.path.join(results, "writes.svg")
    ok = gnuplot("""set terminal svg size 900,500 dynamic
set output '%s'
set title 'Replicated durable writes: Bulwark (4 nodes) vs etcd (3 members), same machine, same run'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set ylabel 'ops/s'
set yrange [0:*]
set xtics scale 0
set key top left
plot '%s' using 2:xtic(1) title columnheader(2), '' using 3 title columnheader(3)
""" % (svg, dat))
    return svg if ok else None


def plot_ycsb(compare, results):
    if not compare or not compare.get("ycsb"):
        return None
    dat = os.path.join(results, "ycsb-histograms.dat")
    series = []
    with open(dat, "w") as f:
        for r in compare["ycsb"]:
            if r["load"] != "fixed":
                continue
            h = r["latency_histogram"]
            total = max(h["count"], 1)
            f.write("# %s %s\n" % (r["system"], r["workload"]))
            seen = 0
            for upper_us, count in h["buckets"]:
                seen += count
                f.write("%.1f %.6f\n" % (upper_us / 1000.0, seen / total))
            f.write("\n\n")
            series.append("%s %s" % (r["system"], r["workload"]))
    svg = os.path.join(results, "ycsb-latency.svg")
    # One colour per workload; Bulwark solid, etcd dashed.
    plots = ", ".join("'%s' index %d with steps lc %d dt %d lw 1.5 title '%s'" % (
        dat, i, "ABCDF".index(name.split()[1]) + 1, 2 if name.startswith("etcd") else 1, name)
        for i, name in enumerate(series))
    ok = gnuplot("""set terminal svg size 900,500 dynamic
set output '%s'
set title 'YCSB at the fixed offered load: latency CDF (log-bucketed histograms)'
set logscale x
set xlabel 'latency, ms'
set ylabel 'fraction of requests at or below'
set key outside right
plot %s
""" % (svg, plots))
    return svg if ok else None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", default="bench/results")
    parser.add_argument("--readme", default="bench/README.md")
    parser.add_argument("--command", default="make bench")
    parser.add_argument("--note", default="", help="a line about the conditions of the run")
    args = parser.parse_args()

    storage = load(os.path.join(args.results, "storage.json"))
    compare = load(os.path.join(args.results, "compare.json"))
    load_rs = load(os.path.join(args.results, "load-replica-set.json"))
    backup = load(os.path.join(args.results, "backup.json"))
    enc = load(os.path.join(args.results, "encryption.json"))
    t = Table()
    compare_rows(t, compare)
    failover_rows(t, load_rs, load(os.path.join(args.results, "failover-regions.json")),
                  load(os.path.join(args.results, "cutoff-regions.json")))
    storage_rows(t, storage)
    encryption_rows(t, enc)
    backup_rows(t, backup)
    plots = [p for p in (plot_writes(compare, args.results), plot_ycsb(compare, args.results),
                         plot_failover(load_rs, args.results)) if p]

    lines = ["Machine: " + machine() + ".", "", "Command: `" + args.command + "`."]
    if compare and "systems" in compare:
        lines += ["", "Systems: " + "; ".join("%s: %s" % kv for kv in sorted(compare["systems"].items())) + "."]
    if args.note:
        lines += ["", args.note]
    lines += ["", t.markdown(), ""]
    if plots:
        lines += ["Plots: " + ", ".join("`%s`" % os.path.relpath(p, os.path.dirname(args.readme)) for p in plots)
                  + ".", ""]
    block = "\n".join(lines)
    print(block)

    try:
        with open(args.readme) as f:
            readme = f.read()
    except OSError:
        readme = "# Bulwark benchmarks\n\n" + BEGIN + "\n" + END + "\n"
    if BEGIN not in readme:
        readme += "\n" + BEGIN + "\n" + END + "\n"
    readme = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: BEGIN + "\n" + block + "\n" + END,
                    readme, flags=re.S)
    with open(args.readme, "w") as f:
        f.write(readme)
    print("wrote %s" % args.readme, file=sys.stderr)


if __name__ == "__main__":
    main()
