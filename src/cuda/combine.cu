// Split-KV combine: one warp per (sequence, KV head, query row). Lanes stride over the pieces to find
// the lse maximum and the sum of exp; then each lane owns 16 of the 512 output channels (four float4
// columns, 128 apart, so every load of the warp is one contiguous 512-byte line).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>

#include "cuda/combine.hpp"
#include "cuda/cuda_check.hpp"

namespace flash_mla::detail {

namespace {

constexpr int kWarps = 4;
constexpr int kVecPerLane = kHeadDimV / (32 * 4);  // 4 float4 per lane

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <typename T>
__device__ __forceinline__ void store4(T* dst, float4 v);

template <>
__device__ __forceinline__ void store4<__nv_bfloat16>(__nv_bfloat16* dst, float4 v) {
  __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
  uint2 packed{*reinterpret_cast<uint32_t*>(&lo), *reinterpret_cast<uint32_t*>(&hi)};
  *reinterpret_cast<uint2*>(dst) = packed;
}

template <>
__device__ __forceinline__ void store4<__half>(__half* dst, float4 v) {
  __half2 lo = __floats2half2_rn(v.x, v.y), hi = __floats2half2_rn(v.z, v.w);
  uint2 packed{*reinterpret_cast<uint32_t*>(&lo), *reinterpret_cast<uint32_t*>(&hi)};
  *reinterpret_cast<uint2*>(dst) = packed;
}

template <typename T>
__global__ void __launch_bounds__(kWarps * 32) combine_kernel(const DecodeParams p) {
  const int req = blockIdx.x;
  const int first = p.num_splits[req];
  const int count = p.num_splits[req + 1] - first;
  // One-piece sequences were written directly; out-of-range counts (metadata of another batch)
  // are ignored rather than read out of bounds.
  if (count <= 1 || first < 0 || first + count > p.batch + p.num_sm_parts) return;
  const int lane = threadIdx.x % 32;
  const int idx = blockIdx.y * kWarps + threadIdx.x / 32;  // kv * rows + r
  if (idx >= p.h_kv * p.rows) return;
  const int kv = idx / p.rows, r = idx % p.rows;
  const int t = r / p.q_per_kv, h = kv * p.q_per_kv + r % p.q_per_kv;
  const int64_t stride = static_cast<int64_t>(p.h_kv) * p.rows;  // entries per slot
  const float* lse_accum = p.lse_accum + static_cast<int64_t>(first) * stride + idx;  // [count] step stride

  float m = -INFINITY;
  for (int s = lane; s < count; s += 32) m = fmaxf(m, lse_accum[s * stride]);
  m = warp_max(m);
  T* out = static_cast<T*>(p.out) + ((static_cast<int64_t>(req) * p.s_q + t) * p.h_q + h) * kHeadDimV;
  float* lse = p.lse + (static_cast<int64_t>(req) * p.h_q + h) * p.s_q + t;
  if (m == -INFINITY) {  // no visible key in any piece
    for (int v = 0; v < kVecPerLane; ++v) store4(out + (v * 32 + lane) * 4, make_float4(0.f, 0.f, 0.f, 0.f));
    if (lane == 0) *lse = INFINITY;
    return;
  }
  float sum = 0.0f;
  for (int s = lane; s < count; s += 32) sum += expf(lse_accum[s * stride] - m);
  const float total = m + logf(warp_sum(sum));

  float4 acc[kVecPerLane];
  for (int v = 0; v < kVecPerLane; ++v) acc[v] = make_float4(0.f, 0.f, 0.f, 0.f);
  const float4* o_accum = reinterpret_cast<const float4*>(p.o_accum + (static_cast<int64_t>(first) * stride + idx) *
                                                          kHeadDimV);
  for (int s = 0; s < count; ++s) {
    const float w = expf(lse_accum[s * stride] - total);
    const float4* o = o_accum + s * stride * (kHeadDimV / 4);
#pragma unroll
    for (int v = 0; v < kVecPerLane; ++v) {
      const float4 x = o[v * 32 + lane];
      acc[v].x += w * x.x;
      acc[v].y += w * x.y;
      acc[v].z += w * x.z;
      acc[v].w += w * x.w;
    }
  }
#pragma unroll
  for (int v = 0; v < kVecPerLane; ++v) store4(out + (v * 32 + lane) * 4, acc[v]);
  if (lane == 0) *lse = total;
}

}  // namespace

void launch_combine(const DecodeParams& p) {
  const dim3 grid(p.batch, (p.h_kv * p.rows + kWarps - 1) / kWarps);
  const cudaStream_t stream = static_cast<cudaStream_t>(p.stream);
  if (p.dtype == DType::kBF16) {
    combine_kernel<__nv_bfloat16><<<grid, kWarps * 32, 0, stream>>>(p);
  } else {
    combine_kernel<__half><<<grid, kWarps * 32, 0, stream>>>(p);
  }
  cuda_check(cudaGetLastError(), "combine kernel launch");
}

}  // namespace flash_mla::detail
