// Narrow MLA decode on Hopper (h_q * s_q / h_kv <= 32 query rows): one CTA per (KV head, part).
//
// Transposed, so the rows are wgmma's N (32) instead of 64-row M tiles padded from 16 or 32 rows:
//   Sᵀ[64 tokens, 32 rows] = K·Qᵀ      36 x m64n32k16 (K tile as A, K-major; Qᵀ as B, K-major)
//   Oᵀ[512 ch, 32 rows]  += Vᵀ·Pᵀ      8 channel tiles x 4 x m64n32k16 (V as M-major A; Pᵀ as B)
// A block moves ~200 KB through shared memory instead of ~300 KB and does half the tensor work of the
// dense kernel, so memory-bound rows stay bound by HBM rather than by the CTA.
// Schedule (256 threads): producer warpgroup (one thread) issues nine 64x64 TMA copies per block into
// a 2-stage ring; the consumer warpgroup runs Q·Kᵀ, the column softmax (maxima meet in shared memory
// across the 4 warps; sums are reduced only at the end), writes Pᵀ with stmatrix.trans, zeroes V rows
// past the sequence end, and runs P·V. Registers: Oᵀ 128 fp32, Sᵀ 16 fp32 per thread; 189 KiB smem.
// Covered by tests/test_gpu.cpp (every h_q * s_q / h_kv <= 32 case of the matrix) and the benchmark check.
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "cuda/sm90/decode_common.cuh"
#include "cuda/sm90/decode_narrow/config.hpp"
#include "ptx/barrier.hpp"
#include "ptx/mbarrier.hpp"
#include "ptx/stmatrix.hpp"
#include "ptx/tma.hpp"
#include "ptx/wgmma.hpp"

namespace flash_mla::sm90::narrow {

// Qᵀ for one (sequence, KV head): query row r = t * q_per_kv + h, zero past p.rows.
template <typename T>
__device__ __forceinline__ void load_q(const DecodeParams& p, SharedStorage& s, int req, int thread) {
  constexpr int kChunksPerRow = kHeadDim * 2 / 16;  // 72
  const T* q = static_cast<const T*>(p.q);
  for (int chunk = thread; chunk < kRows * kChunksPerRow; chunk += kConsumerThreads) {
    const int r = chunk / kChunksPerRow, c = chunk % kChunksPerRow;
    int4 v = make_int4(0, 0, 0, 0);
    if (r < p.rows) {
      const int t = r / p.q_per_kv, h = blockIdx.y * p.q_per_kv + r % p.q_per_kv;
      v = __ldg(reinterpret_cast<const int4*>(q + req * p.q_batch_stride + t * p.q_seq_stride +
                                              h * p.q_head_stride + c * 8));
    }
    *reinterpret_cast<int4*>(reinterpret_cast<char*>(&s.q[c / 8]) + swizzled_offset(r, c % 8)) = v;
  }
}

// Column j of an m64n32 accumulator slot (i, e) of this thread: 8i + 2(lane % 4) + e.
__device__ __forceinline__ int column(int lane, int slot) { return 8 * (slot / 2) + 2 * (lane % 4) + slot % 2; }

// Combines per-thread column values over the 64 accumulator rows: lanes of equal lane % 4 (shuffles),
// then the 4 warps (shared memory). `op` is max or sum; every thread gets its 8 columns' results.
template <typename Op>
__device__ __forceinline__ void reduce_columns(float (&v)[kColsPerThread], SharedStorage& s, int warp, int lane, Op op) {
#pragma unroll
  for (int j = 0; j < kColsPerThread; ++j) {
#pragma unroll
    for (int o = 4; o < 32; o <<= 1) v[j] = op(v[j], __shfl_xor_sync(0xffffffffu, v[j], o));
  }
  ptx::named_barrier_sync(kColumns, kConsumerThreads);  // the previous reduction's reads are done
  if (lane < 4) {
#pragma unroll
    for (int j = 0; j < kColsPerThread; ++j) s.columns[warp][column(lane, j)] = v[j];
  }
  ptx::named_barrier_sync(kColumns, kConsumerThreads);
#pragma unroll
  for (int j = 0; j < kColsPerThread; ++j) {
    float r = s.columns[0][column(lane, j)];
#pragma unroll
    for (int w = 1; w < kConsumerWarps; ++w) r = op(r, s.columns[w][column(lane, j)]);
    v[j] = r;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads, 1)
    decode_kernel(const __grid_constant__ DecodeParams p, const __grid_constant__ CUtensorMap k_map) {
  extern __shared__ char smem_raw[];
  SharedStorage& s = *reinterpret_cast<SharedStorage*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t{1023});
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

  if (warpgroup == 1) {
    // ---------------- producer ----------------
    if (thread != 0) return;
    ptx::tma_prefetch_descriptor(&k_map);
    uint32_t it = 0;
    for_each_piece(p, [&](const Piece& pc) {
      const int32_t* table = p.block_table + static_cast<int64_t>(pc.req) * p.block_table_stride;
      for (int blk = pc.first_block(); blk < pc.end_block(); ++blk, ++it) {
        const int stage = it % kStages;
        ptx::mbarrier_wait(&s.k_free[stage], ((it / kStages) & 1) ^ 1);
        ptx::mbarrier_arrive_expect_tx(&s.k_full[stage], kKBlockBytes);
        const int32_t page = table[blk];  // page size 64: one page per block
#pragma unroll
        for (int c = 0; c < kQKSubTiles; ++c) {
          ptx::tma_load_4d(&s.k[stage][c], &k_map, &s.k_full[stage], c * kSubTileCols, blockIdx.y, 0, page);
        }
      }
    });
    return;
  }

  // ---------------- consumer ----------------
  const int warp = thread / 32, lane = thread % 32;
  const int token_row = warp * 16 + lane / 4;  // accumulator rows token_row and token_row + 8
  const float scale_log2 = p.softmax_scale * 1.4426950408889634f;
  uint32_t it = 0;
  for_each_piece(p, [&](const Piece& pc) {
    const int first = pc.first_block(), end = pc.end_block();
    if (end > first) load_q<T>(p, s, pc.req, thread);
    ptx::fence_proxy_async_shared();
    ptx::named_barrier_sync(kQReady, kConsumerThreads);

    float o[kVSubTiles][16];
#pragma unroll
    for (int mt = 0; mt < kVSubTiles; ++mt) {
#pragma unroll
      for (int i = 0; i < 16; ++i) o[mt][i] = 0.0f;
    }
    float m[kColsPerThread], l[kColsPerThread];
    int limit[kColsPerThread];  // one past the last visible token of each of this thread's columns
#pragma unroll
    for (int j = 0; j < kColsPerThread; ++j) {
      m[j] = -INFINITY;
      l[j] = 0.0f;
      const int t = column(lane, j) / p.q_per_kv;
      limit[j] = p.causal ? min(pc.token_end, pc.seqlen - p.s_q + t + 1) : pc.token_end;
    }

    for (int blk = first; blk < end; ++blk, ++it) {
      const int stage = it % kStages;
      ptx::mbarrier_wait(&s.k_full[stage], (it / kStages) & 1);
      float sc[16];
      ptx::wgmma_fence();
#pragma unroll
      for (int c = 0; c < kQKSubTiles; ++c) {
#pragma unroll
        for (int kk = 0; kk < kSubTileCols / 16; ++kk) {
          const uint64_t desc_k = ptx::make_smem_desc(reinterpret_cast<const char*>(&s.k[stage][c]) + kk * 32, 16, 1024,
                                                      ptx::Swizzle::k128B);
          const uint64_t desc_q = ptx::make_smem_desc(reinterpret_cast<const char*>(&s.q[c]) + kk * 32, 16, 1024,
                                                      ptx::Swizzle::k128B);
          ptx::wgmma_m64n32k16_ss<T>(sc, desc_k, desc_q, (c | kk) != 0);
        }
      }
      ptx::wgmma_commit_group();
      ptx::wgmma_wait_group<0>();
      ptx::fence_registers(sc);

      // Mask (select, never multiply: K rows past the end may be NaN), scale into the log2 domain.
      // Slot j = 2i + e holds column 8i + 2(lane%4) + e at sc[4i + e] (token_row) and sc[4i + 2 + e] (+8).
      const int token0 = blk * kBlockN + token_row;
      float col_max[kColsPerThread];
#pragma unroll
      for (int j = 0; j < kColsPerThread; ++j) {
        const int i = j / 2, e = j % 2;
        float& v0 = sc[4 * i + e];
        float& v1 = sc[4 * i + 2 + e];
        v0 = token0 < limit[j] ? v0 * scale_log2 : -INFINITY;
        v1 = token0 + 8 < limit[j] ? v1 * scale_log2 : -INFINITY;
        col_max[j] = fmaxf(v0, v1);
      }
      reduce_columns(col_max, s, warp, lane, [](float a, float b) { return fmaxf(a, b); });
      float alpha[kColsPerThread], m_use[kColsPerThread];
#pragma unroll
      for (int j = 0; j < kColsPerThread; ++j) {
        const float m_new = fmaxf(m[j], col_max[j]);
        m_use[j] = m_new == -INFINITY ? 0.0f : m_new;  // a fully masked column so far: keep exp2 finite
        alpha[j] = exp2f(m[j] - m_use[j]);
        m[j] = m_new;
      }
      // Pᵀ fragments: tile (g, i) holds tokens 16w + 8g + lane/4, columns 8i + 2(lane%4) + {0, 1}.
      uint32_t frag[2][4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int g = 0; g < 2; ++g) {
          const float p0 = exp2f(sc[4 * i + 2 * g] - m_use[2 * i]);
          const float p1 = exp2f(sc[4 * i + 2 * g + 1] - m_use[2 * i + 1]);
          l[2 * i] = (g == 0 ? l[2 * i] * alpha[2 * i] : l[2 * i]) + p0;
          l[2 * i + 1] = (g == 0 ? l[2 * i + 1] * alpha[2 * i + 1] : l[2 * i + 1]) + p1;
          frag[g][i] = pack2<T>(p0, p1);
        }
      }

      // V rows past the sequence end may hold NaN and 0 * NaN = NaN: zero them before P·V.
      const int valid = pc.seqlen - blk * kBlockN;
      if (valid < kBlockN) {
        const int row_chunks = (kBlockN - valid) * 8;
        for (int z = thread; z < row_chunks * kVSubTiles; z += kConsumerThreads) {
          char* tile = reinterpret_cast<char*>(&s.k[stage][z / row_chunks]);
          const int rest = z % row_chunks;
          *reinterpret_cast<int4*>(tile + (valid + rest / 8) * 128 + (rest % 8) * 16) = make_int4(0, 0, 0, 0);
        }
      }
      // Pᵀ into the [32 rows, 64 tokens] tile, transposed by stmatrix: lane 8k + r addresses row r of
      // tile k, i.e. query row 8k + r, 16-byte chunk (tokens 16w + 8g .. +7) = 2w + g, swizzled.
      {
        const int k = lane / 8, r = lane % 8, row = 8 * k + r;
#pragma unroll
        for (int g = 0; g < 2; ++g) {
          char* dst = reinterpret_cast<char*>(&s.p) + row * 128 + (((2 * warp + g) ^ r) << 4);
          ptx::stmatrix_x4_trans(dst, frag[g][0], frag[g][1], frag[g][2], frag[g][3]);
        }
      }
      ptx::fence_proxy_async_shared();
      ptx::named_barrier_sync(kPReady, kConsumerThreads);

#pragma unroll
      for (int mt = 0; mt < kVSubTiles; ++mt) {
#pragma unroll
        for (int j = 0; j < kColsPerThread; ++j) {
          o[mt][4 * (j / 2) + j % 2] *= alpha[j];
          o[mt][4 * (j / 2) + 2 + j % 2] *= alpha[j];
        }
        ptx::fence_registers(o[mt]);  // keep the rescale ahead of the wgmma fence
      }
      ptx::wgmma_fence();
#pragma unroll
      for (int mt = 0; mt < kVSubTiles; ++mt) {
#pragma unroll
        for (int kk = 0; kk < kBlockN / 16; ++kk) {
          const uint64_t desc_v = ptx::make_smem_desc(reinterpret_cast<const char*>(&s.k[stage][mt]) + kk * 16 * 128,
                                                      kSubTileBytes, 1024, ptx::Swizzle::k128B);
          const uint64_t desc_p = ptx::make_smem_desc(reinterpret_cast<const char*>(&s.p) + kk * 32, 16, 1024,
                                                      ptx::Swizzle::k128B);
          ptx::wgmma_m64n32k16_ss_ta<T>(o[mt], desc_v, desc_p, 1);
        }
      }
      ptx::wgmma_commit_group();
      ptx::wgmma_wait_group<0>();
#pragma unroll
      for (int mt = 0; mt < kVSubTiles; ++mt) ptx::fence_registers(o[mt]);
      ptx::mbarrier_arrive(&s.k_free[stage]);
    }

    // Epilogue: column sums, then this thread's channels 64mt + token_row (+8) of its 8 columns.
    reduce_columns(l, s, warp, lane, [](float a, float b) { return a + b; });
    constexpr float kLn2 = 0.6931471805599453f;
    const int kv = blockIdx.y;
#pragma unroll
    for (int j = 0; j < kColsPerThread; ++j) {
      const int r = column(lane, j);
      if (r >= p.rows) continue;
      const int t = r / p.q_per_kv, h = kv * p.q_per_kv + r % p.q_per_kv;
      const bool empty = l[j] == 0.0f;
      const float inv = empty ? 0.0f : 1.0f / l[j];
      const float lse = (m[j] + __log2f(l[j])) * kLn2;
      const int reg = 4 * (j / 2) + j % 2;
      if (pc.n_splits == 1) {
        T* out = static_cast<T*>(p.out) + ((static_cast<int64_t>(pc.req) * p.s_q + t) * p.h_q + h) * kHeadDimV +
                 token_row;
#pragma unroll
        for (int mt = 0; mt < kVSubTiles; ++mt) {
          out[mt * kSubTileCols] = static_cast<T>(o[mt][reg] * inv);
          out[mt * kSubTileCols + 8] = static_cast<T>(o[mt][reg + 2] * inv);
        }
        if (warp == 0 && lane / 4 == 0) {
          p.lse[(static_cast<int64_t>(pc.req) * p.h_q + h) * p.s_q + t] = empty ? INFINITY : lse;
        }
      } else {
        const int64_t slot = static_cast<int64_t>(p.num_splits[pc.req]) + pc.split;
        const int64_t idx = (slot * p.h_kv + kv) * p.rows + r;
        float* out = p.o_accum + idx * kHeadDimV + token_row;
#pragma unroll
        for (int mt = 0; mt < kVSubTiles; ++mt) {
          out[mt * kSubTileCols] = o[mt][reg] * inv;
          out[mt * kSubTileCols + 8] = o[mt][reg + 2] * inv;
        }
        if (warp == 0 && lane / 4 == 0) p.lse_accum[idx] = empty ? -INFINITY : lse;
      }
    }
  });
}

// Launches the kernel on p.stream (the current device is p.device). Instantiated per dtype in
// decode_bf16.cu / decode_fp16.cu.
template <typename T>
void launch_decode(const DecodeParams& p, const CUtensorMap& k_map) {
  static bool configured = [] {
    return cudaFuncSetAttribute(decode_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSharedBytes) ==
           cudaSuccess;
  }();
  (void)configured;
  const dim3 grid(1, p.h_kv, p.num_sm_parts);
  decode_kernel<T><<<grid, kThreads, kSharedBytes, static_cast<cudaStream_t>(p.stream)>>>(p, k_map);
}

}  // namespace flash_mla::sm90::narrow
