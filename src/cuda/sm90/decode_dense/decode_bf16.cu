#include "cuda/sm90/decode_dense/kernel.cuh"
template void flash_mla::sm90::dense::launch_decode<__nv_bfloat16, flash_mla::KvCacheFormat::kDense>(
    const flash_mla::detail::DecodeParams&, const flash_mla::sm90::TensorMaps&);
