#!/usr/bin/env python3
"""Interleaving model of the seesaw schedule's synchronisation (FLASH_MLA_SM90_SEESAW=1).

What it models: the hand-offs of src/cuda/sm90/decode_dense/kernel.cuh between the two consumer
warpgroups (seesaw_piece, seesaw_pair_0, seesaw_pair_1, seesaw_scores, seesaw_zero_tail, zero_v_tail,
load_q) and the producer warpgroup (tma_stage_producer, gather_producer, fp8_producer with both FP8
layouts, all walking the stages as StageRing does). Every consumer warp is an actor, as is each TMA
warp, each 16-thread slice of the gather / FP8 producer and every TMA copy in flight. Only the
synchronisation and the shared-memory footprint of each step are modelled: which rows of which
release group (RoPE, V left, V right) of which stage, sP, Q, the stats slots and row sums; the data
values are not. A scheduler picks the next actor at random (several speed profiles), many times over
pieces of 0..7 blocks with and without a short last block, sequences of pieces, and every producer.

Checks, per simulation:
  * deadlock (no actor can move and some are not finished);
  * named barriers: a warp arriving twice in one instance (two hand-offs' arrivals mixed), thread
    count mismatch, arrivals left over at the end;
  * mbarriers: over-arrival, a wait that completes on the wrong phase (parity aliasing), phases left
    incomplete at the end;
  * data races on shared memory with vector clocks: two accesses to overlapping rows of a region, one
    of them a write, neither ordered before the other. wgmma and cp.async accesses last from issue to
    the wait_group / cp.async.wait that retires them (each warp's share of a warpgroup wgmma is taken
    to read the whole tile); TMA copies are actors of their own that start with the issuer's clock
    and release through complete_tx on their mbarrier. Writes of one cooperative step (same tag and
    instance #, e.g. one tail zeroing by four warps) are taken to touch disjoint bytes;
  * the async proxy: a generic-proxy access (st.shared, ld.shared, cp.async) ordered before a
    conflicting async-proxy access (wgmma operand read, TMA write) needs a fence.proxy.async by the
    generic side's thread between its access and the synchronisation that orders the two (the other
    way round, an async read retired by wait_group before a generic write, needs only the ordering);
  * wgmma registers: touching a wgmma's accumulator or A-fragment registers (sc, o, packed) between
    its issue and the wait_group that retires it.

Run:  python3 tools/seesaw_model.py [N] [--seed S] [-v] [mutation ...]
  N random piece sequences on top of the fixed shapes (default 400; each shape runs with the TMA
  producer at a random page size of 16..128, the gather producer and both FP8 producers). The default
  run (1984 simulations) takes about 40 s. Exit status 1 when anything is found. Mutations (listed
  by --mutations) break one hand-off each and must be reported; -v prints, for the first simulation
  showing each finding, the steps around the two accesses (or the last steps before a deadlock).

Keep it in step with kernel.cuh: any change to a seesaw hand-off (a barrier, a wait, an arrival, a
fence, or where a step reads or writes shared memory) must be mirrored here and the model rerun,
unmutated and with the mutations that guard the changed hand-off.
"""
import bisect
import random
import re
import sys
import time
from collections import defaultdict
from functools import lru_cache

# Release groups of a stage (config.hpp, Group) and their order.
ROPE, VL, VR = 0, 1, 2
GNAME = {ROPE: "RoPE", VL: "V_L", VR: "V_R"}


def release_order(st):
    return (ROPE, VL, VR) if st == 0 else (VR, ROPE, VL)


def free_arrivals(st, g):  # group_free_arrivals
    return 256 if (st == 0 and g == VR) or (st == 1 and g == VL) else 128


def group_sub_tiles(g):
    return 1 if g == ROPE else 4


# Named barriers (config.hpp, NamedBarrier).
QREADY, ROWSTATS, STATSA, STATSB, PAREADY, PBREADY, TAILZ = 1, 4, 5, 6, 7, 8, 9
NBNAME = {QREADY: "kQReady", ROWSTATS: "kRowStats", STATSA: "kStatsA", STATSB: "kStatsB",
          PAREADY: "kPaReady", PBREADY: "kPbReady", TAILZ: "kTailZeroed+0", TAILZ + 1: "kTailZeroed+1"}
CONSUMERS, WGT = 256, 128

ALL = (1 << 64) - 1  # a row mask: 64 rows (tokens of a K/V tile, query rows of sP / stats)
REG_SC, REG_O, REG_P = ("reg", "sc"), ("reg", "o"), ("reg", "packed")

MUT = set()
MUTATIONS = {
    "no_vr_wait0": "seesaw_scores<0> skips the wait on g_full[0][V_R] (Q.K(a) reads V right unwaited)",
    "sp_before_vr_wait": "consumer 0 stores P(a) to sP before Q.K(a) has waited for stage 0's V right",
    "c1_free_vr0_early": "consumer 1 frees stage 0's V right after wait_group<1> (P.V(a) still running)",
    "paready_before_rescale": "consumer 0 (pair with b) arrives at kPaReady before rescale_p",
    "no_fence_rescale": "consumer 0 (pair with b) drops the fence.proxy.async after rescale_p",
    "no_fence_nob": "consumer 0 (pair without b) drops the fence.proxy.async after store_p",
    "nob_paready_early": "consumer 0 (pair without b) arrives at kPaReady before its Q.K(a)",
    "no_tail_presync": "seesaw_zero_tail without its first bar.sync (the race fixed after 72c4d8c)",
    "c1_pb_before_statsa": "consumer 1 stores P(b) into stage 1's RoPE before its kStatsA sync",
    "c1_no_tail_sync": "consumer 1 (pair with b) zeroes its V tail of b without the kTailZeroed sync",
    "packed_after_issue": "consumer 0 reads packed after pv_issue_rs (72c4d8c's alpha_b scaling)",
    "gather_no_fence": "the gather producer signals g_full without fence.proxy.async",
    "gather_no_early": "the gather producer waits for the next stage before signalling the last block",
    "fp8_no_fence": "the FP8 producer signals g_full without fence.proxy.async",
}


def warp_rows(w):  # RowPair: warp w of a warpgroup owns query rows 16w .. 16w + 15
    return ((1 << 16) - 1) << (16 * w)


@lru_cache(maxsize=None)
def zero_rows(valid, w):
    """Rows that warp w of a warpgroup zeroes in zero_v_tail (four sub-tiles, one V half)."""
    if valid >= 64:
        return 0
    rows = 64 - valid
    chunks = rows * 8 * 4
    m = 0
    for z0 in range(0, chunks, WGT):
        for t in range(32 * w, 32 * w + 32):
            z = z0 + t
            if z < chunks:
                m |= 1 << (valid + (z % (rows * 8)) // 8)
    return m


@lru_cache(maxsize=None)
def q_rows(cw):
    """Q rows that consumer warp cw (0..7, threadIdx.x / 32) writes in load_q (72 chunks a row)."""
    m = 0
    for t in range(32 * cw, 32 * cw + 32):
        for chunk in range(t, 64 * 72, CONSUMERS):
            m |= 1 << (chunk // 72)
    return m


@lru_cache(maxsize=None)
def producer_rows(lo, hi):  # gather / FP8: thread t serves rows t/8 + 16 i
    m = 0
    for t in range(lo, hi):
        for i in range(4):
            m |= 1 << (t // 8 + 16 * i)
    return m


def below(valid):
    return (1 << min(valid, 64)) - 1


class Piece:
    """n blocks; the last one has tail_valid tokens before the sequence end (64: not the end)."""
    def __init__(self, n, tail_valid=64):
        self.n = n
        self.tail_valid = tail_valid

    def valid(self, i):
        return self.tail_valid if i == self.n - 1 else 64

    def __repr__(self):
        return f"P({self.n},{self.tail_valid})"


# ------------------------------------------------------------------------------------------------
# Consumers (one generator per warp: wg 0/1, warp w of the warpgroup)

def seesaw_scores(st, uses, tag, rows):
    for g in release_order(st):
        if st == 0 and g == VR and "sp_before_vr_wait" in MUT:
            yield ("acc", "sP", rows, "W", "WG0 store_p P(a) [mutation: before the V_R wait]")
        if not (st == 0 and g == VR and "no_vr_wait0" in MUT):
            yield ("mb_wait", ("full", st, g), uses & 1, uses)
        yield ("async", "wg", [(("K", st, g), ALL, "R", tag), ("Q", ALL, "R", tag), (REG_SC, 0, "W", tag)])
    yield ("commit", "wg")
    yield ("await", "wg", 0)


def seesaw_zero_tail(st, valid, half, w, tag):
    if valid >= 64:
        return
    if "no_tail_presync" not in MUT:
        yield ("nb_sync", TAILZ + half, WGT)
    yield ("acc", ("K", st, VL if half == 0 else VR), zero_rows(valid, w), "W", tag)
    yield ("fence",)
    yield ("nb_sync", TAILZ + half, WGT)


def seesaw_pair_0(w, pc, a, ua, ub, has_b):
    rows = warp_rows(w)
    if not has_b and "nob_paready_early" in MUT:
        yield ("nb_arrive", PAREADY, CONSUMERS)
    yield from seesaw_scores(0, ua, "WG0 Q.K(a)", rows)
    yield ("mb_arrive", ("free", 0, ROPE), 32)
    yield ("mb_arrive", ("free", 0, VR), 32)
    yield ("acc", REG_SC, 0, "R", "mask_scores")
    yield ("acc", ("stats", 0), rows, "W", "WG0 publish_stats(a)")
    yield ("nb_arrive", STATSA, CONSUMERS)
    yield ("acc", REG_P, 0, "W", "exponentiate")
    yield ("acc", REG_P, 0, "R", "store_p")
    if "sp_before_vr_wait" not in MUT:
        yield ("acc", "sP", rows, "W", "WG0 store_p P(a)")
    if not has_b:
        if "no_fence_nob" not in MUT:
            yield ("fence",)
        if "nob_paready_early" not in MUT:
            yield ("nb_arrive", PAREADY, CONSUMERS)
        yield from seesaw_zero_tail(0, pc.valid(a), 0, w, f"WG0 zero tail(a) V_L #{ua}")
    yield ("acc", REG_O, 0, "W", "rescale_rows(alpha_a)")
    yield ("async", "wg", [(("K", 0, VL), ALL, "R", "WG0 P(a).V_L(a)"), (REG_P, 0, "R", ""), (REG_O, 0, "W", "")])
    yield ("commit", "wg")
    if has_b:
        yield ("nb_sync", STATSB, CONSUMERS)
        yield ("acc", ("stats", 1), rows, "R", "WG0 read_stats(b)")
        if "packed_after_issue" in MUT:
            yield ("acc", REG_P, 0, "R", "scale packed by alpha_b")
        if "paready_before_rescale" in MUT:
            yield ("fence",)
            yield ("nb_arrive", PAREADY, CONSUMERS)
        yield ("acc", "sP", rows, "R", "WG0 rescale_p (read)")
        yield ("acc", "sP", rows, "W", "WG0 rescale_p (write)")
        if "no_fence_rescale" not in MUT:
            yield ("fence",)
        if "paready_before_rescale" not in MUT:
            yield ("nb_arrive", PAREADY, CONSUMERS)
        yield ("await", "wg", 0)
        yield ("mb_arrive", ("free", 0, VL), 32)
        yield ("nb_sync", PBREADY, CONSUMERS)
        yield ("mb_wait", ("full", 1, VL), ub & 1, ub)
        yield from seesaw_zero_tail(1, pc.valid(a + 1), 0, w, f"WG0 zero tail(b) V_L #{ub}")
        yield ("acc", REG_O, 0, "W", "rescale_rows(alpha_b)")
        yield ("async", "wg", [(("K", 1, ROPE), ALL, "R", "WG0 P(b).V_L(b) reads P(b)"),
                               (("K", 1, VL), ALL, "R", "WG0 P(b).V_L(b)"), (REG_O, 0, "W", "")])
        yield ("commit", "wg")
        yield ("await", "wg", 0)
        yield ("mb_arrive", ("free", 1, ROPE), 32)
        yield ("mb_arrive", ("free", 1, VL), 32)
    else:
        yield ("await", "wg", 0)
        yield ("mb_arrive", ("free", 0, VL), 32)


def seesaw_pair_1(w, pc, a, ua, ub, has_b):
    rows = warp_rows(w)
    if has_b:
        vb = pc.valid(a + 1)
        yield from seesaw_scores(1, ub, "WG1 Q.K(b)", rows)
        yield ("mb_arrive", ("free", 1, VL), 32)
        yield ("acc", REG_SC, 0, "R", "mask_scores")
        if "c1_pb_before_statsa" in MUT:
            yield ("acc", ("K", 1, ROPE), rows, "W", "WG1 store_p P(b) into stage 1 RoPE")
        yield ("nb_sync", STATSA, CONSUMERS)
        yield ("acc", ("stats", 0), rows, "R", "WG1 read_stats(a)")
        yield ("acc", ("stats", 1), rows, "W", "WG1 publish_stats(b)")
        yield ("nb_arrive", STATSB, CONSUMERS)
        yield ("acc", REG_P, 0, "W", "exponentiate")
        if vb < 64:
            yield ("acc", ("K", 1, VR), zero_rows(vb, w), "W", f"WG1 zero tail(b) V_R #{ub}")
        yield ("acc", REG_P, 0, "R", "store_p")
        if "c1_pb_before_statsa" not in MUT:
            yield ("acc", ("K", 1, ROPE), rows, "W", "WG1 store_p P(b) into stage 1 RoPE")
        yield ("fence",)
        yield ("nb_arrive", PBREADY, CONSUMERS)
        if vb < 64 and "c1_no_tail_sync" not in MUT:
            yield ("nb_sync", TAILZ + 1, WGT)
        yield ("acc", REG_O, 0, "W", "rescale_rows(alpha_ab)")
        yield ("async", "wg", [(("K", 1, VR), ALL, "R", "WG1 P(b).V_R(b)"), (REG_P, 0, "R", ""), (REG_O, 0, "W", "")])
        yield ("commit", "wg")
        yield ("nb_sync", PAREADY, CONSUMERS)
        yield ("mb_wait", ("full", 0, VR), ua & 1, ua)
        yield ("async", "wg", [("sP", ALL, "R", "WG1 (P(a)alpha_b).V_R(a) reads sP"),
                               (("K", 0, VR), ALL, "R", "WG1 P(a).V_R(a)"), (REG_O, 0, "W", "")])
        yield ("commit", "wg")
        if "c1_free_vr0_early" in MUT:
            yield ("await", "wg", 1)
            yield ("mb_arrive", ("free", 0, VR), 32)
            yield ("mb_arrive", ("free", 1, VR), 32)
            yield ("await", "wg", 0)
        else:
            yield ("await", "wg", 1)
            yield ("mb_arrive", ("free", 1, VR), 32)
            yield ("await", "wg", 0)
            yield ("mb_arrive", ("free", 0, VR), 32)
    else:
        yield ("nb_sync", STATSA, CONSUMERS)
        yield ("acc", ("stats", 0), rows, "R", "WG1 read_stats(a)")
        yield ("acc", REG_O, 0, "W", "rescale_rows(alpha_a)")
        yield ("nb_sync", PAREADY, CONSUMERS)
        yield ("mb_wait", ("full", 0, VR), ua & 1, ua)
        yield from seesaw_zero_tail(0, pc.valid(a), 1, w, f"WG1 zero tail(a) V_R #{ua}")
        yield ("async", "wg", [("sP", ALL, "R", "WG1 P(a).V_R(a) reads sP"),
                               (("K", 0, VR), ALL, "R", "WG1 P(a).V_R(a)"), (REG_O, 0, "W", "")])
        yield ("commit", "wg")
        yield ("await", "wg", 0)
        yield ("mb_arrive", ("free", 0, VR), 32)


def consumer(wg, w, pieces, q_generic_stores):
    rows = warp_rows(w)
    ua = ub = 0  # SeesawUses, kept across pieces
    for pi, pc in enumerate(pieces):
        if pc.n > 0:
            qr = q_rows(4 * wg + w)
            if q_generic_stores:  # load_q_e4m3: st.shared
                yield ("acc", "Q", qr, "W", f"load_q #{pi}")
            else:  # load_q: cp.async, all in flight, then wait_group 0
                yield ("async", "cp", [("Q", qr, "W", f"load_q #{pi}")])
                yield ("commit", "cp")
                yield ("await", "cp", 0)
        yield ("fence",)
        yield ("nb_sync", QREADY, CONSUMERS)
        yield ("acc", REG_O, 0, "W", "o = 0")
        for a in range(0, pc.n, 2):
            has_b = a + 1 < pc.n
            if wg == 0:
                yield from seesaw_pair_0(w, pc, a, ua, ub, has_b)
            else:
                yield from seesaw_pair_1(w, pc, a, ua, ub, has_b)
            ua += 1
            ub += 1 if has_b else 0
        yield ("acc", ("rowsum", wg), rows, "W", f"WG{wg} row_sum")
        yield ("nb_sync", ROWSTATS, CONSUMERS)
        yield ("acc", ("rowsum", 0), rows, "R", f"WG{wg} read row sums")
        yield ("acc", ("rowsum", 1), rows, "R", f"WG{wg} read row sums")
        yield ("acc", REG_O, 0, "R", "store_output")


# ------------------------------------------------------------------------------------------------
# Producers

def blocks(pieces):  # for_each_block: (piece, block in piece, stage as StageRing gives it, position)
    it = 0
    for pc in pieces:
        for i in range(pc.n):
            yield pc, i, i & 1, it
            it += 1


def tma_warp(st, pieces, page):
    uses = 0
    rpc = min(page, 64)
    for pc, i, stage, it in blocks(pieces):
        if stage != st:
            continue
        parity = uses & 1
        copies = (min(pc.valid(i), 64) + rpc - 1) // rpc
        for g in release_order(st):
            yield ("mb_wait", ("free", st, g), parity ^ 1, uses - 1 if uses > 0 else None)
            yield ("expect_tx", ("full", st, g), copies * rpc * group_sub_tiles(g))
            for j in range(copies):
                rows = ALL if rpc == 64 else ((1 << rpc) - 1) << (j * rpc)
                yield ("tma", ("full", st, g), rpc * group_sub_tiles(g), ("K", st, g), rows)
        uses += 1


def gather_slice(lo, hi, pieces):
    nthr = hi - lo
    rows = producer_rows(lo, hi)  # every row: past the sequence end, zero-filled
    pending = None
    uses = [0, 0]

    def signal(stage):
        if "gather_no_fence" not in MUT:
            yield ("fence",)
        for g in range(3):
            yield ("mb_arrive", ("full", stage, g), nthr)

    for pc, i, stage, it in blocks(pieces):
        u = uses[stage]
        uses[stage] += 1
        parity = u & 1
        if pending is not None and "gather_no_early" not in MUT:
            free = True
            for g in range(3):  # stage_is_free: short-circuit &&
                free = free and (yield ("mb_test", ("free", stage, g), parity ^ 1))
            if not free:
                yield ("await", "cp", 0)
                yield from signal(pending)
                pending = None
        for g in release_order(stage):
            yield ("mb_wait", ("free", stage, g), parity ^ 1, u - 1 if u > 0 else None)
        yield ("async", "cp", [(("K", stage, g), rows, "W", f"gather cp.async #{it}") for g in range(3)])
        yield ("commit", "cp")
        if pending is not None:
            yield ("await", "cp", 1)
            yield from signal(pending)
        pending = stage
    if pending is not None:
        yield ("await", "cp", 0)
        yield from signal(pending)


def fp8_slice(lo, hi, pieces, with_scale):
    nthr = hi - lo
    uses = [0, 0]
    for pc, i, stage, it in blocks(pieces):
        u = uses[stage]
        uses[stage] += 1
        parity = u & 1
        rows = producer_rows(lo, hi) & below(pc.valid(i))  # rows past the end are not written
        for g in release_order(stage):
            yield ("mb_wait", ("free", stage, g), parity ^ 1, u - 1 if u > 0 else None)
        if with_scale and rows:
            yield ("async", "cp", [(("K", stage, ROPE), rows, "W", f"fp8 RoPE cp.async #{it}")])
        for g in (VL, VR) if with_scale else (ROPE, VL, VR):
            if rows:
                yield ("acc", ("K", stage, g), rows, "W", f"fp8 st.shared #{it}")
        if with_scale:
            yield ("commit", "cp")
            yield ("await", "cp", 0)
        if "fp8_no_fence" not in MUT:
            yield ("fence",)
        for g in range(3):
            yield ("mb_arrive", ("full", stage, g), nthr)


# ------------------------------------------------------------------------------------------------
# The machine

class Actor:
    __slots__ = ("id", "name", "gen", "vc", "op", "done", "block", "queues", "open", "started", "weight",
                 "fences", "wbar", "wpar")

    def __init__(self, aid, name, gen, vc):
        self.id = aid
        self.name = name
        self.gen = gen
        self.vc = dict(vc) if vc else {}
        self.vc[aid] = 0
        self.op = None
        self.done = False
        self.block = None  # (named barrier id, instance) while in bar.sync
        self.queues = {"wg": [], "cp": []}  # committed groups, oldest first
        self.open = {"wg": [], "cp": []}
        self.started = False
        self.weight = 1.0
        self.fences = []  # own clock values of its fence.proxy.async
        self.wbar = None  # the mbarrier of a pending mbarrier wait, and the parity waited for
        self.wpar = 0


def join(a, b):
    for k, v in b.items():
        if a.get(k, -1) < v:
            a[k] = v


class MBar:
    def __init__(self, name, expected):
        self.name = name
        self.expected = expected
        self.pending = expected
        self.tx = 0
        self.completed = 0
        self.cur = {}
        self.phase_vc = []


class NBar:
    def __init__(self):
        self.count = None
        self.n = 0
        self.members = set()
        self.vc = {}
        self.instances = 0
        self.inst_vc = []


def bar_name(b):
    return f"g_{b[0]}[{b[1]}][{GNAME[b[2]]}]"


def region_name(r):
    if isinstance(r, tuple) and r[0] == "K":
        return f"stage {r[1]} {GNAME[r[2]]}"
    if isinstance(r, tuple):
        return f"{r[0]}[{r[1]}]"
    return r


class Sim:
    def __init__(self, pieces, producer, page, seed, slices=8, profile="uniform", trace=False):
        self.rng = random.Random(seed)
        self.profile = profile
        self.changed = False
        self.clock = 0  # global step count: when each access started and ended
        self.errors = []
        self.accesses = defaultdict(list)
        self.actors = []
        self.mb = {}
        self.trace = [] if trace else None  # (step, actor, op) of every step, with -v
        self.windows = {}  # error -> the steps to show for it
        full_arr = 1 if producer == "tma" else 128
        for st in range(2):
            for g in range(3):
                self.mb[("full", st, g)] = MBar(("full", st, g), full_arr)
                self.mb[("free", st, g)] = MBar(("free", st, g), free_arrivals(st, g))
        self.nb = defaultdict(NBar)
        q_generic = producer.startswith("fp8") and self.rng.random() < 0.5
        for wg in range(2):
            for w in range(4):
                self.spawn(f"WG{wg}.w{w}", consumer(wg, w, pieces, q_generic))
        if producer == "tma":
            self.spawn("TMA.w0", tma_warp(0, pieces, page))
            self.spawn("TMA.w1", tma_warp(1, pieces, page))
        else:
            step = 128 // slices
            for s in range(slices):
                lo, hi = s * step, (s + 1) * step
                if producer == "gather":
                    self.spawn(f"gather[{lo}:{hi}]", gather_slice(lo, hi, pieces))
                else:
                    self.spawn(f"fp8[{lo}:{hi}]", fp8_slice(lo, hi, pieces, producer == "fp8s"))

    def new_weight(self):
        if self.profile == "uniform":
            return 1.0
        return 2.0 ** self.rng.uniform(-5, 5)

    def spawn(self, name, gen, vc=None):
        a = Actor(len(self.actors), name, gen, vc)
        a.weight = self.new_weight()
        self.actors.append(a)
        self.changed = True
        self.advance(a, None)
        return a

    def advance(self, a, val):
        try:
            if a.started:
                a.op = a.gen.send(val)
            else:
                a.started = True
                a.op = next(a.gen)
            if a.op[0] == "mb_wait":
                a.wbar, a.wpar = self.mb[a.op[1]], a.op[2]
            else:
                a.wbar = None
        except StopIteration:
            a.op = None
            a.wbar = None
            a.done = True
            self.changed = True

    def err(self, msg, window=None):
        if len(self.errors) < 50:
            self.errors.append(msg)
            self.windows[msg] = window

    def record(self, a, region, rows, kind, tag, proxy, start_vc, end_t, start_step):
        self.accesses[region].append((a.id, a.name, start_vc, end_t, rows, kind, tag, proxy, start_step,
                                      self.clock))

    def mb_arrive(self, a, bar, n, tx=0):
        bar.pending -= n
        bar.tx += tx
        join(bar.cur, a.vc)
        if bar.pending < 0:
            self.err(f"mbarrier {bar_name(bar.name)}: too many arrivals ({a.name})")
        self.mb_check(bar)

    def mb_check(self, bar):
        if bar.pending <= 0 and bar.tx == 0:
            bar.phase_vc.append(bar.cur)
            bar.cur = {}
            bar.completed += 1
            bar.pending = bar.expected

    def reg_check(self, a, reg, what):
        for q in (a.open["wg"], *a.queues["wg"]):
            for item in q:
                if item[0] == reg:
                    self.err(f"{a.name}: {what} touches wgmma register {reg[1]} before the wait_group "
                             f"that retires the wgmma reading/writing it")
                    return

    def step(self, a):
        self.clock += 1
        if self.trace is not None:
            self.trace.append((self.clock, a.name, ("pass", a.block[0]) if a.block else a.op))
        if a.block is not None:
            bid, inst, nb = a.block
            join(a.vc, nb.inst_vc[inst])
            a.block = None
            a.vc[a.id] += 1
            self.advance(a, None)
            return
        op = a.op
        kind = op[0]
        val = None
        if kind == "mb_wait":
            bar = self.mb[op[1]]
            intended = op[3]
            if intended is not None and bar.completed != intended + 1:
                self.err(f"{a.name}: parity alias on {bar_name(bar.name)}: waits for phase {intended}, "
                         f"{bar.completed} completed")
            if bar.completed > 0:
                join(a.vc, bar.phase_vc[bar.completed - 1])
        elif kind == "mb_test":
            bar = self.mb[op[1]]
            val = (bar.completed & 1) != op[2]
            if val and bar.completed > 0:
                join(a.vc, bar.phase_vc[bar.completed - 1])
        elif kind == "mb_arrive":
            self.mb_arrive(a, self.mb[op[1]], op[2])
        elif kind == "expect_tx":
            self.mb_arrive(a, self.mb[op[1]], 1, op[2])
        elif kind == "tma":
            bar, nbytes, region, rows = op[1], op[2], op[3], op[4]

            def copy(bar=bar, nbytes=nbytes, region=region, rows=rows):
                yield ("acc_async", region, rows, "W", "TMA copy")
                yield ("complete_tx", bar, nbytes)
            self.spawn(f"tma-copy<{a.name}>", copy(), a.vc)
        elif kind == "complete_tx":
            bar = self.mb[op[1]]
            bar.tx -= op[2]
            join(bar.cur, a.vc)
            self.mb_check(bar)
        elif kind in ("acc", "acc_async"):
            _, region, rows, k, tag = op
            if region[0] == "reg":
                self.reg_check(a, region, tag)
            else:
                self.record(a, region, rows, k, tag, "a" if kind == "acc_async" else "g", dict(a.vc), a.vc[a.id],
                            self.clock)
        elif kind == "fence":
            a.fences.append(a.vc[a.id])
        elif kind == "async":
            q = op[1]
            for (region, rows, k, tag) in op[2]:
                a.open[q].append((region, rows, k, tag, dict(a.vc), self.clock))
        elif kind == "commit":
            q = op[1]
            a.queues[q].append(a.open[q])
            a.open[q] = []
        elif kind == "await":
            q, n = op[1], op[2]
            while len(a.queues[q]) > n:
                for (region, rows, k, tag, svc, sstep) in a.queues[q].pop(0):
                    if region[0] != "reg":
                        self.record(a, region, rows, k, tag, "a" if q == "wg" else "g", svc, a.vc[a.id], sstep)
        elif kind in ("nb_arrive", "nb_sync"):
            bid, cnt = op[1], op[2]
            nb = self.nb[bid]
            if nb.n == 0:
                nb.count = cnt
            elif nb.count != cnt:
                self.err(f"named barrier {NBNAME[bid]}: thread count {nb.count} vs {cnt} ({a.name})")
            if a.id in nb.members:
                self.err(f"named barrier {NBNAME[bid]}: {a.name} arrived twice in one instance "
                         f"(two hand-offs' arrivals mixed)")
            nb.members.add(a.id)
            nb.n += 32
            join(nb.vc, a.vc)
            inst = nb.instances
            if nb.n >= nb.count:
                nb.inst_vc.append(nb.vc)
                nb.vc = {}
                nb.n = 0
                nb.members = set()
                nb.instances += 1
            if kind == "nb_sync":
                a.block = (bid, inst, nb)
                a.vc[a.id] += 1
                return
        else:
            raise ValueError(op)
        a.vc[a.id] += 1
        self.advance(a, val)

    def run(self, max_steps=1_000_000):
        rng = self.rng
        steps = 0
        live = list(self.actors)
        self.changed = True
        while True:
            if self.changed:  # an actor finished or a TMA copy was issued
                self.changed = False
                live = [a for a in self.actors if not a.done]
            ready = [a for a in live
                     if (a.wbar is None or (a.wbar.completed & 1) != a.wpar)
                     and (a.block is None or a.block[2].instances > a.block[1])]
            if not ready:
                break
            if self.profile == "uniform":
                a = ready[int(rng.random() * len(ready))]
            else:
                a = rng.choices(ready, [x.weight for x in ready])[0]
                if rng.random() < 0.01:
                    a.weight = self.new_weight()
            self.step(a)
            steps += 1
            if steps > max_steps:
                self.err("step limit")
                return
        stuck = [a for a in self.actors if not a.done]
        if stuck:
            desc = [f"{a.name} at {self.describe_block(a)}" for a in stuck]
            self.err("DEADLOCK: " + "; ".join(desc))
            return
        for bar in self.mb.values():
            if bar.pending != bar.expected or bar.tx != 0:
                self.err(f"mbarrier {bar_name(bar.name)} left mid-phase: {bar.expected - bar.pending} of "
                         f"{bar.expected} arrivals, tx {bar.tx}")
        for bid, nb in self.nb.items():
            if nb.n:
                self.err(f"named barrier {NBNAME[bid]} left with {nb.n} threads arrived")
        for a in self.actors:
            for q in ("wg", "cp"):
                if a.queues[q] or a.open[q]:
                    self.err(f"{a.name}: {q} group never waited for")
        self.check_races()

    def describe_block(self, a):
        if a.block is not None:
            return f"bar.sync {NBNAME[a.block[0]]}"
        op = a.op
        if op[0] == "mb_wait":
            return f"wait {bar_name(op[1])} parity {op[2]}"
        return str(op)

    def check_races(self):
        """Every conflicting pair of accesses to a region (overlapping rows, one a write): unordered
        either way is a race; ordered generic before async needs a fence.proxy.async in between.
        Record: (actor, name, start vc, end clock, rows, R/W, tag, proxy, start step, end step)."""
        inf = float("inf")
        next_fence = {}

        def fence_after(x):  # x's thread's first fence.proxy.async after x (its own clock), or inf
            key = (x[0], x[3])
            if key not in next_fence:
                f = self.actors[x[0]].fences
                k = bisect.bisect_left(f, x[3])
                next_fence[key] = f[k] if k < len(f) else inf
            return next_fence[key]

        seen = set()
        for region, accs in self.accesses.items():
            writes = [x for x in accs if x[5] == "W"]
            reads = [x for x in accs if x[5] == "R"]
            for i, x in enumerate(writes):
                xa, xvc, xend, xrows, xs, xe = x[0], x[2], x[3], x[4], x[8], x[9]
                for y in writes[i + 1:] + reads:
                    if not (xrows & y[4]):
                        continue
                    # Only an access that ended (in this run) before the other started can be ordered
                    # before it (vector clocks: the later start has seen the earlier end).
                    if xe < y[8] and y[2].get(xa, -1) >= xend:
                        first, second = x, y
                    elif y[9] < xs and xvc.get(y[0], -1) >= y[3]:
                        first, second = y, x
                    else:
                        if y[5] == "W" and x[6] == y[6] and xa != y[0] and x[7] == "g":
                            continue  # one cooperative step (same tag and instance #): disjoint bytes
                        key = ("race", region, x[6], y[6])
                        if key not in seen:
                            seen.add(key)
                            self.err(f"RACE on {region_name(region)}: [{x[1]}] {x[6]} ({x[5]}, steps "
                                     f"{x[8]}-{x[9]}) <-> [{y[1]}] {y[6]} ({y[5]}, steps {y[8]}-{y[9]})",
                                     (min(xs, y[8]), max(xe, y[9])))
                        continue
                    if first[7] == "g" and second[7] == "a" and second[2].get(first[0], -1) <= fence_after(first):
                        key = ("proxy", region, first[6], second[6])
                        if key not in seen:
                            seen.add(key)
                            self.err(f"PROXY on {region_name(region)}: [{first[1]}] {first[6]} (generic, step "
                                     f"{first[9]}) is ordered before [{second[1]}] {second[6]} (async proxy, "
                                     f"step {second[8]}) without a fence.proxy.async between",
                                     (first[9], second[8]))


# ------------------------------------------------------------------------------------------------

TAILS = (64, 37, 1, 63, 16, 64)


def random_pieces(rng):
    ps = []
    for _ in range(rng.randint(1, 4)):
        n = rng.randint(0, 7)
        tv = 64 if rng.random() < 0.4 else rng.choice([1, 2, 15, 16, 17, 31, 32, 33, 48, 63, rng.randint(1, 63)])
        ps.append(Piece(n, tv))
    return ps


def describe(op):
    kind = op[0]
    if kind == "pass":
        return f"passes bar.sync {NBNAME[op[1]]}"
    if kind in ("nb_sync", "nb_arrive"):
        return f"{'bar.sync' if kind == 'nb_sync' else 'bar.arrive'} {NBNAME[op[1]]} ({op[2]})"
    if kind == "mb_wait":
        return f"mbarrier wait {bar_name(op[1])} parity {op[2]}"
    if kind == "mb_test":
        return f"mbarrier test {bar_name(op[1])} parity {op[2]}"
    if kind == "mb_arrive":
        return f"mbarrier arrive {bar_name(op[1])} x{op[2]}"
    if kind == "expect_tx":
        return f"arrive.expect_tx {bar_name(op[1])}"
    if kind == "tma":
        return f"issue TMA into {region_name(op[3])} -> {bar_name(op[1])}"
    if kind == "complete_tx":
        return f"complete_tx {bar_name(op[1])}"
    if kind in ("acc", "acc_async"):
        if op[1][0] == "reg":
            return f"{op[4]} ({'reads' if op[3] == 'R' else 'writes'} registers {op[1][1]})"
        return f"{'reads' if op[3] == 'R' else 'writes'} {region_name(op[1])}: {op[4]}"
    if kind == "async":
        what = ", ".join(f"{'R' if k == 'R' else 'W'} {region_name(r)}" for (r, _, k, _) in op[2] if r[0] != "reg")
        return f"issue {'wgmma' if op[1] == 'wg' else 'cp.async'} ({what})"
    if kind == "commit":
        return f"commit {'wgmma' if op[1] == 'wg' else 'cp.async'} group"
    if kind == "await":
        return f"wait_group<{op[2]}> ({'wgmma' if op[1] == 'wg' else 'cp.async'})"
    if kind == "fence":
        return "fence.proxy.async"
    return str(op)


def normalise(e):
    e = re.sub(r"\.w\d", ".w*", e)
    e = re.sub(r"(gather|fp8)\[\d+:\d+\]", r"\1[*]", e)
    e = re.sub(r"tma-copy<TMA\.w\d>", "tma-copy", e)
    e = re.sub(r"steps? \d+(-\d+)?", "step *", e)
    e = re.sub(r" #\d+", "", e)
    e = re.sub(r"waits for phase \d+, \d+ completed", "wrong phase", e)
    e = re.sub(r"\d+ of (\d+) arrivals, tx -?\d+", r"* of \1 arrivals", e)
    if e.startswith("DEADLOCK"):
        e = "DEADLOCK: " + "; ".join(sorted(set(re.sub(r"(WG\d\.w\*|TMA\.w\*|tma-copy|gather\[\*\]|fp8\[\*\]) at ", "", x)
                                                for x in e[10:].split("; "))))
    return e


def main():
    global MUT
    args = sys.argv[1:]
    runs, seed, verbose = 400, 12345, False
    muts = []
    it = iter(args)
    for x in it:
        if x.isdigit():
            runs = int(x)
        elif x == "--seed":
            seed = int(next(it))
        elif x == "-v":
            verbose = True
        elif x == "--mutations":
            for k, v in MUTATIONS.items():
                print(f"  {k:24s} {v}")
            return 0
        elif x in MUTATIONS:
            muts.append(x)
        else:
            print(f"unknown argument {x!r} (mutations: --mutations)")
            return 2
    MUT = set(muts)
    rng = random.Random(seed)
    shapes = []
    k = 0
    for n1 in range(8):  # every piece size before every other, with tails, then a one-block tail piece
        for n2 in range(8):
            shapes.append([Piece(n1, TAILS[k % len(TAILS)]), Piece(n2, TAILS[(k // 3) % len(TAILS)]), Piece(1, 5)])
            k += 1
    for n in range(8):
        for tv in (1, 33, 63, 64):
            shapes.append([Piece(n, tv)])
    for _ in range(runs):
        shapes.append(random_pieces(rng))
    t0 = time.time()
    summary = defaultdict(int)
    examples = {}
    total = 0
    for pieces in shapes:
        for producer in ("tma", "gather", "fp8", "fp8s"):
            page = rng.choice([16, 32, 64, 128]) if producer == "tma" else 1
            profile = rng.choice(["uniform", "skewed", "skewed"])
            sim_seed = rng.getrandbits(48)
            sim = Sim(pieces, producer, page, sim_seed, profile=profile, trace=verbose)
            sim.run()
            total += 1
            for e in sim.errors:
                key = normalise(e)
                summary[key] += 1
                if key not in examples:
                    tr = None
                    if sim.trace is not None:
                        w = sim.windows.get(e)
                        if w is None:  # deadlock and the like: the last steps
                            tr = sim.trace[-40:]
                        else:  # the steps around the two accesses that touch this region or sync
                            tr = [t for t in sim.trace if w[0] - 2 <= t[0] <= w[1] + 1]
                            if len(tr) > 80:
                                tr = tr[:40] + [(0, "...", ("...",))] + tr[-40:]
                    examples[key] = (pieces, producer, page, profile, sim_seed, e, tr)
    dt = time.time() - t0
    print(f"mutations={sorted(MUT)} simulations={total} ({len(shapes)} piece sequences x 4 producers) "
          f"seed={seed} {dt:.1f} s")
    if not summary:
        print("no errors")
        return 0
    for key, v in sorted(summary.items(), key=lambda kv: -kv[1]):
        pieces, producer, page, profile, sim_seed, e, tr = examples[key]
        print(f"{v:5d}x {e[:600]}")
        print(f"        e.g. pieces={pieces} producer={producer}" + (f" page={page}" if producer == "tma" else "")
              + f" scheduler={profile} sim_seed={sim_seed}")
        if tr:
            print("        steps:")
            for (stp, name, op) in tr:
                print(f"          {stp:6d} {name:18s} {describe(op) if op[0] != '...' else '...'}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
