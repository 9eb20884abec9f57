"""FP8 KV caches through the Python API (SPEC.md, "FP8 KV cache"): FlashMLA's 656-byte "FP8 with
scale" layout and vLLM's per-tensor e4m3 (with a bf16 or an e4m3 q).

The quantisers are checked byte for byte against SPEC's rule written here with torch's own float8
cast (round to nearest even; clamped first, since torch's cast turns values past 464 into NaN where
e4m3fn saturation keeps 448). Decoding is checked against the float64 reference on the dequantised
cache and q (mla_reference.dequantize_*, torch's float8 decoding), with SPEC's tolerances unchanged:
quantisation error is not part of that comparison, and dequantisation is exact (tests/test_cpu_fp8.cpp
gives the argument). FP8 decoding runs on the CPU backend; on CUDA the sm90 kernel rejects FP8 caches
until it reads them (test_cuda_rejects_fp8_until_the_kernel_reads_it).
"""

import math

import pytest
import torch

import flash_mla
from flash_mla import flash_mla_with_kvcache, get_mla_metadata
from conftest import requires_sm90
from mla_reference import (DECODE_CASES, GARBAGE_BLOCK_IDS, LAYOUTS, assert_close_to_reference, make_fp8_inputs,
                           make_inputs, reference)


def decode(inp, causal=False, softmax_scale=None, **kwargs):
    s_q, h_q, h_kv = inp.q.shape[1], inp.q.shape[2], inp.k_cache.shape[2]
    meta = get_mla_metadata(inp.cache_seqlens, s_q * h_q // h_kv, h_kv)
    return flash_mla_with_kvcache(*inp.decode_args(), 512, *meta, softmax_scale=softmax_scale, causal=causal,
                                  descale_q=inp.descale_q, descale_k=inp.descale_k, **kwargs)


def expected(inp, causal=False, softmax_scale=None):
    q, k_cache = inp.dequantized()
    scale = 576 ** -0.5 if softmax_scale is None else softmax_scale
    return reference(q, k_cache, inp.block_table, inp.cache_seqlens, softmax_scale=scale, causal=causal)


# ---------------------------------------------------------------------------------------------
# Quantisers.

def spec_with_scale(x):
    """SPEC's FP8-with-scale bytes of x [..., 576], written with torch ops."""
    x = x.float()
    nope = x[..., :512].unflatten(-1, (4, 128))                                     # [..., 4, 128]
    amax = torch.where(torch.isfinite(nope), nope.abs(), 0).amax(dim=-1).double()   # [..., 4]
    t = torch.clamp(amax / 448, min=1e-4)
    mantissa, exponent = torch.frexp(t)                                             # t = m * 2^e, m in [0.5, 1)
    scale = torch.ldexp(torch.ones_like(t), torch.where(mantissa == 0.5, exponent - 1, exponent)).float()
    codes = (nope / scale[..., None]).clamp(-448, 448).to(torch.float8_e4m3fn).view(torch.uint8)
    rope = x[..., 512:].to(torch.bfloat16).view(torch.uint8)
    return torch.cat([codes.flatten(-2), scale.view(torch.uint8), rope], dim=-1)


def test_quantize_with_scale_matches_spec_byte_for_byte():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(40, 3, 576, generator=gen)
    # Every token and group at its own magnitude, from below SPEC's 1e-4 floor to far above 448.
    x = x * torch.exp2(torch.randint(-20, 14, (40, 3, 5), generator=gen).float()).repeat_interleave(
        torch.tensor([128, 128, 128, 128, 64]), dim=-1)
    x[0, 0, :128] = torch.linspace(-400, 448, 128)     # amax exactly 448: scale 1
    x[1, 0, 128:256] = 0                               # all zeros: scale 2^-13
    x[2, 1, 3] = math.inf                              # saturates, the group's scale from finite values
    x[2, 1, 300] = -math.inf
    x[3, 2, 7] = math.nan
    for dtype in (torch.float16, torch.bfloat16, torch.float32):  # float32 last: the checks below use it
        xd = x.to(dtype) if dtype != torch.float16 else x.clamp(-6e4, 6e4).to(dtype)
        got = flash_mla.quantize_fp8_with_scale(xd)
        assert got.shape == (40, 3, 656) and got.dtype == torch.uint8
        want = spec_with_scale(xd)
        assert torch.equal(got[..., 512:], want[..., 512:]), "scales or RoPE differ"
        nan = torch.isnan(xd[..., :512].float())
        assert torch.equal(got[..., :512][~nan], want[..., :512][~nan]), "e4m3 codes differ"
        assert torch.all(got[..., :512][nan] & 0x7F == 0x7F), "NaN must stay NaN"
    scales = got[..., 512:528].contiguous().view(torch.float32)
    assert scales[0, 0, 0] == 1 and scales[1, 0, 1] == 2.0 ** -13
    assert got[0, 0, 127] == 0x7E and got[2, 1, 3] == 0x7E and got[2, 1, 300] == 0xFE


def test_quantize_per_tensor_is_the_saturating_nearest_code():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(5, 7, 333, generator=gen).to(torch.bfloat16)
    x[0, 0, :4] = torch.tensor([math.inf, -math.inf, 1e4, -1e4])
    for descale in (1 / 448, 0.003, torch.tensor([0.0021])):
        got = flash_mla.quantize_fp8_per_tensor(x, descale)
        assert got.dtype == torch.float8_e4m3fn and got.shape == x.shape
        d = float(descale) if not isinstance(descale, torch.Tensor) else float(descale[0])
        want = (x.float() / torch.tensor(d, dtype=torch.float32)).clamp(-448, 448).to(torch.float8_e4m3fn)
        assert torch.equal(got.view(torch.uint8), want.view(torch.uint8))
        assert got.view(torch.uint8)[0, 0, :4].tolist() == [0x7E, 0xFE, 0x7E, 0xFE]


def test_every_finite_e4m3_value_encodes_to_its_code():
    """All 254 finite codes: torch decodes them, the quantiser encodes them back exactly; every
    midpoint between neighbours goes to the even code."""
    codes = torch.tensor([c for c in range(256) if c & 0x7F != 0x7F], dtype=torch.uint8)
    values = codes.view(torch.float8_e4m3fn).float()
    assert torch.equal(flash_mla.quantize_fp8_per_tensor(values, 1.0).view(torch.uint8), codes)
    positive = torch.arange(0, 0x7F, dtype=torch.uint8).view(torch.float8_e4m3fn).double()
    midpoints = ((positive[:-1] + positive[1:]) / 2).float()
    got = flash_mla.quantize_fp8_per_tensor(midpoints, 1.0).view(torch.uint8).long()
    lower = torch.arange(0, 0x7E)
    assert torch.equal(got, torch.where(lower % 2 == 0, lower, lower + 1))


def test_quantisers_name_bad_arguments():
    with pytest.raises(RuntimeError, match="flash_mla: x: expected last dimension 576"):
        flash_mla.quantize_fp8_with_scale(torch.randn(3, 575))
    with pytest.raises(RuntimeError, match="flash_mla: x: expected dtype"):
        flash_mla.quantize_fp8_with_scale(torch.randn(3, 576, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="flash_mla: descale: expected a finite number > 0"):
        flash_mla.quantize_fp8_per_tensor(torch.randn(3, 576), 0.0)


# ---------------------------------------------------------------------------------------------
# Decoding.

@pytest.mark.parametrize("seqlens,s_q,h_q,h_kv,page,causal", DECODE_CASES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_matches_reference_on_the_dequantised_cache(seqlens, s_q, h_q, h_kv, page, causal, layout):
    for garbage in GARBAGE_BLOCK_IDS:
        inp = make_fp8_inputs(seqlens, s_q, h_q, h_kv, page, layout, garbage=garbage)
        out, lse = decode(inp, causal=causal)
        assert out.shape == (len(seqlens), s_q, h_q, 512) and out.dtype == torch.bfloat16 and out.is_contiguous()
        assert lse.shape == (len(seqlens), h_q, s_q) and lse.dtype == torch.float32
        assert_close_to_reference(out, lse, *expected(inp, causal=causal))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_empty_rows_are_zero_with_infinite_lse(layout):
    inp = make_fp8_inputs([0, 5], 3, 16, layout=layout)
    out, lse = decode(inp, causal=True)
    assert torch.all(out[0] == 0) and torch.all(torch.isposinf(lse[0]))
    assert torch.all(torch.isfinite(lse[1]))


def test_every_e4m3_code_is_decoded_exactly():
    """One cached token (softmax weight 1, so out = V rounded to bf16, exact for e4m3 values times a
    power of two): V's 512 bytes run through every finite code, in both layouts."""
    codes = torch.tensor([c for c in range(256) if c & 0x7F != 0x7F] * 3, dtype=torch.uint8)[:512]
    values = codes.view(torch.float8_e4m3fn).double()
    q = (torch.randn(1, 1, 4, 576, generator=torch.Generator().manual_seed(3)) / 10).to(torch.bfloat16)
    table = torch.zeros(1, 1, dtype=torch.int32)
    seqlens = torch.ones(1, dtype=torch.int32)
    meta = get_mla_metadata(seqlens, 4, 1)

    per_tensor = torch.zeros(1, 64, 1, 576, dtype=torch.uint8)
    per_tensor[0, 0, 0, :512] = codes
    out, _ = flash_mla_with_kvcache(q, per_tensor.view(torch.float8_e4m3fn), table, seqlens, 512, *meta,
                                    descale_k=torch.tensor([0.25]))
    assert torch.equal(out[0, 0].double(), (values * 0.25).expand(4, 512))

    with_scale = torch.zeros(1, 64, 1, 656, dtype=torch.uint8)
    with_scale[0, 0, 0, :512] = codes
    scales = torch.tensor([2.0 ** -6, 1.0, 2.0 ** 5, 2.0 ** -13])
    with_scale[0, 0, 0, 512:528] = scales.view(torch.uint8)
    out, _ = flash_mla_with_kvcache(q, with_scale, table, seqlens, 512, *meta, is_fp8_kvcache=True)
    assert torch.equal(out[0, 0].double(), (values * scales.double().repeat_interleave(128)).expand(4, 512))


def test_flashmla_style_call():
    """FlashMLA's callers: the 656-byte cache viewed as float8_e4m3fn, is_fp8_kvcache=True, and the
    FlashMLASchedMeta of get_mla_metadata() filled by the first call."""
    inp = make_fp8_inputs([300, 5, 66], 1, 16)
    sched_meta, _ = get_mla_metadata()
    for k_cache in (inp.k_cache, inp.k_cache.view(torch.float8_e4m3fn)):
        out, lse = flash_mla_with_kvcache(inp.q, k_cache, inp.block_table, inp.cache_seqlens, 512, sched_meta, None,
                                          None, False, True)
        assert sched_meta.have_initialized
        assert_close_to_reference(out, lse, *expected(inp))


def test_vllm_style_calls():
    """vLLM passes descale_q and descale_k by keyword on every call, whatever the cache: unused ones
    change nothing; a [num_blocks, page, 576] cache is passed .unsqueeze(-2)."""
    one = torch.tensor([1.0])
    dense = make_inputs([150, 64, 1], 1, 16)
    meta = get_mla_metadata(dense.cache_seqlens, 16, 1)
    plain = flash_mla_with_kvcache(*vars(dense).values(), 512, *meta, causal=True)
    with_descales = flash_mla_with_kvcache(*vars(dense).values(), 512, *meta, causal=True, descale_q=one,
                                           descale_k=one * 3)
    assert all(torch.equal(a, b) for a, b in zip(plain, with_descales))
    inp = make_fp8_inputs([150, 64, 1], 1, 16, layout="per_tensor_fp8_q")
    vllm_cache = inp.k_cache.squeeze(2).clone()
    out, lse = flash_mla_with_kvcache(q=inp.q, k_cache=vllm_cache.unsqueeze(-2), block_table=inp.block_table,
                                      cache_seqlens=inp.cache_seqlens, head_dim_v=512,
                                      tile_scheduler_metadata=meta[0], num_splits=meta[1], softmax_scale=0.07,
                                      causal=True, descale_q=inp.descale_q, descale_k=inp.descale_k)
    assert_close_to_reference(out, lse, *expected(inp, causal=True, softmax_scale=0.07))


@pytest.mark.parametrize("layout", ["with_scale", "per_tensor"])
def test_padded_pages(layout):
    """Pages padded past page_size * 656 bytes (SPEC: honour the strides given), padding NaN codes."""
    inp = make_fp8_inputs([260, 31], 2, 16, layout=layout)
    nb, page, h_kv, width = inp.k_cache.shape
    padded = torch.full((nb, page + 3, h_kv, width + 48), 0xFF, dtype=torch.uint8).view(inp.k_cache.dtype)
    padded[:, :page, :, :width] = inp.k_cache
    view = type(inp)(inp.q, padded[:, :page, :, :width], inp.block_table, inp.cache_seqlens, inp.descale_q,
                     inp.descale_k)
    assert not view.k_cache.is_contiguous()
    out, lse = decode(view, causal=True)
    want_out, want_lse = decode(inp, causal=True)
    assert torch.equal(out, want_out) and torch.equal(lse, want_lse)
    assert_close_to_reference(out, lse, *expected(inp, causal=True))


def test_errors_name_the_argument():
    scaled = make_fp8_inputs([100, 3], 1, 16)
    tensor = make_fp8_inputs([100, 3], 1, 16, layout="per_tensor_fp8_q")
    meta = get_mla_metadata(scaled.cache_seqlens, 16, 1)

    def call(inp, **changes):
        args = dict(q=inp.q, k_cache=inp.k_cache, block_table=inp.block_table, cache_seqlens=inp.cache_seqlens,
                    head_dim_v=512, tile_scheduler_metadata=meta[0], num_splits=meta[1], descale_q=inp.descale_q,
                    descale_k=inp.descale_k)
        return flash_mla_with_kvcache(**{**args, **changes})

    bad = [
        (scaled, dict(k_cache=scaled.k_cache[..., :576]), "k_cache: expected last dimension 656 for a uint8 cache"),
        (scaled, dict(q=scaled.q.half()), "q: expected dtype bfloat16 with a k_cache in the FP8-with-scale layout"),
        (tensor, dict(descale_k=None), r"descale_k: expected a float32 tensor of shape \(1,\)"),
        (tensor, dict(descale_q=None), r"descale_q: expected a float32 tensor of shape \(1,\)"),
        (tensor, dict(descale_k=tensor.descale_k.half()), "descale_k: expected dtype float32"),
        (tensor, dict(descale_q=torch.ones(2)), r"descale_q: expected shape \[1\]"),
        (tensor, dict(q=tensor.q.float()), "q: expected dtype bfloat16 or float8_e4m3fn with a per-tensor"),
        (tensor, dict(k_cache=make_inputs([100, 3], 1, 16).k_cache),
         "q: expected dtype bfloat16 .*a float8_e4m3fn q needs a per-tensor FP8 k_cache"),
    ]
    for inp, changes, message in bad:
        with pytest.raises(RuntimeError, match=f"flash_mla: {message}"):
            call(inp, **changes)
    with pytest.raises(ValueError, match="flash_mla: is_fp8_kvcache: expected a uint8 or float8_e4m3fn k_cache"):
        flash_mla_with_kvcache(*vars(make_inputs([5], 1, 16)).values(), 512, *get_mla_metadata(
            torch.tensor([5], dtype=torch.int32), 16, 1), is_fp8_kvcache=True)
    out, lse = call(tensor)  # still healthy
    assert_close_to_reference(out, lse, *expected(tensor))


@requires_sm90
def test_cuda_rejects_fp8_until_the_kernel_reads_it():
    """CUDA tensors: either the sm90 kernel decodes FP8 caches (then against the reference) or it
    rejects them naming k_cache, before anything runs."""
    for layout in LAYOUTS:
        inp = make_fp8_inputs([300, 0, 65], 2, 16, layout=layout).to("cuda")
        try:
            out, lse = decode(inp, causal=True)
        except RuntimeError as e:
            assert "flash_mla: k_cache: expected" in str(e) and "not yet supported by the sm90 kernel" in str(e)
            continue
        assert_close_to_reference(out, lse, *expected(inp, causal=True))


# ---------------------------------------------------------------------------------------------
# Inside torch's machinery.

def test_opcheck_fp8_ops():
    for layout in LAYOUTS:
        inp = make_fp8_inputs([130, 0, 7], 2, 16, layout=layout)
        meta = torch.ops.flash_mla.get_mla_metadata(inp.cache_seqlens, 32, 1, None)
        args = (*inp.decode_args(), 512, *meta, 576 ** -0.5, True, inp.descale_q, inp.descale_k)
        before = [t.clone() for t in args if isinstance(t, torch.Tensor)]
        # opcheck's schema test multiplies the inputs, which torch does not implement for float8
        # tensors; for those the check it makes (no input is mutated) is made here instead.
        float8 = any(isinstance(t, torch.Tensor) and t.dtype == torch.float8_e4m3fn for t in args)
        utils = ("test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic") if float8 else "ALL"
        torch.library.opcheck(torch.ops.flash_mla.fwd_kvcache.default, args, test_utils=utils)
        after = [t for t in args if isinstance(t, torch.Tensor)]
        assert all(torch.equal(a.view(torch.uint8), b.view(torch.uint8)) for a, b in zip(before, after))
    x = torch.randn(2, 3, 576)
    torch.library.opcheck(torch.ops.flash_mla.quantize_fp8_with_scale.default, (x,))
    torch.library.opcheck(torch.ops.flash_mla.quantize_fp8_per_tensor.default, (x, 0.01))


def test_compile_fullgraph_matches_eager():
    torch._dynamo.reset()

    def step(q, k_cache, block_table, cache_seqlens, descale_q, descale_k):
        metadata, num_splits = get_mla_metadata(cache_seqlens, q.shape[1] * q.shape[2], 1)
        return flash_mla_with_kvcache(q, k_cache, block_table, cache_seqlens, 512, metadata, num_splits,
                                      causal=True, descale_q=descale_q, descale_k=descale_k)

    compiled = torch.compile(step, fullgraph=True)
    for layout in LAYOUTS:
        inp = make_fp8_inputs([130, 0, 7], 2, 16, layout=layout)
        args = (*inp.decode_args(), inp.descale_q, inp.descale_k)
        got, want = compiled(*args), step(*args)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, atol=0, rtol=0)
