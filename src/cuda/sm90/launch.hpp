// The sm90 decode kernel's launcher, one instantiation per dtype (decode_dense/decode_{bf16,fp16}.cu).
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "core/params.hpp"

namespace flash_mla::sm90 {

namespace dense {  // 64 query rows per CTA (any h_q * s_q / h_kv)
template <typename T>
void launch_decode(const detail::DecodeParams& p, const CUtensorMap& k_map);
extern template void launch_decode<__nv_bfloat16>(const detail::DecodeParams&, const CUtensorMap&);
extern template void launch_decode<__half>(const detail::DecodeParams&, const CUtensorMap&);
}  // namespace dense

}  // namespace flash_mla::sm90
