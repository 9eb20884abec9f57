#!/usr/bin/env python3
"""ncu_lines.py SASS SOURCE KERNEL CSV_A KERNEL_B CSV_B [BLOCKS]: executed warp instructions of two kernels
(e.g. two template instances) per line of SOURCE, side by side, largest differences first.

SASS: `nvdisasm -gi -c` of the cubin that holds both kernels (cuobjdump -xelf to get it); SOURCE: the .cuh
whose lines to attribute to (an instruction goes to the innermost frame of its inline chain in SOURCE);
KERNEL_*: mangled names; CSV_*: `ncu --section SourceCounters --page source --print-source sass --csv`
exports of them (variants.sh's ncu_source). Addresses are taken relative to each export's first line.
BLOCKS divides the counts (e.g. blocks times warps, for per-block figures; default 1)."""
import collections
import csv
import re
import sys


def functions(src: list) -> list:
    """(first line, name) of each __device__/__global__ function in src, in order (a lambda counts as its
    enclosing function)."""
    starts = []
    for i, line in enumerate(src, 1):
        if line.strip().startswith("//"):
            continue
        m = re.search(r"__device__[^(]*?\b(\w+)\s*\(", line)
        if m:
            starts.append((i, m.group(1)))
        elif "__global__" in line:
            starts.append((i, "__global__"))
    return starts


def sass_lines(path: str, kernel: str, source: str) -> dict:
    """offset -> innermost line of `source` in the instruction's inline chain (None if absent)."""
    out, chain, pending, inside = {}, [], False, False
    for line in open(path):
        if line.startswith(".text."):
            inside = line.startswith(".text." + kernel + ":")
            continue
        if not inside:
            continue
        if line.lstrip().startswith("//## File"):
            chain = chain if pending else []
            pending = True
            chain.append(line)
            continue
        m = re.match(r"\s*/\*([0-9a-f]{4,})\*/", line)
        if m:
            pending = False
            hits = [int(x.group(2)) for c in chain for x in re.finditer(r'"([^"]+)", line (\d+)', c)
                    if x.group(1).endswith(source)]
            out[int(m.group(1), 16)] = hits[0] if hits else None
    return out


def counts(path: str) -> list:
    rows = [r for r in csv.reader(open(path, newline="")) if r]
    head = next(i for i, r in enumerate(rows) if r[0] == "Address")
    col = rows[head].index("Instructions Executed")
    data = [r for r in rows[head + 1:] if r[0].startswith("0x")]
    base = int(data[0][0], 16)
    return [(int(r[0], 16) - base, float(r[col].replace(",", "") or 0)) for r in data]


def main() -> int:
    if len(sys.argv) < 7:
        print(__doc__)
        return 2
    sass, source, ka, ca, kb, cb = sys.argv[1:7]
    div = float(sys.argv[7]) if len(sys.argv) > 7 else 1.0
    src = open(source).read().splitlines()
    starts = functions(src)

    def fn(line):
        name = "?"
        for s, n in starts:
            if s > line:
                break
            name = n
        return name

    tables = []
    for kernel, path in ((ka, ca), (kb, cb)):
        where = sass_lines(sass, kernel, source.split("/")[-1])
        per = collections.Counter()
        for off, n in counts(path):
            per[where.get(off)] += n
        tables.append(per)
    a, b = tables
    fa, fb = collections.Counter(), collections.Counter()
    for line, n in a.items():
        fa[fn(line) if line else "?"] += n
    for line, n in b.items():
        fb[fn(line) if line else "?"] += n
    print(f"total: {sum(a.values()) / div:.1f} against {sum(b.values()) / div:.1f}")
    print("by function:")
    for f in sorted(set(fa) | set(fb), key=lambda f: -(fa[f] - fb[f])):
        print(f"  {f:24s} {fa[f] / div:9.1f} {fb[f] / div:9.1f} {(fa[f] - fb[f]) / div:+9.1f}")
    print("by line (differences above 1 % of the total difference):")
    gap = abs(sum(a.values()) - sum(b.values())) or 1.0
    for line in sorted(set(a) | set(b), key=lambda k: -(a[k] - b[k])):
        if abs(a[line] - b[line]) > 0.01 * gap:
            text = src[line - 1].strip()[:70] if line else ""
            print(f"  L{line!s:5} {a[line] / div:8.1f} {b[line] / div:8.1f} {(a[line] - b[line]) / div:+8.1f}  {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
