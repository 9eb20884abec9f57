// The sm90 decode kernel's launcher, one instantiation per dtype and cache format
// (decode_dense/decode_{bf16,fp16,fp8}.cu).
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "core/params.hpp"

namespace flash_mla::sm90 {

namespace dense {  // 64 query rows per CTA (any h_q * s_q / h_kv)
// k_map is the cache's TMA descriptor for kDense; FP8 caches are read through registers and ignore it.
template <typename T, KvCacheFormat kFormat>
void launch_decode(const detail::DecodeParams& p, const CUtensorMap& k_map);
extern template void launch_decode<__nv_bfloat16, KvCacheFormat::kDense>(const detail::DecodeParams&,
                                                                          const CUtensorMap&);
extern template void launch_decode<__half, KvCacheFormat::kDense>(const detail::DecodeParams&, const CUtensorMap&);
extern template void launch_decode<__nv_bfloat16, KvCacheFormat::kFP8WithScale>(const detail::DecodeParams&,
                                                                                 const CUtensorMap&);
extern template void launch_decode<__nv_bfloat16, KvCacheFormat::kFP8PerTensor>(const detail::DecodeParams&,
                                                                                 const CUtensorMap&);
}  // namespace dense

}  // namespace flash_mla::sm90
