"""flash_mla's Python API against the float64 reference (SPEC.md), in FlashMLA's usage patterns."""

import math

import pytest
import torch

import flash_mla
from flash_mla import FlashMLASchedMeta, flash_mla_with_kvcache, get_mla_metadata
from mla_reference import DECODE_CASES, GARBAGE_BLOCK_IDS, assert_close_to_reference, make_inputs, reference


def decode(inp, causal=False, softmax_scale=None, meta=None):
    s_q, h_q, h_kv = inp.q.shape[1], inp.q.shape[2], inp.k_cache.shape[2]
    if meta is None:
        meta = get_mla_metadata(inp.cache_seqlens, s_q * h_q // h_kv, h_kv)
    return flash_mla_with_kvcache(inp.q, inp.k_cache, inp.block_table, inp.cache_seqlens, 512, *meta,
                                  softmax_scale=softmax_scale, causal=causal)


@pytest.mark.parametrize("seqlens,s_q,h_q,h_kv,page,causal", DECODE_CASES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_matches_reference(device, seqlens, s_q, h_q, h_kv, page, causal, dtype):
    for garbage in GARBAGE_BLOCK_IDS:
        inp = make_inputs(seqlens, s_q, h_q, h_kv, page, dtype, garbage=garbage).to(device)
        out, lse = decode(inp, causal=causal)
        assert out.shape == (len(seqlens), s_q, h_q, 512) and out.dtype == dtype and out.is_contiguous()
        assert lse.shape == (len(seqlens), h_q, s_q) and lse.dtype == torch.float32 and lse.is_contiguous()
        assert out.device == device and lse.device == device
        assert_close_to_reference(out, lse, *reference(inp.q, inp.k_cache, inp.block_table, inp.cache_seqlens,
                                                       causal=causal))


def test_float32_on_cpu():
    inp = make_inputs([100, 3], 2, 16, dtype=torch.float32)
    out, lse = decode(inp, causal=True)
    assert out.dtype == torch.float32
    assert_close_to_reference(out, lse, *reference(*vars(inp).values(), causal=True))


def test_empty_rows_are_zero_with_infinite_lse(device):
    inp = make_inputs([0, 5], 3, 16).to(device)
    out, lse = decode(inp, causal=True)
    assert torch.all(out[0] == 0) and torch.all(torch.isposinf(lse[0]))
    # Sequence 1 (5 tokens, s_q 3): every query token sees at least 3 tokens.
    assert torch.all(torch.isfinite(lse[1]))


def test_softmax_scale_default_and_custom(device):
    inp = make_inputs([77, 130], 1, 16).to(device)
    out, lse = decode(inp)
    want = reference(*vars(inp).values(), softmax_scale=576 ** -0.5)
    assert_close_to_reference(out, lse, *want)
    out, lse = decode(inp, softmax_scale=0.3)
    assert_close_to_reference(out, lse, *reference(*vars(inp).values(), softmax_scale=0.3))


def test_causal_has_no_effect_with_one_query_token(device):
    inp = make_inputs([90, 1, 64], 1, 16).to(device)
    out0, lse0 = decode(inp, causal=False)
    out1, lse1 = decode(inp, causal=True)
    assert torch.equal(out0, out1) and torch.equal(lse0, lse1)


def test_metadata_shapes_and_layout(device):
    seqlens = torch.tensor([5, 0, 700, 64], dtype=torch.int32, device=device)
    metadata, num_splits = get_mla_metadata(seqlens, 2 * 128 // 1, 1)
    parts = flash_mla._ops.num_sm_parts(device, 256, 1)
    assert metadata.shape == (parts, 8) and metadata.dtype == torch.int32 and metadata.device == device
    assert num_splits.shape == (5,) and num_splits.dtype == torch.int32
    splits = num_splits.cpu()
    assert splits[0] == 0 and torch.all(splits[1:] >= splits[:-1]) and splits[-1] <= 4 + parts
    # num_sms asks for another GPU's schedule.
    metadata, _ = get_mla_metadata(seqlens, 1, 1, num_sms=8)
    assert metadata.shape == (8, 8)


def test_metadata_once_reused_by_many_layers(device):
    """FlashMLA's pattern: one schedule per decoding step, shared by every layer."""
    seqlens, s_q, h_q = [400, 1, 0, 129], 2, 16
    step = make_inputs(seqlens, s_q, h_q).to(device)
    meta = get_mla_metadata(step.cache_seqlens, s_q * h_q, 1)
    gen = torch.Generator().manual_seed(7)
    for layer in range(4):
        # Another layer: new q and cache values, same pages, poison and schedule.
        q = (torch.randn(step.q.shape, generator=gen) / 10).to(step.q.dtype).to(device)
        noise = (torch.randn(step.k_cache.shape, generator=gen) / 10).to(step.k_cache.dtype).to(device)
        inp = type(step)(q, step.k_cache + noise, step.block_table, step.cache_seqlens)
        out, lse = decode(inp, causal=True, meta=meta)
        assert_close_to_reference(out, lse, *reference(*vars(inp).values(), causal=True))


def test_newest_interface_fills_sched_meta_on_first_use(device):
    """FlashMLA's newest form: get_mla_metadata() takes no arguments, the first call fills it."""
    seqlens, s_q, h_q = [300, 5, 66], 1, 16
    sched_meta, none = get_mla_metadata()
    assert isinstance(sched_meta, FlashMLASchedMeta) and none is None and not sched_meta.have_initialized
    for layer in range(3):
        inp = make_inputs(seqlens, s_q, h_q, seed=layer).to(device)
        out, lse = flash_mla_with_kvcache(inp.q, inp.k_cache, inp.block_table, inp.cache_seqlens, 512,
                                          sched_meta, None, causal=False)
        assert sched_meta.have_initialized and sched_meta.tile_scheduler_metadata is not None
        assert_close_to_reference(out, lse, *reference(*vars(inp).values()))
    first = sched_meta.tile_scheduler_metadata
    flash_mla_with_kvcache(inp.q, inp.k_cache, inp.block_table, inp.cache_seqlens, 512, sched_meta)
    assert sched_meta.tile_scheduler_metadata is first  # reused, not recomputed
    explicit = get_mla_metadata(inp.cache_seqlens, s_q * h_q, 1)
    assert torch.equal(explicit[0], first) and torch.equal(explicit[1], sched_meta.num_splits)


def test_older_and_newer_metadata_arguments_are_accepted(device):
    """vLLM and FlashMLA's 2025 interface pass num_heads_q and is_fp8_kvcache after the first three."""
    inp = make_inputs([70, 3], 1, 16).to(device)
    plain = get_mla_metadata(inp.cache_seqlens, 16, 1)
    for extra_args, extra_kwargs in (((16,), {}), ((16, False), {}), ((), {"num_heads_q": 16}),
                                     ((), {"is_fp8_kvcache": False, "topk": None})):
        meta = get_mla_metadata(inp.cache_seqlens, 16, 1, *extra_args, **extra_kwargs)
        assert all(torch.equal(a, b) for a, b in zip(plain, meta))
    meta = get_mla_metadata(cache_seqlens=inp.cache_seqlens, num_q_tokens_per_head_k=16, num_heads_k=1)
    out, lse = flash_mla_with_kvcache(q=inp.q, k_cache=inp.k_cache, block_table=inp.block_table,
                                      cache_seqlens=inp.cache_seqlens, head_dim_v=512,
                                      tile_scheduler_metadata=meta[0], num_splits=meta[1],
                                      softmax_scale=None, causal=False)
    assert_close_to_reference(out, lse, *reference(*vars(inp).values()))


def test_vllm_unsqueezed_kv_cache_view(device):
    """vLLM keeps a [num_blocks, page, 576] cache and passes kv_c_and_k_pe_cache.unsqueeze(-2)."""
    inp = make_inputs([150, 64, 1], 1, 16).to(device)
    vllm_cache = inp.k_cache.squeeze(2).clone()
    inp.k_cache = vllm_cache.unsqueeze(-2)
    out, lse = decode(inp)
    assert_close_to_reference(out, lse, *reference(*vars(inp).values()))


def test_strided_views(device):
    """q as a non-contiguous view (heads-major storage, and a slice of a wider buffer), k_cache as a
    slice of padded pages: only the last dimension is contiguous."""
    base = make_inputs([260, 31], 2, 16).to(device)
    b, s_q, h_q, d = base.q.shape
    q_heads_major = base.q.transpose(1, 2).contiguous().transpose(1, 2)
    wide = torch.full((b, s_q, h_q, d + 64), float("nan"), dtype=base.q.dtype, device=device)
    wide[..., 32:32 + d] = base.q
    q_slice = wide[..., 32:32 + d]
    nb, page, h_kv, _ = base.k_cache.shape
    padded = torch.full((nb, page + 3, h_kv, d + 64), float("nan"), dtype=base.k_cache.dtype, device=device)
    padded[:, :page, :, :d] = base.k_cache
    k_view = padded[:, :page, :, :d]
    table_view = torch.cat([base.block_table, base.block_table], dim=1)[:, : base.block_table.shape[1]]
    want = reference(*vars(base).values(), causal=True)
    for q in (q_heads_major, q_slice):
        assert not q.is_contiguous() and q.stride(-1) == 1
        inp = type(base)(q, k_view, table_view, base.cache_seqlens)
        out, lse = decode(inp, causal=True)
        assert_close_to_reference(out, lse, *want)


def test_metadata_depends_only_on_seqlens_and_counts():
    a = get_mla_metadata(torch.tensor([10, 500], dtype=torch.int32), 16, 1)
    b = get_mla_metadata(torch.tensor([10, 500], dtype=torch.int32), 16, 1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("n", [1, 63, 64, 65, 4096 + 17])
def test_lengths_around_block_edges(n):
    inp = make_inputs([n], 1, 16, seed=n)
    out, lse = decode(inp)
    assert_close_to_reference(out, lse, *reference(*vars(inp).values()))
    assert math.isfinite(float(lse.max()))
