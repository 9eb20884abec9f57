// Split-KV combine. A warp owns one (sequence, KV head, query row, 128-channel quarter): lanes stride
// over the pieces for the lse maximum and the sum of exp, then every lane accumulates one float4 of
// the quarter per piece. kSplitWarps warps may share a quarter, each taking every kSplitWarps-th
// piece, and add up their partial sums in shared memory:
// - 16 (one quarter per 512-thread CTA): batch 1 with 132 pieces has all its partial loads in
//   flight at once (with four, the combine took a quarter of a batch-1 call);
// - 4 (four quarters per 512-thread CTA): batches of a few sequences with tens of pieces each;
// - 1 (four quarters per 128-thread CTA): large batches, few pieces each, no shared-memory step.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>

#include "cuda/combine.hpp"
#include "cuda/cuda_check.hpp"

namespace flash_mla::detail {

namespace {

constexpr int kQuarterWarps = 4;          // warps per CTA when each owns a quarter
constexpr int kChunks = kHeadDimV / 128;  // 128-channel quarters, one float4 per lane

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

template <int kSplitWarps>
constexpr int cta_warps() {
  return kSplitWarps == 1 ? kQuarterWarps : 16;
}

template <typename T, int kSplitWarps>
__global__ void __launch_bounds__(cta_warps<kSplitWarps>() * 32, kSplitWarps == 1 ? 12 : 3)
    combine_kernel(const DecodeParams p) {
  constexpr int kWarps = cta_warps<kSplitWarps>();
  const int req = blockIdx.x;
  const int first = p.num_splits[req];
  const int count = p.num_splits[req + 1] - first;
  // One-piece sequences were written directly; out-of-range counts (metadata of another batch)
  // are ignored rather than read out of bounds.
  if (count <= 1 || first < 0 || first + count > p.batch + p.num_sm_parts) return;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int quarter_index = blockIdx.y * (kWarps / kSplitWarps) + warp / kSplitWarps;  // (kv * rows + r) * 4 + c
  // Only when kSplitWarps == 1 (no barrier follows): with 4 or 16, every CTA's quarters exist (the
  // quarters of a row come in fours).
  if (quarter_index >= p.h_kv * p.rows * kChunks) return;
  const int idx = quarter_index / kChunks, chunk = quarter_index % kChunks;
  const int kv = idx / p.rows, r = idx % p.rows;
  const int t = r / p.q_per_kv, h = kv * p.q_per_kv + r % p.q_per_kv;
  const int64_t stride = static_cast<int64_t>(p.h_kv) * p.rows;                       // entries per slot
  const float* lse_accum = p.lse_accum + static_cast<int64_t>(first) * stride + idx;  // [count] step stride

  float m = -INFINITY;
  for (int s = lane; s < count; s += 32) m = fmaxf(m, lse_accum[s * stride]);
  m = warp_max(m);
  T* out = static_cast<T*>(p.out) + ((static_cast<int64_t>(req) * p.s_q + t) * p.h_q + h) * kHeadDimV + chunk * 128 +
           lane * 4;
  float* lse = p.lse + (static_cast<int64_t>(req) * p.h_q + h) * p.s_q + t;
  const bool leader = warp % kSplitWarps == 0;
  // No visible key in any piece: zeros and lse +inf. The quarter's warps agree; they still reach the
  // barrier below, which the CTA's other quarters (kSplitWarps = 4) wait on.
  const bool empty = m == -INFINITY;
  if (empty && leader) {
    store4(out, make_float4(0.f, 0.f, 0.f, 0.f));
    if (lane == 0 && chunk == 0) *lse = INFINITY;
  }
  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
  float total = 0.0f;
  if (!empty) {
    float sum = 0.0f;
    for (int s = lane; s < count; s += 32) sum += expf(lse_accum[s * stride] - m);
    total = m + logf(warp_sum(sum));
    const float4* o_accum = reinterpret_cast<const float4*>(
                                p.o_accum + (static_cast<int64_t>(first) * stride + idx) * kHeadDimV + chunk * 128) +
                            lane;
#pragma unroll 8
    for (int s = warp % kSplitWarps; s < count; s += kSplitWarps) {
      const float w = expf(lse_accum[s * stride] - total);
      const float4 x = o_accum[s * stride * (kHeadDimV / 4)];
      acc.x += w * x.x;
      acc.y += w * x.y;
      acc.z += w * x.z;
      acc.w += w * x.w;
    }
  }
  if constexpr (kSplitWarps > 1) {
    __shared__ float4 partial[kWarps][32];
    partial[warp][lane] = acc;
    __syncthreads();
    if (!leader || empty) return;
    for (int w = 1; w < kSplitWarps; ++w) {
      const float4 x = partial[warp + w][lane];
      acc.x += x.x;
      acc.y += x.y;
      acc.z += x.z;
      acc.w += x.w;
    }
  } else if (empty) {
    return;
  }
  store4(out, acc);
  if (lane == 0 && chunk == 0) *lse = total;
}

// The combine kernel of output type T for warps-per-quarter `split` (16, 4 or 1).
template <typename T>
void launch_split(const DecodeParams& p, const dim3& grid, int split, cudaStream_t stream) {
  if (split == 16) {
    combine_kernel<T, 16><<<grid, 32 * cta_warps<16>(), 0, stream>>>(p);
  } else if (split == 4) {
    combine_kernel<T, 4><<<grid, 32 * cta_warps<4>(), 0, stream>>>(p);
  } else {
    combine_kernel<T, 1><<<grid, 32 * cta_warps<1>(), 0, stream>>>(p);
  }
}

}  // namespace

void launch_combine(const DecodeParams& p) {
  const cudaStream_t stream = static_cast<cudaStream_t>(p.stream);
  // Tuned for speed, does not affect correctness. Above ~4096 row-quarters each warp owns a quarter.
  // Below, warps share a quarter's pieces: sixteen when a sequence has ~64 or more pieces on average
  // (batch 1-2: all of them in flight at once), else four, with four quarters per CTA (batch 4-16:
  // a quarter of the CTAs, which otherwise ran in ~3 waves of mostly idle warps).
  const int64_t quarters = static_cast<int64_t>(p.h_kv) * p.rows * kChunks;
  const int64_t pieces = p.batch > 0 ? (static_cast<int64_t>(p.batch) + p.num_sm_parts - 1) / p.batch : 0;
  const int split = static_cast<int64_t>(p.batch) * quarters >= 4096 ? 1 : pieces >= 64 ? 16 : 4;
  const int64_t per_cta = split == 1 ? kQuarterWarps : 16 / split;
  const dim3 grid(p.batch, static_cast<unsigned>((quarters + per_cta - 1) / per_cta));
  if (p.dtype == DType::kBF16) {
    launch_split<__nv_bfloat16>(p, grid, split, stream);
  } else {
    launch_split<__half>(p, grid, split, stream);
  }
  cuda_check(cudaGetLastError(), "combine kernel launch");
}

}  // namespace flash_mla::detail
