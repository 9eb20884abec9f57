#!/usr/bin/env python3
"""Joins flash-mla-bench text outputs into one table for an A/B comparison in one run.

    python3 scripts/bench_table.py baseline=out/bench_perf_baseline.txt this=out/bench_perf.txt

One row per workload (and cache format when not dense), one column per file with its time in us,
and a last column with the ratio of the last file to the first. A time whose check failed is marked
"!" and the check's word. Missing files or rows show "-".

A name given more than once marks passes of one binary (scripts/ab.sh): its column joins the passes'
times with "/", and one ratio column per later name compares its median time to the first name's.

As a module: table_rows and geomean, the table reader and geometric mean of scripts/standing.py and
scripts/incumbent_bench.py (whose own tables have flash-mla-bench's leading columns: workload, kv, backend,
time us).
"""
import math
import re
import statistics
import sys

# A timed row: the label (lazy: up to the cache-format column), the format, the backend (sm90, cpu, or an
# incumbent's name), the time in µs.
ROW = re.compile(r"(b=\S+ .*?)\s+(dense|fp8-tensor-fp8q|fp8-tensor|fp8)\s+([a-z][\w-]*)\s+([\d.]+)\s")


def table_rows(text):
    """(label, kv, backend, µs) of every timed row, up to incumbent_bench.py's comparison (not times)."""
    for line in text.splitlines():
        if line.startswith("ours against"):
            return
        m = ROW.match(line)
        if m:
            yield m[1].strip(), m[2], m[3], float(m[4])


def geomean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values))


def read_rows(path):
    rows = {}
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return rows
    for line in lines:
        if not line.startswith("b="):
            continue
        words = line.split()
        # The label ends where the cache-format or backend column begins.
        markers = ("dense", "fp8", "fp8-tensor", "fp8-tensor-fp8q", "sm90", "cpu")
        kv = next(i for i, w in enumerate(words) if w in markers)
        backend = next(i for i, w in enumerate(words) if w in ("sm90", "cpu"))
        key = " ".join(words[:kv]) + ("" if words[kv] in ("dense", "sm90", "cpu") else " " + words[kv])
        time = words[backend + 1]
        rows[key] = time if words[-1] == "ok" else time + "!" + words[-1]
    return rows


def number(cell):
    try:
        return float(cell)
    except ValueError:
        return None


def print_passes(names, tables, order):
    groups = {}
    for name, table in zip(names, tables):
        groups.setdefault(name, []).append(table)
    labels = list(groups)
    width = max([len(k) for k in order] + [8])
    cols = max(10, max(len(n) for n in labels))
    print(" ".join(["workload".ljust(width)] + [n.rjust(cols + 8) for n in labels] +
                   [("%s/%s" % (n, labels[0])).rjust(cols) for n in labels[1:]]))
    for key in order:
        cells, medians = [], []
        for n in labels:
            times = [t.get(key, "-") for t in groups[n]]
            cells.append(" / ".join(times))
            values = [number(x) for x in times]
            medians.append(statistics.median(values) if values and None not in values else None)
        ratios = ["%.3f" % (m / medians[0]) if m is not None and medians[0] else "-" for m in medians[1:]]
        print(" ".join([key.ljust(width)] + [c.rjust(cols + 8) for c in cells] + [r.rjust(cols) for r in ratios]))


def main(args):
    if not args or any("=" not in a for a in args):
        sys.exit(__doc__)
    names, tables, order = [], [], []
    for arg in args:
        name, path = arg.split("=", 1)
        names.append(name)
        tables.append(read_rows(path))
        order += [k for k in tables[-1] if k not in order]
    if len(set(names)) < len(names):
        print_passes(names, tables, order)
        return
    width = max([len(k) for k in order] + [8])
    print(" ".join(["workload".ljust(width)] + [n.rjust(10) for n in names] + ["last/first".rjust(10)]))
    for key in order:
        cells = [t.get(key, "-") for t in tables]
        try:
            ratio = "%.3f" % (float(cells[-1]) / float(cells[0]))
        except ValueError:
            ratio = "-"
        print(" ".join([key.ljust(width)] + [c.rjust(10) for c in cells] + [ratio.rjust(10)]))


if __name__ == "__main__":
    main(sys.argv[1:])
