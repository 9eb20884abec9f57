// Declarations of the per-dtype instantiations of the dense Hopper decode kernel's launcher.
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "core/params.hpp"

namespace flash_mla::sm90 {

template <typename T>
void launch_decode(const detail::DecodeParams& p, const CUtensorMap& k_map);

extern template void launch_decode<__nv_bfloat16>(const detail::DecodeParams&, const CUtensorMap&);
extern template void launch_decode<__half>(const detail::DecodeParams&, const CUtensorMap&);

}  // namespace flash_mla::sm90
