"""The ops inside torch's machinery: opcheck (schema, fake kernels, autograd registration, AOT
dispatch), torch.compile(fullgraph=True) and torch.export."""

import pytest
import torch

import flash_mla
from flash_mla import flash_mla_with_kvcache, get_mla_metadata
from mla_reference import assert_close_to_reference, make_inputs, reference


def step_inputs(device, seqlens=(130, 0, 7), s_q=2, h_q=16):
    return make_inputs(list(seqlens), s_q, h_q).to(device)


def test_opcheck_get_mla_metadata(device):
    seqlens = torch.tensor([5, 0, 700, 64], dtype=torch.int32, device=device)
    for args in ((seqlens, 32, 1, None), (seqlens, 128, 2, None), (seqlens, 1, 1, 20)):
        torch.library.opcheck(torch.ops.flash_mla.get_mla_metadata.default, args)


@pytest.mark.parametrize("causal", [False, True])
def test_opcheck_fwd_kvcache(device, causal):
    inp = step_inputs(device)
    meta = torch.ops.flash_mla.get_mla_metadata(inp.cache_seqlens, 32, 1, None)
    args = (inp.q, inp.k_cache, inp.block_table, inp.cache_seqlens, 512, *meta, 576 ** -0.5, causal)
    torch.library.opcheck(torch.ops.flash_mla.fwd_kvcache.default, args)


def two_layers(q0, q1, k_cache0, k_cache1, block_table, cache_seqlens):
    """One decoding step of a two-layer model, as an engine writes it. (No arithmetic around the
    ops: inductor would compile C++ kernels for it, a minute on CI's two cores.)"""
    s_q, h_q, h_kv = q0.shape[1], q0.shape[2], k_cache0.shape[2]
    metadata, num_splits = get_mla_metadata(cache_seqlens, s_q * h_q // h_kv, h_kv)
    out0, lse0 = flash_mla_with_kvcache(q0, k_cache0, block_table, cache_seqlens, 512, metadata, num_splits,
                                        causal=True)
    out1, lse1 = flash_mla_with_kvcache(q1, k_cache1, block_table, cache_seqlens, 512, metadata,
                                        num_splits, softmax_scale=0.05, causal=True)
    return out0, lse0, out1, lse1


@pytest.mark.parametrize("dynamic", [False, True])
def test_compile_fullgraph_matches_eager(device, dynamic):
    torch._dynamo.reset()
    compiled = torch.compile(two_layers, fullgraph=True, dynamic=dynamic)
    for seqlens in ((130, 0, 7), (64, 65, 1), (300, 2, 90)):
        inp = step_inputs(device, seqlens)
        args = (inp.q, inp.q.flip(-1).contiguous(), inp.k_cache, inp.k_cache * 0.5, inp.block_table,
                inp.cache_seqlens)
        want = two_layers(*args)
        got = compiled(*args)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, atol=0, rtol=0)
        assert_close_to_reference(got[0], got[1], *reference(inp.q, *args[2:3], *args[4:], causal=True))


def test_compile_fullgraph_newest_interface(device):
    """get_mla_metadata() with no arguments, filled inside the compiled region."""
    torch._dynamo.reset()

    def step(q, k_cache, block_table, cache_seqlens):
        sched_meta, _ = get_mla_metadata()
        out, lse = flash_mla_with_kvcache(q, k_cache, block_table, cache_seqlens, 512, sched_meta, None)
        out2, lse2 = flash_mla_with_kvcache(q, k_cache, block_table, cache_seqlens, 512, sched_meta, None,
                                            softmax_scale=0.1)
        return out, lse, out2, lse2

    inp = step_inputs(device, s_q=1)
    want = step(*vars(inp).values())
    got = torch.compile(step, fullgraph=True)(*vars(inp).values())
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=0, rtol=0)


class DecodeStep(torch.nn.Module):
    def forward(self, q, k_cache, block_table, cache_seqlens):
        metadata, num_splits = get_mla_metadata(cache_seqlens, q.shape[1] * q.shape[2], 1)
        return flash_mla_with_kvcache(q, k_cache, block_table, cache_seqlens, 512, metadata, num_splits,
                                      causal=True)


def test_export(device):
    inp = step_inputs(device)
    batch, blocks, max_blocks = (torch.export.Dim(name, min=1, max=4096) for name in ("b", "blocks", "max_blocks"))
    dynamic_shapes = {"q": {0: batch}, "k_cache": {0: blocks}, "block_table": {0: batch, 1: max_blocks},
                      "cache_seqlens": {0: batch}}
    exported = torch.export.export(DecodeStep(), tuple(vars(inp).values()), dynamic_shapes=dynamic_shapes)
    targets = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    assert {"flash_mla.get_mla_metadata.default", "flash_mla.fwd_kvcache.default"} <= targets
    other = make_inputs([17, 500, 64, 1, 0], 2, 16, seed=3).to(device)  # another batch size
    out, lse = exported.module()(*vars(other).values())
    assert_close_to_reference(out, lse, *reference(*vars(other).values(), causal=True))


def test_fake_shapes_follow_num_sms():
    seqlens = torch.tensor([1, 2, 3], dtype=torch.int32)
    for rows, h_kv, num_sms in ((1, 1, None), (128, 1, None), (200, 2, 100), (16, 1, 8)):
        real = torch.ops.flash_mla.get_mla_metadata(seqlens, rows, h_kv, num_sms)
        with torch._subclasses.fake_tensor.FakeTensorMode() as mode:
            fake = torch.ops.flash_mla.get_mla_metadata(mode.from_tensor(seqlens), rows, h_kv, num_sms)
        assert [t.shape for t in fake] == [t.shape for t in real]
        assert real[0].shape[0] == flash_mla._ops.num_sm_parts(seqlens.device, rows, h_kv, num_sms)
