// Split-KV combine. Two shapes:
// - combine_rows_kernel, for large batches (few pieces per sequence): a warp owns one (sequence, KV
//   head, query row), all 512 channels, four rows per 128-thread CTA. It issues the first two pieces'
//   loads before the weights are known, so that none of a two-piece row's loads waits for its lse.
//   (The earlier warp-per-quarter shape ran 16384 CTAs at b=128 h128, ~10 waves by count: 19.8 us
//   under ncu, and the call 314 us with it against 298-300 without, H200, session 12.)
// - combine_kernel<kSplitWarps>, for a few long sequences with many pieces: a warp owns one (sequence,
//   KV head, query row, 128-channel quarter) and every lane accumulates one float4 of the quarter per
//   piece, four pieces' loads in flight. The row's lse over the pieces takes one round of loads: with
//   up to 64 pieces each warp loads them all (two per lane) and reduces them with shuffles; with more,
//   the CTA (all of one row) does it once, through shared memory. The weights wait in shared memory.
//   (Until session 20 every warp made two strided passes over the lse and reloaded it per piece: at
//   b=1 16384 h16 s4 the call ran 23.7 us against 21.2, H200.) kSplitWarps warps share a quarter, each
//   taking every kSplitWarps-th piece, and add up their partial sums in shared memory:
//   - 16 (one quarter per 512-thread CTA): batch 1 with ~130 pieces takes two batches of four loads
//     per warp (with four warps per quarter, before session 20, the combine took a quarter of a
//     batch-1 call);
//   - 4 (four quarters per 512-thread CTA): batches of a few sequences with tens of pieces each.
//
// combine_rows_kernel with at most 3 pieces per sequence on average (combine_is_dependent) is launched
// as a programmatic dependent of the decode kernel (PDL), which lets it launch once every decode CTA has
// begun its last block. Its CTAs take the SMs the decode grid leaves, and a CTA of a split sequence
// waits only for that sequence's pieces (wait_for_pieces): sequences finished early are merged, and the
// CTAs of sequences that are not split (one read of num_splits) done, while the decode kernel's last
// CTAs still run. H200, session 17, against the plain launch: b=64 256..1024 s4 -6 %, b=64 512 s2
// -2 ... -4 %, b=128 and b=256 short rows -1.6 ... -2.4 %. The split-warp shapes stay plain launches: as
// dependents they ran b=1 64k and b=4 mixed 11-15 % slower, and the warp-per-row shape with more
// pieces per sequence (b = 2..16 at 4096-16384 tokens) up to 11 % slower.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>

#include "cuda/combine.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/piece_counters.cuh"
#include "cuda/warp_sum.cuh"
#include "ptx/timer.hpp"

namespace flash_mla::detail {

namespace {

constexpr int kChunks = kHeadDimV / 128;  // 128-channel quarters, one float4 per lane

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
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

// How long a CTA waits for a sequence's pieces before it merges what is there: far longer than any
// decode kernel runs; reached only when the pieces never come (metadata and num_splits of different
// schedules), so that such misuse gives wrong rows instead of a hang.
constexpr uint64_t kWaitLimitNs = 10'000'000'000ull;

// Waits (the whole CTA) until every piece of sequence `req` (count of them, count >= 2) is stored and
// released by the decode kernel (sm90 decode_common.cuh, release_piece): each piece's CTAs, one per
// query tile and KV head, count it in word kPiecesStoredWord of the row of the part that holds the
// sequence's first piece. Warp 0 finds that row and lane 0 waits on it with acquire loads, which order
// every thread's reads after the barrier below. Returns that part to thread 0 (-1 when no part holds
// the sequence's first piece: metadata of another batch, not waited on), -1 to the other threads.
__device__ int wait_for_pieces(const DecodeParams& p, int req, int count) {
  int first_part = -1;
  if (threadIdx.x < 32) {
    const int lane = threadIdx.x;
    for (int base = 0; base < p.num_sm_parts && first_part < 0; base += 32) {
      const int part = base + lane;
      bool holds_first = false;
      if (part < p.num_sm_parts) {
        const int32_t* row = p.metadata + static_cast<int64_t>(part) * kMetadataWords;
        const int begin = row[0], end = row[2];
        holds_first = begin <= end && ((begin < req && req <= end) || (begin == req && row[4] == 0));
      }
      const unsigned hits = __ballot_sync(0xffffffffu, holds_first);
      if (hits != 0) first_part = base + __ffs(hits) - 1;
    }
    if (lane == 0 && first_part >= 0) {
      const auto stored = metadata_counter(p, first_part, kPiecesStoredWord);
      const int target = count * releases_per_piece(p);
      const uint64_t start = ptx::global_timer_ns();
      while (stored.load(cuda::memory_order_acquire) < target && ptx::global_timer_ns() - start < kWaitLimitNs) {
        __nanosleep(256);
      }
    }
  }
  __syncthreads();
  return threadIdx.x == 0 ? first_part : -1;
}

// A CTA's place among the sequence's gridDim.y combine CTAs that have waited (a ticket drawn by thread 0
// right after wait_for_pieces, whose result it needs only at the end, so the atomic's round trip overlaps
// the merge), and the part whose counters it drew from.
struct WaitTicket {
  int part = -1;
  int ticket = -1;
};

__device__ __forceinline__ void draw_ticket(const DecodeParams& p, WaitTicket& t, int first_part) {
  if (first_part < 0) return;
  t.part = first_part;
  t.ticket = metadata_counter(p, first_part, kCombinesWaitedWord).fetch_add(1, cuda::memory_order_relaxed);
}

// The last CTA of the sequence to have waited puts both counters back to 0 for the next call, which
// stream order starts only after this grid ends (nothing in this call reads them again).
__device__ __forceinline__ void return_ticket(const DecodeParams& p, const WaitTicket& t) {
  if (t.part < 0 || t.ticket != static_cast<int>(gridDim.y) - 1) return;
  metadata_counter(p, t.part, kPiecesStoredWord).store(0, cuda::memory_order_relaxed);
  metadata_counter(p, t.part, kCombinesWaitedWord).store(0, cuda::memory_order_relaxed);
}

// The combine grid may end only after the decode grid: the work that follows in the stream (the next
// layer's decode call, or whatever reads `out`) relies on both. One thread of the grid waiting for the
// decode grid's completion is enough.
__device__ __forceinline__ void end_after_decode() {
  if (blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0) cudaGridDependencySynchronize();
}

__device__ __forceinline__ void fma4(float4& acc, float w, const float4& x) {
  acc.x += w * x.x;
  acc.y += w * x.y;
  acc.z += w * x.z;
  acc.w += w * x.w;
}

constexpr int kRowWarps = 4;  // combine_rows_kernel: rows (warps) per CTA

template <typename T>
__device__ __forceinline__ void combine_rows(const DecodeParams& p, WaitTicket& ticket) {
  const Pieces pieces = sequence_pieces(p, blockIdx.x);
  if (pieces.count == 0) return;
  if (p.release_pieces) draw_ticket(p, ticket, wait_for_pieces(p, blockIdx.x, pieces.count));
  const int idx = blockIdx.y * kRowWarps + threadIdx.x / 32;  // kv * rows + r
  if (idx >= p.h_kv * p.rows) return;
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
  // Lane l holds the lse of pieces l, l + 32, ...; that of piece l stays in lse_lane for its weight.
  const float lse_lane = lane < count ? lse_accum[lane * stride] : -INFINITY;
  float m = lse_lane;
  for (int s = lane + 32; s < count; s += 32) m = fmaxf(m, lse_accum[s * stride]);
  m = warp_max(m);
  T* out = static_cast<T*>(p.out) + ((static_cast<int64_t>(blockIdx.x) * p.s_q + t) * p.h_q + h) * kHeadDimV + lane * 4;
  float* lse = p.lse + (static_cast<int64_t>(blockIdx.x) * p.h_q + h) * p.s_q + t;
  if (m == -INFINITY) {  // no visible key in any piece: zeros and lse +inf
#pragma unroll
    for (int c = 0; c < kChunks; ++c) store4(out + c * 128, make_float4(0.f, 0.f, 0.f, 0.f));
    if (lane == 0) *lse = INFINITY;
    return;
  }
  float sum = expf(lse_lane - m);  // 0 past the pieces
  for (int s = lane + 32; s < count; s += 32) sum += expf(lse_accum[s * stride] - m);
  const float total = m + logf(warp_sum(sum));
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

template <typename T>
__global__ void __launch_bounds__(kRowWarps * 32) combine_rows_kernel(const DecodeParams p) {
  WaitTicket ticket;
  combine_rows<T>(p, ticket);
  return_ticket(p, ticket);
  end_after_decode();
}

// Folds one more lse value v into a running (maximum, sum of exp(lse - maximum)) pair. A NaN lse (a
// NaN key inside a piece) must reach the total, as in the reference: fmaxf drops it from the maximum,
// so it is carried in the sum, which stays NaN through every later fold and merge.
__device__ __forceinline__ void fold_lse(float& m, float& sum, float v) {
  const float top = fmaxf(m, v);
  if (top == -INFINITY) {  // nothing visible yet: v is -inf, or NaN
    if (v != v) sum = v;
    return;
  }
  sum = sum * expf(m - top) + expf(v - top);
  m = top;
}

// Merges another thread's (maximum, sum) pair into this one.
__device__ __forceinline__ void merge_lse(float& m, float& sum, float m2, float sum2) {
  const float top = fmaxf(m, m2);
  if (top == -INFINITY) {  // both sums are 0, or NaN carried by fold_lse
    sum += sum2;
    return;
  }
  sum = sum * expf(m - top) + sum2 * expf(m2 - top);
  m = top;
}

// merge_lse over the warp's 32 pairs (butterfly): every lane ends with the warp's pair.
__device__ __forceinline__ void warp_merge_lse(float& m, float& sum) {
  for (int o = 16; o > 0; o >>= 1) {
    merge_lse(m, sum, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, sum, o));
  }
}

// combine_kernel's pieces per round of loads: each lane has kBatch float4 loads in flight (eight need
// more than the 40 registers of three CTAs per SM).
constexpr int kBatch = 4;

// acc += weight(j) * o[j * piece_step] over the pieces j < n of this warp (j = warp % kSplitWarps, then
// every kSplitWarps-th), kBatch loads issued before their sums; a short last batch is predicated rather
// than run one piece at a time.
template <int kSplitWarps, typename Weight>
__device__ __forceinline__ void accumulate_pieces(float4& acc, const float4* o, int64_t piece_step, int n, int warp,
                                                  Weight weight) {
  for (int j0 = warp % kSplitWarps; j0 < n; j0 += kBatch * kSplitWarps) {
    float4 x[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int j = j0 + u * kSplitWarps;
      x[u] = j < n ? o[j * piece_step] : make_float4(0.f, 0.f, 0.f, 0.f);
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int j = j0 + u * kSplitWarps;
      if (j < n) fma4(acc, weight(j), x[u]);
    }
  }
}

template <typename T, int kSplitWarps>
__global__ void __launch_bounds__(512, 3) combine_kernel(const DecodeParams p) {
  constexpr int kWarps = 16, kThreads = kWarps * 32;
  const Pieces pieces = sequence_pieces(p, blockIdx.x);
  if (pieces.count == 0) return;
  const int first = pieces.first, count = pieces.count;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  // (kv * rows + r) * 4 + c. Every CTA's quarters exist and belong to one row: the quarters of a row
  // come in fours, and kWarps / kSplitWarps is 1 or 4.
  const int quarter_index = blockIdx.y * (kWarps / kSplitWarps) + warp / kSplitWarps;
  const int idx = quarter_index / kChunks, chunk = quarter_index % kChunks;
  const int64_t stride = static_cast<int64_t>(p.h_kv) * p.rows;                       // entries per slot
  const float* lse_accum = p.lse_accum + static_cast<int64_t>(first) * stride + idx;  // [count] step stride
  // Lane l accumulates one float4 of the warp's quarter.
  const float4* o_accum =
      reinterpret_cast<const float4*>(p.o_accum + (static_cast<int64_t>(first) * stride + idx) * kHeadDimV +
                                      chunk * 128) +
      lane;
  const int64_t piece_step = stride * (kHeadDimV / 4);  // float4s between consecutive pieces
  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
  float total;  // the row's lse over all pieces; the same in every warp of the CTA
  if (count <= 64) {
    // Every warp reduces the row's lse alone: lane l loads pieces l and l + 32 (one round trip) and
    // puts their weights exp(lse - total) in the warp's shared-memory row (no CTA barrier).
    __shared__ float warp_weight[kWarps][64];
    const float lo = lane < count ? lse_accum[lane * stride] : -INFINITY;
    const float hi = lane + 32 < count ? lse_accum[(lane + 32) * stride] : -INFINITY;
    const float m = warp_max(fmaxf(lo, hi));
    total = m == -INFINITY ? -INFINITY : m + logf(warp_sum(expf(lo - m) + expf(hi - m)));
    if (total != -INFINITY) {
      warp_weight[warp][lane] = expf(lo - total);
      warp_weight[warp][lane + 32] = expf(hi - total);
      __syncwarp();
      accumulate_pieces<kSplitWarps>(acc, o_accum, piece_step, count, warp,
                                     [&](int j) { return warp_weight[warp][j]; });
    }
  } else {
    // Many pieces: the CTA reduces the row's lse once. Thread i folds pieces i, i + 512, ... (the CTA's
    // loads in flight together), then the warps and the CTA merge; weights go to shared memory, 512 per
    // round.
    __shared__ float2 reduced[kWarps];
    __shared__ float weight[kThreads];
    __shared__ float row_total;
    float own = -INFINITY, m = -INFINITY, sum = 0.0f;
    for (int s = threadIdx.x; s < count; s += kThreads) {
      const float v = lse_accum[s * stride];
      if (s == threadIdx.x) own = v;
      fold_lse(m, sum, v);
    }
    warp_merge_lse(m, sum);
    if (lane == 0) reduced[warp] = make_float2(m, sum);
    __syncthreads();
    if (warp == 0) {
      const float2 mine = lane < kWarps ? reduced[lane] : make_float2(-INFINITY, 0.0f);
      m = mine.x;
      sum = mine.y;
      warp_merge_lse(m, sum);
      // m + log(sum) is NaN when a NaN was carried; -inf with a sum of 0 means no visible key at all.
      if (lane == 0) row_total = m == -INFINITY && sum == 0.0f ? -INFINITY : m + logf(sum);
    }
    __syncthreads();
    total = row_total;
    for (int base = 0; total != -INFINITY && base < count; base += kThreads) {
      if (base > 0) __syncthreads();  // every warp has read the previous round's weights
      const int s = base + threadIdx.x;
      if (s < count) weight[threadIdx.x] = expf((base == 0 ? own : lse_accum[s * stride]) - total);
      __syncthreads();
      accumulate_pieces<kSplitWarps>(acc, o_accum + base * piece_step, piece_step, min(count - base, kThreads), warp,
                                     [&](int j) { return weight[j]; });
    }
  }
  const int kv = idx / p.rows, r = idx % p.rows;
  const int t = r / p.q_per_kv, h = kv * p.q_per_kv + r % p.q_per_kv;
  T* out = static_cast<T*>(p.out) + ((static_cast<int64_t>(blockIdx.x) * p.s_q + t) * p.h_q + h) * kHeadDimV +
           chunk * 128 + lane * 4;
  float* lse = p.lse + (static_cast<int64_t>(blockIdx.x) * p.h_q + h) * p.s_q + t;
  const bool leader = warp % kSplitWarps == 0;
  if (total == -INFINITY) {  // no visible key in any piece: zeros and lse +inf (the CTA agrees)
    if (leader) store4(out, make_float4(0.f, 0.f, 0.f, 0.f));
    if (leader && lane == 0 && chunk == 0) *lse = INFINITY;
    return;
  }
  __shared__ float4 partial[kWarps][32];
  partial[warp][lane] = acc;
  __syncthreads();
  if (!leader) return;
  for (int w = 1; w < kSplitWarps; ++w) fma4(acc, 1.0f, partial[warp + w][lane]);
  store4(out, acc);
  if (lane == 0 && chunk == 0) *lse = total;
}

// Launches `kernel` as a programmatic dependent of the kernel before it in the stream.
template <typename Kernel>
void launch_dependent(Kernel kernel, dim3 grid, int threads, const DecodeParams& p, cudaStream_t stream) {
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = dim3(threads);
  config.stream = stream;
  config.attrs = &attribute;
  config.numAttrs = 1;
  cuda_check(cudaLaunchKernelEx(&config, kernel, p), "combine kernel launch");
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
  } else if (p.release_pieces) {
    launch_dependent(combine_rows_kernel<T>, grid, kRowWarps * 32, p, stream);
  } else {
    combine_rows_kernel<T><<<grid, kRowWarps * 32, 0, stream>>>(p);
  }
}

// About the pieces per sequence: ceil(num_sm_parts / b) (a batch's pieces total at most b + num_sm_parts).
int64_t pieces_per_sequence(const DecodeParams& p) {
  return p.batch > 0 ? (static_cast<int64_t>(p.batch) + p.num_sm_parts - 1) / p.batch : 0;
}

// Warps per 128-channel quarter: 1 (combine_rows_kernel, a warp per row), 4 or 16 (combine_kernel).
// Tuned for speed, does not affect correctness. From ~4096 row-quarters a warp owns a row. Below, warps
// share a quarter's pieces: sixteen when a sequence has ~64 or more pieces on average (batch 1-2: a
// lane's pieces in one or two batches of loads), else four, with four quarters per CTA (batch 4-16: a
// quarter of the CTAs, which otherwise ran in ~3 waves of mostly idle warps).
int combine_split_warps(const DecodeParams& p) {
  const int64_t quarters = static_cast<int64_t>(p.h_kv) * p.rows * kChunks;
  return static_cast<int64_t>(p.batch) * quarters >= 4096 ? 1 : pieces_per_sequence(p) >= 64 ? 16 : 4;
}

}  // namespace

// Tuned for speed, does not affect correctness: the warp-per-row shape with at most 3 pieces per
// sequence. With more (b = 2..16 at 4096-16384 tokens, 4-9 pieces), waiting per sequence ran up to
// 11 % slower than a plain launch (H200, session 17).
bool combine_is_dependent(const DecodeParams& p) {
  return combine_split_warps(p) == 1 && pieces_per_sequence(p) <= 3;
}

void launch_combine(const DecodeParams& p) {
  const cudaStream_t stream = static_cast<cudaStream_t>(p.stream);
  const int split = combine_split_warps(p);
  if (p.dtype == DType::kBF16) {
    launch_split<__nv_bfloat16>(p, split, stream);
  } else {
    launch_split<__half>(p, split, stream);
  }
  cuda_check(cudaGetLastError(), "combine kernel launch");
}

}  // namespace flash_mla::detail
