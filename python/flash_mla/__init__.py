"""flash_mla: MLA decoding over a paged KV cache, with DeepSeek FlashMLA's Python interface.

    from flash_mla import get_mla_metadata, flash_mla_with_kvcache

    tile_scheduler_metadata, num_splits = get_mla_metadata(cache_seqlens, s_q * h_q // h_kv, h_kv)
    for layer in range(num_layers):
        out, lse = flash_mla_with_kvcache(q, k_cache, block_table, cache_seqlens, 512,
                                          tile_scheduler_metadata, num_splits, causal=True)

CPU tensors run the CPU backend, CUDA tensors the Hopper (sm_90a) kernel. The contract (shapes,
masking, the +inf lse of empty rows, which block-table entries and cache tokens are never read, the
FP8 cache layouts) is the project's SPEC.md. FP8 caches (FlashMLA's 656-byte "FP8 with scale" and
vLLM's per-tensor e4m3) run on both backends. Errors
raise RuntimeError (from the C++ core) or ValueError/TypeError (from this module), with messages
"flash_mla: <argument>: expected <x>, got <y>".

The ops behind these functions are torch.ops.flash_mla.get_mla_metadata and
torch.ops.flash_mla.fwd_kvcache (see flash_mla._ops); they work under torch.compile(fullgraph=True),
torch.export and CUDA-graph capture.
"""

import dataclasses
from typing import Optional, Tuple, Union

import torch

from ._ops import ops

__all__ = ["FlashMLASchedMeta", "get_mla_metadata", "flash_mla_with_kvcache", "quantize_fp8_with_scale",
           "quantize_fp8_per_tensor"]

_FP8_CACHE_DTYPES = (torch.uint8, torch.float8_e4m3fn)


@dataclasses.dataclass
class FlashMLASchedMeta:
    """Split-KV schedule filled by the first flash_mla_with_kvcache call that receives it.

    Returned by get_mla_metadata() without arguments (FlashMLA's newest interface). It may be reused
    by later calls only while the shapes and the values of cache_seqlens stay the same (one object per
    decoding step, shared by all layers).
    """

    @dataclasses.dataclass
    class Config:
        b: int
        s_q: int
        h_q: int
        page_block_size: int
        h_k: int
        causal: bool

    have_initialized: bool = False
    config: Optional[Config] = None
    tile_scheduler_metadata: Optional[torch.Tensor] = None  # [num_sm_parts, 8] int32
    num_splits: Optional[torch.Tensor] = None  # [b + 1] int32


def _error(argument: str, expected: str, got) -> str:
    return f"flash_mla: {argument}: expected {expected}, got {got}"


def get_mla_metadata(
    cache_seqlens: Optional[torch.Tensor] = None,
    num_q_tokens_per_head_k: Optional[int] = None,
    num_heads_k: Optional[int] = None,
    *args,
    **kwargs,
) -> Union[Tuple[torch.Tensor, torch.Tensor], Tuple[FlashMLASchedMeta, None]]:
    """Split-KV schedule of one decoding step, shared by every layer of that step.

    Args:
        cache_seqlens: [b] int32, on the device of the decode's tensors: tokens cached per sequence,
            counting the s_q new ones.
        num_q_tokens_per_head_k: s_q * h_q // h_kv, query rows per KV head.
        num_heads_k: h_kv.
        *args, **kwargs: what newer FlashMLA callers pass (num_heads_q, is_fp8_kvcache), accepted and
            not needed; num_sms=N schedules for N SMs instead of the device's count. topk (sparse
            attention) is not supported.

    Returns:
        (tile_scheduler_metadata, num_splits): int32 tensors on cache_seqlens' device,
        [num_sm_parts, 8] and [b + 1]. Computed on the device without host synchronisation, so the
        call can be captured in a CUDA graph.

        Called without cache_seqlens (FlashMLA's newest interface), returns
        (FlashMLASchedMeta(), None): the first flash_mla_with_kvcache call fills the object.
    """
    if cache_seqlens is None:
        return FlashMLASchedMeta(), None
    if num_q_tokens_per_head_k is None or num_heads_k is None:
        raise TypeError(_error("num_q_tokens_per_head_k, num_heads_k", "both with cache_seqlens", "None"))
    topk = kwargs.get("topk", args[2] if len(args) > 2 else None)
    if topk is not None:
        raise ValueError(_error("topk", "None (sparse attention is not supported)", topk))
    num_sms = kwargs.get("num_sms")
    return ops.get_mla_metadata(cache_seqlens, num_q_tokens_per_head_k, num_heads_k, num_sms)


def flash_mla_with_kvcache(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    block_table: torch.Tensor,
    cache_seqlens: torch.Tensor,
    head_dim_v: int,
    tile_scheduler_metadata: Union[torch.Tensor, FlashMLASchedMeta],
    num_splits: Optional[torch.Tensor] = None,
    softmax_scale: Optional[float] = None,
    causal: bool = False,
    is_fp8_kvcache: bool = False,
    indices: Optional[torch.Tensor] = None,
    *,
    descale_q: Optional[torch.Tensor] = None,
    descale_k: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """MLA decoding attention over a paged KV cache.

    Args:
        q: [b, s_q, h_q, 576] bfloat16 or float16 (float32 also on CPU); float8_e4m3fn with a
            per-tensor FP8 k_cache. The last dimension must be contiguous; other strides are free
            (views are fine).
        k_cache: [num_blocks, page_block_size, h_kv, D], last dimension contiguous (e.g. vLLM's
            [num_blocks, page_block_size, D] cache .unsqueeze(-2)); any page_block_size >= 1.
            One of
              - D = 576 in q's dtype. Channels 0..511 are also the values.
              - D = 656, uint8 or float8_e4m3fn: FP8 with scale (FlashMLA's layout; q bfloat16).
                Bytes 0..511: the 512 NoPE channels as e4m3; 512..527: four float32 scales, one per
                128 NoPE channels; 528..655: the 64 RoPE channels as bfloat16. quantize_fp8_with_scale
                writes it.
              - D = 576, float8_e4m3fn: per-tensor FP8 (vLLM's), channel value e4m3 * descale_k[0];
                q bfloat16, or float8_e4m3fn with descale_q.
        block_table: [b, max_blocks_per_seq] int32. Entry [i, j] is the block holding tokens
            j * page_block_size ... (j + 1) * page_block_size - 1 of sequence i; entries past
            ceil(cache_seqlens[i] / page_block_size) are never read.
        cache_seqlens: [b] int32, tokens cached per sequence (counting the s_q new ones); 0 is legal.
        head_dim_v: 512.
        tile_scheduler_metadata: [num_sm_parts, 8] int32 from get_mla_metadata, or the
            FlashMLASchedMeta that get_mla_metadata() returns (then num_splits must be None). A CUDA
            call counts in two of its words while it runs and leaves them as it found them: layers
            that follow one another on a stream share it; calls that may run at the same time (on
            other streams) need metadata of their own.
        num_splits: [b + 1] int32 from get_mla_metadata.
        softmax_scale: scale of q.k before the softmax; default q.shape[-1] ** -0.5.
        causal: with s_q > 1, query token t of sequence i sees cached tokens
            0 .. cache_seqlens[i] - s_q + t (bottom-right aligned). No effect when s_q == 1.
        is_fp8_kvcache: FlashMLA's flag for an FP8 cache. k_cache's dtype already says so; True only
            checks that k_cache is uint8 or float8_e4m3fn.
        indices: sparse attention (FlashMLA's newer interface); only None is supported.
        descale_q, descale_k: float32 tensors of shape (1,) on q's device (vLLM's keywords): the
            dequantisation factors of an e4m3 q and of a per-tensor FP8 k_cache, required there. Where
            the dtypes do not use one (vLLM passes both on every call) it is checked and ignored.

    Returns:
        out: [b, s_q, h_q, 512], contiguous: q's dtype, bfloat16 with an FP8 k_cache.
        lse: [b, h_q, s_q] float32, contiguous, natural-log log-sum-exp of the scaled scores; +inf (and
            out = 0) for a row that sees no token.
    """
    if is_fp8_kvcache and k_cache.dtype not in _FP8_CACHE_DTYPES:
        raise ValueError(_error("is_fp8_kvcache", "a uint8 or float8_e4m3fn k_cache with True",
                                f"a {k_cache.dtype} k_cache"))
    if indices is not None:
        raise ValueError(_error("indices", "None (sparse attention is not supported)", "a tensor"))
    if softmax_scale is None:
        # A q with no head dimension gets any finite scale here: fwd_kvcache then rejects q by name.
        softmax_scale = q.shape[-1] ** -0.5 if q.dim() > 0 and q.shape[-1] > 0 else 1.0
    new_config = None
    if isinstance(tile_scheduler_metadata, FlashMLASchedMeta):
        sched_meta = tile_scheduler_metadata
        tile_scheduler_metadata, num_splits, new_config = _scheduled(
            sched_meta, num_splits, q, k_cache, cache_seqlens, causal)
    elif num_splits is None:
        raise TypeError(_error("num_splits", "the tensor get_mla_metadata returned", None))
    result = ops.fwd_kvcache(q, k_cache, block_table, cache_seqlens, head_dim_v, tile_scheduler_metadata,
                             num_splits, softmax_scale, causal, descale_q, descale_k)
    if new_config is not None:
        # Kept only once a decode accepted the arguments: a failed first call leaves it unused.
        sched_meta.tile_scheduler_metadata, sched_meta.num_splits = tile_scheduler_metadata, num_splits
        sched_meta.config, sched_meta.have_initialized = new_config, True
    return result


def quantize_fp8_with_scale(x: torch.Tensor) -> torch.Tensor:
    """[..., 576] bfloat16/float16/float32 -> [..., 656] uint8 in the FP8-with-scale layout (SPEC.md).

    Per token and group of 128 NoPE channels: scale = 2^ceil(log2(max(amax / 448, 1e-4))) with amax
    the largest |x| among the group's finite values, and e4m3(x / scale) rounded to nearest even,
    saturating at ±448 (infinities too; NaN stays NaN); RoPE channels are stored as bfloat16.
    .view(torch.float8_e4m3fn) gives the dtype FlashMLA's callers use; both decode the same.

    Runs on the CPU: a CUDA tensor is copied there and back, which synchronises. It is for tests and
    tools that fill a cache, not for an engine's decoding step.
    """
    if x.device.type != "cpu":
        return ops.quantize_fp8_with_scale(x.cpu()).to(x.device)
    return ops.quantize_fp8_with_scale(x)


def quantize_fp8_per_tensor(x: torch.Tensor, descale: Union[float, torch.Tensor]) -> torch.Tensor:
    """e4m3(x / descale) as float8_e4m3fn, x's shape: a per-tensor FP8 k_cache (or q) whose
    descale_k (descale_q) is `descale` (a float > 0, or a (1,) tensor holding it). x / descale is
    computed in float32, then rounded to the nearest e4m3 value, ties to even, saturating at ±448
    (torch's .to(torch.float8_e4m3fn) turns values past 464 and infinities into NaN instead); NaN
    stays NaN. Runs on the CPU, as quantize_fp8_with_scale does.
    """
    if isinstance(descale, torch.Tensor):
        descale = float(descale.reshape(-1)[0])
    if x.device.type != "cpu":
        return ops.quantize_fp8_per_tensor(x.cpu(), descale).to(x.device)
    return ops.quantize_fp8_per_tensor(x, descale)


def _scheduled(sched_meta: FlashMLASchedMeta, num_splits, q, k_cache, cache_seqlens, causal):
    """The schedule a FlashMLASchedMeta holds, computed on its first use (FlashMLA's newest form).

    Returns (tile_scheduler_metadata, num_splits, new_config): new_config is None once the schedule is
    held; else the caller stores the three in sched_meta after the decode accepted these arguments.
    """
    if num_splits is not None:
        raise TypeError(_error("num_splits", "None with a FlashMLASchedMeta", "a tensor"))
    # The shapes the schedule is computed from, checked before they are read (fwd_kvcache checks the rest).
    if q.dim() != 4:
        raise ValueError(_error("q", "4 dimensions [b, s_q, h_q, 576]", f"{q.dim()} dimensions"))
    if k_cache.dim() != 4:
        raise ValueError(_error("k_cache", "4 dimensions [num_blocks, page_block_size, h_kv, 576]",
                                f"{k_cache.dim()} dimensions"))
    h_q, h_kv = q.shape[2], k_cache.shape[2]
    if h_kv < 1 or h_q % h_kv != 0:
        raise ValueError(_error("k_cache", f"h_kv (dim 2) dividing h_q = {h_q}", f"h_kv = {h_kv}"))
    config = FlashMLASchedMeta.Config(q.shape[0], q.shape[1], h_q, k_cache.shape[1], h_kv, causal)
    if sched_meta.have_initialized:
        if sched_meta.config != config:
            raise ValueError(_error("tile_scheduler_metadata",
                                    f"arguments matching its first use {sched_meta.config}", config))
        return sched_meta.tile_scheduler_metadata, sched_meta.num_splits, None
    return (*ops.get_mla_metadata(cache_seqlens, q.shape[1] * h_q // h_kv, h_kv, None), config)
