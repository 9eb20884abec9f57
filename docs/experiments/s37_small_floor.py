"""Session 37: issue 6's >= 1.5x by arithmetic. For each row of an incumbent_bench.py --with-ours table, the row's
floor (its bytes at the copy ceiling or its FLOPs at the GEMM ceiling, whichever is longer; bytes and FLOPs counted
as PERF.md counts them, from the workload list's lengths) against 1.5x the faster incumbent's time. Prints every row
with our ratio and its class (1.5x below the floor: cannot be met; within 10 % above it; open), then the counts.

    python3 docs/experiments/s37_small_floor.py INC_TABLE WORKLOADS.jsonl COPY_GBPS GEMM_TFLOPS [bound]
    (session 37: s37-device-output.txt's call 1 inc-next-small.txt, scratch/wl-small.jsonl, 4249, 801)

With `bound` (session 38) it prints instead each row's floor against the faster incumbent's time (the most
any implementation could lead by) and the geometric means of that bound and of our ratio (session 38: call 1's
heat.txt, scratch/wl-flashmla.jsonl, 4320 (session 13's copy-pattern ceiling), 800).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from bench_table import geomean  # noqa: E402
from incumbent_bench import bytes_and_flops, load_workloads  # noqa: E402


def main():
    table, workloads, copy, gemm = sys.argv[1], sys.argv[2], float(sys.argv[3]) * 1e9, float(sys.argv[4]) * 1e12
    bound_mode = sys.argv[5:] == ["bound"]
    wl = {w["label"]: w for w in load_workloads(workloads, "")}
    rows, on = [], False
    for line in open(table):
        if "ours against" in line:
            on = True
            continue
        if on and " dense " in line:
            p = line.split()
            i = p.index("dense")
            rows.append((" ".join(p[:i]),) + tuple(map(float, p[i + 1:i + 5])))
    counts = {"below the floor": 0, "within 10 % above it": 0, "open": 0}
    bounds, ratios = [], []
    for label, ours, fa3, flashmla, ratio in rows:
        w = wl[label]
        nbytes, flops = bytes_and_flops(w, "dense")
        floor = max(nbytes / copy, flops / gemm) * 1e6
        if bound_mode:
            bound = min(fa3, flashmla) / floor
            bounds.append(bound)
            ratios.append(ratio)
            print(f"{label:<46} ours {ours:8.1f}  floor {floor:8.1f}  ours/floor {ours / floor:5.2f}  "
                  f"ratio {ratio:.3f}  bound {bound:.3f}")
            continue
        target = min(fa3, flashmla) / 1.5
        kind = "below the floor" if target < floor else "within 10 % above it" if target < 1.1 * floor else "open"
        counts[kind] += 1
        print(f"{label:<46} ours {ours:8.1f}  1.5x {target:8.1f}  floor {floor:8.1f}  ratio {ratio:.3f}  {kind}")
    if bound_mode:
        if not rows:
            sys.exit(f"{table}: no rows after 'ours against'")
        print(f"{len(rows)} rows: geometric mean bound {geomean(bounds):.3f}, ours {geomean(ratios):.3f}")
        return
    print(f"{len(rows)} rows: " + ", ".join(f"{v} {k}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
