#include "cuda/sm90/decode_dense/kernel.cuh"
template void flash_mla::sm90::dense::launch_decode<__nv_bfloat16, flash_mla::KvCacheFormat::kFP8WithScale>(
    const flash_mla::detail::DecodeParams&, const flash_mla::sm90::TensorMaps&);
template void flash_mla::sm90::dense::launch_decode<__nv_bfloat16, flash_mla::KvCacheFormat::kFP8PerTensor>(
    const flash_mla::detail::DecodeParams&, const flash_mla::sm90::TensorMaps&);
