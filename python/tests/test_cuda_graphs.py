"""CUDA-graph capture and replay (SPEC.md: metadata computable inside capture, no host
synchronisation): one captured decoding step replayed with new cache_seqlens, block tables, queries
and cache contents written into its input buffers equals an eager call on the same inputs."""

import pytest
import torch

from flash_mla import flash_mla_with_kvcache, get_mla_metadata
from conftest import requires_sm90
from mla_reference import assert_close_to_reference, make_inputs, reference

pytestmark = requires_sm90

B, S_Q, H_Q, NUM_BLOCKS, MAX_BLOCKS = 4, 2, 16, 40, 12
STEPS = [  # seqlens of each replay; 0 is CUDA-graph padding
    [300, 1, 65, 129],
    [301, 2, 66, 130],
    [0, 700, 64, 0],
    [5, 5, 5, 5],
    [64 * MAX_BLOCKS, 0, 1, 128],
]


def step_inputs(seqlens, seed):
    return make_inputs(seqlens, S_Q, H_Q, seed=seed, num_blocks=NUM_BLOCKS, max_blocks=MAX_BLOCKS,
                       garbage=2147480000 if seed % 2 else -1).to("cuda")


def decode_step(inp, newest_interface):
    if newest_interface:
        meta = get_mla_metadata()
    else:
        meta = get_mla_metadata(inp.cache_seqlens, S_Q * H_Q, 1)
    return flash_mla_with_kvcache(inp.q, inp.k_cache, inp.block_table, inp.cache_seqlens, 512, *meta,
                                  causal=True)


@pytest.mark.parametrize("newest_interface", [False, True])
def test_replay_with_changed_seqlens_and_block_tables_equals_eager(newest_interface):
    static = step_inputs(STEPS[0], seed=100)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the capture, as torch's docs ask
        decode_step(static, newest_interface)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out, lse = decode_step(static, newest_interface)

    for seed, seqlens in enumerate(STEPS):
        new = step_inputs(seqlens, seed)
        for buffer, value in zip(vars(static).values(), vars(new).values()):
            buffer.copy_(value)
        graph.replay()
        want_out, want_lse = decode_step(new, newest_interface)
        torch.cuda.synchronize()
        assert torch.equal(out, want_out) and torch.equal(lse, want_lse), f"replay {seed} differs from eager"
        assert_close_to_reference(out, lse, *reference(*vars(new).values(), causal=True))


def test_ops_run_on_torchs_current_stream():
    """The ops launch on torch's current stream: work queued on a side stream is ordered with them."""
    inp = step_inputs(STEPS[0], seed=1)
    want = decode_step(inp, False)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.cuda._sleep(10_000_000)  # keeps the side stream busy: a wrong stream would race ahead
        q = inp.q * 1  # written on the side stream just before the decode reads it
        got = decode_step(type(inp)(q, inp.k_cache, inp.block_table, inp.cache_seqlens), False)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
