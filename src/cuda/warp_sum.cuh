// A warp's sum, in every lane (a butterfly of shuffles; every lane of the warp must call it): the combine's
// float reductions and the schedule kernel's int64 ones.
#pragma once

namespace flash_mla::detail {

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

}  // namespace flash_mla::detail
