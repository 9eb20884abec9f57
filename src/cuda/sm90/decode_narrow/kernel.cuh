// Narrow MLA decode on Hopper for FP8 caches (per tensor, or with scale: kScaled, "With scale" below)
// with h_q * s_q / h_kv <= 32 query rows: one CTA per (KV head, schedule part), 512 threads. Transposed,
// so the rows are wgmma's N (32), not a 64-row M tile padded from 16 or 32 rows; the e4m3 bytes stay raw in
// shared memory:
//   Sᵀ[64 tokens, 32 rows] = K·Qᵀ   36 x m64n32k16 f16, A = K converted in registers, B = Qᵀ (f16)
//   Oᵀ[512 ch, 32 rows]   += Vᵀ·Pᵀ  8 channel tiles x 4 x m64n32k32 e4m3, A = V's bytes regrouped in
//                                    registers (no conversion), B = Pᵀ·16 as e4m3 + e5m2 terms
// Up to 16 rows (kCols 4, session 11) Sᵀ is 36 x m64n16k16, and Pᵀ's two terms are the rows of one
// N = 32 B (hi in rows 0..15, lo in 16..31, both e4m3: split_h), so P·V is 8 x 2 x m64n32k32.
// A block's cost follows its wgmma count more than the tensor cores' work (session 11 timelines: ~90
// cycles per P·V wgmma in the kernel, ~22 in isolation); halving P·V's took 13-15 %.
// Warpgroups by role (session 10; before, two consumers each ran whole blocks and merged at the end):
// WG3: one thread copies raw 64-token blocks (four 128-channel TMA boxes and the RoPE box) into a 4-stage
// ring, the second block once the first has landed.
// WG0, WG1 (score): alternate blocks of a piece: Q·Kᵀ in 9 batches of 4 wgmma, whose A fragments (two
//   16-register buffers) are converted while the previous batch runs; P against the warpgroup's own
//   running column max as it stands (in registers), unless some thread's score exceeds it by more than
//   kNarrowLag (one barrier.red.and; then the 4 warps' maxima meet in shared memory and P is recomputed;
//   sums only at the piece's end); Pᵀ split into two 8-bit terms (split_h) into one of 4 slots, with
//   the max it was computed against (p_ref); at the piece's end, its column max and sum (stats_m, stats_l).
//   Per tensor with 16 rows (kScoreTiles, session 34) it also runs P·V's last channel tile for its own
//   blocks, on its own running max, into a partial the value warpgroup merges at the piece's end (score_o).
// WG2 (value): every block in order: Oᵀ += Vᵀ·Pᵀ per channel tile (7 of 8 per tensor with 16 rows) into
//   a fresh fp32 tile, two tiles in flight, added to Oᵀ times 2^(p_ref - M), M the largest reference seen
//   (a larger one rescales Oᵀ first); frees the stage and the slot; at the piece's end brings both score
//   warpgroups' sums (and partials) to M and stores, while the score warpgroups start the next piece.
// Per block with 32 rows (H200, session 11 timeline of one CTA, b=128 8192 h16 before the 16-row form):
// the value warpgroup ~3400 cycles (channel tiles of ~370; the first ~700 with its loads), a score
// warpgroup ~3800 of Q·Kᵀ (9 batches of ~400) + ~1300 of softmax per two blocks and ~1500 waiting for
// its stage: the value warpgroup sets the pace. With 16 rows it is ~14 % faster (b=128 h16 rows).
// With scale (session 31; docs/DESIGN.md): the producer copies four e4m3 NoPE boxes, the bf16 RoPE box
// in the fifth's place and the tokens' scales; Sᵀ folds each token's group scales into accumulator chains
// in fp32 (score_block_scaled: two with 16 rows, one with 32), the RoPE k-steps on bf16 wgmma; Pᵀ is stored
// once per scale group as P times the token's scale over the block's largest (store_p), and P·V
// multiplies each channel tile's fresh tile back by its group's block maximum (pv_block). With 16 rows, Qᵀ
// tiles of 16 rows make room for four slots of two Pᵀ tiles; with 32 rows two groups' Pᵀ go into the
// block's own stage (its RoPE box, read by then) and two into one of two slots.
// Registers: setmaxnreg value 232 (Oᵀ 128, two T tiles 32, A 16 + 8; half the Oᵀ with 16 rows) / score
// 128, the launch's (Sᵀ 16, or 8 with 16 rows; A 32 + 8; the running max, and (except with scale at 32
// rows) the column scales and limits; with scale the chains and the scales; per tensor with 16 rows the own
// tile's partial 8) / producer 24; no spills. Shared memory: 160 KiB ring + Qᵀ 36 KiB (18 with scale and 16
// rows) + Pᵀ 4 x 4 KiB (with scale 4 x 8, or 2 x 8 with 32 rows) + statistics (with scale, the stages' scales:
// 4 KiB; per tensor with 16 rows the own tiles' partials: 8 KiB, 1 KiB short of the limit).
// Tests: tests/test_gpu_fp8.cpp (cases of up to 32 rows, both forms, both layouts) and flash-mla-bench's
// check.
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <atomic>
#include <climits>
#include <cstdint>
#include <string>

#include "core/params.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/sm90/decode_common.cuh"
#include "cuda/sm90/decode_narrow/config.hpp"
#include "cuda/sm90/decode_narrow/trace_layout.hpp"
#include "cuda/sm90/launch.hpp"
#include "ptx/barrier.hpp"
#include "ptx/compiler.hpp"
#include "ptx/convert.hpp"
#include "ptx/math.hpp"
#include "ptx/matrix.hpp"
#include "ptx/mbarrier.hpp"
#include "ptx/tma.hpp"
#include "ptx/wgmma.hpp"

namespace flash_mla::sm90::narrow {

// Per-block event stamps of every role for timeline studies (flash-mla-phases' narrow studies), compiled in only
// with -DFLASH_MLA_TRACE (never in a release build): the layout and the events are trace_layout.hpp's.
static_assert(kPhaseStages == kStages, "flash-mla-phases reads the stage turnaround with trace_layout.hpp's ring");
#if defined(FLASH_MLA_TRACE)
static __device__ long long g_phase[kPhaseCtas][kPhaseIters][kPhaseEvents];
__device__ __forceinline__ void phase(uint32_t it, int event) {
  const int cta = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  if (cta < kPhaseCtas && it < static_cast<uint32_t>(kPhaseIters)) g_phase[cta][it][event] = clock64();
}
#define FLASH_MLA_NARROW_PHASE(cond, it, event) \
  do {                                          \
    if (cond) phase(it, event);                 \
  } while (0)
#else
#define FLASH_MLA_NARROW_PHASE(cond, it, event) \
  do {                                          \
  } while (0)
#endif

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
// converts exactly (its descale is in the softmax scale). With scale (kScaled), tile 8 (the RoPE k-steps)
// holds the row as bf16, prescaled the same way (exact: a power of two), for the bf16 RoPE of the cache.
template <int kCols, bool kScaled>
__device__ __forceinline__ void load_q(const DecodeParams& p, SharedStorage<kCols, kScaled>& s, int req, int thread) {
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
        hi[x] = ptx::e4m3x2_hi_to_f16x2(run[k][x].x);
      } else {
        const float2 a = unpack2<__nv_bfloat16>(run[k][x].x), b = unpack2<__nv_bfloat16>(run[k][x].y);
        if (kScaled && k == kSteps - 1) {  // ks = 32 + part: the RoPE tile
          lo[x] = pack2<__nv_bfloat16>(a.x * scale.down, a.y * scale.down);
          hi[x] = pack2<__nv_bfloat16>(b.x * scale.down, b.y * scale.down);
        } else {
          lo[x] = pack2<__half>(a.x * scale.down, a.y * scale.down);
          hi[x] = pack2<__half>(b.x * scale.down, b.y * scale.down);
        }
      }
    }
    if (SharedStorage<kCols, kScaled>::kHalfQ && r >= kSideRows) continue;  // 16-row tiles
    char* tile = reinterpret_cast<char*>(&s.q[ks / 4]);
    const int chunk = 2 * (ks % 4);
    *reinterpret_cast<int4*>(tile + swizzled_offset(r, chunk)) = make_int4(lo[0], lo[1], lo[2], lo[3]);
    *reinterpret_cast<int4*>(tile + swizzled_offset(r, chunk + 1)) = make_int4(hi[0], hi[1], hi[2], hi[3]);
  }
}

// The one copying thread: every block of the CTA's pieces, per page copy four 128-channel e4m3 boxes (maps.k)
// and the RoPE box (maps.rope: 64 e4m3 bytes per tensor, 64 bf16 channels with scale); with scale also the
// tokens' scales (maps.scales).
template <int kCols, bool kScaled>
__device__ __forceinline__ void producer(const DecodeParams& p, SharedStorage<kCols, kScaled>& s,
                                         const CUtensorMap& k_map, const CUtensorMap& rope_map,
                                         const CUtensorMap& scale_map) {
  // Bytes a token lands: its whole row, 576 or 656.
  constexpr uint32_t kTokenBytes = kScaled ? kFP8WithScaleBytes : kHeadDim;
  constexpr int kByteBoxes = kRawBoxes - 1;  // boxes of maps.k: the NoPE channels
  ptx::tma_prefetch_descriptor(&k_map);
  ptx::tma_prefetch_descriptor(&rope_map);
  if constexpr (kScaled) ptx::tma_prefetch_descriptor(&scale_map);
  const uint64_t policy = ptx::l2_policy_evict_first();
  const BlockPages pages(p.page_block_size);
  for_each_block(p, [&](const Piece& pc, const int32_t* table, int blk, uint32_t it) {
    const int stage = static_cast<int>(it % kStages);
    const int copies = pages.copies(pc.seqlen - blk * kBlockN);
    // The block's table entries are read before the stage's wait, which hides their latency: read after it, they
    // held every refill ~1000 cycles (session 35, per-block stamps at b=128 8192 h16 s1: free -> issued; the read
    // is the only global access there). The reads run one after another (each result goes to a uniform register
    // before the next address): with 2-4 copies a block only the first round trip is hidden in full.
    BlockPages::Copy cps[kMaxTmaCopies];
#pragma unroll
    for (int j = 0; j < kMaxTmaCopies; ++j) cps[j] = pages.copy(table, blk, j, copies);
    // The first block lands before the rest are requested: with every CTA asking for four at entry, the
    // first ones land later (FP8 h16 s1 small batches 0-4.3 % faster; docs/PERFORMANCE.md, session 15).
    if (it == 1) ptx::mbarrier_wait(&s.k_full[0], 0);
    ptx::mbarrier_wait(&s.k_free[stage], ((it / kStages) & 1) ^ 1);
    FLASH_MLA_NARROW_PHASE(true, it, kPhaseFree);
    ptx::mbarrier_arrive_expect_tx(&s.k_full[stage], static_cast<uint32_t>(copies * pages.rows_per_copy) * kTokenBytes);
#pragma unroll
    for (int j = 0; j < kMaxTmaCopies; ++j) {
      if (j >= copies) break;
      const BlockPages::Copy& cp = cps[j];
#pragma unroll
      for (int b = 0; b < kByteBoxes; ++b) {
        ptx::tma_load_4d(&s.k[stage].box[b][cp.row * kRawBoxCols], &k_map, &s.k_full[stage], b * kRawBoxCols,
                         blockIdx.y, cp.token_in_page, cp.page, policy);
      }
      // The RoPE channels: bf16 with scale (128-byte rows), e4m3 per tensor (64-byte rows).
      ptx::tma_load_4d(&s.k[stage].box[kRawBoxes - 1][cp.row * (kScaled ? kRawBoxCols : kRopeBoxCols)], &rope_map,
                       &s.k_full[stage], 0, blockIdx.y, cp.token_in_page, cp.page, policy);
      if constexpr (kScaled) {
        ptx::tma_load_4d(&s.k_scale[stage][cp.row][0], &scale_map, &s.k_full[stage], 0, blockIdx.y,
                         cp.token_in_page, cp.page, policy);
      }
    }
    FLASH_MLA_NARROW_PHASE(true, it, kPhaseIssued);
  });
}

// Token t's 16-byte chunk c (before the swizzle) of box b: a 128-byte swizzled box (all but the per-tensor RoPE box).
__device__ __forceinline__ const uint8_t* raw_chunk(const RawStage& st, int b, int t, int c) {
  return &st.box[b][swizzled_offset(t, c)];  // a box row is 128 bytes, as a tile's
}

__device__ __forceinline__ uint32_t word(const int4& v, int i) {
  return static_cast<uint32_t>(i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w);
}

// Batch n's two 16-byte chunks of a stage for Q·Kᵀ (tokens t0 = 16w + lane/4 and t0 + 8, q4 = lane % 4):
// n < 8, box n / 2, chunk 2 q4 + n % 2; n = 8 (per tensor), the RoPE e4m3 bytes, chunk q4 of the fifth box's
// 64-byte rows (a quarter-warp reads two whole rows, 128 contiguous bytes: no bank conflict unswizzled).
__device__ __forceinline__ void load_batch(const RawStage& st, int n, int t0, int q4, int4 (&v)[2]) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int t = t0 + 8 * h;
    const uint8_t* chunk = n < 8 ? raw_chunk(st, n / 2, t, 2 * q4 + n % 2)
                                 : &st.box[kRawBoxes - 1][t * kRopeBoxCols + 16 * q4];
    v[h] = *reinterpret_cast<const int4*>(chunk);
  }
}

// One batch of Q·Kᵀ's A fragments from the thread's two 16-byte chunks of e4m3 bytes (tokens 16w + lane/4
// and + 8): word i of chunk h is k-step i's low columns (its low pair) and high columns (its upper pair).
__device__ __forceinline__ void convert_batch(const int4 (&v)[2], uint32_t (&A)[16]) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      A[4 * i + h] = e4m3x2_to_f16x2(word(v[h], i));
      A[4 * i + 2 + h] = ptx::e4m3x2_hi_to_f16x2(word(v[h], i));
    }
  }
}

// Sᵀ = K·Qᵀ of one block. Batch n < 8: box n / 2, the thread's chunk 2(lane % 4) + n % 2 of tokens
// 16w + lane/4 (+8): its 4 words are k-steps 8(n/2) + 4(n%2) + i, the low half of word i columns
// 2(lane%4) + {0,1}, the high half + 8. Batch 8: the RoPE box, chunk lane % 4.
// desc_q: Qᵀ's first tile (RowTile), made once by the caller.
template <int kCols>
__device__ __forceinline__ void score_block(float (&sc)[2 * kCols], const RawStage& st, uint64_t desc_q, int warp,
                                            int lane) {
  const int t0 = 16 * warp + lane / 4, q4 = lane % 4;
  // Batch n's two chunks, loaded one batch ahead (while the tensor cores run the previous one).
  int4 v[2];
  uint32_t AA[2][16];
  load_batch(st, 0, t0, q4, v);
#pragma unroll
  for (int n = 0; n < 9; ++n) {
    uint32_t(&A)[16] = AA[n % 2];
    if (n >= 2) {
      ptx::wgmma_wait_group<1>();
      ptx::fence_registers(A);
    }
    convert_batch(v, A);
    if (n + 1 < 9) load_batch(st, n + 1, t0, q4, v);
    ptx::wgmma_fence();
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int ks = n < 8 ? 8 * (n / 2) + 4 * (n % 2) + i : 32 + i;
      const uint32_t(&frag)[4] = *reinterpret_cast<const uint32_t(*)[4]>(&A[4 * i]);
      // Tile ks / 4 (4 KiB apart), 32 bytes per k-step within it; in 16-byte units of the start address.
      const uint64_t desc = desc_q + (256 * (ks / 4) + 2 * (ks % 4));
      if constexpr (kCols == 8) {
        ptx::wgmma_m64n32k16_rs_f16(sc, frag, desc, ks != 0);
      } else {
        ptx::wgmma_m64n16k16_rs_f16(sc, frag, desc, ks != 0);  // Qᵀ's first 16 rows
      }
    }
    ptx::wgmma_commit_group();
  }
  ptx::wgmma_wait_group<0>();
  ptx::fence_registers(AA[0]);
  ptx::fence_registers(AA[1]);
  ptx::fence_registers(sc);
}

// With scale: Sᵀ = sum over groups g of scale_g · (K_g·Q_gᵀ), plus K_rope·Q_ropeᵀ. Group g is
// box g, score_block's batches 2g and 2g + 1 (e4m3 converted to f16 as there), accumulated into a chain
// and folded into sc in fp32, times this thread's two tokens' scales, once both batches are done. With
// 16 rows group g uses chain g % 2 and is folded while the next group's wgmma run; with 32 rows there is
// one chain, so a group's first batch waits for the previous group's last and its fold (converting the
// batch before that wait, to overlap it, spilled 36 bytes). The RoPE box is bf16: batch 8 feeds it as it
// is (no conversion) to bf16 wgmma against Qᵀ's bf16 tile 8, into chain 0 (folded by then). scale[h][g]:
// token 16w + lane/4 + 8h.
// QTile: Qᵀ's tile type (HalfRowTile with 16 rows, RowTile with 32).
// desc_q: Qᵀ's first tile, made once by the caller.
template <int kCols, typename QTile>
__device__ __forceinline__ void score_block_scaled(float (&sc)[2 * kCols], const RawStage& st, uint64_t desc_q,
                                                   const float (&scale)[2][kFP8NumScales], int warp, int lane) {
  constexpr uint32_t kTileUnits = sizeof(QTile) / 16;  // tiles 2 or 4 KiB apart, in 16-byte units
  const int t0 = 16 * warp + lane / 4, q4 = lane % 4;
  int4 v[2];
  uint32_t AA[2][16];
  // Two chains with 16 rows; with 32 rows one (registers: the score warpgroups' 128), so a group's first
  // batch waits for the previous group's last (wait_group<0>) and its fold.
  constexpr int kChains = kCols == 4 ? 2 : 1;
  float chain[kChains][2 * kCols];
  auto fold = [&](int g) {
    float(&c)[2 * kCols] = chain[g % kChains];
    ptx::fence_registers(c);
#pragma unroll
    for (int i = 0; i < 2 * kCols; ++i) {
      const float w = scale[(i / 2) % 2][g];  // register i's token: 16w + lane/4 + 8((i / 2) % 2)
      sc[i] = g == 0 ? c[i] * w : fmaf(c[i], w, sc[i]);
    }
  };
  load_batch(st, 0, t0, q4, v);
#pragma unroll
  for (int n = 0; n < 9; ++n) {
    uint32_t(&A)[16] = AA[n % 2];
    if (kChains == 1 && n >= 2 && n % 2 == 0) {
      ptx::wgmma_wait_group<0>();  // group n / 2 - 1 done: fold it before the chain starts again
      ptx::fence_registers(A);
      fold(n / 2 - 1);             // groups 0, 1, 2, 3 at n = 2, 4, 6, 8
    } else if (n >= 2) {
      ptx::wgmma_wait_group<1>();  // batches up to n - 2 done
      ptx::fence_registers(A);
    }
    if (kChains == 2 && n >= 3 && n % 2 == 1) fold((n - 3) / 2);  // groups 0, 1, 2 at n = 3, 5, 7
    if (n < 8) {
      convert_batch(v, A);
      if (n + 1 < 8) load_batch(st, n + 1, t0, q4, v);
    } else {
      // Channels 16(lane % 4) .. + 15 of each token (chunks 2(lane % 4), + 1): word 2kk of them is k-step
      // 32 + kk's low column pair, word 2kk + 1 its high pair (qk_run_channel's order).
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int4 c0 = *reinterpret_cast<const int4*>(raw_chunk(st, kRawBoxes - 1, t0 + 8 * h, 2 * q4));
        const int4 c1 = *reinterpret_cast<const int4*>(raw_chunk(st, kRawBoxes - 1, t0 + 8 * h, 2 * q4 + 1));
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
          const int4& c = kk < 2 ? c0 : c1;
          A[4 * kk + h] = word(c, (2 * kk) % 4);
          A[4 * kk + 2 + h] = word(c, (2 * kk + 1) % 4);
        }
      }
    }
    ptx::wgmma_fence();
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int ks = n < 8 ? 8 * (n / 2) + 4 * (n % 2) + i : 32 + i;
      const uint32_t(&frag)[4] = *reinterpret_cast<const uint32_t(*)[4]>(&A[4 * i]);
      // Tile ks / 4, 32 bytes per k-step within it; in 16-byte units.
      const uint64_t desc = desc_q + (kTileUnits * (ks / 4) + 2 * (ks % 4));
      const int add = n < 8 ? ks % 8 != 0 : i != 0;  // a group's first k-step, or the RoPE's, starts its chain
      if constexpr (kCols == 8) {
        if (n < 8) {
          ptx::wgmma_m64n32k16_rs_f16(chain[(n / 2) % kChains], frag, desc, add);
        } else {
          ptx::wgmma_m64n32k16_rs_bf16(chain[0], frag, desc, add);
        }
      } else {
        if (n < 8) {
          ptx::wgmma_m64n16k16_rs_f16(chain[(n / 2) % kChains], frag, desc, add);
        } else {
          ptx::wgmma_m64n16k16_rs_bf16(chain[0], frag, desc, add);
        }
      }
    }
    ptx::wgmma_commit_group();
  }
  ptx::wgmma_wait_group<0>();
  ptx::fence_registers(AA[0]);
  ptx::fence_registers(AA[1]);
  if constexpr (kChains == 2) fold(3);  // with one chain, folded at n = 8
  ptx::fence_registers(chain[0]);
#pragma unroll
  for (int i = 0; i < 2 * kCols; ++i) sc[i] += chain[0][i];
}

// Column j of this thread in an m64nN accumulator (j < N / 4): query row 8(j/2) + 2(lane%4) + j%2, held
// at register at(j, 0) (Sᵀ: token 16w + lane/4; Oᵀ: the tile's channel base) and at(j, 1) (token + 8;
// channel + 1). Register i holds column column_of(i).
__device__ __forceinline__ int column(int lane, int j) { return 8 * (j / 2) + 2 * (lane % 4) + j % 2; }
__host__ __device__ constexpr int at(int j, int h) { return 4 * (j / 2) + 2 * h + j % 2; }
__host__ __device__ constexpr int column_of(int i) { return 2 * (i / 4) + i % 2; }

// o += t·beta (beta per query row) for one m64n32 tile t, once the wgmma that wrote t are done. With 32
// rows (kCols 8) t is the rows' Oᵀ; with 16 (kCols 4) t's columns 0..15 are the rows' hi term and
// 16..31 their lo term, kLoScale larger (register i + 8 is register i's row, column + 16).
template <int kCols>
__device__ __forceinline__ void add_tile(float (&o)[2 * kCols], float (&t)[16], const float (&beta)[kCols],
                                         const float (&beta_lo)[kCols]) {
  ptx::fence_registers(t);
#pragma unroll
  for (int i = 0; i < 2 * kCols; ++i) {
    if constexpr (kCols == 8) {
      o[i] = fmaf(t[i], beta[column_of(i)], o[i]);
    } else {
      o[i] = fmaf(t[i + 8], beta_lo[column_of(i)], fmaf(t[i], beta[column_of(i)], o[i]));
    }
  }
}

// Two values of P, given as the f16 pair h = P·kPScale (rounded to f16: 11 bits, subnormal to 2^-24), as two
// 8-bit terms each, P·kPScale ≈ hi + lo: hi in e4m3 (4 significant bits), lo
// the rest. P ≤ 2^kNarrowLag, so P·kPScale ≤ 2^8, inside e4m3's 448; the lo term keeps small P that
// e4m3 alone would flush (below 2^-10 once scaled: every token more than ~14 log2 units under the
// running max, which a long sequence has by the thousand). Each term holds both values: a's code, then b's.
// NaN stays NaN.
// - 32 rows (kCols 8): lo in e5m2 (3 more bits; normal down to 2^-14, subnormal to 2^-16), so P·kPScale
//   keeps ~3 bits down to 2^-14 and rounds to a 2^-16 step below: at most 2^-17 / kPScale lost per token.
// - 16 rows (kCols 4): the terms sit side by side in one wgmma's B and so share its type: lo in e4m3
//   too, kLoScale larger. |lo| is at most half an e4m3 step of hi (≤ 8 for hi ≤ 2^8), so lo·kLoScale ≤
//   2^8 stays inside e4m3's range; below, lo keeps 4 bits down to P·kPScale = 2^-11 and rounds to a
//   2^-14 step (P: 2^-18), four times the e5m2 step.
struct PTerms {
  uint16_t hi, lo;  // each the two values' 8-bit codes: the first value's in the low byte
};
template <int kCols>
__device__ __forceinline__ PTerms split_h(__half2 h) {
  const __nv_fp8x2_storage_t hi = __nv_cvt_halfraw2_to_fp8x2(h, __NV_SATFINITE, __NV_E4M3);
  const uint32_t back = e4m3x2_to_f16x2(hi);
  const __half2 rest = __hsub2(h, *reinterpret_cast<const __half2*>(&back));
  const __nv_fp8x2_storage_t lo =
      kCols == 8 ? __nv_cvt_halfraw2_to_fp8x2(rest, __NV_SATFINITE, __NV_E5M2)
                 : __nv_cvt_halfraw2_to_fp8x2(__hmul2(rest, __float2half2_rn(kLoScale)), __NV_SATFINITE, __NV_E4M3);
  return {hi, lo};
}

// Pᵀ·kPScale = 2^(Sᵀ - ms) of one block (ms: the reference less log2(kPScale)), stored for P·V, its per-thread
// column sums (of P·kPScale) written to `sum`.
// P·V's reduction runs over a 32-token k-step in the order ldmatrix.trans delivers V (pv_block):
// position k = 16h + 4q + i holds token 16h + 2q + (i / 2) + 8(i % 2). Pᵀ is stored in that order, as
// [32 rows, 128 bytes] 128-byte swizzled: bytes 32ks + k of term 0 (hi), then 64 + 32ks + k of term 1.
// The thread's values sc[4i + 2h + e] (token 16w + lane/4 + 8h, column 2i + e) are, per column and term,
// two adjacent positions: tokens 16w + g and 16w + g + 8 at positions 16(w % 2) + 2g, + 1 of k-step w / 2
// (g = lane / 4), one 2-byte store each (until session 33 an exchange with lane ^ 4 built 4-byte words).
// With 16 rows (kCols 4) term 1 goes to row 16 + r at term 0's bytes instead. With scale (kScaled), one Pᵀ
// per scale group grp, P·f[h][grp] (f: the token's scale over the block's largest, so at most 1 in
// magnitude): with 16 rows at tile grp / 2 of pt, bytes 64 (grp % 2) of each row; with 32 rows a tile each,
// groups 0 and 1 at bytes 4096 grp of `box4` (the block's stage's RoPE box, which Q·Kᵀ has read), groups 2
// and 3 at tiles 0 and 1 of pt.
template <int kCols, bool kScaled>
__device__ __forceinline__ void store_p(RowTile* pt, uint8_t* box4, const float (&sc)[2 * kCols],
                                        const float (&ms)[kCols], float (&sum)[kCols],
                                        const float (&f)[2][kFP8NumScales], int warp, int lane) {
  constexpr int kGroups = kScaled ? kFP8NumScales : 1;
  const int g = lane / 4;
  // With scale: each group's f of tokens g, g + 8, as f16. P·f·kPScale keeps the lo term's floor (split_h):
  // a token whose P·f is below ~2^-18 adds nothing to its group's channels, so a token whose scale is 2^18 or
  // more under its block's largest loses that group's V (the dense kernel keeps it, rounded to bf16).
  __half2 fh[kGroups] = {};
  if constexpr (kScaled) {
#pragma unroll
    for (int grp = 0; grp < kGroups; ++grp) fh[grp] = __floats2half2_rn(f[0][grp], f[1][grp]);
  }
#pragma unroll
  for (int i = 0; i < kCols / 2; ++i) {
    // P·kPScale of columns 2i, 2i + 1 (tokens g, g, g + 8, g + 8); the column sums stay fp32.
    float pv[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) pv[e] = ptx::exp2_ftz(sc[4 * i + e] - ms[column_of(4 * i + e)]);
    sum[2 * i] = pv[0] + pv[2];
    sum[2 * i + 1] = pv[1] + pv[3];
    // Column 2i (tokens g, g + 8), then column 2i + 1, as f16 pairs; with scale each group's Pᵀ is them times
    // the tokens' f (fh: an f16 pair, tokens g and g + 8).
    const __half2 c0 = __floats2half2_rn(pv[0], pv[2]);
    const __half2 c1 = __floats2half2_rn(pv[1], pv[3]);
#pragma unroll
    for (int grp = 0; grp < kGroups; ++grp) {
      char* tile = !kScaled ? reinterpret_cast<char*>(pt)
                   : kCols == 4 ? reinterpret_cast<char*>(&pt[grp / 2])
                   : grp < 2    ? reinterpret_cast<char*>(box4 + sizeof(RowTile) * grp)
                                : reinterpret_cast<char*>(&pt[grp - 2]);
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const __half2 c = e == 0 ? c0 : c1;
        const PTerms t = split_h<kCols>(kScaled ? __hmul2(c, fh[grp]) : c);
        const int row = column(lane, 2 * i + e);
#pragma unroll
        for (int term = 0; term < 2; ++term) {
          const int offset = kCols == 8 ? swizzled_offset(row, 4 * term + warp)
                                        : swizzled_offset(16 * term + row, warp + 4 * (grp % 2));
          *reinterpret_cast<uint16_t*>(tile + offset + 2 * g) = term == 0 ? t.hi : t.lo;
        }
      }
    }
  }
}

// The V rows of tokens at or past `valid` (0 < valid < 64) in the last block of a sequence: zeros, since
// they may hold anything (a short page's stale rows, poison) and P's zeros would not hide a NaN. Each
// writing thread's fence_proxy_async before its p_full arrive orders these writes before the value
// warpgroup's reads and the stage's next TMA fill.
__device__ __forceinline__ void zero_tail(RawStage& st, int valid, int thread) {
  constexpr int kChunks = kRawBoxCols / 16;
  for (int i = valid * kChunks + thread; i < kBlockN * kChunks; i += kConsumerThreads) {
#pragma unroll
    for (int b = 0; b < kVSubTiles / 2; ++b) reinterpret_cast<int4*>(st.box[b])[i] = make_int4(0, 0, 0, 0);
  }
}

// Channel tile mt's V bytes for this thread (warp w: channels 64mt + 16w + 0..15, chunk 4(mt % 2) + w of box
// mt / 2): token rows 32ks + lane as one ldmatrix.trans per k-step ks (matrix lane / 8: tokens 32ks + 8(lane / 8)
// .. + 7), as 16-bit channel pairs.
__device__ __forceinline__ void load_v(const RawStage& st, int mt, int warp, int lane, uint32_t (&r)[8]) {
  const int chunk = 4 * (mt % 2) + warp;
#pragma unroll
  for (int ks = 0; ks < 2; ++ks) {
    uint32_t(&rk)[4] = *reinterpret_cast<uint32_t(*)[4]>(&r[4 * ks]);
    ptx::ldmatrix_x4_trans(raw_chunk(st, mt / 2, 32 * ks + lane, chunk), rk);
  }
}

// load_v's words regrouped into the tile's e4m3 A fragments (two k-steps of 4 registers): four tokens of one
// channel per register, in the order pv_block describes.
__device__ __forceinline__ void v_fragments(const uint32_t (&raw)[8], uint32_t (&a)[8]) {
#pragma unroll
  for (int ks = 0; ks < 2; ++ks) {
#pragma unroll
    for (int x = 0; x < 2; ++x) {
      const uint32_t lo = raw[4 * ks + 2 * x], hi = raw[4 * ks + 2 * x + 1];
      a[4 * ks + 2 * x] = __byte_perm(lo, hi, 0x6240);      // even channel: tokens 2q, 2q + 8, 2q + 1, 2q + 9
      a[4 * ks + 2 * x + 1] = __byte_perm(lo, hi, 0x7351);  // odd channel
    }
  }
}

// Oᵀ += Vᵀ·Pᵀ·beta of one block on e4m3 tensor cores. Channel tile mt (64 channels): warp w feeds its
// rows 16w..16w+15 from chunk 4(mt % 2) + w of box mt / 2 (channels 64mt + 16w + 0..15), loaded by
// ldmatrix.trans as 16-bit channel pairs of 8 tokens and regrouped by prmt into four tokens of one
// channel per register: row lane/4 is channel 64mt + 16w + 2(lane/4), row + 8 the next channel. Each
// tile's wgmma (two k-steps; two P terms each with 32 rows, both terms in one B with 16) accumulate into
// a fresh fp32 tile T, added to Oᵀ in fp32 (the tensor cores' e4m3 accumulation keeps fewer bits; a
// chain of four or two is short). Two tiles are in flight: tile mt + 1's wgmma are issued before tile
// mt is waited for and added (one tile at a time took ~380 cycles each, session 10). Rows past the
// sequence's end were zeroed (zero_tail).
// Only tiles mt < kTiles: the others run on the score warpgroups (kScoreTiles, issue_own_tiles).
// With scale (kScaled), channel tile mt reads scale group mt / 2's Pᵀ (store_p; with 32 rows groups 0 and 1
// in the stage's box 4), and adds with weight beta times that group's block maximum (gmax).
template <int kCols, bool kScaled, int kTiles>
__device__ __forceinline__ void pv_block(float (&o)[kVSubTiles][2 * kCols], const RawStage& st, const RowTile* pt,
                                         const float (&beta)[kCols], const float4& gmax, int warp, int lane) {
  float beta_lo[kCols];  // the lo term's weight (16 rows: its own columns of T)
#pragma unroll
  for (int j = 0; j < kCols; ++j) beta_lo[j] = beta[j] * (1.0f / kLoScale);
  const uint64_t desc_p = ptx::make_smem_desc(pt, 16, 1024, ptx::Swizzle::k128B);
  // With scale and 32 rows: groups 0 and 1's tiles in the stage's box 4.
  const uint64_t desc_box4 = ptx::make_smem_desc(st.box[kRawBoxes - 1], 16, 1024, ptx::Swizzle::k128B);
  uint32_t raw[8], a[2][8];  // the next tile's ldmatrix words; A fragments of two tiles in flight
  float T[2][16];            // fresh fp32 tiles of two tiles in flight
  // Regroups the loaded bytes into tile mt's A fragments, loads tile mt + 1's bytes and issues tile mt.
  auto issue = [&](int mt) {
    uint32_t(&am)[8] = a[mt % 2];
    v_fragments(raw, am);
    if (mt + 1 < kTiles) load_v(st, mt + 1, warp, lane, raw);  // while the tensor cores run
    ptx::wgmma_fence();
    // With scale, group g = mt / 2's Pᵀ: 16 rows at tile g / 2 (4 KiB apart), bytes 64 (g % 2); 32 rows at
    // box 4's tile g (g < 2) or tile g - 2.
    constexpr uint32_t kTile = sizeof(RowTile) / 16;  // 4 KiB in 16-byte units
    const int g = mt / 2;
    const uint64_t desc_t = !kScaled     ? desc_p
                            : kCols == 4 ? desc_p + (kTile * (g / 2) + 4 * (g % 2))
                            : g < 2      ? desc_box4 + kTile * g
                                         : desc_p + kTile * (g - 2);
#pragma unroll
    for (int ks = 0; ks < 2; ++ks) {
      const uint32_t(&frag)[4] = *reinterpret_cast<const uint32_t(*)[4]>(&am[4 * ks]);
      // Start address + 64term + 32ks bytes, in 16-byte units; term 0 (hi) e4m3, term 1 (lo) e5m2. With
      // 16 rows both terms are rows of one B (+ 32ks bytes), both e4m3.
      ptx::wgmma_m64n32k32_rs_e4m3<ptx::Fp8::kE4M3>(T[mt % 2], frag, desc_t + 2 * ks, ks > 0);
      if constexpr (kCols == 8) {
        ptx::wgmma_m64n32k32_rs_e4m3<ptx::Fp8::kE5M2>(T[mt % 2], frag, desc_t + (4 + 2 * ks), 1);
      }
    }
    ptx::wgmma_commit_group();
  };
  load_v(st, 0, warp, lane, raw);
  issue(0);
#pragma unroll
  for (int mt = 0; mt < kTiles; ++mt) {
    if (mt + 1 < kTiles) {
      issue(mt + 1);
      ptx::wgmma_wait_group<1>();
    } else {
      ptx::wgmma_wait_group<0>();
    }
    ptx::fence_registers(a[mt % 2]);
    if constexpr (kScaled) {
      const float w = mt < 2 ? gmax.x : mt < 4 ? gmax.y : mt < 6 ? gmax.z : gmax.w;
      float bg[kCols], bg_lo[kCols];
#pragma unroll
      for (int j = 0; j < kCols; ++j) {
        bg[j] = beta[j] * w;
        bg_lo[j] = beta_lo[j] * w;
      }
      add_tile<kCols>(o[mt], T[mt % 2], bg, bg_lo);
    } else {
      add_tile<kCols>(o[mt], T[mt % 2], beta, beta_lo);
    }
  }
}

// Combines per-thread column values over the 64 tokens: lanes of equal lane % 4 (shuffles), then the
// four warps through shared memory; every thread gets its kCols columns' results. The caller's next write
// to s.columns comes after a barrier that every warp reaches only after these reads.
template <int kCols, bool kScaled, typename Op>
__device__ __forceinline__ void reduce_columns(float (&v)[kCols], SharedStorage<kCols, kScaled>& s, int wg, int warp,
                                               int lane, Op op) {
#pragma unroll
  for (int j = 0; j < kCols; ++j) {
#pragma unroll
    for (int x = 4; x < 32; x <<= 1) v[j] = op(v[j], __shfl_xor_sync(0xffffffffu, v[j], x));
  }
  if (lane < 4) {
#pragma unroll
    for (int j = 0; j < kCols; ++j) s.columns[wg][warp][column(lane, j)] = v[j];
  }
  ptx::named_barrier_sync(kColumns + wg, kConsumerThreads);
#pragma unroll
  for (int j = 0; j < kCols; ++j) {
    const int c = column(lane, j);
    const float(&x)[kConsumerWarps][kRows] = s.columns[wg];
    v[j] = op(op(x[0][c], x[1][c]), op(x[2][c], x[3][c]));
  }
}

// Writes a finished piece: this thread's channels 64mt + 16w + 2(lane/4) + {0, 1} (mt < 8) of its kCols
// query rows, final output (bf16) when the sequence is not split, else the fp32 partial at the piece's
// slot. Eight lanes of equal lane % 4 fill 32 (64) contiguous bytes per row and tile.
template <int kCols>
__device__ __forceinline__ void store_output(const DecodeParams& p, const Piece& pc, int warp, int lane,
                                             const float (&o)[kVSubTiles][2 * kCols], const float (&m)[kCols],
                                             const float (&l)[kCols], float out_scale) {
  const int base = 16 * warp + 2 * (lane / 4);
#pragma unroll
  for (int j = 0; j < kCols; ++j) {
    const int r = column(lane, j);
    if (r >= p.rows) continue;
    const RowResult res = finish_row(m[j], l[j], out_scale / kPScale);  // Oᵀ sums P·kPScale
    const RowSlot dst = row_slot(p, pc, r);
    if (dst.final) {
      __nv_bfloat16* out = static_cast<__nv_bfloat16*>(p.out) + dst.row * kHeadDimV + base;
#pragma unroll
      for (int mt = 0; mt < kVSubTiles; ++mt) {
        *reinterpret_cast<uint32_t*>(out + 64 * mt) =
            pack2<__nv_bfloat16>(o[mt][at(j, 0)] * res.inv, o[mt][at(j, 1)] * res.inv);
      }
      if (warp == 0 && lane < 4) p.lse[dst.lse] = res.empty ? INFINITY : res.lse;
    } else {
      float* out = p.o_accum + dst.row * kHeadDimV + base;
#pragma unroll
      for (int mt = 0; mt < kVSubTiles; ++mt) {
        *reinterpret_cast<float2*>(out + 64 * mt) =
            make_float2(o[mt][at(j, 0)] * res.inv, o[mt][at(j, 1)] * res.inv);
      }
      if (warp == 0 && lane < 4) p.lse_accum[dst.lse] = res.empty ? -INFINITY : res.lse;
    }
  }
}

// A score warpgroup's own channel tiles (kScoreTiles, config.hpp; per tensor, 16 rows): own_o[t] (tile
// kVSubTiles - kOwn + t, this thread's part in the accumulator order of pv_block's tiles) += Vᵀ·Pᵀ of its
// own block, on its running max (the sums' reference). issue_own_tiles starts the wgmma into fresh tiles T:
// own_a holds the tiles' A fragments, loaded while the warpgroup held the stage (before p_full: the value
// warpgroup frees the stage after it); pt is the block's Pᵀ, fenced by every thread before the warpgroup's
// last barrier. add_own_tiles waits for them at once and adds the hi term as it is, the lo term 1 / kLoScale of
// it. (Waiting only at the next block's start, after its stage's wait, made ptxas serialise every Q·Kᵀ wgmma and
// spill 8 bytes, session 34.)
template <int kOwn>
__device__ __forceinline__ void issue_own_tiles(float (&T)[kOwn][16], const uint32_t (&own_a)[kOwn][8],
                                                const RowTile* pt) {
  const uint64_t desc_p = ptx::make_smem_desc(pt, 16, 1024, ptx::Swizzle::k128B);
  ptx::wgmma_fence();
#pragma unroll
  for (int t = 0; t < kOwn; ++t) {
#pragma unroll
    for (int ks = 0; ks < 2; ++ks) {
      const uint32_t(&frag)[4] = *reinterpret_cast<const uint32_t(*)[4]>(&own_a[t][4 * ks]);
      ptx::wgmma_m64n32k32_rs_e4m3<ptx::Fp8::kE4M3>(T[t], frag, desc_p + 2 * ks, ks > 0);
    }
  }
  ptx::wgmma_commit_group();
}

template <int kCols, int kOwn>
__device__ __forceinline__ void add_own_tiles(float (&own_o)[kOwn][2 * kCols], float (&T)[kOwn][16],
                                              uint32_t (&own_a)[kOwn][8]) {
  static_assert(kCols == 4, "the hi and lo terms side by side");
  ptx::wgmma_wait_group<0>();
  constexpr float kOne[kCols] = {1.0f, 1.0f, 1.0f, 1.0f};
  constexpr float kLo[kCols] = {1.0f / kLoScale, 1.0f / kLoScale, 1.0f / kLoScale, 1.0f / kLoScale};
#pragma unroll
  for (int t = 0; t < kOwn; ++t) {
    ptx::fence_registers(own_a[t]);
    add_tile<kCols>(own_o[t], T[t], kOne, kLo);
  }
}

// A score warpgroup (wg 0 or 1): Sᵀ, the softmax and Pᵀ of every other block of each piece, then the
// piece's column statistics for the value warpgroup. Its column max runs on its own blocks only; each
// block's Pᵀ goes with the max it was computed against (p_ref), so that the value warpgroup can bring
// the two warpgroups' blocks to one scale. With scale (kScaled), Sᵀ folds in each token's scales
// (score_block_scaled) and each block's Pᵀ is stored once per scale group against the group's largest
// |scale| over the block's live tokens (p_group_max), which P·V multiplies back.
template <int kCols, bool kScaled>
__device__ __forceinline__ void score_consumer(const DecodeParams& p, SharedStorage<kCols, kScaled>& s, int wg,
                                               int thread) {
  using Storage = SharedStorage<kCols, kScaled>;
  const int warp = thread / 32, lane = thread % 32;
  constexpr uint32_t kBoth = kScoreWarpgroups * kConsumerThreads;
  constexpr int kOwn = kScoreTiles<kCols, kScaled>;  // P·V's last kOwn channel tiles of its own blocks
  constexpr int kOwnArr = kOwn > 0 ? kOwn : 1;
  // Qᵀ's descriptor, made once: with 16 rows held in a register through the blocks (opaque_low); with 32 the
  // compiler may remake it per block (a register held there spilled).
  const uint64_t desc_q_made = ptx::make_smem_desc(&s.q[0], 16, 1024, ptx::Swizzle::k128B);
  const uint64_t desc_q = kCols == 4 ? ptx::opaque_low(desc_q_made) : desc_q_made;
  uint32_t blocks_before = 0, piece = 0;  // the CTA's blocks in earlier pieces (both warpgroups')
  for_each_piece(p, [&](const Piece& pc) {
    const int first = pc.first_block(), end = pc.end_block();
    // Both score warpgroups finished the previous piece (the kQReady at its end): Qᵀ may be replaced.
    if (wg == 0 && end > first) load_q<kCols, kScaled>(p, s, pc.req, thread);
    ptx::fence_proxy_async_shared();
    ptx::named_barrier_sync(kQReady, kBoth);
    // Per query row: the score scale and the causal limit, through shared memory to every score thread.
    if (wg == 0 && thread < kRows) {
      s.col_scale[thread] = p.softmax_scale * kLog2e * descale_or_one(p.descale_q) *
                            descale_or_one(p.descale_k) * s.q_row_scale[thread];
      const int t = thread / p.q_per_kv;
      s.col_limit[thread] = p.causal ? min(pc.token_end, pc.seqlen - p.s_q + t + 1) : pc.token_end;
    }
    ptx::named_barrier_sync(kQReady, kBoth);
    // Per column of this thread, for the whole piece: the running max m (every thread of a column holds
    // the same: a move takes the block's column max from reduce_columns, which every thread gets) and,
    // where registers allow (kColumnRegs), P's reference ms (reference_of(m)), the score scale and the causal
    // limit; min_limit is the smallest of the thread's limits. l sums P·kPScale until the piece's end.
    constexpr bool kColumnRegs = !(kScaled && kCols == 8);
    // P·kPScale = 2^(s - ms): m made finite (a fully masked column so far: keep exp2 finite), less log2(kPScale).
    // m - 4 is exact in fp32 for 2 <= m < 2^25 and may round otherwise (|m| < 2, or a negative m whose difference
    // crosses a binade): a factor 2^δ common to a block's Oᵀ and sums (it cancels unless the reference moves;
    // ~ulp(m) relative otherwise), and P·kPScale stays <= 2^8 while |m| < 2^21.
    auto reference_of = [](float mx) { return finite_reference(mx) - kPScaleLog2; };
    float l[kCols], col_scale[kCols], m[kCols], ms_keep[kCols];
    float own_o[kOwnArr][2 * kCols] = {};  // with kOwn: this warpgroup's part of those tiles, on ms like l
    int col_limit[kCols], min_limit = INT_MAX;
#pragma unroll
    for (int j = 0; j < kCols; ++j) {
      l[j] = 0.0f;
      col_scale[j] = s.col_scale[column(lane, j)];
      col_limit[j] = s.col_limit[column(lane, j)];
      min_limit = min(min_limit, col_limit[j]);
      m[j] = -INFINITY;
      ms_keep[j] = reference_of(-INFINITY);
    }
    auto scale_of = [&](int j) { return kColumnRegs ? col_scale[j] : s.col_scale[column(lane, j)]; };
    auto limit_of = [&](int j) { return kColumnRegs ? col_limit[j] : s.col_limit[column(lane, j)]; };

    // This warpgroup's blocks: every other one, from first + wg; `it` counts every block of the CTA.
    for (int blk = first + wg; blk < end; blk += kScoreWarpgroups) {
      const uint32_t it = blocks_before + static_cast<uint32_t>(blk - first);
      const int stage = static_cast<int>(it % kStages), slot = static_cast<int>(it % Storage::kSlots);
      // k_free's phase for the stage's previous block (it - kStages) completes before the producer
      // starts this block's copy, so waiting on it first costs nothing beyond the k_full wait; it keeps
      // k_full's parity from matching a phase two behind if the block order changes.
      ptx::mbarrier_wait(&s.k_free[stage], ((it / kStages) & 1) ^ 1);
      FLASH_MLA_NARROW_PHASE(thread == 0, it, kPhaseScoreWait);
      ptx::mbarrier_wait(&s.k_full[stage], (it / kStages) & 1);
      FLASH_MLA_NARROW_PHASE(thread == 0, it, kPhaseLanded);
      float sc[2 * kCols];
      const int valid = pc.seqlen - blk * kBlockN;
      float f[2][kFP8NumScales];  // with scale: this thread's tokens' scales over the block's largest
      float lane_group_max = 0.0f;  // with scale: group (lane % 4)'s divisor (its block maximum)
      if constexpr (kScaled) {
        // This thread's tokens' scales, 0 past the sequence's end (stale rows may hold anything).
        const int tk = 16 * warp + lane / 4;
        float scale[2][kFP8NumScales];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const float4 v = *reinterpret_cast<const float4*>(s.k_scale[stage][tk + 8 * h]);
          const bool live = tk + 8 * h < valid;
          scale[h][0] = live ? v.x : 0.0f;
          scale[h][1] = live ? v.y : 0.0f;
          scale[h][2] = live ? v.z : 0.0f;
          scale[h][3] = live ? v.w : 0.0f;
        }
        score_block_scaled<kCols, typename Storage::QTile>(sc, s.k[stage], desc_q, scale, warp, lane);
        // Each group's largest live magnitude over the block, taken by every warp on its own: tokens lane and
        // lane + 32, then a warp-wide integer max (a non-negative float orders as its bits; fmaxf from 0
        // drops a NaN).
        float gm[kFP8NumScales] = {};
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const float4 v = *reinterpret_cast<const float4*>(s.k_scale[stage][lane + 32 * h]);
          if (lane + 32 * h < valid) {
            gm[0] = fmaxf(gm[0], fabsf(v.x));
            gm[1] = fmaxf(gm[1], fabsf(v.y));
            gm[2] = fmaxf(gm[2], fabsf(v.z));
            gm[3] = fmaxf(gm[3], fabsf(v.w));
          }
        }
        // Lane l divides for group l % 4 only (one IEEE division per lane, not four) and the lanes then
        // take the four reciprocals. The divisor is at least the smallest normal float so that 1 / norm is
        // finite; P·V multiplies by the same norm back. 0 when no live scale is nonzero (or every one is
        // NaN): P·V then adds 0 (or NaN).
        float big = 0.0f;
#pragma unroll
        for (int g = 0; g < kFP8NumScales; ++g) {
          const float b = __uint_as_float(__reduce_max_sync(0xffffffffu, __float_as_uint(gm[g])));
          if (lane % kFP8NumScales == g) big = b;
        }
        lane_group_max = big > 0.0f ? fmaxf(big, 0x1p-126f) : 0.0f;
        const float inv_mine = lane_group_max > 0.0f ? 1.0f / lane_group_max : 0.0f;
#pragma unroll
        for (int g = 0; g < kFP8NumScales; ++g) {
          const float inv = __shfl_sync(0xffffffffu, inv_mine, g);
          // A NaN scale stays NaN, as the dequantised value is: like a NaN code, it reaches every row's
          // output through P·V, causally masked rows too (P = 0 times NaN).
          f[0][g] = scale[0][g] * inv;
          f[1][g] = scale[1][g] * inv;
        }
        // With 32 rows Pᵀ's first two groups go into the stage's box 4 (store_p): every warp's Q·Kᵀ has
        // read it past this barrier.
        if constexpr (kCols == 8) ptx::named_barrier_sync(kBoxFree + wg, kConsumerThreads);
      } else {
        score_block<kCols>(sc, s.k[stage], desc_q, warp, lane);
      }
      FLASH_MLA_NARROW_PHASE(thread == 0, it, kPhaseScores);

      // Mask (select, never multiply: rows past the end may be NaN) and scale into the log2 domain.
      // P is first computed against the running max as it stands (`fast`): it stays valid while no
      // score exceeds that max by more than kNarrowLag (P ≤ 2^kNarrowLag, config.hpp), which after a
      // piece's first block is the common case; only otherwise do the warps meet to take the block's
      // column max and compute P again. When both of this thread's tokens are below every one of its
      // columns' limits (every block but a sequence's last, or the causal diagonal's), there is no mask.
      const int token0 = blk * kBlockN + 16 * warp + lane / 4;
      if (token0 + 8 < min_limit) {
#pragma unroll
        for (int j = 0; j < kCols; ++j) {
          sc[at(j, 0)] *= scale_of(j);
          sc[at(j, 1)] *= scale_of(j);
        }
      } else {
#pragma unroll
        for (int j = 0; j < kCols; ++j) {
          float& v0 = sc[at(j, 0)];
          float& v1 = sc[at(j, 1)];
          const int limit = limit_of(j);
          const float scale = scale_of(j);
          v0 = token0 < limit ? v0 * scale : -INFINITY;
          v1 = token0 + 8 < limit ? v1 * scale : -INFINITY;
        }
      }
      bool fast = true;
      float ms[kCols];
#pragma unroll
      for (int j = 0; j < kCols; ++j) {
        // A difference: m + lag rounds for |m| >= 2^26.
        fast &= !(fmaxf(sc[at(j, 0)], sc[at(j, 1)]) - m[j] > kNarrowLag);
        ms[j] = kColumnRegs ? ms_keep[j] : reference_of(m[j]);
      }
      // The slot's previous block (it - slots) is through the value warpgroup's P·V.
      ptx::mbarrier_wait(&s.p_free[slot], ((it / Storage::kSlots) & 1) ^ 1);
      float sum[kCols];
      RowTile* pt = &s.p[Storage::kSlotTiles * slot];
      // With scale and 32 rows, Pᵀ's first two groups go here: past kBoxFree every warp's Q·Kᵀ has read it.
      uint8_t* box4 = s.k[stage].box[kRawBoxes - 1];
      store_p<kCols, kScaled>(pt, box4, sc, ms, sum, f, warp, lane);
      if (valid < kBlockN) {  // a sequence's last block: once every warp has read its K rows
        ptx::named_barrier_sync(kPReady + wg, kConsumerThreads);
        zero_tail(s.k[stage], valid, thread);
      }
      // With own tiles, this thread's Pᵀ (and zeroed rows) before the warpgroup's own wgmma, past the barrier.
      if constexpr (kOwn > 0) ptx::fence_proxy_async_shared();
      if (!ptx::named_barrier_all(kPReady + wg, kConsumerThreads, fast)) {  // some warp's vote failed
        float col_max[kCols];
#pragma unroll
        for (int j = 0; j < kCols; ++j) col_max[j] = fmaxf(sc[at(j, 0)], sc[at(j, 1)]);
        reduce_columns<kCols>(col_max, s, wg, warp, lane, [](float a, float b) { return fmaxf(a, b); });
        float to_new[kCols];  // what was summed against the old reference, to the new one
#pragma unroll
        for (int j = 0; j < kCols; ++j) {
          const float m_new = col_max[j] - m[j] > kNarrowLag ? col_max[j] : m[j];
          to_new[j] = ptx::exp2_ftz(m[j] - finite_reference(m_new));
          l[j] *= to_new[j];
          ms[j] = reference_of(m_new);
          m[j] = m_new;
          if constexpr (kColumnRegs) ms_keep[j] = ms[j];
        }
#pragma unroll
        for (int t = 0; t < kOwn; ++t) {
#pragma unroll
          for (int i = 0; i < 2 * kCols; ++i) own_o[t][i] *= to_new[column_of(i)];
        }
        store_p<kCols, kScaled>(pt, box4, sc, ms, sum, f, warp, lane);  // the same thread writes the same bytes
        if constexpr (kOwn > 0) ptx::fence_proxy_async_shared();
        // Every warp's reads of s.columns (reduce_columns) before a later write of them: the piece's sums
        // (a later block's barrier.red would order a later block's; this barrier is for a piece's last).
        ptx::named_barrier_sync(kPReady + wg, kConsumerThreads);
      }
      FLASH_MLA_NARROW_PHASE(thread == 0, it, kPhaseVoted);  // the vote's barrier passed (or the slow path's)
#pragma unroll
      for (int j = 0; j < kCols; ++j) l[j] += sum[j];
      if (warp == 0 && lane < 4) {
#pragma unroll
        for (int j = 0; j < kCols; ++j) s.p_ref[slot][column(lane, j)] = m[j];
        if constexpr (kScaled) s.p_group_max[slot][lane] = lane_group_max;
      }
      // Own tiles: their V read while this warpgroup holds the stage.
      uint32_t own_a[kOwnArr][8];
#pragma unroll
      for (int t = 0; t < kOwn; ++t) {
        uint32_t raw[8];
        load_v(s.k[stage], kVSubTiles - kOwn + t, warp, lane, raw);
        v_fragments(raw, own_a[t]);
      }
      // Pᵀ (generic-proxy writes, and the zeroed tail rows) before the value warpgroup's wgmma and the
      // stage's next TMA fill: each thread fences its own writes (with own tiles, above), then arrives.
      if constexpr (kOwn == 0) ptx::fence_proxy_async_shared();
      ptx::mbarrier_arrive(&s.p_full[slot]);
      FLASH_MLA_NARROW_PHASE(thread == 0, it, kPhasePFull);
      if constexpr (kOwn > 0) {
        // Waited here: after a piece of an odd block count the other warpgroup writes this slot next (`it` runs
        // over the CTA's blocks), ordered behind these reads by this wait and the kQReady barrier at the
        // piece's end, which p_free (the value warpgroup's reads only) does not cover.
        float own_t[kOwn][16];
        issue_own_tiles<kOwn>(own_t, own_a, pt);
        add_own_tiles<kCols, kOwn>(own_o, own_t, own_a);
        FLASH_MLA_NARROW_PHASE(thread == 0, it, kPhaseOwn);
      }
    }
    blocks_before += static_cast<uint32_t>(max(end - first, 0));
    if constexpr (kOwn > 0) {
      // The value warpgroup read the previous piece's own tiles (its stats_free arrive), then these go in;
      // every thread arrives on stats_full after its own writes. One buffer: with pieces of fewer than ~4
      // blocks a score warpgroup may wait here for the value warpgroup's previous piece.
      if (piece > 0) ptx::mbarrier_wait(&s.stats_free[(piece - 1) & 1], ((piece - 1) >> 1) & 1);
#pragma unroll
      for (int t = 0; t < kOwn; ++t) {
        float4* dst = reinterpret_cast<float4*>(s.score_o[wg][t][thread]);
#pragma unroll
        for (int q = 0; q < kCols / 2; ++q) {
          dst[q] = make_float4(own_o[t][4 * q], own_o[t][4 * q + 1], own_o[t][4 * q + 2], own_o[t][4 * q + 3]);
        }
      }
    }
#pragma unroll
    for (int j = 0; j < kCols; ++j) l[j] *= 1.0f / kPScale;  // sums of P (exact: a power of two)
    reduce_columns<kCols>(l, s, wg, warp, lane, [](float a, float b) { return a + b; });
    const int pp = static_cast<int>(piece & 1);
    ptx::mbarrier_wait(&s.stats_free[pp], ((piece >> 1) & 1) ^ 1);
    if (warp == 0 && lane < 4) {
#pragma unroll
      for (int j = 0; j < kCols; ++j) {
        s.stats_m[pp][wg][column(lane, j)] = m[j];
        s.stats_l[pp][wg][column(lane, j)] = l[j];
      }
    }
    if (kOwn > 0 || (warp == 0 && lane < 4)) ptx::mbarrier_arrive(&s.stats_full[pp]);
    // Both score warpgroups done with Qᵀ, the row scales and limits before the next piece's.
    ptx::named_barrier_sync(kQReady, kBoth);
    ++piece;
  });
}

// The value warpgroup: Oᵀ += Vᵀ·Pᵀ for every block of each piece, in order, on one scale: the largest
// reference max seen so far (M per column). A block computed against a smaller reference r adds with
// weight 2^(r - M); a larger one rescales Oᵀ first. At the piece's end the score warpgroups' sums,
// brought to M, give l, and this warpgroup stores the piece.
template <int kCols, bool kScaled>
__device__ __forceinline__ void value_consumer(const DecodeParams& p, SharedStorage<kCols, kScaled>& s, int thread) {
  using Storage = SharedStorage<kCols, kScaled>;
  constexpr int kOwn = kScoreTiles<kCols, kScaled>;
  constexpr int kTiles = kVSubTiles - kOwn;  // this warpgroup's channel tiles (the rest: issue_own_tiles)
  const int warp = thread / 32, lane = thread % 32;
  uint32_t it = 0, piece = 0;
  for_each_piece(p, [&](const Piece& pc) {
    float o[kVSubTiles][2 * kCols];
#pragma unroll
    for (int mt = 0; mt < kVSubTiles; ++mt) {
#pragma unroll
      for (int i = 0; i < 2 * kCols; ++i) o[mt][i] = 0.0f;
    }
    float big[kCols];  // M per column: the largest reference max of the piece so far
#pragma unroll
    for (int j = 0; j < kCols; ++j) big[j] = -INFINITY;
    for (int blk = pc.first_block(); blk < pc.end_block(); ++blk, ++it) {
      const int stage = static_cast<int>(it % kStages), slot = static_cast<int>(it % Storage::kSlots);
      // The combine may launch once every CTA has begun its last block (dense kernel.cuh).
      if (blk == pc.end_block() - 1 && pc.next_req < 0) cudaTriggerProgrammaticLaunchCompletion();
      FLASH_MLA_NARROW_PHASE(thread == 0, it, kPhaseValueWait);
      ptx::mbarrier_wait(&s.p_full[slot], (it / Storage::kSlots) & 1);
      // The TMA bytes of V through this thread's own wait (complete long ago: a score warpgroup
      // waited for them before storing the slot's Pᵀ).
      ptx::mbarrier_wait(&s.k_full[stage], (it / kStages) & 1);
      FLASH_MLA_NARROW_PHASE(thread == 0, it, kPhaseValueGo);
      float alpha[kCols], beta[kCols];  // per column: Oᵀ's rescale to the new M, this block's weight
      bool grows = false;
#pragma unroll
      for (int j = 0; j < kCols; ++j) {
        const float r = s.p_ref[slot][column(lane, j)];
        const float m_new = fmaxf(big[j], r);
        const float mu = finite_reference(m_new);
        grows |= m_new > big[j];
        alpha[j] = ptx::exp2_ftz(big[j] - mu);  // M = -inf: Oᵀ is still zero
        beta[j] = ptx::exp2_ftz(r - mu);        // r = -inf: this block's Pᵀ column is zero
        big[j] = m_new;
      }
      if (grows) {
#pragma unroll
        for (int mt = 0; mt < kTiles; ++mt) {
#pragma unroll
          for (int i = 0; i < 2 * kCols; ++i) o[mt][i] *= alpha[column_of(i)];
        }
      }
      const float4 gmax = kScaled ? *reinterpret_cast<const float4*>(s.p_group_max[slot]) : float4{};
      pv_block<kCols, kScaled, kTiles>(o, s.k[stage], &s.p[Storage::kSlotTiles * slot], beta, gmax, warp, lane);
      FLASH_MLA_NARROW_PHASE(thread == 0, it, kPhaseValueDone);
      ptx::mbarrier_arrive(&s.p_free[slot]);
      ptx::mbarrier_arrive(&s.k_free[stage]);
    }
    const int pp = static_cast<int>(piece & 1);
    ptx::mbarrier_wait(&s.stats_full[pp], (piece >> 1) & 1);
    float l[kCols], to_big[kScoreWarpgroups][kCols];  // a score warpgroup's reference to M
#pragma unroll
    for (int j = 0; j < kCols; ++j) {
      const float mu = finite_reference(big[j]);
      l[j] = 0.0f;
#pragma unroll
      for (int w = 0; w < kScoreWarpgroups; ++w) {
        to_big[w][j] = ptx::exp2_ftz(s.stats_m[pp][w][column(lane, j)] - mu);
        l[j] += s.stats_l[pp][w][column(lane, j)] * to_big[w][j];
      }
    }
    // The score warpgroups' own tiles, brought to M like their sums.
#pragma unroll
    for (int t = 0; t < kOwn; ++t) {
#pragma unroll
      for (int i = 0; i < 2 * kCols; ++i) {
#pragma unroll
        for (int w = 0; w < kScoreWarpgroups; ++w) {
          o[kTiles + t][i] += s.score_o[w][t][thread][i] * to_big[w][column_of(i)];
        }
      }
    }
    ptx::mbarrier_arrive(&s.stats_free[pp]);
    store_output<kCols>(p, pc, warp, lane, o, big, l, descale_or_one(p.descale_k));
    if (pc.n_splits > 1 && p.release_pieces) {
      ptx::named_barrier_sync(kPartialStored, kConsumerThreads);
      if (thread == 0) release_piece(p, pc);
    }
    ++piece;
  });
}

// kCols: query rows per thread in the m64nN tiles, 8 (up to 32 rows) or 4 (up to 16: N = 16 for Sᵀ, and
// Pᵀ's two terms side by side in one N = 32 for P·V, so half its wgmma).
// kScaled: an FP8-with-scale cache (scale_map read), else per tensor.
template <int kCols, bool kScaled>
__global__ void __launch_bounds__(kThreads, 1)
    decode_kernel(const __grid_constant__ DecodeParams p, const __grid_constant__ CUtensorMap k_map,
                  const __grid_constant__ CUtensorMap rope_map, const __grid_constant__ CUtensorMap scale_map) {
  using Storage = SharedStorage<kCols, kScaled>;
  extern __shared__ char smem_raw[];
  const uint32_t misalign = static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw)) & 1023;
  Storage& s = *reinterpret_cast<Storage*>(smem_raw + ((1024 - misalign) & 1023));
  const int warpgroup = threadIdx.x / kWarpgroupThreads;
  const int thread = threadIdx.x % kWarpgroupThreads;
  if (threadIdx.x == 0) {
    for (int st = 0; st < kStages; ++st) {
      ptx::mbarrier_init(&s.k_full[st], 1);
      ptx::mbarrier_init(&s.k_free[st], kConsumerThreads);
    }
    for (int sl = 0; sl < Storage::kSlots; ++sl) {
      ptx::mbarrier_init(&s.p_full[sl], kConsumerThreads);
      ptx::mbarrier_init(&s.p_free[sl], kConsumerThreads);
    }
    for (int pp = 0; pp < 2; ++pp) {
      // lanes 0..3 of each score warpgroup's warp 0; with own tiles every score thread (after its score_o)
      ptx::mbarrier_init(&s.stats_full[pp], kScoreTiles<kCols, kScaled> > 0 ? kScoreWarpgroups * kConsumerThreads
                                                                            : 4 * kScoreWarpgroups);
      ptx::mbarrier_init(&s.stats_free[pp], kConsumerThreads);
    }
    ptx::fence_barrier_init();
  }
  __syncthreads();

  if (warpgroup == kProducerWarpgroup) {
    ptx::setmaxnreg_dec<kProducerRegs>();
    if (thread == 0) producer<kCols, kScaled>(p, s, k_map, rope_map, scale_map);
  } else if (warpgroup == kValueWarpgroup) {
    ptx::setmaxnreg_inc<kValueRegs>();
    value_consumer<kCols, kScaled>(p, s, thread);
  } else {
    // setmaxnreg.inc below the launch's allocation (or .dec above it) is an illegal instruction.
    if constexpr (kScoreRegs < kLaunchRegs) {
      ptx::setmaxnreg_dec<kScoreRegs>();
    } else if constexpr (kScoreRegs > kLaunchRegs) {
      ptx::setmaxnreg_inc<kScoreRegs>();
    }
    score_consumer<kCols, kScaled>(p, s, warpgroup, thread);
  }
}

#if defined(FLASH_MLA_TRACE)
// The narrow kernels' phase buffer (one for all four forms: the last launch wrote it), for a study program:
// [kPhaseCtas][kPhaseIters][kPhaseEvents].
extern void* g_phase_buffer;
#endif

// Launches decode_kernel<kCols, kScaled> on p.stream (the current device is p.device).
template <int kCols, bool kScaled>
void launch_cols(const DecodeParams& p, const TensorMaps& maps) {
#if defined(FLASH_MLA_TRACE)
  detail::cuda_check(cudaGetSymbolAddress(&g_phase_buffer, g_phase), "narrow phase symbol");
#endif
  constexpr auto kernel = decode_kernel<kCols, kScaled>;
  constexpr int kBytes = kSharedBytes<kCols, kScaled>;
  static std::atomic<uint64_t> configured{0};
  const uint64_t bit = p.device.index < 64 ? uint64_t{1} << p.device.index : 0;
  if ((configured.load(std::memory_order_acquire) & bit) == 0) {
    detail::cuda_check(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kBytes),
        "cudaFuncSetAttribute (narrow decode kernel shared memory)");
    // The setmaxnreg budgets (and .dec against .inc) assume exactly kLaunchRegs per thread at launch:
    // another count would hang the kernel or trap, so refuse to launch it.
    cudaFuncAttributes attributes{};
    detail::cuda_check(cudaFuncGetAttributes(&attributes, kernel),
                       "cudaFuncGetAttributes (narrow decode kernel)");
    if (attributes.numRegs != static_cast<int>(kLaunchRegs)) {
      throw Error("cuda", "the narrow decode kernel was compiled with " + std::to_string(attributes.numRegs) +
                              " registers per thread; its warpgroup register budgets need " +
                              std::to_string(kLaunchRegs));
    }
    configured.fetch_or(bit, std::memory_order_acq_rel);
  }
  const dim3 grid(1, p.h_kv, p.num_sm_parts);
  kernel<<<grid, kThreads, kBytes, static_cast<cudaStream_t>(p.stream)>>>(p, maps.k, maps.rope,
                                                                          kScaled ? maps.scales : maps.k);
}

// The 16-row form when the rows fit, else the 32-row one (launch.cu sends no more rows).
void launch_decode(const DecodeParams& p, const TensorMaps& maps) {
  if (p.rows > kRows) {  // rows past 32 would go unwritten
    throw Error("q", "the narrow kernel reads at most " + std::to_string(kRows) + " query rows per KV head, got " +
                         std::to_string(p.rows));
  }
  // The producer issues at most kMaxTmaCopies copies a block and expects the bytes of all: shorter copies would hang.
  if (page_copy_rows(p.page_block_size) < kMinTmaPage) {
    throw Error("page_block_size", "the narrow kernel copies pages of " + std::to_string(kMinTmaPage) +
                                       " or more rows, got copies of " +
                                       std::to_string(page_copy_rows(p.page_block_size)));
  }
  const bool scaled = p.kv_format == KvCacheFormat::kFP8WithScale;
  if (p.rows <= kSideRows) {
    scaled ? launch_cols<4, true>(p, maps) : launch_cols<4, false>(p, maps);
  } else {
    scaled ? launch_cols<8, true>(p, maps) : launch_cols<8, false>(p, maps);
  }
}

}  // namespace flash_mla::sm90::narrow
