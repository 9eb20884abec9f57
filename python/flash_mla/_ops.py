"""The torch ops of flash_mla and their fake (meta) kernels.

Importing flash_mla._C registers, through the LibTorch stable ABI:

    torch.ops.flash_mla.get_mla_metadata(Tensor cache_seqlens, int num_q_tokens_per_head_k,
        int num_heads_k, int? num_sms=None) -> (Tensor tile_scheduler_metadata, Tensor num_splits)
    torch.ops.flash_mla.fwd_kvcache(Tensor q, Tensor k_cache, Tensor block_table,
        Tensor cache_seqlens, int head_dim_v, Tensor tile_scheduler_metadata, Tensor num_splits,
        float softmax_scale, bool causal, Tensor? descale_q=None, Tensor? descale_k=None)
        -> (Tensor out, Tensor lse)
    torch.ops.flash_mla.quantize_fp8_with_scale(Tensor x) -> Tensor           (CPU tensors)
    torch.ops.flash_mla.quantize_fp8_per_tensor(Tensor x, float descale) -> Tensor  (CPU tensors)

The fake kernels below give torch.compile and torch.export the output shapes without running them.
"""

import torch

from . import _C  # noqa: F401  (loading the module registers the ops)

ops = torch.ops.flash_mla

# Mirrors of the C++ API (include/flash_mla/flash_mla.hpp), needed only for fake shapes.
_HEAD_DIM_V = 512       # kHeadDimV
_BLOCK_M = 64           # kBlockM
_METADATA_WORDS = 8     # kMetadataWords
_CPU_NUM_SMS = 132      # default_num_sms(cpu): CPU tensors are scheduled as on an H100
_FP8_WITH_SCALE_BYTES = 656  # kFP8WithScaleBytes
_FP8_CACHE_DTYPES = (torch.uint8, torch.float8_e4m3fn)  # decode_output_dtype: bf16 out for these caches
_MAX_NUM_SMS = 65535    # kMaxNumSms
_INT32_MAX = 2**31 - 1  # the C++ API's int arguments


def num_sm_parts(device: torch.device, num_q_tokens_per_head_k: int, num_heads_k: int,
                 num_sms=None) -> int:
    """Rows of tile_scheduler_metadata: flash_mla::num_sm_parts of the device's SM count."""
    if num_sms is None or num_sms == 0:
        if device.type == "cuda":
            num_sms = torch.cuda.get_device_properties(device).multi_processor_count
        else:
            num_sms = _CPU_NUM_SMS
    m_tiles = (num_q_tokens_per_head_k + _BLOCK_M - 1) // _BLOCK_M
    return max(1, num_sms // num_heads_k // m_tiles)


@torch.library.register_fake("flash_mla::get_mla_metadata")
def _get_mla_metadata_fake(cache_seqlens, num_q_tokens_per_head_k, num_heads_k, num_sms=None):
    torch._check(1 <= num_q_tokens_per_head_k <= _INT32_MAX,
                 lambda: "flash_mla: num_q_tokens_per_head_k: expected >= 1 and a 32-bit integer")
    torch._check(1 <= num_heads_k <= _INT32_MAX, lambda: "flash_mla: num_heads_k: expected >= 1 and a 32-bit integer")
    torch._check(num_sms is None or 0 <= num_sms <= _MAX_NUM_SMS,
                 lambda: f"flash_mla: num_sms: expected 0 .. {_MAX_NUM_SMS}, got {num_sms}")
    parts = num_sm_parts(cache_seqlens.device, num_q_tokens_per_head_k, num_heads_k, num_sms)
    metadata = cache_seqlens.new_empty((parts, _METADATA_WORDS), dtype=torch.int32)
    num_splits = cache_seqlens.new_empty((cache_seqlens.shape[0] + 1,), dtype=torch.int32)
    return metadata, num_splits


@torch.library.register_fake("flash_mla::fwd_kvcache")
def _fwd_kvcache_fake(q, k_cache, block_table, cache_seqlens, head_dim_v, tile_scheduler_metadata,
                      num_splits, softmax_scale, causal, descale_q=None, descale_k=None):
    torch._check(head_dim_v == _HEAD_DIM_V, lambda: f"flash_mla: head_dim_v: expected 512, got {head_dim_v}")
    torch._check(q.dim() == 4, lambda: f"flash_mla: q: expected 4 dimensions [b, s_q, h_q, 576], got {q.dim()}")
    b, s_q, h_q, _ = q.shape
    out_dtype = torch.bfloat16 if k_cache.dtype in _FP8_CACHE_DTYPES else q.dtype
    out = q.new_empty((b, s_q, h_q, _HEAD_DIM_V), dtype=out_dtype)
    lse = q.new_empty((b, h_q, s_q), dtype=torch.float32)
    return out, lse


@torch.library.register_fake("flash_mla::quantize_fp8_with_scale")
def _quantize_fp8_with_scale_fake(x):
    return x.new_empty((*x.shape[:-1], _FP8_WITH_SCALE_BYTES), dtype=torch.uint8)


@torch.library.register_fake("flash_mla::quantize_fp8_per_tensor")
def _quantize_fp8_per_tensor_fake(x, descale):
    return x.new_empty(x.shape, dtype=torch.float8_e4m3fn)
