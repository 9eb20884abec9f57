#!/usr/bin/env python3
"""Times the incumbents' MLA decode on flash-mla-bench's workloads, in the same run as ours.

usage: incumbent_bench.py --workloads FILE [--flashmla LIB] [--flashmla-fp8 LIB] [--fa3 LIB] [--with-ours]
                          [--ours BENCH_OUTPUT] [--theirs OUTPUT] [--reverse] [--value-sd X] [--replays N]
                          [--only TEXT]

PERF.md's incumbent numbers come from another run; issue 3 asks for the comparison on the same card in the
same run. This script loads compiled op libraries into torch with torch.ops.load_library (no Python package
needed), e.g. those vLLM's wheel ships: vllm/_flashmla_C.abi3.so (DeepSeek's FlashMLA dense decode,
torch.ops._flashmla_C.dense_decode_fwd), vllm/_flashmla_extension_C.abi3.so (vLLM's per-tensor FP8 FlashMLA,
fwd_kvcache_mla_fp8; it takes an e4m3 q only) and vllm/vllm_flash_attn/_vllm_fa3_C.abi3.so (FlashAttention-3,
called as vLLM's FlashAttnMLA backend calls it). It times them on the workloads of `flash-mla-bench --grid NAMES
--list-json` (the same lengths, ragged ones included, page size and cache format) the way flash-mla-bench times
ours: the whole call (schedule computed once, main kernel + combine) captured in a CUDA graph of max(10, copies)
calls, inputs rotated over enough copies that the calls read 4x the L2, about 50 ms of warm-up replays, then
the median per call over ~200 ms of replays; a row's implementations share its input copies and, unless
--sequential, replay in turn (the order rotating each round) through the warm-up and the timed rounds, so that the
card's drift after the previous row falls on all alike. Values are normal(0, --value-sd), as flash-mla-bench's; the page
table is a random permutation of the pool. Each row is checked against a float32 reference on its first and last
sequence (the `max err` column).
Ours: --with-ours times this project's Python package (flash_mla) on the same tensors, each row's implementations
interleaved in one process (--reverse starts each row's rotation from the other end), the tightest comparison;
or --ours takes flash-mla-bench's plain output from the same run. Either prints ours over the faster incumbent per row (above 1:
ours is faster) and the geometric means by query rows. --theirs re-prints that comparison from an earlier output
of this script, without torch.
Needs torch with CUDA for timing; nothing here is part of the library or its tests.
"""

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

from bench_table import geomean, table_rows

HEAD_DIM, DV = 576, 512
FP8_WITH_SCALE_ROW_BYTES = 656  # 512 e4m3, 4 float32 scales, 64 bf16 RoPE values (SPEC.md, "FP8 KV cache")
WARMUP_MS, REPLAY_BUDGET_MS, MIN_REPLAYS, MAX_REPLAYS = 50.0, 200.0, 20, 1000
CALLS_PER_GRAPH, MAX_COPIES = 10, 64
DEVICE = "cuda"


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workloads", required=True, help="flash-mla-bench --list-json output")
    ap.add_argument("--flashmla", help="library registering torch.ops._flashmla_C (dense_decode_fwd)")
    ap.add_argument("--flashmla-fp8", help="library registering torch.ops._flashmla_extension_C (per-tensor FP8)")
    ap.add_argument("--fa3", help="library registering torch.ops._vllm_fa3_C (FlashAttention-3, vLLM's build)")
    ap.add_argument("--reverse", action="store_true", help="take each row's implementations in reverse order")
    ap.add_argument("--sequential", action="store_true",
                    help="time each row's implementations one after another (session 36's calls 1-8), not interleaved")
    ap.add_argument("--with-ours", action="store_true",
                    help="also time this project's Python package (flash_mla) on the same tensors; with --ours "
                         "absent, the comparison uses these times")
    ap.add_argument("--ours", help="flash-mla-bench's output from the same run, to compare against")
    ap.add_argument("--theirs", help="compare only: this script's earlier output instead of timing (no torch); "
                                     "ours from --ours, else from that output's --with-ours rows")
    ap.add_argument("--replays", type=int, default=0, help="timed graph replays (default: about 200 ms)")
    ap.add_argument("--only", default="", help="keep the workloads whose label contains this text")
    ap.add_argument("--value-sd", type=float, default=0.1,
                    help="q's and the cache's values ~ normal(0, X), as flash-mla-bench's --value-sd (default 0.1)")
    return ap.parse_args()


def bytes_and_flops(w, kv):
    """PERF.md's counting, as flash-mla-bench's (testing::Workload::bytes): bytes read and written (a cached token's
    row: 2 bytes a channel dense, 1 per tensor, 656 with scale; q: 1 byte an element when e4m3, else 2; out: bf16),
    FLOPs."""
    tokens = sum(w["seqlens"])
    rows = w["batch"] * w["s_q"] * w["h_q"]
    row_bytes = {"dense": 2 * HEAD_DIM, "fp8": FP8_WITH_SCALE_ROW_BYTES}.get(kv, HEAD_DIM)
    q_elem = 1 if kv == "fp8-tensor-fp8q" else 2
    nbytes = tokens * w["h_kv"] * row_bytes + rows * HEAD_DIM * q_elem + rows * DV * 2
    flops = 2.0 * w["s_q"] * w["h_q"] * (HEAD_DIM + DV) * tokens
    return nbytes, flops


class Inputs:
    """One copy of a workload's inputs: q, the paged cache (a random permutation of the pool's pages)."""

    def __init__(self, torch, w, kv, gen):
        b, s_q, h_q, h_kv, page = w["batch"], w["s_q"], w["h_q"], w["h_kv"], w["page"]
        pages = [max(1, -(-n // page)) for n in w["seqlens"]]
        pool = sum(pages)
        dev = DEVICE
        sd = w["value_sd"]
        self.q = (torch.randn(b, s_q, h_q, HEAD_DIM, generator=gen, device=dev) * sd).to(torch.bfloat16)
        cache = torch.randn(pool, page, h_kv, HEAD_DIM, generator=gen, device=dev) * sd
        if kv == "dense":
            self.k_cache = cache.to(torch.bfloat16)
        else:  # per-tensor e4m3 as flash-mla-bench quantises: about 7 standard deviations at 448
            descale = 7 * sd / 448 * 1.25
            self.k_cache = (cache / descale).clamp(-448, 448).to(torch.float8_e4m3fn)
            self.descale_k = torch.full((1,), descale, device=dev)
            self.descale_q = torch.full((1,), descale, device=dev)
            if kv == "fp8-tensor-fp8q":
                self.q = (self.q.float() / descale).clamp(-448, 448).to(torch.float8_e4m3fn)
        perm = torch.randperm(pool, generator=gen, device=dev).to(torch.int32)
        table = torch.zeros(b, max(pages), dtype=torch.int32, device=dev)
        at = 0
        for i, n in enumerate(pages):
            table[i, :n] = perm[at:at + n]
            at += n
        self.block_table = table
        self.seqlens = torch.tensor(w["seqlens"], dtype=torch.int32, device=dev)

    def dequantised(self, kv, i, pages):
        """Sequence i's q and its pages of the cache in float32, dequantised."""
        q, cache = self.q[i].float(), self.k_cache[pages].float()
        if kv == "dense":
            return q, cache
        return q * (self.descale_q if kv == "fp8-tensor-fp8q" else 1.0), cache * self.descale_k


def reference(torch, x, kv, w, i, scale):
    """Float32 out and lse of sequence i (causal, bottom-right aligned), [s_q, h_q, DV] and [h_q, s_q]."""
    n, s_q, page = w["seqlens"][i], w["s_q"], w["page"]
    q, cache = x.dequantised(kv, i, x.block_table[i, : max(1, -(-n // page))].long())
    k = cache.reshape(-1, w["h_kv"], HEAD_DIM)[:n]  # [n, h_kv, 576]
    group = w["h_q"] // w["h_kv"]
    qi = q.reshape(s_q, w["h_kv"], group, HEAD_DIM)
    s = torch.einsum("skgd,nkd->kgsn", qi, k).reshape(w["h_q"], s_q, n) * scale
    if w["causal"] and s_q > 1:
        pos = torch.arange(n, device=s.device)
        limit = n - s_q + torch.arange(s_q, device=s.device)  # query t sees tokens <= n - s_q + t
        s = s.masked_fill(pos[None, :] > limit[:, None], float("-inf"))
    lse = torch.logsumexp(s, dim=-1)  # [h_q, s_q]
    p = torch.exp(s - lse[..., None]).reshape(w["h_kv"], group, s_q, n)
    out = torch.einsum("kgsn,nkd->skgd", p, k[..., :DV]).reshape(s_q, w["h_q"], DV)
    return out, lse


class FlashMLA:
    """DeepSeek's FlashMLA dense decode (16-bit cache): torch.ops._flashmla_C.dense_decode_fwd, whose first call
    (no schedule given) computes the schedule and returns it."""

    name = "flashmla"

    def __init__(self, torch, lib):
        torch.ops.load_library(lib)
        self.op = torch.ops._flashmla_C.dense_decode_fwd

    def supports(self, kv):
        return kv == "dense"

    def schedule(self, x, w, kv, scale):
        _, _, meta, splits = self.op(x.q, x.k_cache, DV, x.seqlens, x.block_table, scale, w["causal"], None, None,
                                     None)
        return meta, splits

    def call(self, x, w, kv, scale, sched):
        o, lse, _, _ = self.op(x.q, x.k_cache, DV, x.seqlens, x.block_table, scale, w["causal"], *sched, None)
        return o, lse


class FlashMLAFP8:
    """vLLM's per-tensor FP8 variant of FlashMLA: torch.ops._flashmla_extension_C (e4m3 cache, descale_k; q bf16 or
    e4m3 with descale_q)."""

    name = "flashmla-fp8"

    def __init__(self, torch, lib):
        torch.ops.load_library(lib)
        self.ops = torch.ops._flashmla_extension_C

    def supports(self, kv):
        return kv == "fp8-tensor-fp8q"  # a bf16 q fails its argument check

    def schedule(self, x, w, kv, scale):
        return tuple(self.ops.get_mla_decoding_metadata_dense_fp8(x.seqlens, w["s_q"] * w["h_q"] // w["h_kv"],
                                                                  w["h_kv"]))

    def call(self, x, w, kv, scale, sched):
        res = self.ops.fwd_kvcache_mla_fp8(x.q, x.k_cache, DV, x.seqlens, x.block_table, scale, w["causal"], *sched,
                                           x.descale_q, x.descale_k)
        return res[0], res[1]


class FA3:
    """FlashAttention-3's MLA path as vLLM calls it (bf16): q_pe and the RoPE cache as q and k (64 channels),
    the latent cache as v and q_nope as q_v (512 channels), varlen q, the schedule from get_scheduler_metadata."""

    name = "fa3"

    def __init__(self, torch, lib):
        torch.ops.load_library(lib)
        self.torch, self.ops = torch, torch.ops._vllm_fa3_C

    def supports(self, kv):
        return kv == "dense"

    def _views(self, x, w):
        """q_pe, q_nope, the RoPE cache and the latent cache: views only (a call launches FA3's kernels alone)."""
        q = x.q.reshape(w["batch"] * w["s_q"], w["h_q"], HEAD_DIM)
        return q[..., DV:], q[..., :DV], x.k_cache[..., DV:], x.k_cache[..., :DV]

    def schedule(self, x, w, kv, scale):
        t = self.torch
        cu = t.arange(0, w["batch"] + 1, dtype=t.int32, device=x.q.device) * w["s_q"]  # cu_seqlens_q, once
        meta = self.ops.get_scheduler_metadata(
            w["batch"], w["s_q"], max(w["seqlens"]), w["h_q"], w["h_kv"], HEAD_DIM - DV, DV, x.q.dtype, x.seqlens,
            cu, None, None, None, None, w["page"], 0, w["causal"], -1, -1, False, 0, None, 0)
        return meta, cu

    def call(self, x, w, kv, scale, sched):
        meta, cu = sched
        q_pe, q_nope, k_pe, v = self._views(x, w)
        res = self.ops.fwd(q_pe, k_pe, v, None, None, q_nope, None, cu, None, None, None, x.seqlens, w["s_q"],
                           max(w["seqlens"]), x.block_table, None, None, None, None, None, None, None, None, scale,
                           w["causal"], -1, -1, 0.0, True, meta, 0, None, 0, None, 1, 0, None)
        b, s_q = w["batch"], w["s_q"]
        # out [b * s_q, h_q, DV] -> [b, s_q, h_q, DV]; lse [h_q, b * s_q] -> [b, h_q, s_q]
        return res[0].reshape(b, s_q, w["h_q"], DV), res[1].reshape(w["h_q"], b, s_q).permute(1, 0, 2)


class Ours:
    """This project through its Python package (`import flash_mla`: FlashMLA's interface), on the same tensors as the
    incumbents: the cleanest comparison (one harness, one process, identical inputs)."""

    name = "ours"

    def __init__(self):
        import flash_mla  # noqa: PLC0415 (only when asked for)

        self.mla = flash_mla

    def supports(self, kv):
        return kv == "dense" or kv.startswith("fp8-tensor")

    def schedule(self, x, w, kv, scale):
        return tuple(self.mla.get_mla_metadata(x.seqlens, w["s_q"] * w["h_q"] // w["h_kv"], w["h_kv"]))

    def call(self, x, w, kv, scale, sched):
        extra = {} if kv == "dense" else {"descale_k": x.descale_k}
        if kv == "fp8-tensor-fp8q":
            extra["descale_q"] = x.descale_q
        return self.mla.flash_mla_with_kvcache(x.q, x.k_cache, x.block_table, x.seqlens, DV, *sched,
                                               softmax_scale=scale, causal=w["causal"], **extra)


def time_rounds(torch, rounds, fn):
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(rounds):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return times


def check_and_capture(torch, inc, w, kv, xs, scale):
    """One implementation on a row: its schedule, its first call's largest error against the float32 reference on the
    first and last sequence (NaN counts as infinite), and a CUDA graph of max(CALLS_PER_GRAPH, copies) calls rotating
    over the input copies. Returns (graph, calls, err, sched): the graph's kernels read the schedule's tensors by
    address, so the caller keeps sched alive for as long as it replays the graph."""
    sched = inc.schedule(xs[0], w, kv, scale)
    o, lse = inc.call(xs[0], w, kv, scale, sched)
    torch.cuda.synchronize()
    err = 0.0
    for i in {0, w["batch"] - 1}:
        ro, rl = reference(torch, xs[0], kv, w, i, scale)
        got_lse = lse[i].float()  # [h_q, s_q]
        same_inf = torch.isinf(got_lse) & (got_lse == rl)  # fully masked rows: +inf on both sides
        d_lse = torch.where(same_inf, torch.zeros_like(rl), (got_lse - rl).abs())
        for d in ((o[i].float() - ro).abs(), d_lse):
            e = d.max().item()
            err = max(err, math.inf if math.isnan(e) or torch.isnan(d).any().item() else e)
    copies = len(xs)
    calls = max(CALLS_PER_GRAPH, copies)
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for i in range(copies):  # warm the allocator outside the capture
            inc.call(xs[i], w, kv, scale, sched)
        torch.cuda.synchronize()
        with torch.cuda.graph(graph, stream=stream):
            for c in range(calls):
                inc.call(xs[c % copies], w, kv, scale, sched)
    torch.cuda.synchronize()
    return graph, calls, err, sched


def time_row(torch, impls, w, kv, replays, l2_bytes, sequential):
    """Every implementation that takes the row's format, on the same input copies (rotated over 4x the L2).
    Interleaved (the default): the graphs replay in turn, the order rotating every round, through the warm-up and the
    timed rounds (their counts set by the slowest graph: about WARMUP_MS and REPLAY_BUDGET_MS of its
    replays), so that the card's drift after the previous row (clock, power, temperature) falls on all of them
    alike. Sequential: each implementation's own warm-up and rounds in turn, as flash-mla-bench does and session 36's
    calls 1-8 did (the first one timed on a heavy row after a light one ran 7-11 % slow). Returns {name: (µs, GB/s,
    TFLOP/s, max err)} and {name: error message}."""
    per_call, flops = bytes_and_flops(w, kv)
    copies = min(max(math.ceil(4.0 * l2_bytes / max(per_call, 1.0)), 1), MAX_COPIES)
    gen = torch.Generator(device=DEVICE)
    gen.manual_seed(1)
    xs = [Inputs(torch, w, kv, gen) for _ in range(copies)]
    scale = HEAD_DIM ** -0.5
    ready, failed = [], {}  # ready: (name, graph, calls, err, sched), sched kept alive while the graph replays
    for inc in impls:
        try:
            ready.append((inc.name, *check_and_capture(torch, inc, w, kv, xs, scale)))
        except Exception as e:  # noqa: BLE001 (a row an implementation rejects is reported, not fatal)
            cause = e.__context__ or e  # a failed capture raises again on its end: report the first error
            failed[inc.name] = (str(cause).splitlines() or [type(cause).__name__])[0][:100]
            torch.cuda.synchronize()

    def counts(replay):
        ms = max(statistics.median(time_rounds(torch, 3, replay)), 1e-3)
        warm = min(max(int(WARMUP_MS / ms), 1), MAX_REPLAYS)
        return warm, replays or min(max(int(REPLAY_BUDGET_MS / ms), MIN_REPLAYS), MAX_REPLAYS)

    times = {name: [] for name, *_ in ready}
    try:
        if sequential:
            for name, g, calls, *_ in ready:
                warm, rounds = counts(g.replay)
                time_rounds(torch, warm, g.replay)
                times[name] = [t * 1e3 / calls for t in time_rounds(torch, rounds, g.replay)]
        elif ready:
            warm, rounds = min(counts(g.replay) for _, g, *_ in ready)  # the slowest graph's counts
            for r in range(warm + rounds):
                for k in range(len(ready)):
                    name, g, calls, *_ = ready[(r + k) % len(ready)]
                    t = time_rounds(torch, 1, g.replay)[0]
                    if r >= warm:
                        times[name].append(t * 1e3 / calls)
    except Exception as e:  # noqa: BLE001 (a replay that fails fails the row; later rows may still run)
        for name, *_ in ready:
            failed[name] = "replay: " + (str(e).splitlines() or [type(e).__name__])[0][:90]
        ready = []
    out = {}
    for name, _, _, err, _ in ready:
        us = statistics.median(times[name])
        out[name] = (us, per_call / (us * 1e-6) / 1e9, flops / (us * 1e-6) / 1e12, err)
    del ready, xs
    torch.cuda.empty_cache()
    return out, failed


def read_table(path):
    """{(label, kv): {backend: µs}} from a table of flash-mla-bench (backend sm90) or of this script."""
    out = {}
    for label, kv, backend, us in table_rows(Path(path).read_text()):
        out.setdefault((label, kv), {})[backend] = us
    return out


def read_ours(path):
    """{(label, kv): µs} of flash-mla-bench's sm90 rows."""
    return {k: v["sm90"] for k, v in read_table(path).items() if "sm90" in v}


def without_ours(table):
    """The incumbents' times of a {(label, kv): {backend: µs}} table."""
    return {k: {n: t for n, t in v.items() if n != "ours"} for k, v in table.items()}


def load_workloads(path, only):
    """The workload list's rows whose labels contain `only`, each (label, kv) once, in file order (the small grid
    lists b=1 65536 twice)."""
    seen = set()
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return [w for w in rows if only in w["label"]
            and not ((w["label"], w["kv"]) in seen or seen.add((w["label"], w["kv"])))]


def ours_times(args, table):
    """{(label, kv): µs} of ours: flash-mla-bench's table given by --ours, else the table's own "ours" rows."""
    return read_ours(args.ours) if args.ours else {k: v["ours"] for k, v in table.items() if "ours" in v}


def compare(workloads, results, ours):
    """Ours ({(label, kv): µs}) over the faster incumbent per row, and the geometric means by query rows."""
    names = sorted({n for theirs in results.values() for n in theirs})
    print("\nours against the incumbents in this run (incumbent us / our us; above 1: ours is faster)")
    print(f"{'workload':<42} {'kv':<16} {'ours':>8} " + " ".join(f"{n:>12}" for n in names) + "  vs best")
    by_rows = {}
    for w in workloads:
        key = (w["label"], w["kv"])
        theirs = results.get(key)
        if not theirs or key not in ours:
            continue
        cells = " ".join(f"{theirs[n]:>12.1f}" if n in theirs else f"{'-':>12}" for n in names)
        r = min(theirs.values()) / ours[key]
        by_rows.setdefault((w["kv"], w["s_q"] * w["h_q"] // w["h_kv"]), []).append(r)
        print(f"{w['label']:<42} {w['kv']:<16} {ours[key]:>8.1f} {cells}  {r:.3f}")
    ratios = [r for rs in by_rows.values() for r in rs]
    for (kv, rows), rs in sorted(by_rows.items()):
        print(f"geometric mean against the faster incumbent, {kv}, {rows} query rows per KV head: {geomean(rs):.3f} "
              f"over {len(rs)} rows")
    if ratios:
        print(f"geometric mean against the faster incumbent, all: {geomean(ratios):.3f} over {len(ratios)} rows; "
              f"{sum(r >= 1 for r in ratios)} at or above 1")


def main():
    args = parse_args()
    if args.theirs:  # compare only: ours from --ours, else the table's own "ours" rows (--with-ours)
        table = read_table(args.theirs)
        compare(load_workloads(args.workloads, args.only), without_ours(table), ours_times(args, table))
        return
    import torch  # noqa: PLC0415 (imported here so that --help and --theirs work without torch)

    given = [(cls, lib) for cls, lib in ((FlashMLA, args.flashmla), (FlashMLAFP8, args.flashmla_fp8), (FA3, args.fa3))
             if lib]
    if not given:
        sys.exit("incumbent_bench.py: give at least one of --flashmla, --flashmla-fp8, --fa3")
    incumbents = [cls(torch, lib) for cls, lib in given]
    libs = ", ".join(f"{inc.name}: {lib}" for inc, (_, lib) in zip(incumbents, given))
    if args.with_ours:
        incumbents.insert(0, Ours())
    workloads = [dict(w, value_sd=args.value_sd) for w in load_workloads(args.workloads, args.only)]
    prop = torch.cuda.get_device_properties(0)
    print(f"incumbent_bench: on {prop.name} ({prop.multi_processor_count} SMs), torch {torch.__version__}; {libs}; "
          f"values ~ normal(0, {args.value_sd})")
    print("time: median per call, CUDA-graph replay (schedule reused; main kernel + combine)\n")
    print(f"{'workload':<42} {'kv':<16} {'backend':<12} {'time us':>8} {'GB/s':>6} {'TFLOP/s':>8} {'max err':>8}")
    results = {}  # (label, kv) -> {incumbent: us}
    for w in workloads:
        kv = w["kv"]
        impls = [inc for inc in (reversed(incumbents) if args.reverse else incumbents) if inc.supports(kv)]
        if not impls:
            continue
        timed, failed = time_row(torch, impls, w, kv, args.replays, prop.L2_cache_size, args.sequential)
        for inc in impls:
            if inc.name in failed:
                print(f"{w['label']:<42} {kv:<16} {inc.name:<12} failed: {failed[inc.name]}", flush=True)
                continue
            us, gbs, tflops, err = timed[inc.name]
            results.setdefault((w["label"], kv), {})[inc.name] = us
            print(f"{w['label']:<42} {kv:<16} {inc.name:<12} {us:>8.1f} {gbs:>6.0f} {tflops:>8.0f} {err:>8.1e}",
                  flush=True)
    if args.ours or args.with_ours:
        compare(workloads, without_ours(results), ours_times(args, results))


if __name__ == "__main__":
    main()
