// The sm90 decode kernel's launcher, one instantiation per dtype and cache format
// (decode_dense/decode_{bf16,fp16,fp8}.cu).
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "core/params.hpp"

namespace flash_mla::sm90 {

// A call's TMA descriptors. The cache's (launch.cu, make_cache_maps): `k` copies 64-channel boxes of the cache
// rows (dense: 16-bit values into 128-byte-swizzled sub-tiles; FP8: raw e4m3 bytes, unswizzled), `rope`
// the bf16 RoPE channels and `scales` the four float32 scales of an FP8-with-scale cache; the narrow kernel's
// (launch.cu, narrow_maps) differ: there `rope` is also set per tensor, to the 64 RoPE e4m3 bytes. A cache
// whose pages are gathered (copies of fewer than kMinTmaPage rows, page_copy_rows) uses none.
// `out` (launch.cu, make_out_map) stores a finished 64-row output tile as eight 64-column boxes from the
// dense kernel's 128-byte-swizzled staging (store_final_staged); out_by_tma says it is set, otherwise each
// staged row leaves by its own bulk copies.
struct TensorMaps {
  CUtensorMap k;
  CUtensorMap rope;
  CUtensorMap scales;
  CUtensorMap out;
  CUtensorMap q;
  CUtensorMap accum;
  int out_by_tma;
  int q_by_tma;      // `q` (make_q_map) is set: a 16-bit call's query tile may come as nine 64-channel boxes
  int accum_by_tma;  // `accum` (make_accum_map) is set: split pieces' partials leave as 64 x 32 fp32 boxes
};

namespace dense {  // 64 query rows per CTA (any h_q * s_q / h_kv)
template <typename T, KvCacheFormat kFormat>
void launch_decode(const detail::DecodeParams& p, const TensorMaps& maps);
extern template void launch_decode<__nv_bfloat16, KvCacheFormat::kDense>(const detail::DecodeParams&,
                                                                          const TensorMaps&);
extern template void launch_decode<__half, KvCacheFormat::kDense>(const detail::DecodeParams&, const TensorMaps&);
extern template void launch_decode<__nv_bfloat16, KvCacheFormat::kFP8WithScale>(const detail::DecodeParams&,
                                                                                 const TensorMaps&);
extern template void launch_decode<__nv_bfloat16, KvCacheFormat::kFP8PerTensor>(const detail::DecodeParams&,
                                                                                 const TensorMaps&);
}  // namespace dense

namespace narrow {  // FP8 (both layouts), at most 32 query rows, page copies of 16+ rows: the maps of
                   // launch.cu's narrow_maps
void launch_decode(const detail::DecodeParams& p, const TensorMaps& maps);
}  // namespace narrow

}  // namespace flash_mla::sm90
