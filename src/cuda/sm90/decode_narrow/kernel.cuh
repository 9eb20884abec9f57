// Narrow MLA decode on Hopper for per-tensor FP8 caches with h_q * s_q / h_kv <= 32 query rows: one
// CTA per (KV head, schedule part), 384 threads. Transposed, so the rows are wgmma's N (32), not a
// 64-row M tile padded from 16 or 32 rows, and the e4m3 bytes never pass through shared memory as f16:
//   Sᵀ[64 tokens, 32 rows] = K·Qᵀ     36 x m64n32k16, A = K converted in registers, B = Qᵀ (f16)
//   Oᵀ[512 ch, 32 rows]  += Vᵀ·Pᵀ     8 channel tiles x 4 x m64n32k16, A = V in registers, B = Pᵀ
// WG2: one thread copies raw 64-token blocks (five 128-channel TMA boxes) into a 3-stage ring.
// WG0, WG1: alternate blocks of a piece, each on its own: Q·Kᵀ in 9 batches of 4 wgmma whose A
//   fragments (16 registers) are converted once the previous batch is done (the other consumer runs
//   meanwhile); the column softmax (maxima meet in shared memory across the warpgroup's 4 warps; sums
//   only at the end); Pᵀ by stmatrix.trans; P·V in 8 batches the same way; the stage is freed. At the piece's end WG1 hands its statistics and
//   Oᵀ to WG0 (merge_consumers), which stores. One consumer warpgroup alone measured slower than the
//   dense kernel (session 8; one warp per SM sub-partition, so probably latency-bound).
// Registers: setmaxnreg 232 / 40; Oᵀ 128 fp32, Sᵀ 16, A 16 per thread, the running max in shared
// memory; no spills. Shared memory: 120 KiB ring
// + Qᵀ 36 KiB + Pᵀ 2 x 4 KiB + merge 32 KiB.
// Tests: tests/test_gpu_fp8.cpp (per-tensor cases of up to 32 rows) and flash-mla-bench's check.
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <atomic>
#include <cstdint>

#include "core/params.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/sm90/decode_common.cuh"
#include "cuda/sm90/decode_narrow/config.hpp"
#include "ptx/barrier.hpp"
#include "ptx/compiler.hpp"
#include "ptx/math.hpp"
#include "ptx/matrix.hpp"
#include "ptx/mbarrier.hpp"
#include "ptx/tma.hpp"
#include "ptx/wgmma.hpp"

namespace flash_mla::sm90::narrow {

// Q·Kᵀ's reduction runs over the channels in an order that lets each thread read its K fragments as
// whole 16-byte chunks: in k-step ks < 32 (box b = ks / 8, kk = ks % 8), logical column jj (0..15) is
// channel 128b + 32((jj % 8) / 2) + 4kk + 2(jj / 8) + jj % 2; in k-step 32 + kk (the RoPE box),
// 512 + 16((jj % 8) / 2) + 4kk + 2(jj / 8) + jj % 2. Qᵀ is stored in the same order.
__device__ __forceinline__ int qk_run_channel(int ks, int run) {
  return ks < 32 ? 128 * (ks / 8) + 32 * run + 4 * (ks % 8) : 512 + 16 * run + 4 * (ks - 32);
}

// Qᵀ of one (sequence, KV head) as f16 in the permuted channel order, zero past p.rows. Four threads
// per row; thread `part` owns k-steps part + 4k (k < 9), whose 36 runs of 4 channels cover a quarter of
// the row, and loads all of them at once (one after another, the dense kernel's Q tile took ~10 us).
// A bf16 q row is multiplied by 2^-e, e chosen from its largest finite magnitude so that it lands in
// [2^14, 2^15) (as the dense kernel's q_to_f16_prescaled); 2^e goes to s.q_row_scale. An e4m3 q
// converts exactly (its descale is in the softmax scale).
__device__ __forceinline__ void load_q(const DecodeParams& p, SharedStorage& s, int req, int thread) {
  constexpr int kSteps = kQKSubTiles;  // 9 of the 36 k-steps, 4 runs each
  thread = ptx::opaque(thread);
  const int r = thread / 4, part = thread % 4;
  const bool valid = r < p.rows;
  const bool e4m3 = p.q_dtype == DType::kFP8E4M3;
  const int64_t offset = valid ? q_row_offset(p, req, r) : 0;
  uint2 run[kSteps][4];  // bf16: four values; e4m3: four bytes in .x
#pragma unroll
  for (int k = 0; k < kSteps; ++k) {
#pragma unroll
    for (int x = 0; x < 4; ++x) {
      const int ch = qk_run_channel(part + 4 * k, x);
      run[k][x] = make_uint2(0, 0);
      if (valid && e4m3) {
        run[k][x].x = __ldg(reinterpret_cast<const uint32_t*>(static_cast<const uint8_t*>(p.q) + offset + ch));
      } else if (valid) {
        run[k][x] = __ldg(reinterpret_cast<const uint2*>(static_cast<const __nv_bfloat16*>(p.q) + offset + ch));
      }
    }
  }
  RowPrescale scale{1.0f, 1.0f};
  if (!e4m3) {
    // Every thread of the warp reaches quad_max (its shuffles name the whole warp); rows past p.rows
    // are zeros.
    float absmax = 0.0f;
#pragma unroll
    for (int k = 0; k < kSteps; ++k) {
#pragma unroll
      for (int x = 0; x < 4; ++x) absmax = finite_absmax(finite_absmax(absmax, run[k][x].x), run[k][x].y);
    }
    scale = row_prescale(quad_max(absmax));
  }
  if (part == 0) s.q_row_scale[r] = scale.up;
#pragma unroll
  for (int k = 0; k < kSteps; ++k) {
    const int ks = part + 4 * k;
    uint32_t lo[4], hi[4];  // logical columns 2x + {0, 1} and 8 + 2x + {0, 1}
#pragma unroll
    for (int x = 0; x < 4; ++x) {
      if (e4m3) {
        lo[x] = e4m3x2_to_f16x2(run[k][x].x);
        hi[x] = e4m3x2_to_f16x2(run[k][x].x >> 16);
      } else {
        const float2 a = unpack2<__nv_bfloat16>(run[k][x].x), b = unpack2<__nv_bfloat16>(run[k][x].y);
        lo[x] = pack2<__half>(a.x * scale.down, a.y * scale.down);
        hi[x] = pack2<__half>(b.x * scale.down, b.y * scale.down);
      }
    }
    char* tile = reinterpret_cast<char*>(&s.q[ks / 4]);
    const int chunk = 2 * (ks % 4);
    *reinterpret_cast<int4*>(tile + swizzled_offset(r, chunk)) = make_int4(lo[0], lo[1], lo[2], lo[3]);
    *reinterpret_cast<int4*>(tile + swizzled_offset(r, chunk + 1)) = make_int4(hi[0], hi[1], hi[2], hi[3]);
  }
}

// The one copying thread: every block of the CTA's pieces as five 128-channel boxes per page copy.
__device__ __forceinline__ void producer(const DecodeParams& p, SharedStorage& s, const CUtensorMap& k_map) {
  ptx::tma_prefetch_descriptor(&k_map);
  const uint64_t policy = ptx::l2_policy_evict_first();
  const BlockPages pages(p.page_block_size);
  for_each_block(p, [&](const Piece& pc, const int32_t* table, int blk, uint32_t it) {
    const int stage = static_cast<int>(it % kStages);
    ptx::mbarrier_wait(&s.k_free[stage], ((it / kStages) & 1) ^ 1);
    const int copies = pages.copies(pc.seqlen - blk * kBlockN);
    ptx::mbarrier_arrive_expect_tx(&s.k_full[stage],
                                   static_cast<uint32_t>(copies * pages.rows_per_copy * kRawBoxCols * kRawBoxes));
    for (int j = 0; j < copies; ++j) {
      const BlockPages::Copy cp = pages.copy(table, blk, j);
#pragma unroll
      for (int b = 0; b < kRawBoxes; ++b) {
        ptx::tma_load_4d(&s.k[stage].box[b][cp.row * kRawBoxCols], &k_map, &s.k_full[stage], b * kRawBoxCols,
                         blockIdx.y, cp.token_in_page, cp.page, policy);
      }
    }
  });
}

// Token t's 16-byte chunk c (before the swizzle) of box b.
__device__ __forceinline__ const uint8_t* raw_chunk(const RawStage& st, int b, int t, int c) {
  return &st.box[b][t * kRawBoxCols + ((c ^ (t & 7)) << 4)];
}

__device__ __forceinline__ uint32_t word(const int4& v, int i) {
  return static_cast<uint32_t>(i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w);
}

// Sᵀ = K·Qᵀ of one block. Batch n < 8: box n / 2, the thread's chunk 2(lane % 4) + n % 2 of tokens
// 16w + lane/4 (+8): its 4 words are k-steps 8(n/2) + 4(n%2) + i, the low half of word i columns
// 2(lane%4) + {0,1}, the high half + 8. Batch 8: the RoPE box, chunk lane % 4.
__device__ __forceinline__ void score_block(float (&sc)[16], const RawStage& st, const SharedStorage& s, int warp,
                                            int lane) {
  const int t0 = 16 * warp + lane / 4, q4 = lane % 4;
  uint32_t A[16];  // one buffer: the other consumer warpgroup fills the gap while this one waits
#pragma unroll
  for (int n = 0; n < 9; ++n) {
    if (n >= 1) {
      ptx::wgmma_wait_group<0>();
      ptx::fence_registers(A);
    }
    const int box = n < 8 ? n / 2 : 4, chunk = n < 8 ? 2 * q4 + n % 2 : q4;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int4 v = *reinterpret_cast<const int4*>(raw_chunk(st, box, t0 + 8 * h, chunk));
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        A[4 * i + h] = e4m3x2_to_f16x2(word(v, i));
        A[4 * i + 2 + h] = e4m3x2_to_f16x2(word(v, i) >> 16);
      }
    }
    ptx::wgmma_fence();
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int ks = n < 8 ? 8 * (n / 2) + 4 * (n % 2) + i : 32 + i;
      const uint64_t desc_q =
          ptx::make_smem_desc(reinterpret_cast<const char*>(&s.q[ks / 4]) + (ks % 4) * 32, 16, 1024, ptx::Swizzle::k128B);
      const uint32_t(&frag)[4] = *reinterpret_cast<const uint32_t(*)[4]>(&A[4 * i]);
      ptx::wgmma_m64n32k16_rs_f16(sc, frag, desc_q, ks != 0);
    }
    ptx::wgmma_commit_group();
  }
  ptx::wgmma_wait_group<0>();
  ptx::fence_registers(A);
  ptx::fence_registers(sc);
}

// Oᵀ += Vᵀ·Pᵀ of one block. The thread owns channels 128w + 16(lane/4) + j (j < 16): j = 2mt + h is
// row lane/4 + 8h of channel tile mt. k-step kk reads tokens 16kk + 2(lane%4) + {0, 1, 8, 9} whole
// (16 bytes each, box w, chunk lane/4) and pairs their bytes per channel (prmt) into f16 pairs; batch
// 2kk + half covers channel tiles 4half..4half+3. Tokens at or past `valid` are zeroed (their rows
// may hold anything, and 0 * NaN = NaN).
__device__ __forceinline__ void pv_block(float (&o)[kVSubTiles][16], const RawStage& st, const RowTile& pt,
                                         int warp, int lane, int valid) {
  const int g = lane / 4, q4 = lane % 4;
#pragma unroll
  for (int mt = 0; mt < kVSubTiles; ++mt) ptx::fence_registers(o[mt]);  // keep the O·α rescale ahead
  uint32_t A[16];  // one buffer: the other consumer warpgroup fills the gap while this one waits
#pragma unroll
  for (int n = 0; n < 8; ++n) {
    const int kk = n / 2, half = n % 2;
    if (n >= 1) {
      ptx::wgmma_wait_group<0>();
      ptx::fence_registers(A);
    }
    uint2 v[4];  // words 2half, 2half + 1 of tokens 16kk + 2(lane%4) + {0, 1, 8, 9}
#pragma unroll
    for (int x = 0; x < 4; ++x) {
      const int t = 16 * kk + 2 * q4 + (x & 1) + 8 * (x >> 1);
      v[x] = t < valid ? reinterpret_cast<const uint2*>(raw_chunk(st, warp, t, g))[half] : make_uint2(0, 0);
    }
#pragma unroll
    for (int k = 0; k < 2; ++k) {  // word 2half + k: channels j = 4(2half + k) .. + 3
#pragma unroll
      for (int pair = 0; pair < 2; ++pair) {  // tokens (+0, +1), then (+8, +9)
        const uint32_t x = k == 0 ? v[2 * pair].x : v[2 * pair].y;
        const uint32_t y = k == 0 ? v[2 * pair + 1].x : v[2 * pair + 1].y;
        const uint32_t lo = __byte_perm(x, y, 0x5140);  // channels j, j + 1: (x, y) pairs
        const uint32_t hi = __byte_perm(x, y, 0x7362);  // channels j + 2, j + 3
        const int mt0 = 2 * k;                          // channel tile 2(2half + k) within this batch
        A[4 * mt0 + 2 * pair] = e4m3x2_to_f16x2(lo);
        A[4 * mt0 + 2 * pair + 1] = e4m3x2_to_f16x2(lo >> 16);
        A[4 * (mt0 + 1) + 2 * pair] = e4m3x2_to_f16x2(hi);
        A[4 * (mt0 + 1) + 2 * pair + 1] = e4m3x2_to_f16x2(hi >> 16);
      }
    }
    ptx::wgmma_fence();
    const uint64_t desc_p =
        ptx::make_smem_desc(reinterpret_cast<const char*>(&pt) + kk * 32, 16, 1024, ptx::Swizzle::k128B);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint32_t(&frag)[4] = *reinterpret_cast<const uint32_t(*)[4]>(&A[4 * i]);
      ptx::wgmma_m64n32k16_rs_f16(o[4 * half + i], frag, desc_p, 1);
    }
    ptx::wgmma_commit_group();
  }
  ptx::wgmma_wait_group<0>();
  ptx::fence_registers(A);
#pragma unroll
  for (int mt = 0; mt < kVSubTiles; ++mt) ptx::fence_registers(o[mt]);
}

// Column j (0..7) of this thread in an m64n32 accumulator: query row 8(j/2) + 2(lane%4) + j%2, held at
// sc[4(j/2) + j%2] (token 16w + lane/4) and sc[4(j/2) + 2 + j%2] (token + 8).
__device__ __forceinline__ int column(int lane, int j) { return 8 * (j / 2) + 2 * (lane % 4) + j % 2; }

// Combines per-thread column values over the 64 tokens: lanes of equal lane % 4 (shuffles), then the
// four warps through shared memory; every thread gets its 8 columns' results. The caller's next write
// to s.columns comes after a barrier that every warp reaches only after these reads.
template <typename Op>
__device__ __forceinline__ void reduce_columns(float (&v)[8], SharedStorage& s, int wg, int warp, int lane, Op op) {
#pragma unroll
  for (int j = 0; j < 8; ++j) {
#pragma unroll
    for (int x = 4; x < 32; x <<= 1) v[j] = op(v[j], __shfl_xor_sync(0xffffffffu, v[j], x));
  }
  if (lane < 4) {
#pragma unroll
    for (int j = 0; j < 8; ++j) s.columns[wg][warp][column(lane, j)] = v[j];
  }
  ptx::named_barrier_sync(kColumns + wg, kConsumerThreads);
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int c = column(lane, j);
    const float(&x)[kConsumerWarps][kRows] = s.columns[wg];
    v[j] = op(op(x[0][c], x[1][c]), op(x[2][c], x[3][c]));
  }
}

// Writes a finished piece: this thread's 16 channels 128w + 16(lane/4) + j of its 8 query rows, final
// output (bf16) when the sequence is not split, else the fp32 partial at the piece's slot.
__device__ __forceinline__ void store_output(const DecodeParams& p, const Piece& pc, int warp, int lane,
                                             const float (&o)[kVSubTiles][16], const float (&m)[8],
                                             const float (&l)[8], float out_scale) {
  constexpr float kLn2 = 0.6931471805599453f;
  const int kv = blockIdx.y, base = 128 * warp + 16 * (lane / 4);
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int r = column(lane, j);
    if (r >= p.rows) continue;
    const int t = r / p.q_per_kv, h = kv * p.q_per_kv + r % p.q_per_kv;
    const bool empty = l[j] == 0.0f;
    const float inv = empty ? 0.0f : out_scale / l[j];
    const float lse = (m[j] + __log2f(l[j])) * kLn2;
    const int reg = 4 * (j / 2) + j % 2;  // + 2h for row half h
    float v[16];
#pragma unroll
    for (int c = 0; c < 16; ++c) v[c] = o[c / 2][reg + 2 * (c % 2)] * inv;
    if (pc.n_splits == 1) {
      __nv_bfloat16* out = static_cast<__nv_bfloat16*>(p.out) +
                           ((static_cast<int64_t>(pc.req) * p.s_q + t) * p.h_q + h) * kHeadDimV + base;
      // 8-byte stores: validation guarantees out 8-byte alignment, not 16.
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        reinterpret_cast<uint2*>(out)[c] =
            make_uint2(pack2<__nv_bfloat16>(v[4 * c], v[4 * c + 1]), pack2<__nv_bfloat16>(v[4 * c + 2], v[4 * c + 3]));
      }
      if (warp == 0 && lane < 4) p.lse[(static_cast<int64_t>(pc.req) * p.h_q + h) * p.s_q + t] = empty ? INFINITY : lse;
    } else {
      const int64_t slot = static_cast<int64_t>(p.num_splits[pc.req]) + pc.split;
      const int64_t idx = (slot * p.h_kv + kv) * p.rows + r;
      float4* out = reinterpret_cast<float4*>(p.o_accum + idx * kHeadDimV + base);
#pragma unroll
      for (int c = 0; c < 4; ++c) out[c] = make_float4(v[4 * c], v[4 * c + 1], v[4 * c + 2], v[4 * c + 3]);
      if (warp == 0 && lane < 4) p.lse_accum[idx] = empty ? -INFINITY : lse;
    }
  }
}

// Consumer 1 hands its column statistics and Oᵀ (in two halves of four channel tiles) to consumer 0,
// which rescales both to the larger max and adds them (the split-KV merge, inside the CTA).
__device__ __forceinline__ void merge_consumers(SharedStorage& s, int wg, int thread, int lane, float (&o)[kVSubTiles][16],
                                                float (&m)[8], float (&l)[8]) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    if (wg == 1) {
      if (half == 0 && thread < 4) {
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          s.merge_m[column(lane, j)] = m[j];
          s.merge_l[column(lane, j)] = l[j];
        }
      }
#pragma unroll
      for (int mt = 0; mt < 4; ++mt) {
#pragma unroll
        for (int i = 0; i < 16; i += 4) {
          *reinterpret_cast<float4*>(&s.merge_o[mt][thread][i]) =
              make_float4(o[4 * half + mt][i], o[4 * half + mt][i + 1], o[4 * half + mt][i + 2], o[4 * half + mt][i + 3]);
        }
      }
    }
    ptx::named_barrier_sync(kMerge, kConsumers * kConsumerThreads);
    if (wg == 0) {
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        // Both sides rescaled to the larger max (m and l of consumer 0 change after the second half).
        const float m1 = s.merge_m[column(lane, j)];
        const float mx = fmaxf(m[j], m1);
        const float mu = mx == -INFINITY ? 0.0f : mx;
        const float a0 = ptx::exp2_ftz(m[j] - mu), a1 = ptx::exp2_ftz(m1 - mu);
#pragma unroll
        for (int mt = 0; mt < 4; ++mt) {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int i = 4 * (j / 2) + 2 * h + j % 2;
            o[4 * half + mt][i] = o[4 * half + mt][i] * a0 + s.merge_o[mt][thread][i] * a1;
          }
        }
        if (half == 1) {
          l[j] = l[j] * a0 + s.merge_l[column(lane, j)] * a1;
          m[j] = mx;
        }
      }
    }
    ptx::named_barrier_sync(kMerge, kConsumers * kConsumerThreads);
  }
}

__global__ void __launch_bounds__(kThreads, 1)
    decode_kernel(const __grid_constant__ DecodeParams p, const __grid_constant__ CUtensorMap k_map) {
  extern __shared__ char smem_raw[];
  const uint32_t misalign = static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw)) & 1023;
  SharedStorage& s = *reinterpret_cast<SharedStorage*>(smem_raw + ((1024 - misalign) & 1023));
  const int warpgroup = threadIdx.x / kWarpgroupThreads;
  const int thread = threadIdx.x % kWarpgroupThreads;
  if (threadIdx.x == 0) {
    for (int st = 0; st < kStages; ++st) {
      ptx::mbarrier_init(&s.k_full[st], 1);
      ptx::mbarrier_init(&s.k_free[st], kConsumerThreads);
    }
    ptx::fence_barrier_init();
  }
  __syncthreads();

  if (warpgroup == kConsumers) {
    ptx::setmaxnreg_dec<kProducerRegs>();
    if (thread == 0) producer(p, s, k_map);
    return;
  }
  ptx::setmaxnreg_inc<kConsumerRegs>();

  const int wg = warpgroup, warp = thread / 32, lane = thread % 32;
  // The per-tensor descales multiply every score (q·k) and every output channel (v); read where used,
  // so that nothing but the blocks' state stays in registers across a piece.
  auto descale = [&](const float* d) { return d != nullptr ? *d : 1.0f; };
  constexpr uint32_t kBoth = kConsumers * kConsumerThreads;
  uint32_t it = 0;
  for_each_piece(p, [&](const Piece& pc) {
    const int first = pc.first_block(), end = pc.end_block();
    if (wg == 0 && end > first) load_q(p, s, pc.req, thread);
    ptx::fence_proxy_async_shared();
    ptx::named_barrier_sync(kQReady, kBoth);
    // Per query row: the score scale and the causal limit, in shared memory (registers are short).
    if (wg == 0 && thread < kRows) {
      s.col_scale[thread] = p.softmax_scale * 1.4426950408889634f * descale(p.descale_q) * descale(p.descale_k) *
                            s.q_row_scale[thread];
      const int t = thread / p.q_per_kv;
      s.col_limit[thread] = p.causal ? min(pc.token_end, pc.seqlen - p.s_q + t + 1) : pc.token_end;
    }
    // The running column max lives in shared memory (col_max[wg][n % 2] before the consumer's n-th
    // block of the piece, written by warp 0 after the block's reduction; registers are short).
    if (thread < kRows) s.col_max[wg][0][thread] = -INFINITY;
    ptx::named_barrier_sync(kQReady, kBoth);
    float l[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) l[j] = 0.0f;
    int mine = 0;  // blocks of the piece this consumer has finished
    float o[kVSubTiles][16];
#pragma unroll
    for (int mt = 0; mt < kVSubTiles; ++mt) {
#pragma unroll
      for (int i = 0; i < 16; ++i) o[mt][i] = 0.0f;
    }

    for (int blk = first; blk < end; ++blk, ++it) {
      if ((blk - first) % kConsumers != wg) continue;  // the other consumer's block
      const int stage = static_cast<int>(it % kStages);
      // The stage's previous block (it - 3) was the other consumer's: wait until it freed it, or a
      // k_full phase still in flight for that block would pass the parity test below (TMA completions
      // are not ordered); the producer waited for the same phase before copying, so this is free.
      ptx::mbarrier_wait(&s.k_free[stage], ((it / kStages) & 1) ^ 1);
      ptx::mbarrier_wait(&s.k_full[stage], (it / kStages) & 1);
      float sc[16];
      score_block(sc, s.k[stage], s, warp, lane);

      // Mask (select, never multiply: rows past the end may be NaN) and scale into the log2 domain.
      const int token0 = blk * kBlockN + 16 * warp + lane / 4;
      float col_max[8];
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        float& v0 = sc[4 * (j / 2) + j % 2];
        float& v1 = sc[4 * (j / 2) + 2 + j % 2];
        const int limit = s.col_limit[column(lane, j)];
        const float scale = s.col_scale[column(lane, j)];
        v0 = token0 < limit ? v0 * scale : -INFINITY;
        v1 = token0 + 8 < limit ? v1 * scale : -INFINITY;
        col_max[j] = fmaxf(v0, v1);
      }
      reduce_columns(col_max, s, wg, warp, lane, [](float a, float b) { return fmaxf(a, b); });
      float alpha[8], m_use[8];
      bool rescale = false;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const float m = s.col_max[wg][mine & 1][column(lane, j)];
        const float m_new = col_max[j] > m + kMaxLag ? col_max[j] : m;  // decode_common.cuh: P < 2^8
        m_use[j] = m_new == -INFINITY ? 0.0f : m_new;  // a fully masked column so far: keep exp2 finite
        alpha[j] = ptx::exp2_ftz(m - m_use[j]);
        rescale |= alpha[j] != 1.0f;
        l[j] *= alpha[j];
        // The other buffer: every warp still reads this one until the block's kPReady, after this write.
        if (warp == 0 && lane < 4) s.col_max[wg][(mine & 1) ^ 1][column(lane, j)] = m_new;
      }
      // Pᵀ fragments: frag[h][i] holds tokens 16w + 8h + lane/4, columns 8i + 2(lane%4) + {0, 1}.
      uint32_t frag[2][4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const float p0 = ptx::exp2_ftz(sc[4 * i + 2 * h] - m_use[2 * i]);
          const float p1 = ptx::exp2_ftz(sc[4 * i + 2 * h + 1] - m_use[2 * i + 1]);
          l[2 * i] += p0;
          l[2 * i + 1] += p1;
          frag[h][i] = pack2<__half>(p0, p1);
        }
      }
      // Transposed into the [32 rows, 64 tokens] tile: lane 8k + r addresses query row 8k + r = lane,
      // chunk (tokens 16w + 8h ..) 2w + h, swizzled.
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        char* dst = reinterpret_cast<char*>(&s.p[wg]) + lane * 128 + (((2 * warp + h) ^ (lane & 7)) << 4);
        ptx::stmatrix_x4_trans(dst, frag[h]);
      }
      ptx::fence_proxy_async_shared();
      ptx::named_barrier_sync(kPReady + wg, kConsumerThreads);
      if (rescale) {
#pragma unroll
        for (int mt = 0; mt < kVSubTiles; ++mt) {
#pragma unroll
          for (int j = 0; j < 8; ++j) {
            o[mt][4 * (j / 2) + j % 2] *= alpha[j];
            o[mt][4 * (j / 2) + 2 + j % 2] *= alpha[j];
          }
        }
      }
      pv_block(o, s.k[stage], s.p[wg], warp, lane, pc.seqlen - blk * kBlockN);
      ptx::mbarrier_arrive(&s.k_free[stage]);
      ++mine;
    }
    reduce_columns(l, s, wg, warp, lane, [](float a, float b) { return a + b; });
    float m[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) m[j] = s.col_max[wg][mine & 1][column(lane, j)];
    merge_consumers(s, wg, thread, lane, o, m, l);
    if (wg == 0) store_output(p, pc, warp, lane, o, m, l, descale(p.descale_k));
  });
}

// Launches the kernel on p.stream (the current device is p.device).
void launch_decode(const DecodeParams& p, const CUtensorMap& k_map) {
  static std::atomic<uint64_t> configured{0};
  const uint64_t bit = p.device.index < 64 ? uint64_t{1} << p.device.index : 0;
  if ((configured.load(std::memory_order_acquire) & bit) == 0) {
    detail::cuda_check(cudaFuncSetAttribute(decode_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSharedBytes),
                       "cudaFuncSetAttribute (narrow decode kernel shared memory)");
    configured.fetch_or(bit, std::memory_order_acq_rel);
  }
  const dim3 grid(1, p.h_kv, p.num_sm_parts);
  decode_kernel<<<grid, kThreads, kSharedBytes, static_cast<cudaStream_t>(p.stream)>>>(p, k_map);
}

}  // namespace flash_mla::sm90::narrow
