// Split-KV combine. Two shapes:
// - combine_rows_kernel, for large batches (few pieces per sequence): a warp owns one (sequence, KV
//   head, query row), all 512 channels, four rows per 128-thread CTA. It issues the first two pieces'
//   loads before the weights are known, so that none of a two-piece row's loads waits for its lse.
//   (The earlier warp-per-quarter shape ran 16384 CTAs at b=128 h128, ~10 waves by count: 19.8 us
//   under ncu, and the call 314 us with it against 298-300 without, H200, session 12.)
// - combine_kernel<kSplitWarps>, for a few long sequences with many pieces: a warp owns one (sequence,
//   KV head, query row, 128-channel quarter); lanes stride over the pieces for the lse maximum and the
//   sum of exp, then every lane accumulates one float4 of the quarter per piece. kSplitWarps warps
//   share a quarter, each taking every kSplitWarps-th piece, and add up their partial sums in shared
//   memory:
//   - 16 (one quarter per 512-thread CTA): batch 1 with 132 pieces has all its partial loads in
//     flight at once (with four, the combine took a quarter of a batch-1 call);
//   - 4 (four quarters per 512-thread CTA): batches of a few sequences with tens of pieces each.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>

#include "cuda/combine.hpp"
#include "cuda/cuda_check.hpp"

namespace flash_mla::detail {

namespace {

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

// The pieces [first, first + count) of one sequence, or count 0 when there is nothing to merge: one
// piece (written directly by the main kernel), or out-of-range words (metadata of another batch),
// which are ignored rather than read out of bounds.
struct Pieces {
  int first;
  int count;
};

__device__ __forceinline__ Pieces sequence_pieces(const DecodeParams& p, int req) {
  const int first = p.num_splits[req];
  const int count = p.num_splits[req + 1] - first;
  if (count <= 1 || first < 0 || first + count > p.batch + p.num_sm_parts) return {0, 0};
  return {first, count};
}

__device__ __forceinline__ void fma4(float4& acc, float w, const float4& x) {
  acc.x += w * x.x;
  acc.y += w * x.y;
  acc.z += w * x.z;
  acc.w += w * x.w;
}

constexpr int kRowWarps = 4;  // combine_rows_kernel: rows (warps) per CTA

template <typename T>
__global__ void __launch_bounds__(kRowWarps * 32) combine_rows_kernel(const DecodeParams p) {
  const Pieces pieces = sequence_pieces(p, blockIdx.x);
  const int idx = blockIdx.y * kRowWarps + threadIdx.x / 32;  // kv * rows + r
  if (pieces.count == 0 || idx >= p.h_kv * p.rows) return;
  const int lane = threadIdx.x % 32, count = pieces.count;
  const int kv = idx / p.rows, r = idx % p.rows;
  const int t = r / p.q_per_kv, h = kv * p.q_per_kv + r % p.q_per_kv;
  const int64_t stride = static_cast<int64_t>(p.h_kv) * p.rows;  // entries per slot
  const float* lse_accum = p.lse_accum + static_cast<int64_t>(pieces.first) * stride + idx;
  // Lane l holds channels 4l + 128c (c < 4) of every piece: each float4 load of the warp is 512
  // contiguous bytes.
  const float4* o_accum =
      reinterpret_cast<const float4*>(p.o_accum + (static_cast<int64_t>(pieces.first) * stride + idx) * kHeadDimV) +
      lane;
  const int64_t piece_step = stride * (kHeadDimV / 4);  // float4s between consecutive pieces
  float4 x0[kChunks], x1[kChunks];  // count >= 2: pieces 0 and 1, loaded before their weights are known
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    x0[c] = o_accum[c * 32];
    x1[c] = o_accum[piece_step + c * 32];
  }
  // Lane l holds the lse of pieces l, l + 32, ...
  float m = -INFINITY;
  for (int s = lane; s < count; s += 32) m = fmaxf(m, lse_accum[s * stride]);
  m = warp_max(m);
  T* out = static_cast<T*>(p.out) + ((static_cast<int64_t>(blockIdx.x) * p.s_q + t) * p.h_q + h) * kHeadDimV + lane * 4;
  float* lse = p.lse + (static_cast<int64_t>(blockIdx.x) * p.h_q + h) * p.s_q + t;
  if (m == -INFINITY) {  // no visible key in any piece: zeros and lse +inf
#pragma unroll
    for (int c = 0; c < kChunks; ++c) store4(out + c * 128, make_float4(0.f, 0.f, 0.f, 0.f));
    if (lane == 0) *lse = INFINITY;
    return;
  }
  float sum = 0.0f;
  for (int s = lane; s < count; s += 32) sum += expf(lse_accum[s * stride] - m);
  const float total = m + logf(warp_sum(sum));
  const float lse_lane = lane < count ? lse_accum[lane * stride] : 0.0f;  // pieces 0..31, for their weights
  const float w_lane = expf(lse_lane - total);
  float4 acc[kChunks];
  const float w0 = __shfl_sync(0xffffffffu, w_lane, 0), w1 = __shfl_sync(0xffffffffu, w_lane, 1);
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    acc[c] = make_float4(0.f, 0.f, 0.f, 0.f);
    fma4(acc[c], w0, x0[c]);
    fma4(acc[c], w1, x1[c]);
  }
  for (int s = 2; s < count; ++s) {
    const float w = s < 32 ? __shfl_sync(0xffffffffu, w_lane, s) : expf(lse_accum[s * stride] - total);
#pragma unroll
    for (int c = 0; c < kChunks; ++c) fma4(acc[c], w, o_accum[s * piece_step + c * 32]);
  }
#pragma unroll
  for (int c = 0; c < kChunks; ++c) store4(out + c * 128, acc[c]);
  if (lane == 0) *lse = total;
}

template <typename T, int kSplitWarps>
__global__ void __launch_bounds__(512, 3) combine_kernel(const DecodeParams p) {
  constexpr int kWarps = 16;
  const Pieces pieces = sequence_pieces(p, blockIdx.x);
  if (pieces.count == 0) return;
  const int first = pieces.first, count = pieces.count;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  // (kv * rows + r) * 4 + c. Every CTA's quarters exist: the quarters of a row come in fours, and
  // kWarps / kSplitWarps is 1 or 4.
  const int quarter_index = blockIdx.y * (kWarps / kSplitWarps) + warp / kSplitWarps;
  const int idx = quarter_index / kChunks, chunk = quarter_index % kChunks;
  const int kv = idx / p.rows, r = idx % p.rows;
  const int t = r / p.q_per_kv, h = kv * p.q_per_kv + r % p.q_per_kv;
  const int64_t stride = static_cast<int64_t>(p.h_kv) * p.rows;                       // entries per slot
  const float* lse_accum = p.lse_accum + static_cast<int64_t>(first) * stride + idx;  // [count] step stride

  float m = -INFINITY;
  for (int s = lane; s < count; s += 32) m = fmaxf(m, lse_accum[s * stride]);
  m = warp_max(m);
  T* out = static_cast<T*>(p.out) + ((static_cast<int64_t>(blockIdx.x) * p.s_q + t) * p.h_q + h) * kHeadDimV +
           chunk * 128 + lane * 4;
  float* lse = p.lse + (static_cast<int64_t>(blockIdx.x) * p.h_q + h) * p.s_q + t;
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
      fma4(acc, w, o_accum[s * stride * (kHeadDimV / 4)]);
    }
  }
  __shared__ float4 partial[kWarps][32];
  partial[warp][lane] = acc;
  __syncthreads();
  if (!leader || empty) return;
  for (int w = 1; w < kSplitWarps; ++w) fma4(acc, 1.0f, partial[warp + w][lane]);
  store4(out, acc);
  if (lane == 0 && chunk == 0) *lse = total;
}

// The combine of output type T: rows per warp (split 1), or 16 or 4 warps per quarter.
template <typename T>
void launch_split(const DecodeParams& p, int split, cudaStream_t stream) {
  const int64_t rows = static_cast<int64_t>(p.h_kv) * p.rows;
  const int64_t units = split == 1 ? rows : rows * kChunks;  // rows or quarters
  const int64_t per_cta = split == 1 ? kRowWarps : 16 / split;
  const dim3 grid(p.batch, static_cast<unsigned>((units + per_cta - 1) / per_cta));
  if (split == 16) {
    combine_kernel<T, 16><<<grid, 512, 0, stream>>>(p);
  } else if (split == 4) {
    combine_kernel<T, 4><<<grid, 512, 0, stream>>>(p);
  } else {
    combine_rows_kernel<T><<<grid, kRowWarps * 32, 0, stream>>>(p);
  }
}

}  // namespace

void launch_combine(const DecodeParams& p) {
  const cudaStream_t stream = static_cast<cudaStream_t>(p.stream);
  // Tuned for speed, does not affect correctness. From ~4096 row-quarters a warp owns a row. Below,
  // warps share a quarter's pieces: sixteen when a sequence has ~64 or more pieces on average
  // (batch 1-2: all of them in flight at once), else four, with four quarters per CTA (batch 4-16:
  // a quarter of the CTAs, which otherwise ran in ~3 waves of mostly idle warps).
  const int64_t quarters = static_cast<int64_t>(p.h_kv) * p.rows * kChunks;
  const int64_t pieces = p.batch > 0 ? (static_cast<int64_t>(p.batch) + p.num_sm_parts - 1) / p.batch : 0;
  const int split = static_cast<int64_t>(p.batch) * quarters >= 4096 ? 1 : pieces >= 64 ? 16 : 4;
  if (p.dtype == DType::kBF16) {
    launch_split<__nv_bfloat16>(p, split, stream);
  } else {
    launch_split<__half>(p, split, stream);
  }
  cuda_check(cudaGetLastError(), "combine kernel launch");
}

}  // namespace flash_mla::detail
