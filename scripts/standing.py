#!/usr/bin/env python3
"""Where flash-mla-bench's GPU rows stand against PERF.md's incumbents, and FP8 against bf16.

usage: standing.py [--perf PATH] BENCH_OUTPUT...

Reads flash-mla-bench outputs (its plain table; several files, e.g. one run per grid, are merged: a row seen
twice keeps its last time) and PERF.md (default ../shared/PERF.md from the repository root). The card named
in the outputs' header ("on NVIDIA H200") picks PERF.md's table for that card: the H200 table, or the H100
ones. Prints, per 16-bit row that PERF.md times: our µs, FlashMLA's, FA3's and the faster incumbent's time
over ours (above 1: ours is faster); then the geometric means over those rows, by query rows (h_q * s_q)
and in all, and how many rows are at or above; then, for every workload timed both with a 16-bit cache and
an FP8 one, the 16-bit time over the FP8 time (issue 7's ratio). PERF.md's numbers come from another run:
compare versions only within one run (scripts/ab.sh); this is the standing against the published bar.
"""

import argparse
import re
import sys
from pathlib import Path

from bench_table import geomean, table_rows

# A workload: (batch, lengths, h_q, s_q, ragged); lengths is the uniform length as text ("8192") or the
# named length list ("4641/45118/1730/1696", "256..1024").
MIXED_LENS = "4641/45118/1730/1696"


def bench_key(label):
    """The workload of a flash-mla-bench row label, e.g. 'b=128 seqlen~8192 h_q=128 s_q=1 ragged'."""
    m = re.fullmatch(r"b=(\d+) (?:seqlen[=~](\d+)|lens=(\S+)) h_q=(\d+) s_q=(\d+)( ragged)?", label)
    if not m:
        return None
    return (int(m[1]), m[2] or m[3], int(m[4]), int(m[5]), bool(m[6]))


def read_bench(paths):
    """{(key, kv): µs} over the files, and the card named in their headers."""
    times, cards = {}, set()
    for path in paths:
        text = Path(path).read_text()
        cards.update(re.findall(r"\bon NVIDIA (H100|H200)\b", text))
        for label, kv, backend, us in table_rows(text):
            if backend == "sm90" and bench_key(label):
                times[(bench_key(label), kv)] = us
    if len(cards) != 1:
        sys.exit(f"standing.py: expected the outputs of one card (H100 or H200), found {sorted(cards) or 'none'}")
    return times, cards.pop()


def pair(cell):
    """'142 / 149' -> (142.0, 149.0); '**408**' and '415' cells are read by the caller."""
    a, b = (float(x) for x in cell.split("/"))
    return a, b


def perf_key(text):
    """The workload of one of PERF.md's row names (every naming its tables use)."""
    text = text.strip()
    m = re.fullmatch(r"b=(\d+), (?:seqlen )?(\d+), h_q=(\d+), s_q=(\d+)(, ragged)?", text)
    if m:
        return (int(m[1]), m[2], int(m[3]), int(m[4]), bool(m[5]))
    m = re.fullmatch(r"b=(\d+), lengths (\S+?)( random)?, h_q=(\d+), s_q=(\d+)", text)
    if m:
        return (int(m[1]), m[2], int(m[4]), int(m[5]), False)
    m = re.fullmatch(r"(?:short|small) b(\d+) (s(\d+)|mixed|rand(\d+)-(\d+))(?: h(\d+))? q(\d+)", text)
    if m:
        lens = m[3] or (MIXED_LENS if m[2] == "mixed" else f"{m[4]}..{m[5]}")
        return (int(m[1]), lens, int(m[6] or 16), int(m[7]), False)
    return None


def read_perf(path, card):
    """{key: (FlashMLA µs, FA3 µs)} from PERF.md's tables for `card`."""
    refs, section = {}, None
    for line in Path(path).read_text().splitlines():
        if line.startswith("## ") or line.startswith("### "):
            section = "H200" if "H200" in line else "H100" if "H100" in line else None
            continue
        if section != card or not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        # The incumbents' table: | workload | FlashMLA | FA3-MLA | best GB/s | best TFLOP/s |
        key = perf_key(cells[0])
        if key and len(cells) == 5 and "/" not in cells[1]:
            refs[key] = (float(cells[1].strip("*")), float(cells[2].strip("*")))
            continue
        # The H200 table: | workload | uniform | ragged | with "FlashMLA / FA3" cells.
        if key and len(cells) == 3 and "/" in cells[1]:
            refs[key] = pair(cells[1])
            if cells[2]:
                refs[key[:4] + (True,)] = pair(cells[2])
            continue
        # The H100 grid: | seqlen | h_q | s_q | uniform | ragged |
        if len(cells) == 5 and cells[0].isdigit() and "/" in cells[3]:
            base = (128, cells[0], int(cells[1]), int(cells[2]))
            refs[base + (False,)] = pair(cells[3])
            refs[base + (True,)] = pair(cells[4])
    if not refs:
        sys.exit(f"standing.py: no {card} table found in {path}")
    return refs


def label(key):
    b, lens, h_q, s_q, ragged = key
    length = f"lens={lens}" if not lens.isdigit() else f"seqlen{'~' if ragged else '='}{lens}"
    return f"b={b} {length} h_q={h_q} s_q={s_q}{' ragged' if ragged else ''}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--perf", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "PERF.md"))
    parser.add_argument("outputs", nargs="+")
    args = parser.parse_args()
    times, card = read_bench(args.outputs)
    refs = read_perf(args.perf, card)

    print(f"{card}: ours against PERF.md's {card} incumbents (faster / ours: above 1 = ours faster)")
    print(f"{'workload':44} {'ours':>8} {'FlashMLA':>9} {'FA3':>8} {'x':>7}")
    by_rows = {}
    for (key, kv), ours in sorted(times.items()):
        if kv != "dense" or key not in refs:
            continue
        flash, fa3 = refs[key]
        ratio = min(flash, fa3) / ours
        by_rows.setdefault(key[2] * key[3], []).append(ratio)
        print(f"{label(key):44} {ours:8.1f} {flash:9.1f} {fa3:8.1f} {ratio:7.3f}")
    ratios = [r for rs in by_rows.values() for r in rs]
    if ratios:
        parts = ", ".join(f"{rows}: {geomean(rs):.3f} ({len(rs)})" for rows, rs in sorted(by_rows.items()))
        print(f"geometric mean {geomean(ratios):.3f} over {len(ratios)} rows; by query rows {parts}; "
              f"{sum(r >= 1 for r in ratios)} rows at or above")
    else:
        print("no 16-bit row of the outputs is in PERF.md's tables")

    fp8 = [(key, kv, times[(key, "dense")] / t) for (key, kv), t in sorted(times.items())
           if kv != "dense" and (key, "dense") in times]
    if fp8:
        print("\n16-bit time over FP8 time, same outputs (issue 7):")
        for key, kv, ratio in fp8:
            print(f"{label(key):44} {kv:16} {ratio:6.3f}")


if __name__ == "__main__":
    main()
