// MLA decode on Hopper, bf16/fp16 caches and (dequantised to bf16 by the producer) the two FP8
// layouts: one CTA per (64-row query tile, KV head, schedule part).
//
// Warpgroups (384 threads): producer WG2 fills a 2-stage ring of 64-token blocks (tma_producer: TMA
// copies, 9 per page of the block, one warp; the seesaw, one warp per stage; pages under kMinTmaPage
// tokens: gather_producer, all of WG2 with cp.async; FP8 caches: fp8_producer, all of WG2 through
// registers), signalling a stage's full barrier (seesaw: each of its three release groups');
// consumers WG0 and WG1, each owning 256 of the 512 output columns (O half = 128 fp32 registers). Q is loaded per piece by both consumers with
// cp.async (all copies in flight) and stays for the piece. A piece of a split sequence writes fp32
// partial O and lse; an unsplit one writes out and lse.
//
// Serial schedule (the default): WG0 computes S and the softmax of every block, writes P to sP,
// O[:, 0:256] += P·V; WG1 waits for P (kPReady) and does O[:, 256:512]. Its P·V of block j overlaps
// WG0's Q·Kᵀ and softmax of j + 1; the TMA of j + 2 both. Stages alternate block by block.
//
// Seesaw schedule (FLASH_MLA_SM90_SEESAW=1; not yet measured against serial). Blocks of a piece go in
// pairs (a, b = a + 1), a always in stage 0 and b in stage 1 (a piece with an odd block count ends
// with a pair without b). WG0 scores a, WG1 scores b; each folds its own block into its 256 columns
// first, with P from registers, and the other's second, with P through shared memory:
//
//   WG0  [Q·K(a)ᵀ][max→stats_a][exp][O_L·α_a + P_a·V_L(a)] ‖ wait stats_b, P_a·α_b→sP
//                                              wait P_b [O_L·α_b + P_b·V_L(b)]
//   WG1  [Q·K(b)ᵀ] wait stats_a [max→stats_b][exp, P_b→stage 1 RoPE][O_R·α_aα_b + P_b·V_R(b)]
//                                              wait P_a·α_b [O_R + (P_a·α_b)·V_R(a)]
//
// so O_L = (O_L·α_a + P_a·V_L(a))·α_b + P_b·V_L(b) and O_R = O_R·α_aα_b + P_b·V_R(b) + (P_a·α_b)·V_R(a):
// both halves end on the same reference max (FlashMLA's published schedule). Each stage is released
// in three groups as its readers finish (config.hpp, Group): RoPE, V left and V right, so the producer
// (one TMA warp per stage) refills part of a stage while the pair is still running, and the next
// Q·Kᵀ on a stage reads the groups in the order they were freed.
//
// Shared memory: Q 72 KiB + 2 x 72 KiB stages + sP 8 KiB + row stats and barriers, padded to 1 KiB
// (SubTile's alignment) = 226 KiB, + 1 KiB for the base alignment: exactly the 227 KiB limit.
// Registers: setmaxnreg 232 (consumers) / 40 (producer), FP8 200 / 104 (2 · consumer + producer must
// stay ≤ 504); O half 128 + S 32 fp32 in each consumer, no spills (ptxas -v).
// Covered by tests/test_gpu.cpp (GPU decode vs the float64 reference, every page size),
// tests/test_gpu_fp8.cpp (both FP8 layouts, the L2 prefetch), the GPU fuzzer (tests/test_gpu_fuzz.cpp,
// serial and seesaw, FP8 included), `scripts/gpu_check.sh seesaw-tests` (every GPU test on the
// seesaw), tools/seesaw_model.py (the seesaw's hand-offs) and flash-mla-bench's check.
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <atomic>
#include <cstdint>

#include "core/params.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/sm90/decode_common.cuh"
#include "cuda/sm90/decode_dense/config.hpp"
#include "ptx/barrier.hpp"
#include "ptx/compiler.hpp"
#include "ptx/cp_async.hpp"
#include "ptx/prefetch.hpp"
#include "ptx/mbarrier.hpp"
#include "ptx/timer.hpp"
#include "ptx/tma.hpp"
#include "ptx/wgmma.hpp"

namespace flash_mla::sm90::dense {

// Phase timestamps of every CTA for timeline studies, compiled in only with -DFLASH_MLA_TRACE (never
// in a release build): slot 0 kernel entry, 1 first Q tile ready, 2 + j block j's K landed (j < 40),
// 45 + i piece i stored (i < 8), 63 exit; %globaltimer nanoseconds, written by consumer 0's thread 0.
#if defined(FLASH_MLA_TRACE)
inline constexpr int kTraceSlots = 64;
inline constexpr int kTraceCtas = 4096;
static __device__ unsigned long long g_trace[kTraceCtas][kTraceSlots];
__device__ __forceinline__ void trace(int slot) {
  const int cta = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  if (cta < kTraceCtas && slot < kTraceSlots) g_trace[cta][slot] = ptx::global_timer_ns();
}
#define FLASH_MLA_TRACE_AT(slot) \
  do {                           \
    if (threadIdx.x == 0) trace(slot); \
  } while (0)
// Consumer phase timestamps (clock64, SM cycles): [cta][warpgroup][iteration][event], where an
// iteration is a block (serial) or a pair (seesaw) of the CTA, and the events are the hand-off points
// marked with FLASH_MLA_PHASE_AT in serial_piece and seesaw_pair_0/1. Thread 0 of each consumer writes.
inline constexpr int kPhaseCtas = 264;
inline constexpr int kPhaseIters = 24;
inline constexpr int kPhaseEvents = 16;
static __device__ long long g_phase[kPhaseCtas][2][kPhaseIters][kPhaseEvents];
__device__ __forceinline__ void phase(int wg, int iter, int event) {
  const int cta = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  if (cta < kPhaseCtas && iter < kPhaseIters) g_phase[cta][wg][iter][event] = clock64();
}
#define FLASH_MLA_PHASE_AT(wg, iter, event) \
  do {                                      \
    if (thread == 0) phase(wg, iter, event); \
  } while (0)
#else
#define FLASH_MLA_TRACE_AT(slot) \
  do {                           \
  } while (0)
#define FLASH_MLA_PHASE_AT(wg, iter, event) \
  do {                                      \
  } while (0)
#endif

// The query rows of one (sequence, KV head, 64-row tile), zero-filled past `rows`, into the swizzled
// Q sub-tiles. Row r of the tile is global row m0 + r = t * q_per_kv + h_in_group. All 18 copies of a
// thread are in flight together (cp.async): loaded one after another, the tile took ~10 us.
// `thread` goes through ptx::opaque: otherwise the compiler hoists the 18 swizzled destination
// addresses out of the piece loop and holds them in registers across every block (ptxas then spilled
// the seesaw consumers at the 168-register cap).
template <typename T>
__device__ __forceinline__ void load_q(const DecodeParams& p, SharedStorage& s, int req, int thread) {
  constexpr int kChunksPerRow = kHeadDim * 2 / 16;  // 72
  thread = ptx::opaque(thread);
  const int m0 = blockIdx.x * kBlockM;
  const T* q = static_cast<const T*>(p.q);
#pragma unroll 6
  for (int chunk = thread; chunk < kBlockM * kChunksPerRow; chunk += kConsumerThreads) {
    const int r = chunk / kChunksPerRow, c = chunk % kChunksPerRow;
    const int gr = m0 + r;
    const T* src = q;
    if (gr < p.rows) {
      const int t = gr / p.q_per_kv, h = blockIdx.y * p.q_per_kv + gr % p.q_per_kv;
      src = q + req * p.q_batch_stride + t * p.q_seq_stride + h * p.q_head_stride + c * 8;
    }
    ptx::cp_async_16_zfill(reinterpret_cast<char*>(&s.q[c / 8]) + swizzled_offset(r, c % 8), src,
                           gr < p.rows ? 16 : 0);
  }
  ptx::cp_async_commit();
  ptx::cp_async_wait<0>();
}

// Query rows this thread owns in wgmma accumulator layouts: warp w holds rows 16w..16w+15; lane l
// holds rows 16w + l/4 and 16w + l/4 + 8, columns 8i + 2(l%4) + {0, 1} of every 8-column chunk i.
struct RowPair {
  int row[2];
  int col;  // 2 * (lane % 4)
  __device__ explicit RowPair(int thread) {
    const int warp = thread / 32, lane = thread % 32;
    row[0] = warp * 16 + lane / 4;
    row[1] = row[0] + 8;
    col = 2 * (lane % 4);
  }
};

// Writes this warpgroup's 256 columns of a finished piece: the final output when the sequence is not
// split, else the fp32 partial at the piece's slot. m is the row max in the log2 domain, l the row sum.
template <typename T>
__device__ __forceinline__ void store_output(const DecodeParams& p, const Piece& pc, const RowPair& rp, int half,
                                             const float (&o)[128], const float (&m)[2], const float (&l)[2],
                                             bool write_lse, float out_scale) {
  constexpr float kLn2 = 0.6931471805599453f;
  const int m0 = blockIdx.x * kBlockM, kv = blockIdx.y;
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    const int gr = m0 + rp.row[k];
    if (gr >= p.rows) continue;
    const int t = gr / p.q_per_kv, h = kv * p.q_per_kv + gr % p.q_per_kv;
    const bool empty = l[k] == 0.0f;
    const float inv = empty ? 0.0f : out_scale / l[k];
    const float lse = (m[k] + __log2f(l[k])) * kLn2;
    if (pc.n_splits == 1) {
      T* out = static_cast<T*>(p.out) + ((static_cast<int64_t>(pc.req) * p.s_q + t) * p.h_q + h) * kHeadDimV +
               half * (kHeadDimV / 2) + rp.col;
#pragma unroll
      for (int i = 0; i < 32; ++i) {
        *reinterpret_cast<uint32_t*>(out + 8 * i) = pack2<T>(o[4 * i + 2 * k] * inv, o[4 * i + 2 * k + 1] * inv);
      }
      if (write_lse) p.lse[(static_cast<int64_t>(pc.req) * p.h_q + h) * p.s_q + t] = empty ? INFINITY : lse;
    } else {
      const int64_t slot = static_cast<int64_t>(p.num_splits[pc.req]) + pc.split;
      const int64_t idx = (slot * p.h_kv + kv) * p.rows + gr;
      float* out = p.o_accum + idx * kHeadDimV + half * (kHeadDimV / 2) + rp.col;
#pragma unroll
      for (int i = 0; i < 32; ++i) {
        *reinterpret_cast<float2*>(out + 8 * i) = make_float2(o[4 * i + 2 * k] * inv, o[4 * i + 2 * k + 1] * inv);
      }
      if (write_lse) p.lse_accum[idx] = empty ? -INFINITY : lse;
    }
  }
}

// Last visible token + 1 of each of this thread's rows: the piece's end, and the causal limit.
__device__ __forceinline__ void visible_limits(const DecodeParams& p, const Piece& pc, const RowPair& rp,
                                               int (&limit)[2]) {
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    const int gr = blockIdx.x * kBlockM + rp.row[k];
    const int t = gr / p.q_per_kv;
    limit[k] = p.causal ? min(pc.token_end, pc.seqlen - p.s_q + t + 1) : pc.token_end;
  }
}

// Masks S of block `blk` and scales it into the log2 domain: scores past the piece end or the causal
// limit are selected to -inf, never multiplied (masked K rows may hold NaN). row_max: quad-reduced row
// maxima.
__device__ __forceinline__ void mask_scores(float (&sc)[32], float (&row_max)[2], int blk, const RowPair& rp,
                                            const int (&limit)[2], float scale_log2) {
  const int token0 = blk * kBlockN + rp.col;
  row_max[0] = row_max[1] = -INFINITY;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int k = e / 2;
      const int token = token0 + 8 * i + (e & 1);
      float& v = sc[4 * i + e];
      v = token < limit[k] ? v * scale_log2 : -INFINITY;
      row_max[k] = fmaxf(row_max[k], v);
    }
  }
  row_max[0] = quad_max(row_max[0]);
  row_max[1] = quad_max(row_max[1]);
}

// The wgmma m64n64k16 of Q·Kᵀ for k-step kk of sub-tile c of `stage` (both operands K-major).
template <typename T>
__device__ __forceinline__ void qk_step(float (&sc)[32], const SharedStorage& s, int stage, int c, int kk,
                                        int scale_d) {
  const uint64_t desc_q =
      ptx::make_smem_desc(reinterpret_cast<const char*>(&s.q[c]) + kk * 32, 16, 1024, ptx::Swizzle::k128B);
  const uint64_t desc_k =
      ptx::make_smem_desc(reinterpret_cast<const char*>(&s.k[stage][c]) + kk * 32, 16, 1024, ptx::Swizzle::k128B);
  ptx::wgmma_m64n64k16_ss<T>(sc, desc_q, desc_k, scale_d);
}

// S = Q·Kᵀ of the block in `stage` (36 wgmma m64n64k16, both operands in shared memory), masked
// (mask_scores).
template <typename T>
__device__ __forceinline__ void score_block(float (&sc)[32], float (&row_max)[2], const SharedStorage& s, int stage,
                                            int blk, const RowPair& rp, const int (&limit)[2], float scale_log2) {
  ptx::wgmma_fence();
#pragma unroll
  for (int c = 0; c < kQKSubTiles; ++c) {
#pragma unroll
    for (int kk = 0; kk < kSubTileCols / 16; ++kk) qk_step<T>(sc, s, stage, c, kk, (c | kk) != 0);
  }
  ptx::wgmma_commit_group();
  ptx::wgmma_wait_group<0>();
  ptx::fence_registers(sc);
  mask_scores(sc, row_max, blk, rp, limit, scale_log2);
}

// The running max after a block whose row maxima are row_max: m becomes the new max, m_use the
// exponent base (0 for a row masked so far, which keeps exp2 finite), alpha the rescale of what was
// accumulated before the block.
__device__ __forceinline__ void advance_max(float (&m)[2], const float (&row_max)[2], float (&m_use)[2],
                                            float (&alpha)[2]) {
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    const float m_new = fmaxf(m[k], row_max[k]);
    m_use[k] = m_new == -INFINITY ? 0.0f : m_new;
    alpha[k] = exp2f(m[k] - m_use[k]);
    m[k] = m_new;
  }
}

// P = exp2(S - m_use), packed to 16 bits for P·V; adds this thread's part of each row sum to l.
// packed[2i + k] holds row k's columns 8i + col, + 1: for k-step kk, packed[4kk .. 4kk + 3] is the k16
// A fragment of a register-operand wgmma (the accumulator layout is the fragment layout).
template <typename T>
__device__ __forceinline__ void exponentiate(const float (&sc)[32], const float (&m_use)[2], float (&l)[2],
                                             uint32_t (&packed)[16]) {
#pragma unroll
  for (int i = 0; i < 8; ++i) {
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const float p0 = exp2f(sc[4 * i + 2 * k] - m_use[k]);
      const float p1 = exp2f(sc[4 * i + 2 * k + 1] - m_use[k]);
      l[k] += p0 + p1;
      packed[2 * i + k] = pack2<T>(p0, p1);
    }
  }
}

// Visits the 32-bit words of a [64 rows, 64 tokens] tile in the K-major swizzle wgmma reads as A that
// hold this thread's P fragments: fn(word, i) for packed index i (exponentiate's layout; row i % 2).
template <typename Fn>
__device__ __forceinline__ void for_each_p_word(SubTile& tile, const RowPair& rp, Fn&& fn) {
  char* sp = reinterpret_cast<char*>(&tile);
#pragma unroll
  for (int i = 0; i < 8; ++i) {
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      fn(*reinterpret_cast<uint32_t*>(sp + swizzled_offset(rp.row[k], i) + rp.col * 2), 2 * i + k);
    }
  }
}

// This thread's P fragments into the tile.
__device__ __forceinline__ void store_p(SubTile& tile, const RowPair& rp, const uint32_t (&packed)[16]) {
  for_each_p_word(tile, rp, [&](uint32_t& word, int i) { word = packed[i]; });
}

// Multiplies the P fragments this thread stored with store_p by its rows' factors, in place.
template <typename T>
__device__ __forceinline__ void rescale_p(SubTile& tile, const RowPair& rp, const float (&factor)[2]) {
  for_each_p_word(tile, rp, [&](uint32_t& word, int i) {
    const float2 v = unpack2<T>(word);
    word = pack2<T>(v.x * factor[i % 2], v.y * factor[i % 2]);
  });
}

// V rows past the sequence end may hold NaN and 0 * NaN = NaN: zeroes them in the stage (sub-tiles
// first .. first + count - 1, all of V by default) before any P·V reads it. The trip count is
// warpgroup-uniform (the store is predicated), so every warp leaves the loop converged before the
// barrier or wgmma that follows.
__device__ __forceinline__ void zero_v_tail(SharedStorage& s, int stage, int valid, int thread, int first = 0,
                                            int count = kVSubTiles) {
  if (valid >= kBlockN) return;
  const int rows = kBlockN - valid, zero_chunks = rows * 8 * count;
  for (int z0 = 0; z0 < zero_chunks; z0 += kWarpgroupThreads) {
    const int z = z0 + thread;
    if (z < zero_chunks) {
      const int c = first + z / (rows * 8), rest = z % (rows * 8);
      char* tile = reinterpret_cast<char*>(&s.k[stage][c]);
      *reinterpret_cast<int4*>(tile + (valid + rest / 8) * 128 + (rest % 8) * 16) = make_int4(0, 0, 0, 0);
    }
  }
}

__device__ __forceinline__ void rescale_rows(float (&o)[128], const float (&alpha)[2]) {
#pragma unroll
  for (int i = 0; i < 32; ++i) {
    o[4 * i + 0] *= alpha[0];
    o[4 * i + 1] *= alpha[0];
    o[4 * i + 2] *= alpha[1];
    o[4 * i + 3] *= alpha[1];
  }
}

// Issues O[:, 256·half ..] += P·V of the block in `stage` (4 wgmma m64n256k16, one commit group) and
// returns without waiting: P from `p_tile` (A, K-major), V = the stage's first 512 channels read
// N-major (B, imm-trans-b) with 8 KiB between 64-channel tiles.
template <typename T>
__device__ __forceinline__ void pv_issue(float (&o)[128], const SubTile& p_tile, const SharedStorage& s, int stage,
                                         int half) {
  // The caller's rescale of o must land before the fence: otherwise the compiler sinks the multiplies
  // past it and ptxas injects a warpgroup.arrive of its own (C7519).
  ptx::fence_registers(o);
  ptx::wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < kBlockN / 16; ++kk) {
    const uint64_t desc_p =
        ptx::make_smem_desc(reinterpret_cast<const char*>(&p_tile) + kk * 32, 16, 1024, ptx::Swizzle::k128B);
    const uint64_t desc_v = ptx::make_smem_desc(
        reinterpret_cast<const char*>(&s.k[stage][half * kVSubTilesPerWarpgroup]) + kk * 16 * 128, kSubTileBytes,
        1024, ptx::Swizzle::k128B);
    ptx::wgmma_m64n256k16_ss_tn<T>(o, desc_p, desc_v, 1);
  }
  ptx::wgmma_commit_group();
}

__device__ __forceinline__ void pv_wait(float (&o)[128]) {
  ptx::wgmma_wait_group<0>();
  ptx::fence_registers(o);
}

template <typename T>
__device__ __forceinline__ void pv_gemm(float (&o)[128], const SubTile& p_tile, const SharedStorage& s, int stage,
                                        int half) {
  pv_issue<T>(o, p_tile, s, stage, half);
  pv_wait(o);
}

// Issues O[:, 256·half ..] += P·V with P from registers (packed, exponentiate's layout): 4 wgmma
// m64n256k16 with A in registers, one commit group; packed must stay unchanged until pv_wait.
template <typename T>
__device__ __forceinline__ void pv_issue_rs(float (&o)[128], const uint32_t (&packed)[16], const SharedStorage& s,
                                            int stage, int half) {
  ptx::fence_registers(o);
  ptx::wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < kBlockN / 16; ++kk) {
    const uint32_t a[4] = {packed[4 * kk], packed[4 * kk + 1], packed[4 * kk + 2], packed[4 * kk + 3]};
    const uint64_t desc_v = ptx::make_smem_desc(
        reinterpret_cast<const char*>(&s.k[stage][half * kVSubTilesPerWarpgroup]) + kk * 16 * 128, kSubTileBytes,
        1024, ptx::Swizzle::k128B);
    ptx::wgmma_m64n256k16_rs_tn<T>(o, a, desc_v, 1);
  }
  ptx::wgmma_commit_group();
}

// Whether the producer gathers this call's pages (gather_producer) rather than copying them by TMA.
__device__ __forceinline__ bool gathers_pages(const DecodeParams& p) { return p.page_block_size < kMinTmaPage; }

// The stage of each block and the parity of that stage's use, as producers and consumers agree. Serial:
// blocks alternate stages through the CTA's whole stream. Seesaw: every piece starts its pairs on stage
// 0 (block a) and stage 1 (block b), and each stage counts its own uses.
template <Schedule kSched>
struct StageRing {
  uint32_t uses0 = 0, uses1 = 0;
  struct Slot {
    int stage;
    uint32_t parity;
  };
  __device__ Slot next(const Piece& pc, int blk, uint32_t it) {
    if constexpr (kSched == Schedule::kSerial) {
      return {static_cast<int>(it % kStages), (it / kStages) & 1};
    } else {
      const int stage = (blk - pc.first_block()) & 1;
      const uint32_t uses = stage == 0 ? uses0++ : uses1++;
      return {stage, uses & 1};
    }
  }
};

// Waits until the consumers have freed `stage` for its use with `parity` (seesaw: every release group,
// in release order).
template <Schedule kSched>
__device__ __forceinline__ void wait_stage_free(SharedStorage& s, int stage, uint32_t parity) {
  if constexpr (kSched == Schedule::kSerial) {
    ptx::mbarrier_wait(&s.k_free[stage], parity ^ 1);
  } else {
#pragma unroll
    for (int i = 0; i < kGroups; ++i) ptx::mbarrier_wait(&s.g_free[stage][release_order(stage, i)], parity ^ 1);
  }
}

// Whether wait_stage_free would return at once.
template <Schedule kSched>
__device__ __forceinline__ bool stage_is_free(SharedStorage& s, int stage, uint32_t parity) {
  if constexpr (kSched == Schedule::kSerial) {
    return ptx::mbarrier_test(&s.k_free[stage], parity ^ 1);
  } else {
    bool free = true;
#pragma unroll
    for (int g = 0; g < kGroups; ++g) free = free && ptx::mbarrier_test(&s.g_free[stage][g], parity ^ 1);
    return free;
  }
}

// One producer thread's arrival on `stage`'s full barrier (seesaw: on each release group's): the
// gather and FP8 producers, 128 arrivals per barrier.
template <Schedule kSched>
__device__ __forceinline__ void arrive_stage_full(SharedStorage& s, int stage) {
  if constexpr (kSched == Schedule::kSerial) {
    ptx::mbarrier_arrive(&s.k_full[stage]);
  } else {
#pragma unroll
    for (int g = 0; g < kGroups; ++g) ptx::mbarrier_arrive(&s.g_full[stage][g]);
  }
}

// The producer for pages of fewer than kMinTmaPage tokens: the whole producer warpgroup gathers each
// 64-token block with 16-byte cp.async copies straight into the swizzled sub-tiles. Thread t serves
// rows t/8 + 16i (i < 4) and chunks t%8 + 8k (k < 9, one per sub-tile): a warp copies 128 contiguous
// bytes of each of four rows per instruction, and a thread's four table reads and 36 copies are
// independent, so they are all in flight together. Tokens past the sequence end and pages outside
// the pool are zero-filled. A block's copies are one cp.async group per thread; a thread signals the
// stage's full barrier(s) (one of 128 arrivals) once its group of the previous block has landed, after
// a proxy fence: wgmma reads what the generic proxy wrote. It never waits for a stage still holding
// the previous block's signal: in the seesaw, stage 0 is freed only once consumer 1 has scored b, so
// waiting for it with b unsignalled deadlocks.
template <typename T, Schedule kSched>
__device__ __forceinline__ void gather_producer(const DecodeParams& p, SharedStorage& s, int thread) {
  constexpr int kRowsPerPass = kWarpgroupThreads / 8;  // 16
  constexpr int kPasses = kBlockN / kRowsPerPass;      // 4
  const int chunk = thread % 8, row0 = thread / 8;
  const T* k = static_cast<const T*>(p.k) + static_cast<int64_t>(blockIdx.y) * p.k_head_stride + chunk * 8;
  const int page_size = p.page_block_size;
  int pending = -1;  // the stage whose copies are in flight and not yet signalled
  auto signal = [&](int stage) {
    ptx::fence_proxy_async_shared();
    arrive_stage_full<kSched>(s, stage);
  };
  StageRing<kSched> ring;
  for_each_block(p, [&](const Piece& pc, const int32_t* table, int blk, uint32_t it) {
    const auto slot = ring.next(pc, blk, it);
    const int stage = slot.stage;
    const int valid = pc.seqlen - blk * kBlockN;
    const T* src[kPasses];
#pragma unroll
    for (int i = 0; i < kPasses; ++i) {
      const int row = row0 + kRowsPerPass * i, token = blk * kBlockN + row;
      const int64_t page = row < valid ? table[token / page_size] : -1;
      src[i] = page >= 0 && page < p.num_pages
                   ? k + page * p.k_page_stride + static_cast<int64_t>(token % page_size) * p.k_token_stride
                   : nullptr;
    }
    if (pending >= 0 && !stage_is_free<kSched>(s, stage, slot.parity)) {
      ptx::cp_async_wait<0>();
      signal(pending);
      pending = -1;
    }
    wait_stage_free<kSched>(s, stage, slot.parity);
#pragma unroll
    for (int i = 0; i < kPasses; ++i) {
      const int row = row0 + kRowsPerPass * i;
#pragma unroll
      for (int c = 0; c < kQKSubTiles; ++c) {
        ptx::cp_async_16_zfill(reinterpret_cast<char*>(&s.k[stage][c]) + swizzled_offset(row, chunk),
                               src[i] != nullptr ? src[i] + c * kSubTileCols : k, src[i] != nullptr ? 16 : 0);
      }
    }
    ptx::cp_async_commit();
    if (pending >= 0) {
      ptx::cp_async_wait<1>();
      signal(pending);
    }
    pending = stage;
  });
  if (pending >= 0) {
    ptx::cp_async_wait<0>();
    signal(pending);
  }
}

// The row statistics of a block, published by the consumer that scored it: alpha (the rescale of what
// was accumulated before the block) and the running max after it. One float per row: the lane of each
// quad that holds column 0 writes.
__device__ __forceinline__ void publish_stats(SharedStorage& s, int stage, const RowPair& rp, const float (&alpha)[2],
                                              const float (&m)[2]) {
  if (rp.col == 0) {
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      s.alpha[stage][rp.row[k]] = alpha[k];
      s.row_max[stage][rp.row[k]] = m[k];
    }
  }
}

__device__ __forceinline__ void read_stats(const SharedStorage& s, int stage, const RowPair& rp, float (&alpha)[2],
                                           float (&m)[2]) {
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    alpha[k] = s.alpha[stage][rp.row[k]];
    m[k] = s.row_max[stage][rp.row[k]];
  }
}

// Phase counts of the seesaw's two stages, kept across the pieces of a CTA (producers: StageRing).
struct SeesawUses {
  uint32_t a = 0;  // pairs so far (stage 0)
  uint32_t b = 0;  // pairs with a block b so far (stage 1)
};

// S = Q·Kᵀ of the seesaw's block in stage kStage, its release groups read in release order, each
// waited for (full barrier) just before its wgmmas are issued: the math on the groups freed first
// overlaps the copies of the last. A wgmma.fence follows each wait: without it ptxas injects its own
// after the wait loop (C7519) and then serialises every wgmma of the kernel (C7520).
template <typename T, int kStage>
__device__ __forceinline__ void seesaw_scores(float (&sc)[32], SharedStorage& s, uint32_t parity,
                                              [[maybe_unused]] int thread, [[maybe_unused]] int iter) {
#pragma unroll
  for (int i = 0; i < kGroups; ++i) {
    const int g = release_order(kStage, i);
    ptx::mbarrier_wait(&s.g_full[kStage][g], parity);
    FLASH_MLA_PHASE_AT(kStage, iter, 1 + i);
    ptx::wgmma_fence();
#pragma unroll
    for (int t = 0; t < group_sub_tiles(g); ++t) {
#pragma unroll
      for (int kk = 0; kk < kSubTileCols / 16; ++kk) {
        qk_step<T>(sc, s, kStage, group_first_sub_tile(g) + t, kk, (i | t | kk) != 0);
      }
    }
  }
  ptx::wgmma_commit_group();
  ptx::wgmma_wait_group<0>();
  ptx::fence_registers(sc);
  FLASH_MLA_PHASE_AT(kStage, iter, 4);
}

// Zeroes this consumer's V half (`half`: 0 = sub-tiles 0-3, 1 = 4-7) of the rows past the sequence
// end in a tail block (valid < 64 tokens), then makes the zeroes visible to its own next wgmma. The
// first sync waits until every warp of this warpgroup is past its reads of the block (its Q·Kᵀ).
__device__ __forceinline__ void seesaw_zero_tail(SharedStorage& s, int stage, int valid, int half, int thread) {
  if (valid >= kBlockN) return;
  ptx::named_barrier_sync(half == 0 ? kTailZeroedLeft : kTailZeroedRight, kWarpgroupThreads);
  zero_v_tail(s, stage, valid, thread, half * kVSubTilesPerWarpgroup, kVSubTilesPerWarpgroup);
  ptx::fence_proxy_async_shared();
  ptx::named_barrier_sync(half == 0 ? kTailZeroedLeft : kTailZeroedRight, kWarpgroupThreads);
}

// Consumer 0's part of a seesaw pair: block a (stage 0) and, when kHasB, b (stage 1). On entry m is
// the running max after the previous pair; on return, after this one. l sums consumer 0's own blocks.
template <typename T, bool kHasB>
__device__ __forceinline__ void seesaw_pair_0(SharedStorage& s, const Piece& pc, int a, const SeesawUses& uses,
                                              int thread, const RowPair& rp, const int (&limit)[2], float scale_log2,
                                              float (&o)[128], float (&m)[2], float (&l)[2]) {
  float sc[32], row_max[2], m_use[2], alpha_a[2];
  [[maybe_unused]] const int iter = static_cast<int>(uses.a);
  FLASH_MLA_PHASE_AT(0, iter, 0);
  seesaw_scores<T, 0>(sc, s, uses.a & 1, thread, iter);
  ptx::mbarrier_arrive(&s.g_free[0][kGroupRope]);    // its only reader
  ptx::mbarrier_arrive(&s.g_free[0][kGroupVRight]);  // consumer 1's P·V(a) is the other half
  FLASH_MLA_PHASE_AT(0, iter, 11);
  mask_scores(sc, row_max, a, rp, limit, scale_log2);
  advance_max(m, row_max, m_use, alpha_a);
  publish_stats(s, 0, rp, alpha_a, m);
  ptx::named_barrier_arrive(kStatsA, kConsumerThreads);
  FLASH_MLA_PHASE_AT(0, iter, 12);
  l[0] *= alpha_a[0];
  l[1] *= alpha_a[1];
  uint32_t packed[16];
  exponentiate<T>(sc, m_use, l, packed);
  FLASH_MLA_PHASE_AT(0, iter, 13);
  // P(a) goes to sP before the wgmma that reads packed is issued: the PTX ISA leaves reading a
  // wgmma's A registers before its wait_group undefined.
  store_p(s.p, rp, packed);
  FLASH_MLA_PHASE_AT(0, iter, 14);
  if constexpr (!kHasB) {
    ptx::fence_proxy_async_shared();  // wgmma (async proxy) reads what these stores wrote
    ptx::named_barrier_arrive(kPaReady, kConsumerThreads);
  }
  // Only a sequence's last block can be short, and a pair with b has a full a.
  if (!kHasB) seesaw_zero_tail(s, 0, pc.seqlen - a * kBlockN, 0, thread);
  rescale_rows(o, alpha_a);
  FLASH_MLA_PHASE_AT(0, iter, 5);
  pv_issue_rs<T>(o, packed, s, 0, 0);
  if constexpr (kHasB) {
    // While P(a)·V_L(a) runs: sP becomes P(a)·alpha_b for consumer 1, each thread rescaling the words
    // it stored (a second rounding of P, within one unit of the 16-bit type).
    float alpha_b[2];
    ptx::named_barrier_sync(kStatsB, kConsumerThreads);
    FLASH_MLA_PHASE_AT(0, iter, 6);
    read_stats(s, 1, rp, alpha_b, m);
    rescale_p<T>(s.p, rp, alpha_b);
    ptx::fence_proxy_async_shared();
    ptx::named_barrier_arrive(kPaReady, kConsumerThreads);
    FLASH_MLA_PHASE_AT(0, iter, 7);
    pv_wait(o);
    FLASH_MLA_PHASE_AT(0, iter, 8);
    ptx::mbarrier_arrive(&s.g_free[0][kGroupVLeft]);
    l[0] *= alpha_b[0];
    l[1] *= alpha_b[1];
    ptx::named_barrier_sync(kPbReady, kConsumerThreads);
    FLASH_MLA_PHASE_AT(0, iter, 9);
    // Complete already (consumer 1's Q·K(b)ᵀ waited for it); waiting makes the bytes visible here.
    ptx::mbarrier_wait(&s.g_full[1][kGroupVLeft], uses.b & 1);
    seesaw_zero_tail(s, 1, pc.seqlen - (a + 1) * kBlockN, 0, thread);
    rescale_rows(o, alpha_b);
    pv_gemm<T>(o, s.k[1][kRopeSubTile], s, 1, 0);
    FLASH_MLA_PHASE_AT(0, iter, 10);
    ptx::mbarrier_arrive(&s.g_free[1][kGroupRope]);
    ptx::mbarrier_arrive(&s.g_free[1][kGroupVLeft]);
  } else {
    pv_wait(o);
    ptx::mbarrier_arrive(&s.g_free[0][kGroupVLeft]);
  }
}

// Consumer 1's part of a seesaw pair (see seesaw_pair_0). l sums consumer 1's own blocks (b).
template <typename T, bool kHasB>
__device__ __forceinline__ void seesaw_pair_1(SharedStorage& s, const Piece& pc, int a, const SeesawUses& uses,
                                              int thread, const RowPair& rp, const int (&limit)[2], float scale_log2,
                                              float (&o)[128], float (&m)[2], float (&l)[2]) {
  float alpha_a[2];
  if constexpr (kHasB) {
    float sc[32], row_max[2], m_use[2], alpha_b[2], alpha_ab[2];
    [[maybe_unused]] const int iter = static_cast<int>(uses.a);
    FLASH_MLA_PHASE_AT(1, iter, 0);
    seesaw_scores<T, 1>(sc, s, uses.b & 1, thread, iter);
    ptx::mbarrier_arrive(&s.g_free[1][kGroupVLeft]);  // consumer 0's P·V(b) is the other half
    mask_scores(sc, row_max, a + 1, rp, limit, scale_log2);
    FLASH_MLA_PHASE_AT(1, iter, 11);
    ptx::named_barrier_sync(kStatsA, kConsumerThreads);
    FLASH_MLA_PHASE_AT(1, iter, 5);
    read_stats(s, 0, rp, alpha_a, m);
    advance_max(m, row_max, m_use, alpha_b);
    publish_stats(s, 1, rp, alpha_b, m);
    ptx::named_barrier_arrive(kStatsB, kConsumerThreads);
    FLASH_MLA_PHASE_AT(1, iter, 12);
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      alpha_ab[k] = alpha_a[k] * alpha_b[k];
      l[k] *= alpha_ab[k];
    }
    uint32_t packed[16];
    exponentiate<T>(sc, m_use, l, packed);
    FLASH_MLA_PHASE_AT(1, iter, 13);
    const int valid_b = pc.seqlen - (a + 1) * kBlockN;
    if (valid_b < kBlockN) zero_v_tail(s, 1, valid_b, thread, kVSubTilesPerWarpgroup, kVSubTilesPerWarpgroup);
    // P(b) into stage 1's RoPE sub-tile: read there only by this warpgroup's finished Q·K(b)ᵀ.
    store_p(s.k[1][kRopeSubTile], rp, packed);
    FLASH_MLA_PHASE_AT(1, iter, 14);
    ptx::fence_proxy_async_shared();
    ptx::named_barrier_arrive(kPbReady, kConsumerThreads);
    FLASH_MLA_PHASE_AT(1, iter, 6);
    if (valid_b < kBlockN) ptx::named_barrier_sync(kTailZeroedRight, kWarpgroupThreads);
    rescale_rows(o, alpha_ab);
    pv_issue_rs<T>(o, packed, s, 1, 1);
    FLASH_MLA_PHASE_AT(1, iter, 7);
    // P(a)·V_R(a) is issued behind P(b)·V_R(b) as soon as consumer 0 has stored P(a)·alpha_b.
    ptx::named_barrier_sync(kPaReady, kConsumerThreads);
    FLASH_MLA_PHASE_AT(1, iter, 8);
    ptx::mbarrier_wait(&s.g_full[0][kGroupVRight], uses.a & 1);  // complete; makes the bytes visible here
    pv_issue<T>(o, s.p, s, 0, 1);
    ptx::wgmma_wait_group<1>();
    FLASH_MLA_PHASE_AT(1, iter, 9);
    ptx::mbarrier_arrive(&s.g_free[1][kGroupVRight]);
    pv_wait(o);
    FLASH_MLA_PHASE_AT(1, iter, 10);
    ptx::mbarrier_arrive(&s.g_free[0][kGroupVRight]);
  } else {
    ptx::named_barrier_sync(kStatsA, kConsumerThreads);
    read_stats(s, 0, rp, alpha_a, m);
    l[0] *= alpha_a[0];
    l[1] *= alpha_a[1];
    rescale_rows(o, alpha_a);
    ptx::named_barrier_sync(kPaReady, kConsumerThreads);
    ptx::mbarrier_wait(&s.g_full[0][kGroupVRight], uses.a & 1);
    seesaw_zero_tail(s, 0, pc.seqlen - a * kBlockN, 1, thread);
    pv_gemm<T>(o, s.p, s, 0, 1);
    ptx::mbarrier_arrive(&s.g_free[0][kGroupVRight]);
  }
}

// The seesaw schedule for one piece (diagram at the top of this file). Why the bar.arrive / bar.sync
// hand-offs never mix two pairs' arrivals: each publisher arrives again only after a wait that the
// other consumer satisfies after its own wait on the previous arrival. Consumer 0 arrives at kStatsA
// of pair k + 1 after waiting at kStatsB of pair k (or at kRowStats, between pieces), which consumer 1
// arrives at after waiting at kStatsA of pair k; it arrives at kPaReady of pair k + 1 after waiting at
// kStatsB of pair k + 1, or, in a pair without b, after Q·K(a)ᵀ has waited for stage 0's V right,
// which the producer refills only after consumer 1 freed it behind its kPaReady wait of pair k.
// Consumer 1 arrives at kStatsB and kPbReady of pair k + 1 after waiting at kStatsA of pair k + 1,
// which consumer 0 arrives at after waiting at kPbReady of pair k. Consumer 0 rewrites sP (and its
// stats slot) in pair k + 1 only after its Q·K(a)ᵀ has waited for stage 0's V right, i.e. after
// consumer 1's last read of sP in pair k; consumer 1 rewrites its stats slot only after kStatsA of
// pair k + 1, i.e. after consumer 0 read it in pair k. Each consumer's l
// sums its own blocks' P, rescaled by every block's alpha; the two are added at the end. Same
// contract as serial_piece.
template <typename T>
__device__ __forceinline__ void seesaw_piece(const DecodeParams& p, SharedStorage& s, const Piece& pc, int warpgroup,
                                             int thread, const RowPair& rp, float scale_log2, SeesawUses& uses,
                                             float (&o)[128], float (&m)[2], float (&l)[2]) {
  int limit[2];
  visible_limits(p, pc, rp, limit);
  const int first = pc.first_block(), end = pc.end_block();
  for (int a = first; a < end; a += 2) {
    const bool has_b = a + 1 < end;
    FLASH_MLA_TRACE_AT(2 + min(static_cast<int>(uses.a + uses.b), 40));
    if (warpgroup == 0) {
      if (has_b) {
        seesaw_pair_0<T, true>(s, pc, a, uses, thread, rp, limit, scale_log2, o, m, l);
      } else {
        seesaw_pair_0<T, false>(s, pc, a, uses, thread, rp, limit, scale_log2, o, m, l);
      }
    } else {
      if (has_b) {
        seesaw_pair_1<T, true>(s, pc, a, uses, thread, rp, limit, scale_log2, o, m, l);
      } else {
        seesaw_pair_1<T, false>(s, pc, a, uses, thread, rp, limit, scale_log2, o, m, l);
      }
    }
    ++uses.a;
    uses.b += has_b ? 1 : 0;
  }
  // l of the whole piece = consumer 0's blocks + consumer 1's, both relative to the same final max.
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    l[k] = quad_sum(l[k]);
    if (rp.col == 0) s.row_sum[warpgroup][rp.row[k]] = l[k];
  }
  ptx::named_barrier_sync(kRowStats, kConsumerThreads);
#pragma unroll
  for (int k = 0; k < 2; ++k) l[k] = s.row_sum[0][rp.row[k]] + s.row_sum[1][rp.row[k]];
}

// The serial schedule for one piece: consumer 0 computes S and the softmax of every block, consumer 1
// waits for P and does its P·V. Same contract as seesaw_piece.
template <typename T>
__device__ __forceinline__ void serial_piece(const DecodeParams& p, SharedStorage& s, const Piece& pc, int warpgroup,
                                             int thread, const RowPair& rp, float scale_log2, uint32_t& it,
                                             float (&o)[128], float (&m)[2], float (&l)[2]) {
  const int first = pc.first_block(), end = pc.end_block();
  if (warpgroup == 0) {
    int limit[2];
    visible_limits(p, pc, rp, limit);
    for (int blk = first; blk < end; ++blk, ++it) {
      const int stage = it % kStages;
      FLASH_MLA_PHASE_AT(0, static_cast<int>(it), 0);
      ptx::mbarrier_wait(&s.k_full[stage], (it / kStages) & 1);
      FLASH_MLA_PHASE_AT(0, static_cast<int>(it), 1);
      FLASH_MLA_TRACE_AT(2 + min(static_cast<int>(it), 40));
      float sc[32], row_max[2], m_use[2], alpha[2];
      score_block<T>(sc, row_max, s, stage, blk, rp, limit, scale_log2);
      FLASH_MLA_PHASE_AT(0, static_cast<int>(it), 4);
      advance_max(m, row_max, m_use, alpha);
      FLASH_MLA_PHASE_AT(0, static_cast<int>(it), 12);
      l[0] *= alpha[0];
      l[1] *= alpha[1];
      uint32_t packed[16];
      exponentiate<T>(sc, m_use, l, packed);
      FLASH_MLA_PHASE_AT(0, static_cast<int>(it), 13);
      zero_v_tail(s, stage, pc.seqlen - blk * kBlockN, thread);
      FLASH_MLA_PHASE_AT(0, static_cast<int>(it), 5);

      ptx::named_barrier_sync(kPFree, kConsumerThreads);
      FLASH_MLA_PHASE_AT(0, static_cast<int>(it), 6);
      store_p(s.p, rp, packed);
      if (rp.col == 0) {
        s.alpha[0][rp.row[0]] = alpha[0];
        s.alpha[0][rp.row[1]] = alpha[1];
      }
      ptx::fence_proxy_async_shared();
      ptx::named_barrier_sync(kPReady, kConsumerThreads);
      FLASH_MLA_PHASE_AT(0, static_cast<int>(it), 7);

      rescale_rows(o, alpha);
      pv_gemm<T>(o, s.p, s, stage, 0);
      FLASH_MLA_PHASE_AT(0, static_cast<int>(it), 10);
      ptx::mbarrier_arrive(&s.k_free[stage]);
    }
    l[0] = quad_sum(l[0]);
    l[1] = quad_sum(l[1]);
    if (rp.col == 0) {
#pragma unroll
      for (int k = 0; k < 2; ++k) {
        s.row_max[0][rp.row[k]] = m[k];
        s.row_sum[0][rp.row[k]] = l[k];
      }
    }
    ptx::named_barrier_sync(kRowStats, kConsumerThreads);
  } else {
    for (int blk = first; blk < end; ++blk, ++it) {
      const int stage = it % kStages;
      FLASH_MLA_PHASE_AT(1, static_cast<int>(it), 0);
      ptx::mbarrier_wait(&s.k_full[stage], (it / kStages) & 1);
      FLASH_MLA_PHASE_AT(1, static_cast<int>(it), 1);
      ptx::named_barrier_sync(kPFree, kConsumerThreads);
      FLASH_MLA_PHASE_AT(1, static_cast<int>(it), 6);
      ptx::named_barrier_sync(kPReady, kConsumerThreads);
      FLASH_MLA_PHASE_AT(1, static_cast<int>(it), 7);
      const float alpha[2] = {s.alpha[0][rp.row[0]], s.alpha[0][rp.row[1]]};
      rescale_rows(o, alpha);
      pv_gemm<T>(o, s.p, s, stage, 1);
      FLASH_MLA_PHASE_AT(1, static_cast<int>(it), 10);
      ptx::mbarrier_arrive(&s.k_free[stage]);
    }
    ptx::named_barrier_sync(kRowStats, kConsumerThreads);
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      m[k] = s.row_max[0][rp.row[k]];
      l[k] = s.row_sum[0][rp.row[k]];
    }
  }
}

// Four e4m3 values (one 32-bit word) times `scale` as two bf16 pairs. e4m3 -> f16 is exact
// (cvt.rn.f16x2.e4m3x2); the product with a power-of-two scale is exact in fp32 and in bf16 (3
// mantissa bits), so "FP8 with scale" caches dequantise exactly; other scales round once to bf16.
__device__ __forceinline__ uint2 e4m3x4_to_bf16(uint32_t word, float scale) {
  uint32_t out[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const __half2_raw pair = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(word >> (16 * h)), __NV_E4M3);
    const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&pair));
    out[h] = pack2<__nv_bfloat16>(f.x * scale, f.y * scale);
  }
  return make_uint2(out[0], out[1]);
}

// Sixteen e4m3 values (one 16-byte chunk) times `scale`, as bf16, into two 16-byte chunks.
__device__ __forceinline__ void e4m3x16_to_bf16(const int4& raw, float scale, int4& lo, int4& hi) {
  const uint2 a = e4m3x4_to_bf16(static_cast<uint32_t>(raw.x), scale);
  const uint2 b = e4m3x4_to_bf16(static_cast<uint32_t>(raw.y), scale);
  const uint2 c = e4m3x4_to_bf16(static_cast<uint32_t>(raw.z), scale);
  const uint2 d = e4m3x4_to_bf16(static_cast<uint32_t>(raw.w), scale);
  lo = make_int4(a.x, a.y, b.x, b.y);
  hi = make_int4(c.x, c.y, d.x, d.y);
}

// The producer for FP8 caches: the whole producer warpgroup reads each 64-token block through
// registers and writes it dequantised to bf16 into the swizzled sub-tiles that the dense path's TMA
// fills, so the consumers are the dense ones. Thread t serves rows t/8 + 16i (i < 4) and, of each
// row's 32 NoPE chunks of 16 e4m3 bytes, chunks t%8 + 8k (k < 4): chunk t%8 + 8k lies in scale group
// k and becomes bf16 channels 16(t%8 + 8k) .. +15, two chunks of sub-tile (t%8 + 8k) / 4. RoPE: bf16
// chunk t%8 of bytes 528.. ("FP8 with scale", copied by cp.async as the row is loaded, waited for
// before the fence), or the 8 e4m3 values at byte 512 + 8(t%8) (per tensor, one bf16 chunk). Per
// tensor, the first half of a block's loads is issued before the stage is free. Each thread converts
// and stores two rows at a time, then fences (the generic proxy wrote what wgmma reads) and arrives
// on the stage's full barrier(s) (128 arrivals). Rows past the sequence end are not written (the consumers mask them from
// Q·Kᵀ and zero their V rows); a row inside the sequence on a page outside the pool is written as
// zeros, as TMA fills it. Per-tensor descales are folded into the softmax scale and the output.
template <KvCacheFormat kFormat, Schedule kSched>
__device__ __forceinline__ void fp8_producer(const DecodeParams& p, SharedStorage& s, int thread) {
  constexpr bool kWithScale = kFormat == KvCacheFormat::kFP8WithScale;
  constexpr int kRowsPerPass = kWarpgroupThreads / 8;  // 16
  constexpr int kPasses = kBlockN / kRowsPerPass;      // 4
  constexpr int kRowsInFlight = 2;
  const int chunk = thread % 8, row0 = thread / 8;
  const char* k = static_cast<const char*>(p.k) + static_cast<int64_t>(blockIdx.y) * p.k_head_stride;
  const int page_size = p.page_block_size;
  StageRing<kSched> ring;
  for_each_block(p, [&](const Piece& pc, const int32_t* table, int blk, uint32_t it) {
    const auto slot = ring.next(pc, blk, it);
    const int stage = slot.stage;
    const int valid = pc.seqlen - blk * kBlockN;
    // Two rows per half: a whole block in registers does not fit the producer's budget.
#pragma unroll
    for (int half = 0; half < kPasses / kRowsInFlight; ++half) {
      int4 nope[kRowsInFlight][4];
      uint2 rope[kRowsInFlight];  // per tensor: 8 e4m3 RoPE values
      float4 scales[kRowsInFlight];
      bool live[kRowsInFlight], write[kRowsInFlight];  // live: loaded; write: inside the sequence
      // "FP8 with scale" copies its bf16 RoPE chunk straight into the stage as it loads (cp.async), so
      // it waits for the stage first; per tensor, the first loads overlap the wait instead.
      if (kWithScale && half == 0) wait_stage_free<kSched>(s, stage, slot.parity);
#pragma unroll
      for (int i = 0; i < kRowsInFlight; ++i) {
        const int row = row0 + kRowsPerPass * (half * kRowsInFlight + i), token = blk * kBlockN + row;
        const int64_t page = row < valid ? table[token / page_size] : -1;
        live[i] = page >= 0 && page < p.num_pages;
        write[i] = row < valid;
        if (!live[i]) {  // a page outside the pool inside the sequence reads as zeros, as on the TMA path
#pragma unroll
          for (int c = 0; c < 4; ++c) nope[i][c] = make_int4(0, 0, 0, 0);
          rope[i] = make_uint2(0, 0);
          scales[i] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
          continue;
        }
        const char* src = k + page * p.k_page_stride + static_cast<int64_t>(token % page_size) * p.k_token_stride;
#pragma unroll
        for (int c = 0; c < 4; ++c) nope[i][c] = __ldg(reinterpret_cast<const int4*>(src + 16 * (chunk + 8 * c)));
        if constexpr (kWithScale) {
          scales[i] = __ldg(reinterpret_cast<const float4*>(src + kFP8ScaleOffset));
          ptx::cp_async_16_zfill(reinterpret_cast<char*>(&s.k[stage][kVSubTiles]) + swizzled_offset(row, chunk),
                                 src + kFP8RopeOffset + 16 * chunk, 16);
        } else {
          rope[i] = __ldg(reinterpret_cast<const uint2*>(src + kHeadDimV + 8 * chunk));
        }
      }
      // p.fp8_l2_prefetch: the rows of the piece's next block into L2 while this one's first loads are
      // in flight, so that its own loads wait for L2 rather than DRAM (a block's loads are two round
      // trips, two rows at a time). Lane `chunk` of a row's eight takes line `chunk` of the row (its
      // last byte for chunk 6). Issued after the loads above: each prefetch waits for its table entry.
      if (half == 0 && p.fp8_l2_prefetch && blk + 1 < pc.end_block() && chunk < 7) {
        const int next_valid = valid - kBlockN;
#pragma unroll
        for (int i = 0; i < kPasses; ++i) {
          const int row = row0 + kRowsPerPass * i, token = (blk + 1) * kBlockN + row;
          if (row >= next_valid) continue;
          const int64_t page = table[token / page_size];
          if (page < 0 || page >= p.num_pages) continue;
          const char* src = k + page * p.k_page_stride + static_cast<int64_t>(token % page_size) * p.k_token_stride;
          ptx::prefetch_l2(src + min(128 * chunk, static_cast<int>(p.k_row_bytes) - 1));
        }
      }
      if (!kWithScale && half == 0) wait_stage_free<kSched>(s, stage, slot.parity);
#pragma unroll
      for (int i = 0; i < kRowsInFlight; ++i) {
        if (!write[i]) continue;
        const int row = row0 + kRowsPerPass * (half * kRowsInFlight + i);
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          const int src_chunk = chunk + 8 * c;  // 16 channels from 16 * src_chunk, scale group c
          float scale = 1.0f;
          if constexpr (kWithScale) {
            scale = c == 0 ? scales[i].x : c == 1 ? scales[i].y : c == 2 ? scales[i].z : scales[i].w;
          }
          int4 lo, hi;
          e4m3x16_to_bf16(nope[i][c], scale, lo, hi);
          char* tile = reinterpret_cast<char*>(&s.k[stage][src_chunk / 4]);
          const int in_row = (src_chunk % 4) * 2;
          *reinterpret_cast<int4*>(tile + swizzled_offset(row, in_row)) = lo;
          *reinterpret_cast<int4*>(tile + swizzled_offset(row, in_row + 1)) = hi;
        }
        char* rope_tile = reinterpret_cast<char*>(&s.k[stage][kVSubTiles]);
        if constexpr (!kWithScale) {
          const uint2 a = e4m3x4_to_bf16(rope[i].x, 1.0f), b = e4m3x4_to_bf16(rope[i].y, 1.0f);
          *reinterpret_cast<int4*>(rope_tile + swizzled_offset(row, chunk)) = make_int4(a.x, a.y, b.x, b.y);
        } else if (!live[i]) {
          *reinterpret_cast<int4*>(rope_tile + swizzled_offset(row, chunk)) = make_int4(0, 0, 0, 0);
        }
      }
    }
    if constexpr (kWithScale) {
      ptx::cp_async_commit();
      ptx::cp_async_wait<0>();
    }
    ptx::fence_proxy_async_shared();
    arrive_stage_full<kSched>(s, stage);
  });
}

// An e4m3 query tile (per-tensor FP8 with an FP8 q) as bf16 into the swizzled Q sub-tiles, zero past
// `rows`; descale_q is folded into the softmax scale, so the conversion is exact.
__device__ __forceinline__ void load_q_e4m3(const DecodeParams& p, SharedStorage& s, int req, int thread) {
  constexpr int kChunksPerRow = kHeadDim / 16;  // 36 chunks of 16 e4m3 values
  const int m0 = blockIdx.x * kBlockM;
  const char* q = static_cast<const char*>(p.q);
  for (int chunk = thread; chunk < kBlockM * kChunksPerRow; chunk += kConsumerThreads) {
    const int r = chunk / kChunksPerRow, c = chunk % kChunksPerRow;
    const int gr = m0 + r;
    int4 lo = make_int4(0, 0, 0, 0), hi = lo;
    if (gr < p.rows) {
      const int t = gr / p.q_per_kv, h = blockIdx.y * p.q_per_kv + gr % p.q_per_kv;
      const int4 raw = __ldg(reinterpret_cast<const int4*>(q + req * p.q_batch_stride + t * p.q_seq_stride +
                                                           h * p.q_head_stride + c * 16));
      e4m3x16_to_bf16(raw, 1.0f, lo, hi);
    }
    char* tile = reinterpret_cast<char*>(&s.q[c / 4]);
    *reinterpret_cast<int4*>(tile + swizzled_offset(r, (c % 4) * 2)) = lo;
    *reinterpret_cast<int4*>(tile + swizzled_offset(r, (c % 4) * 2 + 1)) = hi;
  }
}

// The seesaw's TMA producer warp for stage kStage: its blocks (a for stage 0, b for stage 1), one
// release group at a time in release order: the group's free barrier, then its copies on its full
// barrier. A compile-time stage keeps the loops unrolled within the producer's 40 registers.
// One warp's TMA copies of sub-tiles first .. first + count - 1 of block `blk` into `stage`, on `full`:
// lane 0 announces the bytes, lane j issues the copies of the block's page j (64-token pages take one
// lane, 1-token pages 64).
__device__ __forceinline__ void tma_copy_sub_tiles(SharedStorage& s, const CUtensorMap& k_map, const BlockPages& pages,
                                                   const int32_t* table, int blk, int copies, int stage, int first,
                                                   int count, uint64_t* full, int lane, uint64_t policy) {
  if (lane == 0) ptx::mbarrier_arrive_expect_tx(full, copies * pages.copy_bytes(count));
  __syncwarp();
  for (int j = lane; j < copies; j += 32) {
    const BlockPages::Copy cp = pages.copy(table, blk, j);
#pragma unroll
    for (int c = first; c < first + count; ++c) {
      ptx::tma_load_4d(reinterpret_cast<char*>(&s.k[stage][c]) + cp.row * 128, &k_map, full, c * kSubTileCols,
                       blockIdx.y, cp.token_in_page, cp.page, policy);
    }
  }
}

template <int kStage>
__device__ __forceinline__ void tma_stage_producer(const DecodeParams& p, SharedStorage& s, const CUtensorMap& k_map,
                                                   int lane, uint64_t policy) {
  const BlockPages pages(p.page_block_size);
  StageRing<Schedule::kSeesaw> ring;
  for_each_block(p, [&](const Piece& pc, const int32_t* table, int blk, uint32_t it) {
    const auto slot = ring.next(pc, blk, it);
    if (slot.stage != kStage) return;
    const int copies = pages.copies(pc.seqlen - blk * kBlockN);
#pragma unroll
    for (int i = 0; i < kGroups; ++i) {
      const int g = release_order(kStage, i);
      ptx::mbarrier_wait(&s.g_free[kStage][g], slot.parity ^ 1);
      tma_copy_sub_tiles(s, k_map, pages, table, blk, copies, kStage, group_first_sub_tile(g), group_sub_tiles(g),
                         &s.g_full[kStage][g], lane, policy);
    }
  });
}

// The TMA producer (pages of kMinTmaPage tokens or more). Serial: lane j of warp 0 issues the nine
// copies of the block's page j, completing on k_full[stage]. Seesaw: warp w serves stage w
// (tma_stage_producer). Copies of whole pages past the sequence end are skipped (their table entries
// may be garbage); the consumers zero those V rows as they zero the tail of a partly used page.
template <Schedule kSched>
__device__ __forceinline__ void tma_producer(const DecodeParams& p, SharedStorage& s, const CUtensorMap& k_map,
                                             int thread) {
  const int warp = thread / 32, lane = thread % 32;
  if (warp >= (kSched == Schedule::kSerial ? 1 : kStages)) return;
  if (lane == 0) ptx::tma_prefetch_descriptor(&k_map);
  // The cache is read once per call: evict-first keeps it from displacing what is reused in L2
  // (measured on an H200: 0-2 % faster on b=128 rows, 2-5.5 % on small batches; docs/PERFORMANCE.md).
  const uint64_t policy = ptx::l2_policy_evict_first();
  if constexpr (kSched == Schedule::kSeesaw) {
    if (warp == 0) {
      tma_stage_producer<0>(p, s, k_map, lane, policy);
    } else {
      tma_stage_producer<1>(p, s, k_map, lane, policy);
    }
  } else {
    const BlockPages pages(p.page_block_size);
    for_each_block(p, [&](const Piece& pc, const int32_t* table, int blk, uint32_t it) {
      const int stage = it % kStages;
      const uint32_t parity = (it / kStages) & 1;
      const int copies = pages.copies(pc.seqlen - blk * kBlockN);
      ptx::mbarrier_wait(&s.k_free[stage], parity ^ 1);
      tma_copy_sub_tiles(s, k_map, pages, table, blk, copies, stage, 0, kQKSubTiles, &s.k_full[stage], lane, policy);
    });
  }
}

template <typename T, KvCacheFormat kFormat, Schedule kSched>
__global__ void __launch_bounds__(kThreads, 1)
    decode_kernel(const __grid_constant__ DecodeParams p, const __grid_constant__ CUtensorMap k_map) {
  constexpr bool kDense = kFormat == KvCacheFormat::kDense;
  extern __shared__ char smem_raw[];
  // Aligned by pointer arithmetic on smem_raw, not through an integer: the compiler then knows every
  // access through s is to shared memory (32-bit STS/LDS; through uintptr_t they were generic 64-bit
  // ST.E/LD.E, two registers per address).
  const uint32_t misalign = static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw)) & 1023;
  SharedStorage& s = *reinterpret_cast<SharedStorage*>(smem_raw + ((1024 - misalign) & 1023));
  const int warpgroup = threadIdx.x / kWarpgroupThreads;
  const int thread = threadIdx.x % kWarpgroupThreads;
  FLASH_MLA_TRACE_AT(0);
  if (threadIdx.x == 0) {
    // Full barriers: TMA, the producer's one arrival (with the bytes); a gather or FP8 producer,
    // every producer thread's.
    const uint32_t full_arrivals = !kDense || gathers_pages(p) ? kWarpgroupThreads : 1;
    for (int st = 0; st < kStages; ++st) {
      if constexpr (kSched == Schedule::kSerial) {
        ptx::mbarrier_init(&s.k_full[st], full_arrivals);
        ptx::mbarrier_init(&s.k_free[st], kConsumerThreads);
      } else {
        for (int g = 0; g < kGroups; ++g) {
          ptx::mbarrier_init(&s.g_full[st][g], full_arrivals);
          ptx::mbarrier_init(&s.g_free[st][g], group_free_arrivals(st, g));
        }
      }
    }
    ptx::fence_barrier_init();
  }
  __syncthreads();

  if (warpgroup == 2) {
    // ---------------- producer ----------------
    if constexpr (!kDense) {
      ptx::setmaxnreg_dec<kFP8ProducerRegs>();
      fp8_producer<kFormat, kSched>(p, s, thread);
    } else {
      ptx::setmaxnreg_dec<kProducerRegs>();
      if (gathers_pages(p)) {
        gather_producer<T, kSched>(p, s, thread);
      } else {
        tma_producer<kSched>(p, s, k_map, thread);
      }
    }
    return;
  }

  // ---------------- consumers ----------------
  if constexpr (kDense) {
    ptx::setmaxnreg_inc<kConsumerRegs>();
  } else {
    ptx::setmaxnreg_inc<kFP8ConsumerRegs>();
  }
  const RowPair rp(thread);
  // Per-tensor FP8 descales multiply every score (q·k) and every output channel (v): folded here.
  const float descale_q = p.descale_q != nullptr ? *p.descale_q : 1.0f;
  const float out_scale = p.descale_k != nullptr ? *p.descale_k : 1.0f;
  const float scale_log2 = p.softmax_scale * 1.4426950408889634f * descale_q * out_scale;
  uint32_t it = 0;   // serial: blocks so far
  SeesawUses uses;   // seesaw: uses of each stage so far
  [[maybe_unused]] int piece_index = 0;
  for_each_piece(p, [&](const Piece& pc) {
    if (pc.end_block() > pc.first_block()) {
      if (!kDense && p.q_dtype == DType::kFP8E4M3) {
        load_q_e4m3(p, s, pc.req, threadIdx.x);
      } else {
        load_q<T>(p, s, pc.req, threadIdx.x);
      }
    }
    ptx::fence_proxy_async_shared();
    ptx::named_barrier_sync(kQReady, kConsumerThreads);
    if (it == 0 && uses.a == 0) FLASH_MLA_TRACE_AT(1);

    float o[128];
#pragma unroll
    for (int i = 0; i < 128; ++i) o[i] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    if constexpr (kSched == Schedule::kSeesaw) {
      seesaw_piece<T>(p, s, pc, warpgroup, thread, rp, scale_log2, uses, o, m, l);
    } else {
      serial_piece<T>(p, s, pc, warpgroup, thread, rp, scale_log2, it, o, m, l);
    }
    store_output<T>(p, pc, rp, warpgroup, o, m, l, warpgroup == 0 && rp.col == 0, out_scale);
    FLASH_MLA_TRACE_AT(45 + min(piece_index++, 8));
  });
  FLASH_MLA_TRACE_AT(63);
}

}  // namespace flash_mla::sm90::dense

namespace flash_mla::sm90::dense {

#if defined(FLASH_MLA_TRACE)
// The trace buffers of the last launch's dtype and schedule, for a study program: [kTraceCtas][kTraceSlots]
// and [kPhaseCtas][2][kPhaseIters][kPhaseEvents].
extern void* g_trace_buffer;
extern void* g_phase_buffer;
#endif

template <typename T, KvCacheFormat kFormat, Schedule kSched>
void launch_schedule(const DecodeParams& p, const CUtensorMap& k_map) {
#if defined(FLASH_MLA_TRACE)
  detail::cuda_check(cudaGetSymbolAddress(&g_trace_buffer, g_trace), "trace symbol");
  detail::cuda_check(cudaGetSymbolAddress(&g_phase_buffer, g_phase), "phase symbol");
#endif
  // The shared-memory opt-in is per device: set it once on each device the kernel runs on (devices
  // past the mask's 64 bits set it on every call).
  static std::atomic<uint64_t> configured{0};
  const uint64_t bit = p.device.index < 64 ? uint64_t{1} << p.device.index : 0;
  if ((configured.load(std::memory_order_acquire) & bit) == 0) {
    detail::cuda_check(cudaFuncSetAttribute(decode_kernel<T, kFormat, kSched>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize, kSharedBytes),
                       "cudaFuncSetAttribute (decode kernel shared memory)");
    configured.fetch_or(bit, std::memory_order_acq_rel);
  }
  const dim3 grid((p.rows + kBlockM - 1) / kBlockM, p.h_kv, p.num_sm_parts);
  decode_kernel<T, kFormat, kSched><<<grid, kThreads, kSharedBytes, static_cast<cudaStream_t>(p.stream)>>>(p, k_map);
}

// Launches the main kernel on p.stream (the current device is p.device) with the serial schedule, or
// the seesaw when p.sm90_seesaw. Instantiated per dtype and cache format in decode_bf16.cu /
// decode_fp16.cu / decode_fp8.cu.
template <typename T, KvCacheFormat kFormat>
void launch_decode(const DecodeParams& p, const CUtensorMap& k_map) {
  if (p.sm90_seesaw) {
    launch_schedule<T, kFormat, Schedule::kSeesaw>(p, k_map);
  } else {
    launch_schedule<T, kFormat, Schedule::kSerial>(p, k_map);
  }
}

}  // namespace flash_mla::sm90::dense
