"""Bad input raises an exception whose message names the argument (SPEC.md, "Errors")."""

import pytest
import torch

from flash_mla import flash_mla_with_kvcache, get_mla_metadata
from conftest import requires_sm90
from mla_reference import make_inputs


@pytest.fixture
def good():
    inp = make_inputs([100, 3], 1, 16)
    meta = get_mla_metadata(inp.cache_seqlens, 16, 1)
    return dict(q=inp.q, k_cache=inp.k_cache, block_table=inp.block_table, cache_seqlens=inp.cache_seqlens,
                head_dim_v=512, tile_scheduler_metadata=meta[0], num_splits=meta[1])


def call(args, **changes):
    return flash_mla_with_kvcache(**{**args, **changes})


def test_good_arguments_run(good):
    call(good)


@pytest.mark.parametrize("argument,change", [
    ("q", lambda a: a["q"][..., :512]),
    ("q", lambda a: a["q"].double()),
    ("q", lambda a: a["q"][0]),
    ("q", lambda a: a["q"].transpose(2, 3).contiguous().transpose(2, 3)),
    ("k_cache", lambda a: a["k_cache"].half()),
    ("k_cache", lambda a: a["k_cache"][..., :575]),
    ("k_cache", lambda a: a["k_cache"].expand(-1, -1, 3, -1)),
    ("block_table", lambda a: a["block_table"].long()),
    ("block_table", lambda a: a["block_table"][:1]),
    ("cache_seqlens", lambda a: a["cache_seqlens"].long()),
    ("cache_seqlens", lambda a: torch.cat([a["cache_seqlens"], a["cache_seqlens"]])),
    ("tile_scheduler_metadata", lambda a: a["tile_scheduler_metadata"][:, :4]),
    ("tile_scheduler_metadata", lambda a: a["tile_scheduler_metadata"].float()),
    ("num_splits", lambda a: get_mla_metadata(torch.tensor([1, 2, 3], dtype=torch.int32), 16, 1)[1]),
    ("head_dim_v", lambda a: 576),
])
def test_message_names_the_argument(good, argument, change):
    with pytest.raises(RuntimeError, match=f"flash_mla: {argument}: expected"):
        call(good, **{argument: change(good)})
    out, lse = call(good)  # the process is healthy: the next valid call works
    assert torch.isfinite(lse).all() and torch.isfinite(out.float()).all()


def test_softmax_scale_must_be_finite(good):
    with pytest.raises(RuntimeError, match="flash_mla: softmax_scale: expected a finite number"):
        call(good, softmax_scale=float("inf"))


def test_metadata_arguments_are_checked():
    seqlens = torch.tensor([4, 5], dtype=torch.int32)
    with pytest.raises(RuntimeError, match="flash_mla: cache_seqlens: expected dtype .*int32.*, got Long"):
        get_mla_metadata(seqlens.long(), 16, 1)
    with pytest.raises(RuntimeError, match="flash_mla: num_heads_k: expected >= 1"):
        get_mla_metadata(seqlens, 16, 0)
    with pytest.raises(RuntimeError, match="flash_mla: num_q_tokens_per_head_k: expected >= 1"):
        get_mla_metadata(seqlens, 0, 1)
    with pytest.raises(ValueError, match="flash_mla: topk: expected None"):
        get_mla_metadata(seqlens, 16, 1, topk=64)


def test_python_level_checks(good):
    with pytest.raises(TypeError, match="flash_mla: num_splits"):
        call(good, num_splits=None)
    sched_meta, _ = get_mla_metadata()
    with pytest.raises(TypeError, match="flash_mla: num_splits: expected None with a FlashMLASchedMeta"):
        call(good, tile_scheduler_metadata=sched_meta)
    with pytest.raises(ValueError, match="flash_mla: is_fp8_kvcache"):
        call(good, is_fp8_kvcache=True)


def test_reused_sched_meta_must_match_its_first_use(good):
    sched_meta, _ = get_mla_metadata()
    call(good, tile_scheduler_metadata=sched_meta, num_splits=None)
    inp = make_inputs([5, 6, 7], 1, 16)
    with pytest.raises(ValueError, match="flash_mla: tile_scheduler_metadata: expected arguments matching"):
        call(good, q=inp.q, block_table=inp.block_table, cache_seqlens=inp.cache_seqlens,
             tile_scheduler_metadata=sched_meta, num_splits=None)


def test_value_validation_on_request(good, monkeypatch):
    """Block-table entries and seqlens are read only when asked (FLASH_MLA_VALIDATE=1)."""
    table = good["block_table"].clone()
    table[0, 0] = 2147480000
    seqlens = good["cache_seqlens"].clone()
    monkeypatch.setenv("FLASH_MLA_VALIDATE", "1")
    with pytest.raises(RuntimeError, match=r"flash_mla: block_table: expected entries of used pages"):
        call(good, block_table=table)
    seqlens[1] = 10**6
    with pytest.raises(RuntimeError, match=r"flash_mla: cache_seqlens: expected values in \[0"):
        call(good, cache_seqlens=seqlens)


@requires_sm90
def test_mixed_devices_name_the_argument(good):
    cuda = {k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in good.items()}
    for name in ("k_cache", "block_table", "cache_seqlens", "tile_scheduler_metadata", "num_splits"):
        with pytest.raises(RuntimeError, match=f"flash_mla: {name}: expected a tensor on cuda:0"):
            call(cuda, **{name: good[name]})
    with pytest.raises(RuntimeError, match="flash_mla: k_cache: expected a tensor on cpu"):
        call(good, k_cache=cuda["k_cache"])


@pytest.mark.parametrize("argument,make_call", [
    ("head_dim_v", lambda a: call(a, head_dim_v=2**32 + 512)),
    ("num_q_tokens_per_head_k", lambda a: get_mla_metadata(a["cache_seqlens"], 2**32 + 16, 1)),
    ("num_heads_k", lambda a: get_mla_metadata(a["cache_seqlens"], 16, 2**32 + 1)),
    ("num_sms", lambda a: get_mla_metadata(a["cache_seqlens"], 16, 1, num_sms=2**32 + 8)),
])
def test_integer_arguments_past_32_bits_are_rejected_not_truncated(good, argument, make_call):
    # 2**32 + 512 used to run as 512, and 2**32 + 16 query rows as 16.
    with pytest.raises(RuntimeError, match=f"flash_mla: {argument}: expected a 32-bit integer, got 42949"):
        make_call(good)


def test_sizes_past_32_bits_are_rejected_not_truncated(good):
    # A stride-0 view costs nothing; a page of 2**32 + 1 tokens used to be read as a page of 1.
    huge_page = good["k_cache"][:, :1].expand(-1, 2**32 + 1, -1, -1)
    with pytest.raises(RuntimeError, match=r"flash_mla: k_cache: expected page_block_size \(dim 1\) <= 2147483647"):
        call(good, k_cache=huge_page)
    with pytest.raises(RuntimeError, match="flash_mla: num_sms: expected <= 65535, got 65536"):
        get_mla_metadata(good["cache_seqlens"], 16, 1, num_sms=65536)


def test_default_softmax_scale_of_a_malformed_q_names_q(good):
    for q in (good["q"][..., :0], good["q"][0, 0, 0, 0]):
        with pytest.raises(RuntimeError, match="flash_mla: q: expected"):
            call(good, q=q)


@pytest.mark.parametrize("argument,change", [
    ("q", lambda a: a["q"][0]),
    ("q", lambda a: a["q"][0, 0]),
    ("k_cache", lambda a: a["k_cache"][:, :, 0]),  # vLLM's 3-D layout without .unsqueeze(-2)
    ("k_cache", lambda a: a["k_cache"].expand(-1, -1, 3, -1)),
])
def test_sched_meta_first_use_checks_shapes_and_survives_a_failure(good, argument, change):
    sched_meta, _ = get_mla_metadata()
    with pytest.raises(ValueError, match=f"flash_mla: {argument}: expected"):
        call(good, **{argument: change(good)}, tile_scheduler_metadata=sched_meta, num_splits=None)
    assert not sched_meta.have_initialized
    out, lse = call(good, tile_scheduler_metadata=sched_meta, num_splits=None)  # the retry is the first use
    assert sched_meta.have_initialized and torch.isfinite(lse).all()
    want = call(good)
    assert torch.equal(out, want[0]) and torch.equal(lse, want[1])


def test_sched_meta_is_kept_only_after_a_decode_accepts_the_arguments(good):
    sched_meta, _ = get_mla_metadata()
    with pytest.raises(RuntimeError, match="flash_mla: head_dim_v"):
        call(good, head_dim_v=576, tile_scheduler_metadata=sched_meta, num_splits=None)
    assert not sched_meta.have_initialized and sched_meta.tile_scheduler_metadata is None
    call(good, tile_scheduler_metadata=sched_meta, num_splits=None)
    assert sched_meta.have_initialized
