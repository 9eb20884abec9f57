// The sm90 decode kernel's launcher, one instantiation per dtype and cache format
// (decode_dense/decode_{bf16,fp16,fp8}.cu).
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "core/params.hpp"

namespace flash_mla::sm90 {

// Choices of the sm90 kernel made outside the call (environment switches for A/B measurements).
struct Sm90Options {
  bool seesaw = false;           // the seesaw consumer schedule (FLASH_MLA_SM90_SEESAW=1)
  bool fp8_l2_prefetch = false;  // FP8 producer prefetches the next block into L2 (FLASH_MLA_SM90_FP8_PREFETCH=1)
};

namespace dense {  // 64 query rows per CTA (any h_q * s_q / h_kv)
// k_map is the cache's TMA descriptor for kDense; FP8 caches are read through registers and ignore it.
template <typename T, KvCacheFormat kFormat>
void launch_decode(const detail::DecodeParams& p, const CUtensorMap& k_map, const Sm90Options& options);
extern template void launch_decode<__nv_bfloat16, KvCacheFormat::kDense>(const detail::DecodeParams&,
                                                                          const CUtensorMap&, const Sm90Options&);
extern template void launch_decode<__half, KvCacheFormat::kDense>(const detail::DecodeParams&, const CUtensorMap&, const Sm90Options&);
extern template void launch_decode<__nv_bfloat16, KvCacheFormat::kFP8WithScale>(const detail::DecodeParams&,
                                                                                 const CUtensorMap&, const Sm90Options&);
extern template void launch_decode<__nv_bfloat16, KvCacheFormat::kFP8PerTensor>(const detail::DecodeParams&,
                                                                                 const CUtensorMap&, const Sm90Options&);
}  // namespace dense

}  // namespace flash_mla::sm90
