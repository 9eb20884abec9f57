"""python -m flash_mla.bench: times flash_mla_with_kvcache over the benchmark grids of PERF.md.

    python -m flash_mla.bench [--grid perf|flashmla|short|small|all|tiny] [--dtype bf16|fp16]
                              [--kv dense|fp8|fp8-tensor] [--out DIR] [--check] [--device cuda|cpu] [--seed N]
    python -m flash_mla.bench --plot DIR/bench_<grid>_<dtype>.json

The workloads and the method are those of the C++ flash-mla-bench (cli/flash_mla_bench.cpp), through
the package's public API on torch tensors:
- inputs: randn/10 (never zeros); pages of 64 scattered at random (torch.randperm); NaN in every cached
  token past a sequence's end and in unused pages; garbage block-table entries past each sequence's
  last page; ragged lengths ~ normal(mean, mean/2), at least s_q, seeded;
- on CUDA: the two ceilings first (a 2 GiB device-to-device copy counting bytes read + written, and a
  bf16 8192^3 torch.matmul on random data); per workload the metadata once, then ~10 calls captured
  in one torch.cuda.CUDAGraph, rotating over enough input copies that one replay reads >= 4x the L2;
  the replays timed with CUDA events after >= 50 ms of warm-up; per call = replay / calls, median;
- on CPU (--device cpu, for CI: the default grid is 'tiny'): time.perf_counter around each call;
- counting (PERF.md): FLOPs = 2 s_q h_q (576 + 512) sum(seqlens); bytes = (sum(seqlens) h_kv 576 +
  b s_q h_q 576 + b s_q h_q 512) * element size, with a cached token's bytes per format for FP8;
- --kv fp8 / fp8-tensor: the same cache quantised by flash_mla's quantisers (FP8 with scale, 656
  bytes per token; per-tensor e4m3 with descale_k = amax / 448), NaN tails kept as NaN codes; q bf16;
  --check then compares with the reference on the dequantised cache.
Writes the table to stdout and bench_<grid>_<dtype>.{json,csv,png} (FP8: bench_<grid>_<kv>.*) to --out.
The PNG needs matplotlib (pip install 'flash_mla[bench]'); without it, --plot FILE.json draws it later
on another machine.
--check compares a few sequences of every row with a float64 reference (SPEC.md's tolerances).
Exit status: 0 ok; 1 a row failed (an error or the check) or no CUDA device.
"""

import argparse
import csv
import dataclasses
import datetime
import json
import math
import os
import statistics
import sys
import time

import torch

from . import flash_mla_with_kvcache, get_mla_metadata
from ._ops import _FP8_WITH_SCALE_BYTES as FP8_WITH_SCALE_BYTES

D, DV, PAGE = 576, 512, 64
GARBAGE_BLOCK_IDS = (-1, 2147480000)  # what engines leave past a sequence's last page
CALLS_PER_GRAPH, MAX_COPIES = 10, 64
WARMUP_MS, BUDGET_MS, MIN_REPLAYS, MAX_REPLAYS = 50.0, 200.0, 20, 1000
CPU_BUDGET_S = 0.05


# ---------------------------------------------------------------------------------------------
# Workloads (the C++ bench's named grids, same labels)

@dataclasses.dataclass(frozen=True)
class Spec:
    label: str
    seqlens: tuple
    h_q: int
    s_q: int
    h_kv: int = 1

    @property
    def batch(self):
        return len(self.seqlens)

    @property
    def mean_seqlen(self):
        return sum(self.seqlens) / self.batch

    def flops(self):
        return 2.0 * self.s_q * self.h_q * (D + DV) * sum(self.seqlens)

    def bytes(self, elem_size, token_bytes=None):
        """Bytes moved per call; token_bytes: one cached token of one KV head (default D * elem_size)."""
        rows = self.batch * self.s_q * self.h_q
        token_bytes = D * elem_size if token_bytes is None else token_bytes
        return sum(self.seqlens) * self.h_kv * token_bytes + (rows * D + rows * DV) * elem_size


def _spec(lens_text, lens, h_q, s_q, suffix=""):
    return Spec(f"b={len(lens)} {lens_text} h_q={h_q} s_q={s_q}{suffix}", tuple(int(n) for n in lens), h_q, s_q)


def uniform(b, n, h_q, s_q):
    return _spec(f"seqlen={n}", [n] * b, h_q, s_q)


def ragged(b, mean, h_q, s_q, seed):
    """PERF.md's ragged rows: normal around the mean, sd mean / 2, at least s_q."""
    lens = torch.normal(float(mean), mean / 2, (b,), generator=torch.Generator().manual_seed(seed))
    return _spec(f"seqlen~{mean}", lens.round().clamp(min=s_q).tolist(), h_q, s_q, " ragged")


def listed(lens, h_q, s_q):
    return _spec("lens=" + "/".join(map(str, lens)), lens, h_q, s_q)


def random_lens(b, lo, hi, h_q, s_q, seed):
    lens = torch.randint(lo, hi + 1, (b,), generator=torch.Generator().manual_seed(seed))
    return _spec(f"lens={lo}..{hi}", lens.tolist(), h_q, s_q)


GRIDS = {
    "perf": "the rows of PERF.md's incumbents table (the default on CUDA)",
    "flashmla": "FlashMLA's grid: b=128 x seqlen 4096/8192/16384 x h_q 16/32/64/128 x s_q 1/2 x uniform/ragged",
    "short": "PERF.md's short-context rows (b=16..256, seqlen 512..1024)",
    "small": "PERF.md's small-batch rows (b=1..132, up to 64k context)",
    "all": "perf, flashmla, short and small",
    "tiny": "a few tiny rows for the CPU backend (the default with --device cpu)",
}


def grid_specs(name, seed):
    if name == "perf":
        return [uniform(128, 8192, 16, 1), uniform(128, 16384, 64, 1), uniform(128, 4096, 128, 1),
                ragged(128, 8192, 128, 1, seed), uniform(128, 16384, 128, 2), uniform(128, 1024, 16, 1),
                uniform(128, 1024, 128, 1), uniform(1, 65536, 16, 1), listed([4641, 45118, 1730, 1696], 16, 4),
                random_lens(64, 256, 1024, 16, 4, seed), uniform(64, 512, 16, 2)]
    if name == "flashmla":
        return [make(128, n, h_q, s_q) for n in (4096, 8192, 16384) for h_q in (16, 32, 64, 128)
                for s_q in (1, 2) for make in (uniform, lambda *a: ragged(*a, seed))]
    if name == "short":
        return [uniform(128, 1024, 16, 1), uniform(128, 1024, 128, 1), uniform(128, 1024, 16, 4),
                uniform(16, 1024, 16, 16), uniform(256, 512, 16, 1)]
    if name == "small":
        return [uniform(1, 65536, 16, 1), listed([4641, 45118, 1730, 1696], 16, 4),
                random_lens(64, 256, 1024, 16, 4, seed), uniform(64, 512, 16, 2), uniform(132, 4096, 16, 4),
                uniform(8, 32768, 128, 1)]
    if name == "all":
        return [s for g in ("perf", "flashmla", "short", "small") for s in grid_specs(g, seed)]
    if name == "tiny":
        return [uniform(2, n, h_q, 1) for n in (128, 256) for h_q in (16, 32)] + [ragged(4, 200, 16, 2, seed)]
    raise ValueError(f"unknown grid {name!r}")


def randn10(shape, dtype, device, gen):
    """randn/10 in dtype, drawn in float32 (normal_ in bf16/fp16 gives exact zeros), in 256 MiB parts."""
    t = torch.empty(shape, dtype=dtype, device=device)
    for part in t.view(-1).split(1 << 26):
        part.copy_(torch.randn(part.numel(), generator=gen, device=device).div_(10))
    return t


def make_inputs(spec, dtype, device, seed):
    """(k_cache, block_table, cache_seqlens) on `device`; see the module docstring."""
    gen = torch.Generator().manual_seed(seed)  # the layout: on the CPU, the same on every device
    lens = torch.tensor(spec.seqlens, dtype=torch.int64)
    blocks = (lens + PAGE - 1) // PAGE
    used = int(blocks.sum())
    num_pages = used + used // 8 + 2  # spare pages, so unused (poisoned) pages lie in between
    max_blocks = int(blocks.max()) + 2
    perm = torch.randperm(num_pages, generator=gen)
    j = torch.arange(max_blocks)
    owned = j[None, :] < blocks[:, None]
    pages = perm[((blocks.cumsum(0) - blocks)[:, None] + j).clamp(max=num_pages - 1)]
    garbage = torch.tensor(GARBAGE_BLOCK_IDS)[torch.randint(0, 2, owned.shape, generator=gen)]
    block_table = torch.where(owned, pages, garbage).to(torch.int32)
    valid = torch.zeros(num_pages, dtype=torch.int64)  # real tokens in each page
    valid[pages[owned]] = (lens[:, None] - j * PAGE).clamp(max=PAGE)[owned]

    dgen = torch.Generator(device=device).manual_seed(seed)
    k_cache = randn10((num_pages, PAGE, spec.h_kv, D), dtype, device, dgen)
    tail = torch.arange(PAGE, device=device)[None, :] >= valid.to(device)[:, None]
    k_cache.masked_fill_(tail[:, :, None, None], float("nan"))
    return k_cache, block_table.to(device), lens.to(torch.int32).to(device)


KV_FORMATS = {"dense": "576 channels in --dtype", "fp8": "FP8 with scale (656 bytes per token)",
              "fp8-tensor": "per-tensor e4m3 with descale_k (576 bytes per token)"}


def quantize_cache(k_cache, kv):
    """(k_cache in the --kv format, descale_k or None, bytes per cached token)."""
    from . import quantize_fp8_per_tensor, quantize_fp8_with_scale
    if kv == "dense":
        return k_cache, None, D * k_cache.element_size()
    if kv == "fp8":
        return quantize_fp8_with_scale(k_cache), None, FP8_WITH_SCALE_BYTES
    amax = k_cache.float().nan_to_num(nan=0.0).abs().max().item()
    descale_k = torch.tensor([max(amax, 1e-6) / 448], dtype=torch.float32, device=k_cache.device)
    return quantize_fp8_per_tensor(k_cache, descale_k), descale_k, D


def dequantize_rows(rows, descale_k):
    """Gathered cache rows [n, h_kv, 656 | 576] of an FP8 format -> float64 [n, h_kv, 576] (SPEC.md)."""
    if rows.shape[-1] == FP8_WITH_SCALE_BYTES:
        raw = rows.view(torch.uint8)
        nope = raw[..., :DV].contiguous().view(torch.float8_e4m3fn).double()
        scales = raw[..., DV:DV + 16].contiguous().view(torch.float32).double()
        rope = raw[..., DV + 16:].contiguous().view(torch.bfloat16).double()
        return torch.cat([nope * scales.repeat_interleave(128, dim=-1), rope], dim=-1)
    return rows.double() * descale_k.double()


def make_queries(spec, dtype, device, seed, copies):
    gen = torch.Generator(device=device).manual_seed(seed * 1000003 + spec.s_q * 7919 + spec.h_q)
    shape = (spec.batch, spec.s_q, spec.h_q, D)
    return [randn10(shape, dtype, device, gen) for _ in range(copies)]


# ---------------------------------------------------------------------------------------------
# The float64 reference (SPEC.md's math; as python/tests/mla_reference.py) for --check

def reference(q, k_cache, table_row, n, descale_k=None):
    """One sequence, causal: q [s_q, h_q, 576] -> out [s_q, h_q, 512], lse [h_q, s_q], float64. An FP8
    k_cache is dequantised (only the sequence's rows)."""
    s_q, h_q, _ = q.shape
    h_kv = k_cache.shape[2]
    kv = k_cache[table_row[: math.ceil(n / PAGE)].long()].reshape(-1, h_kv, k_cache.shape[-1])[:n]
    fp8 = k_cache.shape[-1] != D or k_cache.dtype == torch.float8_e4m3fn
    kv = dequantize_rows(kv, descale_k) if fp8 else kv.double()
    qg = q.double().reshape(s_q, h_kv, h_q // h_kv, D)  # head h reads KV head h // (h_q / h_kv)
    scores = torch.einsum("tkgc,jkc->kgtj", qg, kv) * D ** -0.5
    if s_q > 1:  # bottom-right aligned: token t sees 0 .. n - s_q + t
        pos = torch.arange(n, device=q.device)
        scores = scores.masked_fill(pos[None, :] > (n - s_q + torch.arange(s_q, device=q.device))[:, None],
                                    -math.inf)
    lse = scores.logsumexp(-1)
    out = torch.einsum("kgtj,jkc->tkgc", torch.softmax(scores, -1), kv[..., :DV])
    return out.reshape(s_q, h_q, DV), lse.reshape(h_q, s_q)


def _finite(x):
    return x if math.isfinite(x) else None  # JSON has no NaN or infinity


def check(q, k_cache, block_table, cache_seqlens, out, lse, seed, descale_k=None):
    """A few sequences (first, last, longest, one at random) against the reference; SPEC.md's rule."""
    lens = cache_seqlens.tolist()
    b = len(lens)
    pick = int(torch.randint(b, (1,), generator=torch.Generator().manual_seed(seed)))
    seqs = sorted({0, b - 1, max(range(b), key=lens.__getitem__), pick})
    refs = [reference(q[i], k_cache, block_table[i], lens[i], descale_k) for i in seqs]
    result = {"sequences": seqs, "ok": True, "failure": None}
    for name, k, got, atol, rtol in (("out", 0, out, 8e-4, 2.01 / 128), ("lse", 1, lse, 1e-6, 8.01 / 65536)):
        got = torch.cat([got[i].double().flatten() for i in seqs])
        want = torch.cat([r[k].flatten() for r in refs])
        err = (got - want).abs().nan_to_num(nan=math.inf)
        bad = (err > atol) & (err > rtol * want.abs())
        result[f"max_{name}_err"] = _finite(err.max().item())
        if bad.any() and result["ok"]:
            result.update(ok=False, failure=f"{name}: {int(bad.sum())} of {bad.numel()} elements out of tolerance")
        if name == "out":
            norms = (got * got + want * want).sum().item()
            cos_diff = 1 - 2 * (got * want).sum().item() / norms if norms > 0 else 0.0
            result["cos_diff"] = _finite(cos_diff)
            if not cos_diff <= 5e-6 and result["ok"]:
                result.update(ok=False, failure=f"out: cosine difference {cos_diff:.3g}")
    return result


# ---------------------------------------------------------------------------------------------
# Timing

def cuda_times_ms(fn, rounds):
    """`rounds` calls of fn back to back on the current stream, an event after each; ms per call."""
    events = [torch.cuda.Event(enable_timing=True) for _ in range(rounds + 1)]
    events[0].record()
    for e in events[1:]:
        fn()
        e.record()
    events[-1].synchronize()
    return [a.elapsed_time(b) for a, b in zip(events, events[1:])]


def measure_ceilings(device):
    """(copy GB/s, bf16 matmul TFLOP/s), as cli/gpu_bench.cpp measures them."""
    n = 2 << 30
    src = torch.full((n,), 0x5A, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    copy = lambda: dst.copy_(src)  # noqa: E731
    cuda_times_ms(copy, 2)
    copy_gbps = 2 * n / statistics.median(cuda_times_ms(copy, 10)) / 1e6  # bytes per ms -> GB/s
    del src, dst, copy
    m = 8192
    gen = torch.Generator(device=device).manual_seed(1)
    a, b = (randn10((m, m), torch.bfloat16, device, gen) for _ in range(2))  # random: zeros run faster
    c = torch.empty_like(a)
    gemm = lambda: torch.matmul(a, b, out=c)  # noqa: E731
    cuda_times_ms(gemm, 3)
    gemm_tflops = 2 * m ** 3 / statistics.median(cuda_times_ms(gemm, 10)) / 1e9  # flops per ms -> TFLOP/s
    return copy_gbps, gemm_tflops


def time_cuda(call, copies):
    """CUDA-graph replay of max(10, copies) calls (call(i) reads input copy i); per-call µs of each replay."""
    calls = max(CALLS_PER_GRAPH, copies)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the capture (torch's recipe); errors raise here
        for i in range(copies):
            call(i)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outs = [call(i % copies) for i in range(calls)]
    one_ms = max(statistics.median(cuda_times_ms(graph.replay, 3)), 1e-3)
    cuda_times_ms(graph.replay, min(max(int(WARMUP_MS / one_ms), 1), MAX_REPLAYS))
    replays = min(max(int(BUDGET_MS / one_ms), MIN_REPLAYS), MAX_REPLAYS)
    us = [ms * 1e3 / calls for ms in cuda_times_ms(graph.replay, replays)]
    out, lse = (t.clone() for t in outs[0])  # copy 0's result, out of the graph's memory pool
    torch.cuda.synchronize()
    return us, out, lse, f"{calls} calls per graph, {copies} input copies, {replays} replays"


def time_cpu(call):
    call(0)  # warm-up
    us, deadline = [], time.perf_counter() + CPU_BUDGET_S
    while len(us) < 3 or (time.perf_counter() < deadline and len(us) < 100):
        t0 = time.perf_counter()
        out, lse = call(0)
        us.append((time.perf_counter() - t0) * 1e6)
    return us, out, lse, f"{len(us)} timed calls after 1 warm-up"


def run_row(spec, dtype, device, seed, do_check, l2_bytes, kv="dense"):
    elem = torch.finfo(dtype).bits // 8
    k_cache, block_table, cache_seqlens = make_inputs(spec, dtype, device, seed)
    k_cache, descale_k, token_bytes = quantize_cache(k_cache, kv)
    moved = spec.bytes(elem, token_bytes)
    # Copies so that one graph's calls together read at least 4x the L2 (no call finds its KV there).
    copies = 1 if device.type == "cpu" else min(max(math.ceil(4 * l2_bytes / moved), 1), MAX_COPIES)
    ks = [k_cache] + [k_cache.clone() for _ in range(copies - 1)]
    qs = make_queries(spec, dtype, device, seed, copies)
    meta, splits = get_mla_metadata(cache_seqlens, spec.s_q * spec.h_q // spec.h_kv, spec.h_kv)  # once per step

    def call(i):
        return flash_mla_with_kvcache(qs[i], ks[i], block_table, cache_seqlens, DV, meta, splits, causal=True,
                                      descale_k=descale_k)

    us, out, lse, note = (time_cpu if device.type == "cpu" else lambda c: time_cuda(c, copies))(call)
    t = statistics.median(us)
    row = {"workload": spec.label, "kv": kv, "batch": spec.batch, "s_q": spec.s_q, "h_q": spec.h_q,
           "h_kv": spec.h_kv, "mean_seqlen": spec.mean_seqlen, "uniform": len(set(spec.seqlens)) == 1,
           "bytes": moved, "flops": spec.flops(), "time_us": t, "time_us_min": min(us),
           "gbps": moved / t / 1e3, "tflops": spec.flops() / t / 1e6, "timing": note}
    if do_check:
        row["check"] = check(qs[0], k_cache, block_table, cache_seqlens, out, lse, seed, descale_k)
    return row


# ---------------------------------------------------------------------------------------------
# Output

def sig3(v):
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}" if abs(v) >= 1 else f"{v:.3g}"


def status(row):
    if row.get("error"):
        return "ERROR"
    return "-" if "check" not in row else "ok" if row["check"]["ok"] else "FAIL"


def table(rows, ceilings):
    head = ["workload", "time us", "GB/s", "TFLOP/s"] + (["% copy", "% gemm"] if ceilings else []) + ["check"]
    cells = []
    for r in rows:
        c = [r["workload"]] + [sig3(r.get(k)) for k in ("time_us", "gbps", "tflops")]
        if ceilings:
            c += [f"{100 * r[k]:.1f}" if k in r else "-" for k in ("frac_copy", "frac_gemm")]
        cells.append(c + [status(r)])
    width = [max(len(x[j]) for x in [head] + cells) for j in range(len(head))]

    def line(c):
        return "  ".join(x.ljust(w) if j == 0 else x.rjust(w) for j, (x, w) in enumerate(zip(c, width)))
    return "\n".join([line(head), line(["-" * w for w in width])] + [line(c) for c in cells])


CSV_FIELDS = ["workload", "batch", "s_q", "h_q", "h_kv", "mean_seqlen", "uniform", "time_us", "time_us_min",
              "gbps", "tflops", "frac_copy", "frac_gemm", "check", "error"]


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**r, "check": status(r)})


def plot(path, rows, ceilings, title):
    """Throughput vs context length: one panel per metric, a line per (h_q, s_q, b, uniform/ragged)
    coloured by h_q, the ceilings as horizontal lines. False when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    series = {}  # (h_q, s_q, b, uniform) -> {workload: row}; 'all' repeats some workloads
    for r in rows:
        if "time_us" in r:
            series.setdefault((r["h_q"], r["s_q"], r["batch"], r["uniform"]), {}).setdefault(r["workload"], r)
    colour = {h: f"C{i}" for i, h in enumerate(sorted({k[0] for k in series}))}
    fig, axes = plt.subplots(1, 2, figsize=(15, 6))
    lines = (("copy", ceilings[0]), ("bf16 matmul", ceilings[1])) if ceilings else (None, None)
    for ax, key, unit, ceiling in zip(axes, ("gbps", "tflops"), ("GB/s", "TFLOP/s"), lines):
        for (h_q, s_q, b, uni), pts in sorted(series.items()):
            pts = sorted(pts.values(), key=lambda r: r["mean_seqlen"])
            ax.plot([r["mean_seqlen"] for r in pts], [r[key] for r in pts], color=colour[h_q],
                    linestyle="-" if uni else "--", marker={1: "o", 2: "s", 4: "^"}.get(s_q, "D"),
                    label=f"h_q={h_q} s_q={s_q} b={b}" + ("" if uni else " ragged"))
        if ceiling:
            ax.axhline(ceiling[1], color="black", linestyle=":")
            ax.text(0.99, ceiling[1], f"{ceiling[0]} {ceiling[1]:.0f} {unit}", transform=ax.get_yaxis_transform(),
                    ha="right", va="bottom")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("context length (mean cached tokens per sequence)")
        ax.set_ylabel(unit)
        ax.set_ylim(0, 1.1 * max([r[key] for r in rows if key in r] + [ceiling[1] if ceiling else 0]))
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m flash_mla.bench", description=__doc__.split("\n")[0],
                                epilog="grids: " + "; ".join(f"{k}: {v}" for k, v in GRIDS.items()))
    p.add_argument("--grid", help="a grid or a comma-separated list (default: perf on cuda, tiny on cpu)")
    p.add_argument("--dtype", choices=["bf16", "fp16"], default="bf16")
    p.add_argument("--kv", choices=list(KV_FORMATS), default="dense",
                   help="cache format: " + "; ".join(f"{k}: {v}" for k, v in KV_FORMATS.items()))
    p.add_argument("--out", default=".", help="folder for bench_<grid>_<dtype>.{json,csv,png} (default: .)")
    p.add_argument("--check", action="store_true", help="compare a few sequences per row with a float64 reference")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--seed", type=int, default=0, help="inputs and ragged lengths (default 0)")
    p.add_argument("--plot", metavar="JSON", help="only draw the PNG of a JSON this tool wrote (e.g. on a "
                   "machine with matplotlib), next to it")
    args = p.parse_args(argv)
    args.grid = args.grid or ("perf" if args.device == "cuda" else "tiny")
    if args.kv != "dense" and args.dtype != "bf16":
        p.error(f"--kv {args.kv}: q is bf16 with an FP8 cache (--dtype bf16)")
    for g in args.grid.split(","):
        if g not in GRIDS:
            p.error(f"--grid: unknown grid {g!r} (choose from {', '.join(GRIDS)})")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.plot:
        with open(args.plot) as f:
            info = json.load(f)
        c = info["ceilings"]
        png = os.path.splitext(args.plot)[0] + ".png"
        kv = "" if info.get("kv", "dense") == "dense" else f", {info['kv']} cache"
        title = f"flash_mla {info['dtype']}{kv} on {info['device']}, grid {info['grid']}"
        report_plot(plot(png, info["rows"], c and (c["copy_gbps"], c["gemm_tflops"]), title), png, [])
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("flash_mla.bench: no CUDA device (torch.cuda.is_available() is False); the benchmark times the "
              "Hopper kernel. For a tiny run of the CPU backend: python -m flash_mla.bench --device cpu",
              file=sys.stderr)
        return 1
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    specs = [s for g in args.grid.split(",") for s in grid_specs(g, args.seed)]
    cuda = args.device == "cuda"
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    if cuda:
        props = torch.cuda.get_device_properties(device)
        name = f"{props.name} ({props.multi_processor_count} SMs, sm_{props.major}{props.minor})"
        l2_bytes = getattr(props, "L2_cache_size", 50 << 20) or 50 << 20
        if os.environ.pop("FLASH_MLA_VALIDATE", None) is not None:
            print("flash_mla.bench: FLASH_MLA_VALIDATE unset (it synchronises, which graph capture forbids)",
                  file=sys.stderr)
        print("measuring the copy and matmul ceilings...", file=sys.stderr)
        ceilings = measure_ceilings(device)
    else:
        name, l2_bytes, ceilings = f"cpu ({torch.get_num_threads()} threads)", 0, None
        if any(s.batch * s.mean_seqlen > 1e5 for s in specs):
            print("flash_mla.bench: these grids are sized for a GPU and take long on the CPU", file=sys.stderr)

    rows = []
    for k, spec in enumerate(specs):
        try:
            row = run_row(spec, dtype, device, args.seed, args.check, l2_bytes, args.kv)
            if ceilings:
                row.update(frac_copy=row["gbps"] / ceilings[0], frac_gemm=row["tflops"] / ceilings[1])
        except (RuntimeError, ValueError) as e:  # e.g. the sm90 kernel on another GPU, out of memory
            row = {"workload": spec.label, "kv": args.kv, "batch": spec.batch, "s_q": spec.s_q, "h_q": spec.h_q,
                   "h_kv": spec.h_kv,
                   "mean_seqlen": spec.mean_seqlen, "uniform": len(set(spec.seqlens)) == 1, "error": str(e)}
            if cuda:
                torch.cuda.empty_cache()
        row["seqlens"] = list(spec.seqlens)
        rows.append(row)
        print(f"[{k + 1}/{len(specs)}] {spec.label}: {sig3(row.get('time_us'))} us {status(row)}", file=sys.stderr)

    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    method = ("CUDA-graph replay of the whole flash_mla_with_kvcache call, median" if cuda
              else "time.perf_counter around each call, median")
    kv_text = "" if args.kv == "dense" else f", {KV_FORMATS[args.kv]} cache"
    print(f"flash_mla.bench: {name}; {args.dtype}{kv_text}, pages of {PAGE} scattered, causal, seed {args.seed}; torch "
          f"{torch.__version__}; {when}")
    if ceilings:
        print(f"ceilings this run: copy {ceilings[0]:.0f} GB/s (2 GiB device-to-device, read + written), "
              f"bf16 matmul 8192^3 {ceilings[1]:.0f} TFLOP/s")
    print(f"time: per call, {method}\n\n{table(rows, ceilings)}")
    failed = [r for r in rows if status(r) in ("ERROR", "FAIL")]
    for r in failed:
        print(f"{status(r)} {r['workload']}: {r.get('error') or r['check']['failure']}")

    os.makedirs(args.out, exist_ok=True)
    variant = args.dtype if args.kv == "dense" else args.kv
    stem = os.path.join(args.out, f"bench_{args.grid.replace(',', '_')}_{variant}")
    command = " ".join(["python -m flash_mla.bench"] + (sys.argv[1:] if argv is None else argv))
    info = {"tool": "flash_mla.bench", "command": command,
            "date": when, "device": name, "torch": torch.__version__, "grid": args.grid, "dtype": args.dtype,
            "kv": args.kv,
            "page_size": PAGE, "causal": True, "seed": args.seed, "method": method,
            "ceilings": {"copy_gbps": ceilings[0], "gemm_tflops": ceilings[1]} if ceilings else None, "rows": rows}
    with open(stem + ".json", "w") as f:
        json.dump(info, f, indent=1)
    write_csv(stem + ".csv", rows)
    kv = "" if args.kv == "dense" else f", {args.kv} cache"
    drawn = plot(stem + ".png", rows, ceilings, f"flash_mla {args.dtype}{kv} on {name}, grid {args.grid}")
    report_plot(drawn, stem + ".png", [stem + ".json", stem + ".csv"])
    return 1 if failed else 0


def report_plot(drawn, png, written):
    if not drawn:
        print("matplotlib is not installed (pip install 'flash_mla[bench]', or python -m flash_mla.bench --plot "
              "FILE.json where it is): no plot")
    if written or drawn:
        print("wrote " + ", ".join(written + [png] * drawn))


if __name__ == "__main__":
    sys.exit(main())
