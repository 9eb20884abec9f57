"""Reading flash-mla-bench's plain table, and incumbent_bench.py's (the same leading columns: workload, kv,
backend, time us), for scripts/standing.py and scripts/incumbent_bench.py."""

import math
import re

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
