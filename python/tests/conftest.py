"""Device selection: every test that takes `device` runs on CPU, and on CUDA where the sm90 backend
can run (a Hopper GPU and a build with the kernel); elsewhere the CUDA cases are skipped with the
reason."""

import functools

import pytest
import torch

import flash_mla


@functools.lru_cache(maxsize=None)
def sm90_unavailable_reason():
    """None when the Hopper backend runs here, else why not."""
    if not torch.cuda.is_available():
        return "no CUDA device"
    major, minor = torch.cuda.get_device_capability()
    if (major, minor) != (9, 0):
        return f"the sm90 backend needs a Hopper GPU, this is sm_{major}{minor}"
    seqlens = torch.ones(1, dtype=torch.int32, device="cuda")
    try:
        meta, splits = flash_mla.get_mla_metadata(seqlens, 1, 1)
        q = torch.randn(1, 1, 1, 576, dtype=torch.bfloat16, device="cuda")
        k = torch.randn(1, 64, 1, 576, dtype=torch.bfloat16, device="cuda")
        table = torch.zeros(1, 1, dtype=torch.int32, device="cuda")
        flash_mla.flash_mla_with_kvcache(q, k, table, seqlens, 512, meta, splits)
    except RuntimeError as e:
        return f"the sm90 backend is unavailable: {e}"
    return None


def _requires_sm90():
    reason = sm90_unavailable_reason()
    return pytest.mark.skipif(reason is not None, reason=reason or "")


requires_sm90 = _requires_sm90()
DEVICES = ["cpu", pytest.param("cuda", marks=requires_sm90)]


@pytest.fixture(params=DEVICES)
def device(request):
    # An indexed device: tensors report "cuda:0", and torch.device("cuda") != torch.device("cuda:0").
    if request.param == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(request.param)
