"""Test inputs with poison, an independent float64 reference, and SPEC.md's accuracy check.

The reference is plain torch float64 math written from SPEC.md ("The math, exactly"); it shares no
code with the library.
"""

import math
from dataclasses import dataclass

import pytest
import torch

D, DV = 576, 512
GARBAGE_BLOCK_IDS = (-1, 2147480000)  # vLLM's padding and FlashMLA's own test value

# The decode tests' shapes (test_api.py for 16-bit caches, test_fp8.py for FP8 ones).
DECODE_CASES = [
    # seqlens, s_q, h_q, h_kv, page, causal
    pytest.param([1], 1, 16, 1, 64, False, id="one-token"),
    pytest.param([300, 0, 65, 1000], 1, 16, 1, 64, False, id="ragged-with-empty"),
    pytest.param([129, 64, 7], 2, 20, 1, 64, True, id="sq2-causal-h20"),
    pytest.param([513, 33], 3, 8, 2, 64, True, id="hkv2-causal"),
    pytest.param([0, 0], 1, 16, 1, 64, False, id="all-empty"),
    pytest.param([2, 95], 4, 16, 1, 64, True, id="causal-rows-fully-masked"),
    pytest.param([200, 17, 1], 2, 128, 1, 16, False, id="h128-page16"),
    pytest.param([65, 1, 130], 2, 16, 1, 1, True, id="page1"),
    pytest.param([300, 31, 33], 1, 64, 1, 32, False, id="page32"),
    pytest.param([257, 5], 3, 16, 1, 256, True, id="page256"),
]


@dataclass
class Inputs:
    q: torch.Tensor            # [b, s_q, h_q, 576]
    k_cache: torch.Tensor      # [num_blocks, page, h_kv, 576]
    block_table: torch.Tensor  # [b, max_blocks] int32
    cache_seqlens: torch.Tensor  # [b] int32

    def to(self, device):
        return Inputs(*(t.to(device) for t in (self.q, self.k_cache, self.block_table, self.cache_seqlens)))


def make_inputs(seqlens, s_q=1, h_q=16, h_kv=1, page=64, dtype=torch.bfloat16, seed=0,
                garbage=GARBAGE_BLOCK_IDS[0], num_blocks=None, max_blocks=None):
    """Random randn/10 data (never zeros), pages shuffled, NaN in every cached token past a sequence's
    end and in unused blocks, `garbage` in block-table entries past each sequence's last block.
    num_blocks and max_blocks fix the cache and block-table shapes (default: two garbage entries per
    row, three blocks nobody owns)."""
    gen = torch.Generator().manual_seed(seed)
    b = len(seqlens)
    blocks_per_seq = [math.ceil(n / page) for n in seqlens]
    max_blocks = max_blocks or max(blocks_per_seq + [1]) + 2
    num_blocks = num_blocks or sum(blocks_per_seq) + 3
    assert max_blocks >= max(blocks_per_seq) and num_blocks >= sum(blocks_per_seq)
    q = (torch.randn(b, s_q, h_q, D, generator=gen) / 10).to(dtype)
    k_cache = (torch.randn(num_blocks, page, h_kv, D, generator=gen) / 10).to(dtype)
    perm = torch.randperm(num_blocks, generator=gen)
    block_table = torch.full((b, max_blocks), garbage, dtype=torch.int32)
    used = torch.zeros(num_blocks, dtype=torch.bool)
    next_block = 0
    for i, n in enumerate(seqlens):
        for j in range(blocks_per_seq[i]):
            block = int(perm[next_block])
            next_block += 1
            block_table[i, j] = block
            used[block] = True
            tail = n - j * page  # valid tokens in this block
            if tail < page:
                k_cache[block, tail:] = float("nan")
    k_cache[~used] = float("nan")
    cache_seqlens = torch.tensor(seqlens, dtype=torch.int32)
    return Inputs(q, k_cache, block_table, cache_seqlens)


def reference(q, k_cache, block_table, cache_seqlens, softmax_scale=None, causal=False):
    """out [b, s_q, h_q, 512] float64, lse [b, h_q, s_q] float64 (+inf for rows that see no token)."""
    q, k_cache, block_table, cache_seqlens = (t.cpu() for t in (q, k_cache, block_table, cache_seqlens))
    b, s_q, h_q, d = q.shape
    page, h_kv = k_cache.shape[1], k_cache.shape[2]
    scale = d ** -0.5 if softmax_scale is None else softmax_scale
    out = torch.zeros(b, s_q, h_q, DV, dtype=torch.float64)
    lse = torch.full((b, h_q, s_q), math.inf, dtype=torch.float64)
    for i in range(b):
        n = int(cache_seqlens[i])
        if n == 0:
            continue
        blocks = block_table[i, : math.ceil(n / page)].long()
        kv = k_cache[blocks].reshape(-1, h_kv, d)[:n].double()        # [n, h_kv, 576]
        kv = kv.repeat_interleave(h_q // h_kv, dim=1)                 # [n, h_q, 576]
        scores = torch.einsum("thc,jhc->htj", q[i].double(), kv) * scale  # [h_q, s_q, n]
        if causal and s_q > 1:
            last_visible = n - s_q + torch.arange(s_q)                # [s_q]
            hidden = torch.arange(n)[None, :] > last_visible[:, None]  # [s_q, n]
            scores = scores.masked_fill(hidden[None], -math.inf)
        row_lse = torch.logsumexp(scores, dim=-1)                     # [h_q, s_q]
        seen = torch.isfinite(row_lse)
        probs = torch.where(seen[..., None], torch.exp(scores - row_lse[..., None]), 0.0)
        out[i] = torch.einsum("htj,jhc->thc", probs, kv[..., :DV])
        lse[i] = torch.where(seen, row_lse, math.inf)
    return out, lse


def assert_close_to_reference(out, lse, ref_out, ref_lse):
    """SPEC.md's accuracy rule (FlashMLA's test): element-wise abs-or-rel bounds, cosine difference,
    and +inf/NaN in exactly the reference's positions."""
    out, lse = out.cpu().double(), lse.cpu().double()
    assert out.shape == ref_out.shape and lse.shape == ref_lse.shape
    for name, got, want, atol, rtol in (("out", out, ref_out, 8e-4, 2.01 / 128),
                                        ("lse", lse, ref_lse, 1e-6, 8.01 / 65536)):
        finite = torch.isfinite(want)
        assert torch.equal(torch.isfinite(got), finite), f"{name}: non-finite values in other positions"
        assert torch.equal(torch.isposinf(got), torch.isposinf(want)), f"{name}: +inf in other positions"
        err = (got[finite] - want[finite]).abs()
        bad = (err > atol) & (err > rtol * want[finite].abs())
        assert not bad.any(), f"{name}: {int(bad.sum())} elements out of tolerance, max error {err.max():.3g}"
    x, y = out, ref_out
    norms = (x * x + y * y).sum().item()
    cos_diff = 1 - 2 * (x * y).sum().item() / norms if norms > 0 else 0.0  # all-zero: equal
    assert cos_diff <= 5e-6, f"out: cosine difference {cos_diff:.3g}"


# FP8 caches (SPEC.md, "FP8 KV cache"). The dequantisation below is written from SPEC.md with torch's
# own float8_e4m3fn decoding; it shares no code with the library.
FP8_WITH_SCALE_BYTES = 656
LAYOUTS = ("with_scale", "per_tensor", "per_tensor_fp8_q")


@dataclass
class FP8Inputs:
    q: torch.Tensor              # [b, s_q, h_q, 576] bfloat16, or float8_e4m3fn (per_tensor_fp8_q)
    k_cache: torch.Tensor        # [num_blocks, page, h_kv, 656] uint8 or [..., 576] float8_e4m3fn
    block_table: torch.Tensor
    cache_seqlens: torch.Tensor
    descale_q: "torch.Tensor | None"  # (1,) float32
    descale_k: "torch.Tensor | None"  # (1,) float32

    def to(self, device):
        return FP8Inputs(*(t if t is None else t.to(device) for t in vars(self).values()))

    def dequantized(self):
        """(q, k_cache) as float64, the values SPEC says the decode sees."""
        return dequantize_q(self.q, self.descale_q), dequantize_cache(self.k_cache, self.descale_k)

    def decode_args(self):
        return self.q, self.k_cache, self.block_table, self.cache_seqlens


def dequantize_q(q, descale_q=None):
    q = q.cpu().double()
    return q if descale_q is None else q * descale_q.cpu().double()


def dequantize_cache(k_cache, descale_k=None):
    """[..., 656] bytes (FP8 with scale) or [..., 576] e4m3 (per-tensor, times descale_k) -> float64."""
    k_cache = k_cache.cpu()
    if k_cache.shape[-1] == FP8_WITH_SCALE_BYTES:
        raw = k_cache.view(torch.uint8)
        nope = raw[..., :512].contiguous().view(torch.float8_e4m3fn).double()
        scales = raw[..., 512:528].contiguous().view(torch.float32).double()      # [..., 4]
        rope = raw[..., 528:].contiguous().view(torch.bfloat16).double()          # [..., 64]
        return torch.cat([nope * scales.repeat_interleave(128, dim=-1), rope], dim=-1)
    return k_cache.double() * descale_k.cpu().double()


def make_fp8_inputs(seqlens, s_q=1, h_q=16, h_kv=1, page=64, layout="with_scale", seed=0,
                    garbage=GARBAGE_BLOCK_IDS[0]):
    """make_inputs' data quantised into `layout` by flash_mla's quantisers, then poisoned as engines
    leave caches: every token past a sequence's end and every unused block holds NaN codes of both
    signs (0x7F / 0xFF), and in the 656-byte layout NaN scales and NaN RoPE channels too."""
    from flash_mla import quantize_fp8_per_tensor, quantize_fp8_with_scale
    base = make_inputs(seqlens, s_q, h_q, h_kv, page, torch.bfloat16, seed, garbage)
    poisoned = torch.isnan(base.k_cache.float()).any(dim=-1)                 # [num_blocks, page, h_kv]
    gen = torch.Generator().manual_seed(seed + 1)
    descale = lambda: torch.tensor([0.7 / 448 * (1 + 0.5 * float(torch.rand(1, generator=gen)))])
    descale_q = descale_k = None
    q = base.q
    if layout == "with_scale":
        k_cache = quantize_fp8_with_scale(base.k_cache)
        k_cache[..., :512][poisoned] = torch.tensor([0x7F, 0xFF], dtype=torch.uint8).repeat(256)
        k_cache[..., 512:528][poisoned] = torch.full((4,), math.nan).view(torch.uint8)
        k_cache[..., 528:][poisoned] = torch.full((64,), math.nan, dtype=torch.bfloat16).view(torch.uint8)
    else:
        descale_k = descale()
        k_cache = quantize_fp8_per_tensor(base.k_cache, descale_k)
        k_cache.view(torch.uint8)[poisoned] = torch.tensor([0x7F, 0xFF], dtype=torch.uint8).repeat(288)
        if layout == "per_tensor_fp8_q":
            descale_q = descale()
            q = quantize_fp8_per_tensor(base.q, descale_q)
    return FP8Inputs(q, k_cache, base.block_table, base.cache_seqlens, descale_q, descale_k)
