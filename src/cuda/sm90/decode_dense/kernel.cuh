// MLA decode on Hopper: one CTA per (64-row query tile, KV head, schedule part), 384 threads. WG2,
// the producer, fills a 2-stage ring of 64-token K blocks (tma_producer: TMA, pages of 16+ tokens;
// gather_producer: cp.async, smaller pages; FP8: fp8_tma_producer / fp8_producer dequantise raw e4m3
// to bf16 tiles, or per tensor to f16 tiles for f16 consumers). WG0 and WG1 own 256 output columns
// each (O half = 128 fp32 registers); Q stays in shared memory for the piece:
//   WG0  [wait K(j)][Q·K(j)ᵀ, mask][max, exp][kQKRead][P→RoPE tile of stage j][kPReady][O_L·α + P·V_L(j)][free j]
//   WG1                                                                [kPReady][O_R·α + P·V_R(j)][free j]
//   WG2  [K(j + 2) into stage j % 2 once both consumers freed it; with one row tile, K(1) once K(0) landed]
// An H200 spent ~3930 cycles per block at 64 live rows (session 21's trace build, before P moved into
// the stage and before the power cap), ~1740 in Q·Kᵀ and ~800 from its end to kPReady; replayed at the
// 700 W cap the clock falls to ~1500 MHz and the energy per block sets the pace (docs/DESIGN.md, "Where
// the time goes"; docs/PERFORMANCE.md).
// At a piece's end a final output leaves through the Q tile (store_final_staged: eight 64x64 swizzled
// boxes by TMA tensor stores where the tile's rows are one box, else 512-byte bulk copies per row half),
// and so does a split piece's fp32 partial where the tile's 64 rows are live (store_partial_staged),
// and WG1 prefetches the part's next Q tile into L2 when a piece starts. Q tiles come by TMA where q has
// a map (load_q_tma): every one of a tile whose 64 rows are live, and a partial tile's after such a store
// (at b=128 1024 h128 s1 the per-row copies took ~2.3 us to issue and the 256 threads' Q cp.async ~3.5 us,
// session 28's timelines; the first Q tile by TMA ran 2-12 % faster on short and small-batch rows with full
// 64-row tiles, session 29). When the combine is the kernel's programmatic dependent, a split piece's
// partial is released to it (release_piece), and each CTA lets the combine launch as it begins its last
// block.
// 16-bit calls of more than 128 query rows per KV head run the seesaw instead, and those of 65-128 rows
// (kSeesawMinRows, kByPartMaxRows) run it in the CTAs whose parts hold at most 2 or at least 40 blocks, the
// serial schedule in the others (Schedule::kByPart, part_takes_seesaw; config.hpp has the measurements).
// The seesaw (consumer_piece_seesaw; FlashMLA's 2025-04 idea): blocks in pairs, a in stage 0
// and b in stage 1; WG0 scores a, WG1 scores b, and each folds both into its own 256 columns, so that one
// consumer's softmax runs under the other's wgmma. Each stage is freed and refilled in three groups (V_L,
// V_R, RoPE; producer warp s fills stage s) in the order Q·Kᵀ reads them; P(a) has its own 8 KiB tile.
// H200, session 25: a pair ~6200 cycles at h128 s2 against 2 x 3750, bound by the groups' refill latency
// (~1750-2650 cycles). Session 26: with the role warp-uniform (its addresses in uniform registers, 9 %
// fewer instructions), the 128-row rows ran 0.8-5.2 % faster than the serial schedule at the card's
// power cap and 16384 h128 s2 5.5 % faster than before (1 pass); short 64-row rows still lose (config.hpp):
// their first block lands ~2.3 us later than on the serial schedule, whose producer requests a one-tile
// CTA's second block only once the first has landed (session 27's timelines).
// The roles meet at named barriers from different code sites: the barriers are barrier.sync / .arrive
// without .aligned (ptx/barrier.hpp).
// Shared memory: Q 72 KiB + 2 x 72 KiB stages + the seesaw's P(a) tile 8 KiB + stats and barriers: the
// whole 227 KiB. The serial schedule writes P of block j into stage j's RoPE sub-tile once Q·K(j)ᵀ is done
// (no shared P tile, no kPFree wait).
// Registers: setmaxnreg 232 / 40, FP8 200 / 104 (2 · consumer + producer <= 504); no spills.
// Code size: keep the hot loop small. At ~18 KiB, builds that only moved the producer's code ran two
// 128-row rows 6-10 % more cycles (instruction-fetch stalls); with the wgmma descriptors advanced by one
// add (~14.5 KiB) the same move costs nothing and fetch stalls fell from 0.34 to 0.22 per issue (h128 s2)
// (docs/DESIGN.md, "The code layout is a lever and a hazard"). A/B a change that adds code here also
// with docs/experiments/s23-layout-probe.patch on top.
// Tests: tests/test_gpu.cpp, test_gpu_fp8.cpp, test_gpu_fuzz.cpp (the 16-bit ones twice: ctest's
// "seesaw." copies force the seesaw on every call), and flash-mla-bench's check.
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <atomic>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "core/params.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/sm90/decode_common.cuh"
#include "cuda/sm90/decode_dense/config.hpp"
#include "cuda/sm90/decode_dense/trace_layout.hpp"
#include "cuda/sm90/launch.hpp"
#include "ptx/barrier.hpp"
#include "ptx/compiler.hpp"
#include "ptx/convert.hpp"
#include "ptx/math.hpp"
#include "ptx/matrix.hpp"
#include "ptx/cp_async.hpp"
#include "ptx/mbarrier.hpp"
#include "ptx/timer.hpp"
#include "ptx/tma.hpp"
#include "ptx/wgmma.hpp"

namespace flash_mla::sm90::dense {

// Phase timestamps of every CTA for timeline studies, compiled in only with -DFLASH_MLA_TRACE (never
// in a release build): %globaltimer nanoseconds in the slots of trace_layout.hpp (cli/phase_timeline.cpp
// reads them). Consumer 0's thread 0 writes the entry, the first Q tile ready, each block as it has its K
// (in the seesaw, a pair's block a once consumer 0 has issued its Q·Kᵀ and block b once it takes b's
// running max), each piece stored and its Q tile ready, the exit, its first piece read (before the Q
// tile's loads), the first Q tile's loads issued (before the wait) and at the last piece change the staged
// rows read, the Q tile's loads issued and its own Q loads landed. The TMA producer's lane 0 writes its
// start, its first piece read from the schedule, its first block's first page read from the block table,
// its first and second blocks' copies issued and its second piece's first block's copies issued. The first
// piece's epilogue: each consumer's thread 0 back from the block loop, and in store_final_staged consumer 0's
// rows written, each consumer's staging barrier passed and consumer 1's bulk copies issued; in store_output
// and store_partial_staged each consumer's stores issued.
#if defined(FLASH_MLA_TRACE)
static __device__ unsigned long long g_trace[kTraceCtas][kTraceSlots];
// once: keep the slot's first stamp of the call (flash-mla-phases zeroes the slots before it).
__device__ __forceinline__ void trace(int slot, bool once = false) {
  const int cta = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  if (cta < kTraceCtas && slot < kTraceSlots && !(once && g_trace[cta][slot] != 0)) {
    g_trace[cta][slot] = ptx::global_timer_ns();
  }
}
#define FLASH_MLA_TRACE_AT(slot) \
  do {                           \
    if (threadIdx.x == 0) trace(slot); \
  } while (0)
#define FLASH_MLA_TRACE_IF(cond, slot) \
  do {                                 \
    if (cond) trace(slot);             \
  } while (0)
#define FLASH_MLA_TRACE_FIRST_IF(cond, slot) \
  do {                                       \
    if (cond) trace(slot, true);             \
  } while (0)
// Consumer phase timestamps (clock64, SM cycles): [cta][warpgroup][iteration][event], where an
// iteration is a block of the CTA, and the events are the hand-off points marked with
// FLASH_MLA_PHASE_AT in consumer_piece. Thread 0 of each consumer writes; cli/phase_timeline.cpp reads.
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
#define FLASH_MLA_TRACE_IF(cond, slot) \
  do {                                 \
  } while (0)
#define FLASH_MLA_TRACE_FIRST_IF(cond, slot) \
  do {                                       \
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
// consumers at the 168-register cap).
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
    const T* src = gr < p.rows ? q + q_row_offset(p, req, gr) + c * 8 : q;
    ptx::cp_async_16_zfill(reinterpret_cast<char*>(&s.q[c / 8]) + swizzled_offset(r, c % 8), src,
                           gr < p.rows ? 16 : 0);
  }
  ptx::cp_async_commit();
  FLASH_MLA_TRACE_FIRST_IF(thread == 0, kSlotQIssued);  // the first piece's, as the other prologue stamps
  FLASH_MLA_TRACE_IF(thread == 0, kSlotNextQIssued);   // the last piece's
  ptx::cp_async_wait<0>();
  FLASH_MLA_TRACE_IF(thread == 0, kSlotNextQLanded);
}

// The head and token coordinates of this CTA's 64-row tile in a row-tile tensor map (launch.cu,
// encode_row_tile_map: q's and out's), for its box of q_per_kv heads or 64 heads.
struct TileOrigin {
  int head, token;
};
__device__ __forceinline__ TileOrigin tile_origin(const DecodeParams& p) {
  const int m0 = blockIdx.x * kBlockM;
  return {static_cast<int>(blockIdx.y) * p.q_per_kv + m0 % p.q_per_kv, m0 / p.q_per_kv};
}

// load_q by TMA (TensorMaps::q), issued by one consumer thread: the tile of sequence `req` as nine
// 64-channel boxes completing on s.q_full (rows past s_q read as zeros). Not unrolled, so that no
// destination address is held in a register across the piece loop (see load_q).
__device__ __forceinline__ void load_q_tma(const DecodeParams& p, SharedStorage& s, const CUtensorMap& q_map, int req) {
  const TileOrigin at = tile_origin(p);
  ptx::mbarrier_arrive_expect_tx(&s.q_full, kQKSubTiles * kSubTileBytes);
  const uint64_t policy = ptx::l2_policy_evict_first();
#pragma unroll 1
  for (int c = 0; c < kQKSubTiles; ++c) {
    ptx::tma_load_4d(&s.q[c], &q_map, &s.q_full, c * kSubTileCols, at.head, at.token, req, policy);
  }
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
  const int m0 = blockIdx.x * kBlockM;
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    const int gr = m0 + rp.row[k];
    if (gr >= p.rows) continue;
    const RowResult res = finish_row(m[k], l[k], out_scale);
    const RowSlot dst = row_slot(p, pc, gr);
    if (dst.final) {
      T* out = static_cast<T*>(p.out) + dst.row * kHeadDimV + half * (kHeadDimV / 2) + rp.col;
#pragma unroll
      for (int i = 0; i < 32; ++i) {
        *reinterpret_cast<uint32_t*>(out + 8 * i) =
            pack2<T>(o[4 * i + 2 * k] * res.inv, o[4 * i + 2 * k + 1] * res.inv);
      }
      if (write_lse) p.lse[dst.lse] = res.empty ? INFINITY : res.lse;
    } else {
      float* out = p.o_accum + dst.row * kHeadDimV + half * (kHeadDimV / 2) + rp.col;
#pragma unroll
      for (int i = 0; i < 32; ++i) {
        *reinterpret_cast<float2*>(out + 8 * i) =
            make_float2(o[4 * i + 2 * k] * res.inv, o[4 * i + 2 * k + 1] * res.inv);
      }
      if (write_lse) p.lse_accum[dst.lse] = res.empty ? -INFINITY : res.lse;
    }
  }
  FLASH_MLA_TRACE_FIRST_IF(threadIdx.x % kWarpgroupThreads == 0, kSlotStoresIssued + half);
}

// store_output for a final output (n_splits == 1) through shared memory (config.hpp, kStagedRowBytes):
// the thread's values into the staged rows, then warp 0 of each consumer issues one bulk copy per valid
// row and commits them as one bulk group, which must have read the rows before Q is reloaded
// (kStagedRead) or the CTA exits. Stored directly (store_output: each 4-byte store of a warp writes 16
// bytes into each of 8 rows), a 64-row tile's last block took 7.9 us from its K landing to the stored
// output; staged, 5.3 (H200, b=128 1024 h128 s1, session 16: the call 5-6 % faster).
// With out_map (TensorMaps::out), the rows go instead into four 128-byte-swizzled 64x64 boxes per
// consumer (Q sub-tiles 4 * half ..), free of bank conflicts for the accumulator layout by count, and its
// thread 0 stores them with four tensor copies: 8 copies per tile instead of 2 per row.
template <typename T>
__device__ __forceinline__ void store_final_staged(const DecodeParams& p, const Piece& pc, SharedStorage& s,
                                                   const RowPair& rp, int half, int thread, const float (&o)[128],
                                                   const float (&m)[2], const float (&l)[2], bool write_lse,
                                                   float out_scale, const CUtensorMap* out_map) {
  const int m0 = blockIdx.x * kBlockM;
  if (out_map != nullptr) {
    constexpr int kBoxes = kVSubTiles / 2;  // this consumer's 256 columns
    char* boxes = reinterpret_cast<char*>(&s.q[kBoxes * half]);
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const RowResult res = finish_row(m[k], l[k], out_scale);
#pragma unroll
      for (int i = 0; i < 32; ++i) {
        char* box = boxes + (i / 8) * kSubTileBytes;
        *reinterpret_cast<uint32_t*>(box + swizzled_offset(rp.row[k], i % 8) + rp.col * 2) =
            pack2<T>(o[4 * i + 2 * k] * res.inv, o[4 * i + 2 * k + 1] * res.inv);
      }
      const int gr = m0 + rp.row[k];
      if (write_lse && gr < p.rows) p.lse[row_slot(p, pc, gr).lse] = res.empty ? INFINITY : res.lse;
    }
    FLASH_MLA_TRACE_FIRST_IF(thread == 0 && half == 0, kSlotRowsStaged);
    ptx::fence_proxy_async_shared();
    ptx::named_barrier_sync(kStaged + half, kWarpgroupThreads);
    FLASH_MLA_TRACE_FIRST_IF(thread == 0, kSlotStaged + half);
    if (thread == 0) {
      const TileOrigin at = tile_origin(p);
#pragma unroll
      for (int b = 0; b < kBoxes; ++b) {
        ptx::tma_store_4d(out_map, boxes + b * kSubTileBytes, (kBoxes * half + b) * kSubTileCols, at.head, at.token,
                          pc.req);
      }
      ptx::bulk_commit_group();
    }
    FLASH_MLA_TRACE_FIRST_IF(thread == 0 && half == 1, kSlotCopiesIssued);
    return;
  }
  char* staged = reinterpret_cast<char*>(&s.q[0]) + half * kBlockM * kStagedRowBytes;
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    const RowResult res = finish_row(m[k], l[k], out_scale);
    char* row = staged + rp.row[k] * kStagedRowBytes + rp.col * 2;
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      *reinterpret_cast<uint32_t*>(row + 16 * i) =
          pack2<T>(o[4 * i + 2 * k] * res.inv, o[4 * i + 2 * k + 1] * res.inv);
    }
    const int gr = m0 + rp.row[k];
    if (write_lse && gr < p.rows) p.lse[row_slot(p, pc, gr).lse] = res.empty ? INFINITY : res.lse;
  }
  FLASH_MLA_TRACE_FIRST_IF(thread == 0 && half == 0, kSlotRowsStaged);
  ptx::fence_proxy_async_shared();
  ptx::named_barrier_sync(kStaged + half, kWarpgroupThreads);
  FLASH_MLA_TRACE_FIRST_IF(thread == 0, kSlotStaged + half);
  if (thread < 32) {
    for (int r = thread; r < kBlockM; r += 32) {
      const int gr = m0 + r;
      if (gr >= p.rows) break;
      T* out = static_cast<T*>(p.out) + row_slot(p, pc, gr).row * kHeadDimV + half * (kHeadDimV / 2);
      ptx::bulk_store(out, staged + r * kStagedRowBytes, kHeadDimV / 2 * sizeof(T));
    }
    ptx::bulk_commit_group();
  }
  FLASH_MLA_TRACE_FIRST_IF(thread == 0 && half == 1, kSlotCopiesIssued);
}

// store_output for a split piece's partial (fp32, TensorMaps::accum) through the Q tile, in two rounds of
// 128 columns per consumer: each round four 128-byte-swizzled boxes of 64 rows x 32 fp32 columns (Q
// sub-tiles 4 * half ..), which its thread 0 stores with four tensor copies. Direct stores (store_output:
// each 8-byte store of a warp writes 32 bytes into each of 8 rows) took ~3.3-4.2 us to issue at
// b=64 256..1024 s4 and b=4 mixed (session 28's timelines, one-piece CTAs); the boxes ran b=16 1024 s16
// 2.8 % and b=4 mixed 2.4 % faster (H200, session 29, 2 passes). Tiles whose 64 rows are all live only: at
// b=1 64k h16 s1 (48 of 64 rows past p.rows) they ran the call 2.7 % slower (session 28, 1 pass). When the
// combine waits on release_piece, each thread 0 waits for its copies' writes and fences them before the
// CTA's barrier.
__device__ __forceinline__ void store_partial_staged(const DecodeParams& p, const Piece& pc, SharedStorage& s,
                                                     const RowPair& rp, int half, int thread, const float (&o)[128],
                                                     const float (&m)[2], const float (&l)[2], bool write_lse,
                                                     float out_scale, const CUtensorMap& accum_map) {
  constexpr int kBoxes = 4;     // per consumer and round
  constexpr int kBoxCols = 32;  // fp32 columns of a 128-byte box row
  char* boxes = reinterpret_cast<char*>(&s.q[kBoxes * half]);
  const int m0 = blockIdx.x * kBlockM;
  const int slot = p.num_splits[pc.req] + pc.split;
  RowResult res[2];
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    res[k] = finish_row(m[k], l[k], out_scale);
    const int gr = m0 + rp.row[k];
    if (write_lse && gr < p.rows) p.lse_accum[row_slot(p, pc, gr).lse] = res[k].empty ? -INFINITY : res[k].lse;
  }
#pragma unroll
  for (int round = 0; round < 2; ++round) {
    if (round == 1) {  // round 0's boxes read by its copies
      if (thread == 0) ptx::bulk_wait_group_read<0>();
      ptx::named_barrier_sync(kStaged + half, kWarpgroupThreads);
    }
#pragma unroll
    for (int k = 0; k < 2; ++k) {
#pragma unroll
      for (int j = 0; j < 16; ++j) {
        const int i = 16 * round + j;  // the thread's 8-column chunk: columns 8i + rp.col + {0, 1} of its half
        char* box = boxes + (j / 4) * kSubTileBytes;
        const int chunk = 2 * (j % 4) + rp.col / 4;  // 16-byte chunk of the box row
        *reinterpret_cast<float2*>(box + swizzled_offset(rp.row[k], chunk) + (rp.col % 4) * 4) =
            make_float2(o[4 * i + 2 * k] * res[k].inv, o[4 * i + 2 * k + 1] * res[k].inv);
      }
    }
    ptx::fence_proxy_async_shared();
    ptx::named_barrier_sync(kStaged + half, kWarpgroupThreads);
    if (thread == 0) {
#pragma unroll
      for (int b = 0; b < kBoxes; ++b) {
        ptx::tma_store_4d(&accum_map, boxes + b * kSubTileBytes,
                          half * (kHeadDimV / 2) + round * (kHeadDimV / 4) + b * kBoxCols, m0, blockIdx.y, slot);
      }
      ptx::bulk_commit_group();
    }
  }
  if (p.release_pieces && thread == 0) {
    ptx::bulk_wait_group<0>();
    ptx::fence_proxy_async_global();
  }
  FLASH_MLA_TRACE_FIRST_IF(thread == 0, kSlotStoresIssued + half);
}

// Pulls the query rows of this CTA's tile of sequence `req` into L2, one bulk prefetch per row (lanes
// take rows lane, lane + 32), for the piece of `req`. Measured (H200, session 16): the piece change
// (a store to the next Q tile ready) stayed ~3.7 us at b=128 1024 h128, and the build without the
// prefetch ran 0.5-1.7 % slower on b=128 h128 s2 rows, which may be code placement rather than L2.
__device__ __forceinline__ void prefetch_q(const DecodeParams& p, int req, int lane) {
  const int bytes = p.q_dtype == DType::kFP8E4M3 ? 1 : 2;
  for (int r = lane; r < kBlockM; r += 32) {
    const int gr = blockIdx.x * kBlockM + r;
    if (gr >= p.rows) break;
    ptx::bulk_prefetch_l2(static_cast<const char*>(p.q) + q_row_offset(p, req, gr) * bytes, kHeadDim * bytes);
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

// S = Q·Kᵀ of the block in `stage` (36 wgmma m64n64k16, both operands K-major in shared memory), issued
// as one commit group; qk_finish waits for it.
template <typename T>
__device__ __forceinline__ void qk_issue(float (&sc)[32], const SharedStorage& s, int stage) {
  // Q's and the stage's sub-tiles are both 8 KiB apart, so one byte offset serves both descriptors.
  const uint64_t desc_q = ptx::make_smem_desc(&s.q[0], 16, 1024, ptx::Swizzle::k128B);
  const uint64_t desc_k = ptx::make_smem_desc(&s.k[stage][0], 16, 1024, ptx::Swizzle::k128B);
  ptx::wgmma_fence();
#pragma unroll
  for (int c = 0; c < kQKSubTiles; ++c) {
#pragma unroll
    for (int kk = 0; kk < kSubTileCols / 16; ++kk) {
      const uint32_t at = c * kSubTileBytes + kk * 32;
      ptx::wgmma_m64n64k16_ss<T>(sc, ptx::smem_desc_at(desc_q, at), ptx::smem_desc_at(desc_k, at), (c | kk) != 0);
    }
  }
  ptx::wgmma_commit_group();
}

// Waits for S (qk_issue, qk_issue_grouped), then masks and scales it into the log2 domain (scale_log2 per
// row of the thread: the softmax scale, times a per-tensor FP8 q row's prescale): scores past the piece
// end or the causal limit are selected to -inf, never multiplied (masked K rows may hold NaN). row_max:
// quad-reduced row maxima.
__device__ __forceinline__ void qk_finish(float (&sc)[32], float (&row_max)[2], int blk, const RowPair& rp,
                                          const int (&limit)[2], const float (&scale_log2)[2]) {
  ptx::wgmma_wait_group<0>();
  ptx::fence_registers(sc);

  const int token0 = blk * kBlockN + rp.col;
  row_max[0] = row_max[1] = -INFINITY;
  // Most blocks lie wholly below every row's limit: a warp whose rows all see the whole block skips
  // the per-score compare and select (~64 instructions per thread).
  if (__all_sync(0xffffffffu, (blk + 1) * kBlockN <= min(limit[0], limit[1]))) {
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      sc[i] *= scale_log2[(i / 2) % 2];
      row_max[(i / 2) % 2] = fmaxf(row_max[(i / 2) % 2], sc[i]);
    }
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int k = e / 2;
        const int token = token0 + 8 * i + (e & 1);
        float& v = sc[4 * i + e];
        v = token < limit[k] ? v * scale_log2[k] : -INFINITY;
        row_max[k] = fmaxf(row_max[k], v);
      }
    }
  }
  row_max[0] = quad_max(row_max[0]);
  row_max[1] = quad_max(row_max[1]);
}

template <typename T>
__device__ __forceinline__ void score_block(float (&sc)[32], float (&row_max)[2], const SharedStorage& s, int stage,
                                            int blk, const RowPair& rp, const int (&limit)[2],
                                            const float (&scale_log2)[2]) {
  qk_issue<T>(sc, s, stage);
  qk_finish(sc, row_max, blk, rp, limit, scale_log2);
}

// The running max a padding row starts from (finite, so m + kMaxLag and m - m_use stay finite).
inline constexpr float kPadRowMax = 1.0e30f;

// Moves a row's running max m to m_new: m_use is what its P is computed against (0 while the row has no
// finite score), and the result rescales what was summed against the old m.
__device__ __forceinline__ float move_max(float& m, float m_new, float& m_use) {
  m_use = finite_reference(m_new);
  const float alpha = ptx::exp2_ftz(m - m_use);
  m = m_new;
  return alpha;
}

// The running max after a block whose row maxima are row_max: m becomes the new max, m_use the
// exponent base (0 for a row masked so far, which keeps exp2 finite), alpha the rescale of what was
// accumulated before the block. m moves only past decode_common.cuh's kMaxLag, so most blocks keep
// alpha = 1 (rescale_rows skips them).
__device__ __forceinline__ void advance_max(float (&m)[2], const float (&row_max)[2], float (&m_use)[2],
                                            float (&alpha)[2]) {
#pragma unroll
  for (int k = 0; k < 2; ++k) alpha[k] = move_max(m[k], row_max[k] > m[k] + kMaxLag ? row_max[k] : m[k], m_use[k]);
}

// The seesaw: the running max of the thread's rows moved to the one the other consumer published in
// `published` (m_pub), with the rescale factor of what was summed against the old one (as advance_max).
__device__ __forceinline__ void adopt_max(float (&m)[2], const float* published, const RowPair& rp, float (&alpha)[2]) {
  float m_use;
#pragma unroll
  for (int k = 0; k < 2; ++k) alpha[k] = move_max(m[k], published[rp.row[k]], m_use);
}

// P = exp2(S - m_use), packed to 16 bits for P·V; adds this thread's part of each row sum to l.
template <typename T>
__device__ __forceinline__ void exponentiate(const float (&sc)[32], const float (&m_use)[2], float (&l)[2],
                                             uint32_t (&packed)[16]) {
#pragma unroll
  for (int i = 0; i < 8; ++i) {
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const float p0 = ptx::exp2_ftz(sc[4 * i + 2 * k] - m_use[k]);
      const float p1 = ptx::exp2_ftz(sc[4 * i + 2 * k + 1] - m_use[k]);
      l[k] += p0 + p1;
      packed[2 * i + k] = pack2<T>(p0, p1);
    }
  }
}

// This thread's P fragments into a [64 rows, 64 tokens] tile in the K-major swizzle wgmma reads as A:
// four stmatrix.x4 per warp, each two 8-token chunks of the warp's 16 rows (packed[2i + k] is chunk i
// of row half k, the layout stmatrix takes).
__device__ __forceinline__ void store_p(SubTile& tile, int thread, const uint32_t (&packed)[16]) {
  const int lane = thread % 32, matrix = lane / 8;
  const int row = 16 * (thread / 32 % 4) + 8 * (matrix % 2) + lane % 8;
  char* sp = reinterpret_cast<char*>(&tile);
#pragma unroll
  for (int i = 0; i < 8; i += 2) {
    const uint32_t r[4] = {packed[2 * i], packed[2 * i + 1], packed[2 * i + 2], packed[2 * i + 3]};
    ptx::stmatrix_x4(sp + swizzled_offset(row, i + matrix / 2), r);
  }
}

// P of the block in `stage`: the stage's RoPE sub-tile ([64 rows, 64 tokens] of 16-bit P), which only
// consumer 0's Q·Kᵀ of that block reads and which is refilled only after both consumers' P·V of the
// block, so P (and α, in s.alpha[stage]) is double-buffered with the stages: consumer 0 writes block j's
// without waiting for consumer 1's P·V of block j - 1. Every warp of consumer 0 is past its wait for
// Q·Kᵀ (kQKRead) before any overwrites the sub-tile: PTX's wgmma.wait_group speaks for the executing
// warp only.
__device__ __forceinline__ SubTile& stage_p(SharedStorage& s, int stage) { return s.k[stage][kVSubTiles]; }

// V rows past the sequence end may hold NaN and 0 * NaN = NaN: zeroes them in the stage before any
// P·V reads it. The trip count is warpgroup-uniform (the store is predicated), so every warp leaves
// the loop converged before the barrier or wgmma that follows.
__device__ __forceinline__ void zero_v_tail(SharedStorage& s, int stage, int valid, int thread) {
  if (valid >= kBlockN) return;
  const int rows = kBlockN - valid, zero_chunks = rows * 8 * kVSubTiles;
  for (int z0 = 0; z0 < zero_chunks; z0 += kWarpgroupThreads) {
    const int z = z0 + thread;
    if (z < zero_chunks) {
      const int c = z / (rows * 8), rest = z % (rows * 8);
      char* tile = reinterpret_cast<char*>(&s.k[stage][c]);
      *reinterpret_cast<int4*>(tile + (valid + rest / 8) * 128 + (rest % 8) * 16) = make_int4(0, 0, 0, 0);
    }
  }
}

// O·α for this thread's two rows. A warp whose 16 rows all kept their max (α = exp2(0) = 1 exactly)
// skips the 128 multiplies: past a sequence's first blocks most blocks raise no row's max.
__device__ __forceinline__ void rescale_rows(float (&o)[128], const float (&alpha)[2]) {
  if (__all_sync(0xffffffffu, alpha[0] == 1.0f && alpha[1] == 1.0f)) return;
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
  const uint64_t desc_p = ptx::make_smem_desc(&p_tile, 16, 1024, ptx::Swizzle::k128B);
  const uint64_t desc_v =
      ptx::make_smem_desc(&s.k[stage][half * kVSubTilesPerWarpgroup], kSubTileBytes, 1024, ptx::Swizzle::k128B);
  // The caller's rescale of o must land before the fence: otherwise the compiler sinks the multiplies
  // past it and ptxas injects a warpgroup.arrive of its own (C7519).
  ptx::fence_registers(o);
  ptx::wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < kBlockN / 16; ++kk) {
    const uint64_t p_k = ptx::smem_desc_at(desc_p, kk * 32), v_k = ptx::smem_desc_at(desc_v, kk * 16 * 128);
    ptx::wgmma_m64n256k16_ss_tn<T>(o, p_k, v_k, 1);
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

// Whether the producer gathers this call's pages (gather_producer) rather than copying them by TMA.
__device__ __forceinline__ bool gathers_pages(const DecodeParams& p) {
  return page_copy_rows(p.page_block_size) < kMinTmaPage;
}

// The stage of block number `it` of the CTA's stream (blocks alternate stages) and the parity of
// that stage's use, as producers and consumers agree.
struct Slot {
  int stage;
  uint32_t parity;
};
__device__ __forceinline__ Slot stage_slot(uint32_t it) { return {static_cast<int>(it % kStages), (it / kStages) & 1}; }

// ---------------- the seesaw (16-bit caches) ----------------
// Blocks go in pairs (a, b) within a piece: a in stage 0, b in stage 1; a piece of odd length ends with
// a lone a. Each stage is released and refilled in three groups of sub-tiles (V_L: 0-3, V_R: 4-7, RoPE: 8),
// each with its own full and free barrier, and S = Q·Kᵀ reads a stage's groups in the order they are
// refilled: V_L, RoPE, V_R (in both stages V_R is freed last). The readers (the free barriers' counts, one
// arrival per thread of each reader):
//   stage 0: V_L  consumer 0 after P(a)·V_L(a)                 128
//            V_R  consumer 0 after S(a), consumer 1 after P(a)·V_R(a)   256
//            RoPE consumer 0 after S(a)                        128
//   stage 1: V_R  consumer 1 after P(b)·V_R(b)                 128
//            V_L  consumer 1 after S(b), consumer 0 after P(b)·V_L(b)   256
//            RoPE consumer 1 after P(b)·V_R(b), consumer 0 after P(b)·V_L(b) (P(b) lives there)  256
__host__ __device__ constexpr int group_first_subtile(int g) { return g == kGroupRope ? kVSubTiles : 4 * g; }
__host__ __device__ constexpr int group_subtiles(int g) { return g == kGroupRope ? 1 : 4; }
// The group a stage's S reads (and its producer refills) i-th.
__host__ __device__ constexpr int group_in_order(int i) { return i == 0 ? kGroupVL : i == 1 ? kGroupRope : kGroupVR; }
__host__ __device__ constexpr uint32_t group_free_arrivals(int stage, int g) {
  return (stage == 0 ? g == kGroupVR : g != kGroupVR) ? kConsumerThreads : kWarpgroupThreads;
}

// Per-stage use counts of the pair ring: the parity of a stage's next use.
struct PairRing {
  uint32_t uses0 = 0, uses1 = 0;  // scalars: a runtime index into an array would put it in local memory
  __device__ uint32_t next(int stage) {
    const uint32_t u = stage == 0 ? uses0++ : uses1++;
    return u & 1;
  }
};

// Schedule::kByPart: whether this CTA runs the seesaw, from its part's blocks, which the schedule wrote into
// word kPartBlocksWord of its row (schedule_part_blocks). The producer and the consumers read that word,
// which nothing writes during the call, so they agree; a garbage word can only move the choice. Until session 39
// each CTA counted the blocks itself (up to kSeesawLongPart, two dependent loads before its first copy and first
// block); reading the word ran the same (1.001x). Its serial CTAs stay ~2 % behind the serial kernel on 4-block
// parts; ncu's fetch stalls point, by inference, at the larger kernel's code (docs/DESIGN.md, "Either schedule by
// part").
__device__ __forceinline__ bool part_takes_seesaw(const DecodeParams& p) {
  const int n = part_row(p)[detail::kPartBlocksWord];
  return n <= kSeesawShortPart || n >= kSeesawLongPart;
}

// The producer for pages whose copies are shorter than kMinTmaPage rows: the whole producer warpgroup gathers each
// 64-token block with 16-byte cp.async copies straight into the swizzled sub-tiles. Thread t serves
// rows t/8 + 16i (i < 4) and chunks t%8 + 8k (k < 9, one per sub-tile): a warp copies 128 contiguous
// bytes of each of four rows per instruction, and a thread's four table reads and 36 copies are
// independent, so they are all in flight together. Tokens past the sequence end and pages outside
// the pool are zero-filled. A block's copies are one cp.async group per thread; a thread signals the
// stage's full barrier (one of 128 arrivals) once its group of the previous block has landed, after
// a proxy fence: wgmma reads what the generic proxy wrote. When the next stage is not free yet, it
// signals the previous block first instead of holding that signal while it waits.
template <typename T, bool kSeesaw>
__device__ __forceinline__ void gather_producer(const DecodeParams& p, SharedStorage& s, int thread) {
  constexpr int kRowsPerPass = kWarpgroupThreads / 8;  // 16
  constexpr int kPasses = kBlockN / kRowsPerPass;      // 4
  const int chunk = thread % 8, row0 = thread / 8;
  const T* k = static_cast<const T*>(p.k) + static_cast<int64_t>(blockIdx.y) * p.k_head_stride + chunk * 8;
  const int page_size = p.page_block_size;
  int pending = -1;  // the stage whose copies are in flight and not yet signalled
  // The seesaw's ring (a pair's blocks a and b in stages 0 and 1) fills whole stages: all three groups.
  auto signal = [&](int stage) {
    ptx::fence_proxy_async_shared();
    if constexpr (kSeesaw) {
#pragma unroll
      for (int g = 0; g < kGroups; ++g) ptx::mbarrier_arrive(&s.g_full[stage][g]);
    } else {
      ptx::mbarrier_arrive(&s.k_full[stage]);
    }
  };
  // A stage is free once its free barrier (the serial ring) or all three group barriers (the seesaw's)
  // completed the phase with `parity`.
  auto stage_is_free = [&](int stage, uint32_t parity) {
    if constexpr (!kSeesaw) return ptx::mbarrier_test(&s.k_free[stage], parity);
    bool free = true;
#pragma unroll
    for (int g = 0; g < kGroups; ++g) free = free && ptx::mbarrier_test(&s.g_free[stage][g], parity);
    return free;
  };
  auto wait_stage_free = [&](int stage, uint32_t parity) {
    if constexpr (!kSeesaw) {
      ptx::mbarrier_wait(&s.k_free[stage], parity);
    } else {
#pragma unroll
      for (int g = 0; g < kGroups; ++g) ptx::mbarrier_wait(&s.g_free[stage][g], parity);
    }
  };
  PairRing ring;
  for_each_block(p, [&](const Piece& pc, const int32_t* table, int blk, uint32_t it) {
    Slot slot = stage_slot(it);
    if constexpr (kSeesaw) {
      slot.stage = (blk - pc.first_block()) & 1;
      slot.parity = ring.next(slot.stage);
    }
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
    if (pending >= 0 && !stage_is_free(stage, slot.parity ^ 1)) {
      ptx::cp_async_wait<0>();
      signal(pending);
      pending = -1;
    }
    wait_stage_free(stage, slot.parity ^ 1);
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

// One piece on the consumers (the schedule at the top of this file): consumer 0 computes S and the
// softmax of every block, consumer 1 waits for P and does its P·V. `it` counts the CTA's blocks (the
// stage ring). On return each consumer holds its 256 columns of the piece's unnormalised O, and both
// hold the final row max m (log2 domain) and row sum l.
template <typename T>
__device__ __forceinline__ void consumer_piece(const DecodeParams& p, SharedStorage& s, const Piece& pc, int warpgroup,
                                             int thread, const RowPair& rp, const float (&scale_log2)[2], uint32_t& it,
                                             float (&o)[128], float (&m)[2], float (&l)[2]) {
  const int first = pc.first_block(), end = pc.end_block();
  if (warpgroup == 0) {
    int limit[2];
    visible_limits(p, pc, rp, limit);
    for (int blk = first; blk < end; ++blk, ++it) {
      const Slot slot = stage_slot(it);
      const int stage = slot.stage;
      // The combine may launch once every CTA has begun its last block (combine_is_dependent): its CTAs
      // then take the SMs this grid leaves and merge each sequence as its pieces are released. Released
      // at the kernel's start instead, b=128 16384 h128 s2 ran 4 % slower (H200, session 17).
      if (blk == end - 1 && pc.next_req < 0) cudaTriggerProgrammaticLaunchCompletion();
      FLASH_MLA_PHASE_AT(0, static_cast<int>(it), 0);
      ptx::mbarrier_wait(&s.k_full[stage], slot.parity);
      FLASH_MLA_PHASE_AT(0, static_cast<int>(it), 1);
      FLASH_MLA_TRACE_AT(kSlotBlock + min(static_cast<int>(it), kTraceBlocks));
      float sc[32], row_max[2], m_use[2], alpha[2];
      score_block<T>(sc, row_max, s, stage, blk, rp, limit, scale_log2);
      FLASH_MLA_PHASE_AT(0, static_cast<int>(it), 2);
      advance_max(m, row_max, m_use, alpha);
      FLASH_MLA_PHASE_AT(0, static_cast<int>(it), 3);
      l[0] *= alpha[0];
      l[1] *= alpha[1];
      uint32_t packed[16];
      exponentiate<T>(sc, m_use, l, packed);
      FLASH_MLA_PHASE_AT(0, static_cast<int>(it), 4);
      zero_v_tail(s, stage, pc.seqlen - blk * kBlockN, thread);
      FLASH_MLA_PHASE_AT(0, static_cast<int>(it), 5);

      SubTile& p_tile = stage_p(s, stage);
      float* alpha_row = s.alpha[stage];
      ptx::named_barrier_sync(kQKRead, kWarpgroupThreads);
      store_p(p_tile, thread, packed);
      if (rp.col == 0) {
        alpha_row[rp.row[0]] = alpha[0];
        alpha_row[rp.row[1]] = alpha[1];
      }
      ptx::fence_proxy_async_shared();
      ptx::named_barrier_sync(kPReady, kConsumerThreads);
      FLASH_MLA_PHASE_AT(0, static_cast<int>(it), 7);

      rescale_rows(o, alpha);
      pv_gemm<T>(o, p_tile, s, stage, 0);
      FLASH_MLA_PHASE_AT(0, static_cast<int>(it), 8);
      ptx::mbarrier_arrive(&s.k_free[stage]);
    }
    l[0] = quad_sum(l[0]);
    l[1] = quad_sum(l[1]);
    if (rp.col == 0) {
#pragma unroll
      for (int k = 0; k < 2; ++k) {
        s.row_max[rp.row[k]] = m[k];
        s.row_sum[rp.row[k]] = l[k];
      }
    }
    ptx::named_barrier_sync(kRowStats, kConsumerThreads);
  } else {
    for (int blk = first; blk < end; ++blk, ++it) {
      const Slot slot = stage_slot(it);
      const int stage = slot.stage;
      FLASH_MLA_PHASE_AT(1, static_cast<int>(it), 0);
      ptx::mbarrier_wait(&s.k_full[stage], slot.parity);
      FLASH_MLA_PHASE_AT(1, static_cast<int>(it), 1);
      ptx::named_barrier_sync(kPReady, kConsumerThreads);
      FLASH_MLA_PHASE_AT(1, static_cast<int>(it), 7);
      const float* alpha_row = s.alpha[stage];
      const float alpha[2] = {alpha_row[rp.row[0]], alpha_row[rp.row[1]]};
      rescale_rows(o, alpha);
      pv_gemm<T>(o, stage_p(s, stage), s, stage, 1);
      FLASH_MLA_PHASE_AT(1, static_cast<int>(it), 8);
      ptx::mbarrier_arrive(&s.k_free[stage]);
    }
    ptx::named_barrier_sync(kRowStats, kConsumerThreads);
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      m[k] = s.row_max[rp.row[k]];
      l[k] = s.row_sum[rp.row[k]];
    }
  }
}

// S = Q·Kᵀ of the block in `stage` as qk_issue, its sub-tiles in the stage's group order, each group's
// wgmma issued once the group has landed (one commit group; qk_finish waits).
template <typename T>
__device__ __forceinline__ void qk_issue_grouped(float (&sc)[32], SharedStorage& s, int stage, uint32_t parity,
                                                 [[maybe_unused]] int stamp_pair, [[maybe_unused]] int thread) {
  const uint64_t desc_q = ptx::make_smem_desc(&s.q[0], 16, 1024, ptx::Swizzle::k128B);
  const uint64_t desc_k = ptx::make_smem_desc(&s.k[stage][0], 16, 1024, ptx::Swizzle::k128B);
#pragma unroll
  for (int i = 0; i < kQKSubTiles; ++i) {
    if (i == 0 || i == 4 || i == 5) {
      ptx::mbarrier_wait(&s.g_full[stage][group_in_order(i == 0 ? 0 : i == 4 ? 1 : 2)], parity);
      ptx::wgmma_fence();
      FLASH_MLA_PHASE_AT(stage, stamp_pair, i == 0 ? 1 : i == 4 ? 12 : 11);
    }
    // Sub-tiles 0-3 (V_L), 8 (RoPE), 4-7 (V_R).
    const uint32_t c = (i < 4 ? i : i == 4 ? kVSubTiles : i - 1) * kSubTileBytes;
#pragma unroll
    for (int kk = 0; kk < kSubTileCols / 16; ++kk) {
      const uint32_t at = c + kk * 32;
      ptx::wgmma_m64n64k16_ss<T>(sc, ptx::smem_desc_at(desc_q, at), ptx::smem_desc_at(desc_k, at), (i | kk) != 0);
    }
  }
  ptx::wgmma_commit_group();
}

// One piece on the consumers in the seesaw schedule (FlashMLA's 2025-04 idea, one running max m), pair
// (a, b):
//   C0: S(a); m_a = max(m, S(a)), α_a; P(a) -> P tile, m_a [kSeesawA]; O_L·α_a + P(a)·V_L(a)
//   C1: S(b) behind S(a) [kSeesawOrder]; [kSeesawA] m_a; m_b = max(m_a, S(b)), α_b; P(b) -> stage 1's
//       RoPE sub-tile, m_b [kSeesawB]; O_R·α_a + P(a)·V_R(a) [kSeesawPFree]; O_R·α_b + P(b)·V_R(b)
//   C0: [kSeesawB] m_b; O_L·α_b + P(b)·V_L(b)
// so that one consumer's softmax runs while the other's wgmma keep the tensor pipe busy. Consumer 1 folds
// a first, which frees stage 0's V_R group mid-pair; FlashMLA's order (b first, then a with P(a)·α_b) left
// that group to the pair's end and ran slower on every row (session 25). Both consumers run this one
// function (one copy of the block code: session 5's seesaw, with a path per consumer, stalled on
// instruction fetch). Row sums: C0 keeps (l·α_a + ΣP(a))·α_b, C1 l·α_aα_b + ΣP(b), summed at the piece's
// end. Each P·V is waited for before anything else touches O (a P·V in flight across a branch that
// rescales O serialises every wgmma, ptxas C7514). On return both consumers hold the piece's row max m and
// row sum l, each its 256 columns of the unnormalised O.
template <typename T>
__device__ __forceinline__ void consumer_piece_seesaw(const DecodeParams& p, SharedStorage& s, const Piece& pc,
                                                      int warpgroup, int thread, const RowPair& rp,
                                                      const float (&scale_log2)[2], PairRing& ring, uint32_t& it,
                                                      float (&o)[128], float (&m)[2], float (&l)[2]) {
  const int first = pc.first_block(), end = pc.end_block();
  const bool lead = warpgroup == 0;
  const int mine = lead ? 0 : 1, other = 1 - mine;  // the stage this consumer scores; the other
  SubTile& p_mine = lead ? s.p_a : stage_p(s, 1);   // P of the block it scores
  SubTile& p_other = lead ? stage_p(s, 1) : s.p_a;
  int limit[2];
  visible_limits(p, pc, rp, limit);
  for (int blk = first; blk < end; blk += 2) {
    const bool has_b = blk + 1 < end;
    const bool scores = lead || has_b;
    const uint32_t parity_a = ring.next(0);
    const uint32_t parity_b = has_b ? ring.next(1) : 0;
    [[maybe_unused]] const int pair = static_cast<int>(ring.uses0) - 1;  // trace builds: the phase stamps' index
    it += has_b ? 2 : 1;
    FLASH_MLA_PHASE_AT(warpgroup, pair, 0);
    if (lead && blk + 2 >= end && pc.next_req < 0) cudaTriggerProgrammaticLaunchCompletion();
    float sc[32], row_max[2], m_use[2];
    float alpha_mine[2] = {1.0f, 1.0f}, alpha_a[2] = {1.0f, 1.0f};
    if (scores) {
      if (!lead) ptx::named_barrier_sync(kSeesawOrder, kConsumerThreads);
      qk_issue_grouped<T>(sc, s, mine, lead ? parity_a : parity_b, pair, thread);
      // Trace builds: block a's slot once consumer 0 has issued its Q·Kᵀ (its K landed), block b's below.
      if (lead) FLASH_MLA_TRACE_AT(kSlotBlock + min(static_cast<int>(it) - (has_b ? 2 : 1), kTraceBlocks));
      if (lead && has_b) ptx::named_barrier_arrive(kSeesawOrder, kConsumerThreads);
      qk_finish(sc, row_max, lead ? blk : blk + 1, rp, limit, scale_log2);
      FLASH_MLA_PHASE_AT(warpgroup, pair, 2);
      // Consumer 1 frees stage 1's RoPE group after its P(b)·V_R(b), which reads P(b) there.
      if (lead) ptx::mbarrier_arrive(&s.g_free[0][kGroupRope]);
      ptx::mbarrier_arrive(&s.g_free[mine][lead ? kGroupVR : kGroupVL]);
    }
    if (!lead) {
      // The running max after block a (and P(a)), α_a computed exactly as consumer 0's advance_max did.
      ptx::named_barrier_sync(kSeesawA, kConsumerThreads);
      adopt_max(m, s.m_pub[0], rp, alpha_a);
      FLASH_MLA_PHASE_AT(warpgroup, pair, 10);
    }
    if (scores) {
      advance_max(m, row_max, m_use, alpha_mine);
      l[0] *= alpha_a[0] * alpha_mine[0];
      l[1] *= alpha_a[1] * alpha_mine[1];
      uint32_t packed[16];
      exponentiate<T>(sc, m_use, l, packed);
      FLASH_MLA_PHASE_AT(warpgroup, pair, 4);
      zero_v_tail(s, mine, pc.seqlen - (lead ? blk : blk + 1) * kBlockN, thread);
      // Every warp of this consumer is past its S wait (stage 1's RoPE sub-tile is about to hold P(b)); for
      // consumer 0, consumer 1's P(a)·V_R(a) of the previous pair has read the P tile.
      ptx::named_barrier_sync(lead ? kQKRead : kQKRead1, kWarpgroupThreads);
      if (lead && blk > first) ptx::named_barrier_sync(kSeesawPFree, kConsumerThreads);
      store_p(p_mine, thread, packed);
      if (rp.col == 0) {
        s.m_pub[mine][rp.row[0]] = m[0];
        s.m_pub[mine][rp.row[1]] = m[1];
      }
      ptx::fence_proxy_async_shared();
      ptx::named_barrier_arrive(lead ? kSeesawA : kSeesawB, kConsumerThreads);
      FLASH_MLA_PHASE_AT(warpgroup, pair, 7);
    }
    if (lead) {
      rescale_rows(o, alpha_mine);
      pv_gemm<T>(o, p_mine, s, mine, mine);  // P(a)·V_L(a)
      FLASH_MLA_PHASE_AT(warpgroup, pair, 8);
      ptx::mbarrier_arrive(&s.g_free[0][kGroupVL]);
      if (has_b) {
        ptx::named_barrier_sync(kSeesawB, kConsumerThreads);
        FLASH_MLA_TRACE_AT(kSlotBlock + min(static_cast<int>(it) - 1, kTraceBlocks));  // consumer 0 reaches block b
        float alpha_b[2];
        adopt_max(m, s.m_pub[1], rp, alpha_b);
        l[0] *= alpha_b[0];
        l[1] *= alpha_b[1];
        FLASH_MLA_PHASE_AT(warpgroup, pair, 10);
        rescale_rows(o, alpha_b);
        pv_gemm<T>(o, p_other, s, other, mine);  // P(b)·V_L(b)
        FLASH_MLA_PHASE_AT(warpgroup, pair, 9);
        ptx::mbarrier_arrive(&s.g_free[1][kGroupVL]);
        ptx::mbarrier_arrive(&s.g_free[1][kGroupRope]);
      }
    } else {
      rescale_rows(o, alpha_a);
      if (!has_b) {
        l[0] *= alpha_a[0];
        l[1] *= alpha_a[1];
      }
      pv_gemm<T>(o, p_other, s, other, mine);  // P(a)·V_R(a)
      FLASH_MLA_PHASE_AT(warpgroup, pair, 9);
      ptx::mbarrier_arrive(&s.g_free[0][kGroupVR]);
      if (blk + 2 < end) ptx::named_barrier_arrive(kSeesawPFree, kConsumerThreads);
      if (has_b) {
        rescale_rows(o, alpha_mine);
        pv_gemm<T>(o, p_mine, s, mine, mine);  // P(b)·V_R(b)
        FLASH_MLA_PHASE_AT(warpgroup, pair, 8);
        ptx::mbarrier_arrive(&s.g_free[1][kGroupVR]);
        ptx::mbarrier_arrive(&s.g_free[1][kGroupRope]);
      }
    }
  }
  // Each consumer holds its part of the row sums: both parts go through shared memory.
#pragma unroll
  for (int k = 0; k < 2; ++k) l[k] = quad_sum(l[k]);
  if (rp.col == 0) {
#pragma unroll
    for (int k = 0; k < 2; ++k) (lead ? s.row_sum : s.row_sum1)[rp.row[k]] = l[k];
  }
  ptx::named_barrier_sync(kRowStats, kConsumerThreads);
#pragma unroll
  for (int k = 0; k < 2; ++k) l[k] += (lead ? s.row_sum1 : s.row_sum)[rp.row[k]];
}

// Four e4m3 values (one 32-bit word) times `scale` as two bf16 pairs. e4m3 -> f16 is exact; the
// product with a power-of-two scale is exact in fp32 and in bf16 (3 mantissa bits), so "FP8 with
// scale" caches dequantise exactly; other scales round once to bf16.
__device__ __forceinline__ uint2 e4m3x4_to_bf16(uint32_t word, float scale) {
  uint32_t out[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float2 f = unpack2<__half>(e4m3x2_to_f16x2(word >> (16 * h)));
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

// Eight e4m3 values as f16, exactly, into one 16-byte chunk.
__device__ __forceinline__ int4 e4m3x8_to_f16(uint2 raw) {
  return make_int4(e4m3x2_to_f16x2(raw.x), ptx::e4m3x2_hi_to_f16x2(raw.x), e4m3x2_to_f16x2(raw.y),
                   ptx::e4m3x2_hi_to_f16x2(raw.y));
}

// Sixteen e4m3 values (one 16-byte chunk) as f16, exactly, into two 16-byte chunks.
__device__ __forceinline__ void e4m3x16_to_f16(const int4& raw, int4& lo, int4& hi) {
  lo = e4m3x8_to_f16(make_uint2(raw.x, raw.y));
  hi = e4m3x8_to_f16(make_uint2(raw.z, raw.w));
}

// Scale group g (0..3) of a token's four "FP8 with scale" scales.
__device__ __forceinline__ float group_scale(const float4& scales, int g) {
  return g == 0 ? scales.x : g == 1 ? scales.y : g == 2 ? scales.z : scales.w;
}

// Whether a cache format's K tiles (and so its consumers' wgmma and Q tile) are f16: per-tensor FP8,
// whose values convert exactly; the with-scale layout multiplies by per-group scales into bf16.
template <KvCacheFormat kFormat>
inline constexpr bool kF16Tiles = kFormat == KvCacheFormat::kFP8PerTensor;

// One 16-byte chunk of e4m3 NoPE values as the format's 16-bit tile values (`scale`: the chunk's
// group scale with scale, unused per tensor).
template <KvCacheFormat kFormat>
__device__ __forceinline__ void dequantise_chunk(const int4& raw, float scale, int4& lo, int4& hi) {
  if constexpr (kF16Tiles<kFormat>) {
    e4m3x16_to_f16(raw, lo, hi);
  } else {
    e4m3x16_to_bf16(raw, scale, lo, hi);
  }
}

// The producer for FP8 caches with pages gathered (copies of fewer than kMinTmaPage rows; longer ones use
// fp8_tma_producer below): the whole producer warpgroup reads each 64-token block through registers
// and writes it dequantised (bf16 with scale, f16 per tensor) into the swizzled sub-tiles that the
// dense path's TMA fills, so the consumers are the dense ones. Thread t serves rows t/8 + 16i (i < 4)
// and, of each row's 32 NoPE chunks of 16 e4m3 bytes, chunks t%8 + 8k (k < 4): chunk t%8 + 8k lies in
// scale group k and becomes 16-bit channels 16(t%8 + 8k) .. +15, two chunks of sub-tile (t%8 + 8k) / 4.
// RoPE: bf16 chunk t%8 of bytes 528.. ("FP8 with scale", copied by cp.async as the row is loaded,
// waited for before the fence), or the 8 e4m3 values at byte 512 + 8(t%8) (per tensor, one f16
// chunk). Per tensor, the first half of a block's loads is issued before the stage is free. Each thread converts
// and stores two rows at a time, then fences (the generic proxy wrote what wgmma reads) and arrives
// on the stage's full barrier (128 arrivals). Rows past the sequence end are not written (the
// consumers mask them from Q·Kᵀ and zero their V rows); a row inside the sequence on a page outside
// the pool is written as zeros, as TMA fills it. Per-tensor descales are folded into the softmax scale
// and the output. It keeps 16 KiB in flight per SM and took ~4.2 us per block against the consumers'
// ~2.4 (measured, docs/PERFORMANCE.md); too few bytes in flight for DRAM's latency is the inferred
// cause, which the TMA producer below, a whole block in flight, bore out (1.3-1.4x faster at b=128).
template <KvCacheFormat kFormat>
__device__ __forceinline__ void fp8_producer(const DecodeParams& p, SharedStorage& s, int thread) {
  constexpr bool kWithScale = kFormat == KvCacheFormat::kFP8WithScale;
  constexpr int kRowsPerPass = kWarpgroupThreads / 8;  // 16
  constexpr int kPasses = kBlockN / kRowsPerPass;      // 4
  constexpr int kRowsInFlight = 2;
  const int chunk = thread % 8, row0 = thread / 8;
  const char* k = static_cast<const char*>(p.k) + static_cast<int64_t>(blockIdx.y) * p.k_head_stride;
  const int page_size = p.page_block_size;
  for_each_block(p, [&](const Piece& pc, const int32_t* table, int blk, uint32_t it) {
    const Slot slot = stage_slot(it);
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
      if (kWithScale && half == 0) ptx::mbarrier_wait(&s.k_free[stage], slot.parity ^ 1);
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
      if (!kWithScale && half == 0) ptx::mbarrier_wait(&s.k_free[stage], slot.parity ^ 1);
#pragma unroll
      for (int i = 0; i < kRowsInFlight; ++i) {
        if (!write[i]) continue;
        const int row = row0 + kRowsPerPass * (half * kRowsInFlight + i);
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          const int src_chunk = chunk + 8 * c;  // 16 channels from 16 * src_chunk, scale group c
          int4 lo, hi;
          dequantise_chunk<kFormat>(nope[i][c], kWithScale ? group_scale(scales[i], c) : 1.0f, lo, hi);
          char* tile = reinterpret_cast<char*>(&s.k[stage][src_chunk / 4]);
          const int in_row = (src_chunk % 4) * 2;
          *reinterpret_cast<int4*>(tile + swizzled_offset(row, in_row)) = lo;
          *reinterpret_cast<int4*>(tile + swizzled_offset(row, in_row + 1)) = hi;
        }
        char* rope_tile = reinterpret_cast<char*>(&s.k[stage][kVSubTiles]);
        if constexpr (!kWithScale) {
          *reinterpret_cast<int4*>(rope_tile + swizzled_offset(row, chunk)) = e4m3x8_to_f16(rope[i]);
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
    ptx::mbarrier_arrive(&s.k_full[stage]);
  });
}

// The producer for FP8 caches with page copies of kMinTmaPage rows or more. Warp 0 copies the block's raw
// bytes (TMA) into the top of its stage: e4m3 chunk c (64 channels x 64 tokens, 4 KiB, token-major,
// unswizzled) at kRawOffset + 4 KiB * c; with scale, the 64 tokens' four float32 scales (1 KiB) just
// above the chunks, and the bf16 RoPE channels straight into their swizzled sub-tile. Then all 128
// threads dequantise in shared memory, chunk c into 16-bit sub-tile c (8 KiB at 8 KiB * c; bf16 with
// scale, f16 per tensor), the layout the dense path's TMA writes. The first kBelowRaw tiles lie
// below the raw bytes; the later ones overwrite raw bytes, so every thread reads its remaining chunks
// into registers and the warpgroup meets at kRawRead before any of them is written. The copies of the
// first tiles' chunks and the scales complete on k_raw[stage][0], the rest on k_raw[stage][1], so the
// first tiles are converted while the rest land (measured on an H200: 3-7 % faster than one barrier).
// Thread t converts 16 bytes at token t/4 + 32k (k < 2), bytes 16(t%4).. of each chunk: a warp reads
// 512 contiguous bytes and writes 8 whole swizzled rows per instruction, without bank conflicts. The
// copies keep a whole block in flight per stage; the register producer (gathered pages) keeps 16 KiB
// and ran at ~4.2 us per block (docs/PERFORMANCE.md). Rows past the sequence end hold whatever the
// page held (the consumers mask them, as on the dense TMA path); pages outside the pool read as zeros.
template <KvCacheFormat kFormat>
__device__ __forceinline__ void fp8_tma_producer(const DecodeParams& p, SharedStorage& s, const TensorMaps& maps,
                                                 int thread) {
  constexpr bool kWithScale = kFormat == KvCacheFormat::kFP8WithScale;
  constexpr int kRawChunks = kWithScale ? kVSubTiles : kQKSubTiles;  // e4m3 chunks of a row: NoPE (+ RoPE)
  constexpr int kRawChunkBytes = kBlockN * kSubTileCols;             // 4 KiB
  constexpr int kScaleBytes = kWithScale ? kBlockN * 4 * kFP8NumScales : 0;  // 1 KiB
  // The raw bytes end where the stage's last e4m3-derived tile ends: with scale, below the RoPE tile.
  constexpr uint32_t kRawEnd = (kWithScale ? kVSubTiles * kSubTileBytes : kKBlockBytes) - kScaleBytes;
  constexpr uint32_t kRawOffset = kRawEnd - kRawChunks * kRawChunkBytes;
  constexpr int kBelowRaw = kRawOffset / kSubTileBytes;  // 4 per tensor, 3 with scale
  const int warp = thread / 32, lane = thread % 32;
  const int token0 = thread / 4, quarter = thread % 4;
  if (thread == 0) {
    ptx::tma_prefetch_descriptor(&maps.k);
    if constexpr (kWithScale) {
      ptx::tma_prefetch_descriptor(&maps.rope);
      ptx::tma_prefetch_descriptor(&maps.scales);
    }
  }
  const uint64_t policy = ptx::l2_policy_evict_first();
  const BlockPages pages(p.page_block_size);
  // Bytes per copy row landing on the first and on the second raw barrier.
  constexpr uint32_t kFirstRowBytes = kBelowRaw * kSubTileCols + kScaleBytes / kBlockN;
  constexpr uint32_t kRowBytes =
      kRawChunks * kSubTileCols + kScaleBytes / kBlockN + (kWithScale ? 2 * kHeadDimRope : 0);
  for_each_block(p, [&](const Piece& pc, const int32_t* table, int blk, uint32_t it) {
    const Slot slot = stage_slot(it);
    char* tiles = reinterpret_cast<char*>(&s.k[slot.stage][0]);
    uint64_t* first = &s.k_raw[slot.stage][0];
    uint64_t* second = &s.k_raw[slot.stage][1];
    if (warp == 0) {
      const int copies = pages.copies(pc.seqlen - blk * kBlockN);
      // Lane j reads copy j's table entry before the stage's wait, to hide its latency behind the wait (as in
      // tma_producer; session 35).
      const BlockPages::Copy cp = pages.copy(table, blk, lane, copies);
      ptx::mbarrier_wait(&s.k_free[slot.stage], slot.parity ^ 1);
      const uint32_t rows = static_cast<uint32_t>(copies * pages.rows_per_copy);
      if (lane == 0) {
        ptx::mbarrier_arrive_expect_tx(first, rows * kFirstRowBytes);
        ptx::mbarrier_arrive_expect_tx(second, rows * (kRowBytes - kFirstRowBytes));
      }
      __syncwarp();
      if (lane < copies) {
        if constexpr (kWithScale) {
          ptx::tma_load_4d(tiles + kRawEnd + cp.row * 16, &maps.scales, first, 0, blockIdx.y, cp.token_in_page,
                           cp.page, policy);
        }
#pragma unroll
        for (int c = 0; c < kRawChunks; ++c) {
          ptx::tma_load_4d(tiles + kRawOffset + c * kRawChunkBytes + cp.row * kSubTileCols, &maps.k,
                           c < kBelowRaw ? first : second, c * kSubTileCols, blockIdx.y, cp.token_in_page, cp.page,
                           policy);
        }
        if constexpr (kWithScale) {
          ptx::tma_load_4d(tiles + kVSubTiles * kSubTileBytes + cp.row * 128, &maps.rope, second, 0, blockIdx.y,
                           cp.token_in_page, cp.page, policy);
        }
      }
    }
    ptx::mbarrier_wait(first, slot.parity);
    const char* raw = tiles + kRawOffset + token0 * kSubTileCols + quarter * 16;
    float4 scales[2];  // with scale: tokens token0 and token0 + 32, groups 0..3
    if constexpr (kWithScale) {
#pragma unroll
      for (int k = 0; k < 2; ++k) {
        scales[k] = *reinterpret_cast<const float4*>(tiles + kRawEnd + 16 * (token0 + 32 * k));
      }
    }
    auto store = [&](int c, int k, const int4& v) {
      int4 lo, hi;
      dequantise_chunk<kFormat>(v, kWithScale ? group_scale(scales[k], c / 2) : 1.0f, lo, hi);
      char* tile = tiles + c * kSubTileBytes;
      const int row = token0 + 32 * k;
      *reinterpret_cast<int4*>(tile + swizzled_offset(row, 2 * quarter)) = lo;
      *reinterpret_cast<int4*>(tile + swizzled_offset(row, 2 * quarter + 1)) = hi;
    };
#pragma unroll
    for (int c = 0; c < kBelowRaw; ++c) {
      int4 v[2];
#pragma unroll
      for (int k = 0; k < 2; ++k) v[k] = *reinterpret_cast<const int4*>(raw + c * kRawChunkBytes + k * 2048);
#pragma unroll
      for (int k = 0; k < 2; ++k) store(c, k, v[k]);
    }
    ptx::mbarrier_wait(second, slot.parity);
    int4 rest[kRawChunks - kBelowRaw][2];
#pragma unroll
    for (int c = kBelowRaw; c < kRawChunks; ++c) {
#pragma unroll
      for (int k = 0; k < 2; ++k) {
        rest[c - kBelowRaw][k] = *reinterpret_cast<const int4*>(raw + c * kRawChunkBytes + k * 2048);
      }
    }
    ptx::named_barrier_sync(kRawRead, kWarpgroupThreads);
#pragma unroll
    for (int c = kBelowRaw; c < kRawChunks; ++c) {
#pragma unroll
      for (int k = 0; k < 2; ++k) store(c, k, rest[c - kBelowRaw][k]);
    }
    ptx::fence_proxy_async_shared();
    ptx::mbarrier_arrive(&s.k_full[slot.stage]);
  });
}

// An e4m3 query tile (per-tensor FP8 with an FP8 q) as f16 into the swizzled Q sub-tiles, zero past
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
      e4m3x16_to_f16(__ldg(reinterpret_cast<const int4*>(q + q_row_offset(p, req, gr) + c * 16)), lo, hi);
    }
    char* tile = reinterpret_cast<char*>(&s.q[c / 4]);
    *reinterpret_cast<int4*>(tile + swizzled_offset(r, (c % 4) * 2)) = lo;
    *reinterpret_cast<int4*>(tile + swizzled_offset(r, (c % 4) * 2 + 1)) = hi;
  }
}

// A bf16 query tile already in the Q sub-tiles (load_q), as f16 in place, for the f16 consumers of a
// per-tensor FP8 cache: row r's values times 2^-e_r, e_r chosen from the row's largest finite
// magnitude so that it lands in [2^14, 2^15) (no overflow; a bf16 value, 8 significant bits, is then
// exact in f16 unless it is over 2^31 times smaller than the row's largest, where f16 subnormals round
// it). Writes 2^e_r to s.q_row_scale[r] for the softmax scale. NaN and infinities are not counted and
// stay NaN and infinite. Four consecutive threads share a row (18 chunks each), so the row's maximum
// is a quad reduction.
__device__ __forceinline__ void q_to_f16_prescaled(SharedStorage& s, int thread) {
  constexpr int kChunksPerRow = kHeadDim * 2 / 16;               // 72
  constexpr int kChunksPerThread = kChunksPerRow / 4;            // 18
  thread = ptx::opaque(thread);
  const int r = thread / 4, first = (thread % 4) * kChunksPerThread;
  auto chunk_at = [&](int c) -> int4* {
    return reinterpret_cast<int4*>(reinterpret_cast<char*>(&s.q[c / 8]) + swizzled_offset(r, c % 8));
  };
  float absmax = 0.0f;
  for (int j = 0; j < kChunksPerThread; ++j) {
    const int4 v = *chunk_at(first + j);
    absmax = finite_absmax(absmax, static_cast<uint32_t>(v.x));
    absmax = finite_absmax(absmax, static_cast<uint32_t>(v.y));
    absmax = finite_absmax(absmax, static_cast<uint32_t>(v.z));
    absmax = finite_absmax(absmax, static_cast<uint32_t>(v.w));
  }
  const RowPrescale scale = row_prescale(quad_max(absmax));
  const float down = scale.down;
  for (int j = 0; j < kChunksPerThread; ++j) {
    int4* at = chunk_at(first + j);
    const int4 v = *at;
    const uint32_t w[4] = {static_cast<uint32_t>(v.x), static_cast<uint32_t>(v.y), static_cast<uint32_t>(v.z),
                           static_cast<uint32_t>(v.w)};
    uint32_t out[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 f = unpack2<__nv_bfloat16>(w[i]);
      out[i] = pack2<__half>(f.x * down, f.y * down);
    }
    *at = make_int4(out[0], out[1], out[2], out[3]);
  }
  if (thread % 4 == 0) s.q_row_scale[r] = scale.up;
}

// The TMA producer (page copies of kMinTmaPage rows or more): lane j of warp 0 issues the nine boxes of
// the block's copy j (BlockPages), completing on k_full[stage]. Copies that start past the sequence end
// are skipped (their table entries may be garbage); the consumers zero those V rows as they zero the
// tail of a partly used copy.
__device__ __forceinline__ void tma_producer(const DecodeParams& p, SharedStorage& s, const CUtensorMap& k_map,
                                             int thread) {
  const int warp = thread / 32, lane = thread % 32;
  if (warp != 0) return;
  if (lane == 0) ptx::tma_prefetch_descriptor(&k_map);
  FLASH_MLA_TRACE_IF(lane == 0, kSlotProducerStart);
  // The cache is read once per call: evict-first keeps it from displacing what is reused in L2
  // (measured on an H200: 0-2 % faster on b=128 rows, 2-5.5 % on small batches; docs/PERFORMANCE.md).
  const uint64_t policy = ptx::l2_policy_evict_first();
  const BlockPages pages(p.page_block_size);
  for_each_block(p, [&](const Piece& pc, const int32_t* table, int blk, uint32_t it) {
    const Slot slot = stage_slot(it);
    const int copies = pages.copies(pc.seqlen - blk * kBlockN);
    // Every CTA starts at once: with both stages requested together, the first blocks of all CTAs
    // share the memory system with the second ones and land late (~5-7 us after entry, session 8).
    // With one row tile, the second block waits for the first to land, so the consumers start one
    // block earlier. With two or more, the waits cost more than they saved (docs/PERFORMANCE.md).
    FLASH_MLA_TRACE_IF(it == 0 && lane == 0, kSlotProducerPiece);
    // Lane j reads copy j's table entry before the stage's wait, to hide its latency behind the wait. Session 35
    // measured the read as ~1000 cycles after the wait in the narrow kernel's stamps; here the step was not stamped,
    // and b=128 bf16 rows of 16-64 query rows ran 1.3-4.2 % faster (1 pass).
    const BlockPages::Copy cp = pages.copy(table, blk, lane, copies);
    if (it == 1 && p.rows <= kBlockM) ptx::mbarrier_wait(&s.k_full[0], 0);
    ptx::mbarrier_wait(&s.k_free[slot.stage], slot.parity ^ 1);
    if (lane == 0) ptx::mbarrier_arrive_expect_tx(&s.k_full[slot.stage], copies * pages.copy_bytes());
    __syncwarp();
    if (lane < copies) {
      // The compare makes the stamp wait for the page's load (no page index is INT_MIN).
      FLASH_MLA_TRACE_IF(it == 0 && lane == 0 && cp.page != INT_MIN, kSlotPageRead);
#pragma unroll
      for (int c = 0; c < kQKSubTiles; ++c) {
        ptx::tma_load_4d(reinterpret_cast<char*>(&s.k[slot.stage][c]) + cp.row * 128, &k_map, &s.k_full[slot.stage],
                         c * kSubTileCols, blockIdx.y, cp.token_in_page, cp.page, policy);
      }
    }
    FLASH_MLA_TRACE_IF(it == 0 && lane == 0, kSlotFirstIssued);
    FLASH_MLA_TRACE_IF(it == 1 && lane == 0, kSlotSecondIssued);
    FLASH_MLA_TRACE_FIRST_IF(it > 0 && blk == pc.first_block() && lane == 0, kSlotNextPieceIssued);
  });
}

// The seesaw's TMA producer: warp s of the producer warpgroup fills stage s (a pair's block a, or b), one
// group of sub-tiles at a time in the stage's group order, each once its readers freed it, so that a
// group freed early is refilled without waiting behind one of the other stage freed late. Lane j < copies
// issues the block's page copy j (copies <= kMaxTmaCopies).
__device__ __forceinline__ void tma_producer_grouped(const DecodeParams& p, SharedStorage& s, const CUtensorMap& k_map,
                                                     int thread) {
  const int stage = thread / 32, lane = thread % 32;
  if (stage >= kStages) return;
  if (lane == 0) ptx::tma_prefetch_descriptor(&k_map);
  const uint64_t policy = ptx::l2_policy_evict_first();
  const BlockPages pages(p.page_block_size);
  uint32_t uses = 0;
  for_each_block(p, [&](const Piece& pc, const int32_t* table, int blk, uint32_t it) {
    if (((blk - pc.first_block()) & 1) != stage) return;
    const uint32_t parity = uses++ & 1;
    const int copies = pages.copies(pc.seqlen - blk * kBlockN);
    FLASH_MLA_TRACE_IF(it == 0 && lane == 0, kSlotProducerPiece);
    const BlockPages::Copy cp = pages.copy(table, blk, lane, copies);
#pragma unroll 1
    for (int i = 0; i < kGroups; ++i) {
      const int g = group_in_order(i);
      ptx::mbarrier_wait(&s.g_free[stage][g], parity ^ 1);
      if (lane == 0) {
        ptx::mbarrier_arrive_expect_tx(
            &s.g_full[stage][g],
            static_cast<uint32_t>(copies * pages.rows_per_copy * kSubTileCols * 2 * group_subtiles(g)));
      }
      __syncwarp();
      if (lane < copies) {
#pragma unroll
        for (int c = group_first_subtile(g); c < group_first_subtile(g) + group_subtiles(g); ++c) {
          ptx::tma_load_4d(reinterpret_cast<char*>(&s.k[stage][c]) + cp.row * 128, &k_map, &s.g_full[stage][g],
                           c * kSubTileCols, blockIdx.y, cp.token_in_page, cp.page, policy);
        }
      }
    }
    FLASH_MLA_TRACE_IF(it == 0 && lane == 0, kSlotFirstIssued);
    FLASH_MLA_TRACE_IF(it == 1 && lane == 0, kSlotSecondIssued);
    FLASH_MLA_TRACE_FIRST_IF(it > 0 && blk == pc.first_block() && lane == 0, kSlotNextPieceIssued);
  });
}

// kSched: the serial schedule, the seesaw (consumer_piece_seesaw, 16-bit caches only), or either by part
// (part_takes_seesaw; the kernel holds both, each CTA runs one).
template <typename T, KvCacheFormat kFormat, Schedule kSched>
__global__ void __launch_bounds__(kThreads, 1)
    decode_kernel(const __grid_constant__ DecodeParams p, const __grid_constant__ TensorMaps maps) {
  constexpr bool kDense = kFormat == KvCacheFormat::kDense;
  static_assert(kDense || kSched == Schedule::kSerial, "the seesaw runs 16-bit caches only");
  // Per-tensor FP8: K and Q tiles in f16 (kF16Tiles), f16 wgmma; out stays T.
  using MmaT = std::conditional_t<kF16Tiles<kFormat>, __half, T>;
  extern __shared__ char smem_raw[];
  // Aligned by pointer arithmetic on smem_raw, not through an integer: the compiler then knows every
  // access through s is to shared memory (32-bit STS/LDS; through uintptr_t they were generic 64-bit
  // ST.E/LD.E, two registers per address).
  const uint32_t misalign = static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw)) & 1023;
  SharedStorage& s = *reinterpret_cast<SharedStorage*>(smem_raw + ((1024 - misalign) & 1023));
  // Broadcast from lane 0 so that the compiler knows the role is warp-uniform: the seesaw's per-role
  // stage and tile addresses (consumer_piece_seesaw) then stay in uniform registers. Computed per thread,
  // every wgmma descriptor went through vector registers and R2UR (session 26, ncu: +12 M instructions at
  // b=128 4096 h128 s1, 26 % more than the serial schedule).
  const int warpgroup = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x) / kWarpgroupThreads, 0);
  const int thread = threadIdx.x % kWarpgroupThreads;
  FLASH_MLA_TRACE_AT(kSlotEntry);
  if (threadIdx.x == 0) {
    // Full barriers: TMA, the producer's one arrival (with the bytes); a gather or FP8 producer,
    // every producer thread's. Raw barriers (FP8 copies): warp 0's one arrival each, with the bytes.
    const uint32_t full_arrivals = !kDense || gathers_pages(p) ? kWarpgroupThreads : 1;
    for (int st = 0; st < kStages; ++st) {
      ptx::mbarrier_init(&s.k_full[st], full_arrivals);
      ptx::mbarrier_init(&s.k_free[st], kConsumerThreads);
      ptx::mbarrier_init(&s.k_raw[st][0], 1);
      ptx::mbarrier_init(&s.k_raw[st][1], 1);
      for (int g = 0; g < kGroups; ++g) {
        ptx::mbarrier_init(&s.g_full[st][g], full_arrivals);
        ptx::mbarrier_init(&s.g_free[st][g], group_free_arrivals(st, g));
      }
    }
    ptx::mbarrier_init(&s.q_full, 1);
    ptx::fence_barrier_init();
  }
  __syncthreads();

  if (warpgroup == 2) {
    // ---------------- producer ----------------
    if constexpr (!kDense) {
      ptx::setmaxnreg_dec<kFP8ProducerRegs>();
      if (gathers_pages(p)) {
        fp8_producer<kFormat>(p, s, thread);
      } else {
        fp8_tma_producer<kFormat>(p, s, maps, thread);
      }
    } else {
      ptx::setmaxnreg_dec<kProducerRegs>();
      const bool seesaw = kSched == Schedule::kByPart ? part_takes_seesaw(p) : kSched == Schedule::kSeesaw;
      if (gathers_pages(p)) {
        if (seesaw) {
          gather_producer<T, true>(p, s, thread);
        } else {
          gather_producer<T, false>(p, s, thread);
        }
      } else if (seesaw) {
        tma_producer_grouped(p, s, maps.k, thread);
      } else {
        tma_producer(p, s, maps.k, thread);
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
  const float descale_q = descale_or_one(p.descale_q);
  const float out_scale = descale_or_one(p.descale_k);
  const float scale_log2 = p.softmax_scale * kLog2e * descale_q * out_scale;
  uint32_t it = 0;  // blocks so far (the stage ring)
  PairRing ring;    // the seesaw's ring (16-bit caches)
  [[maybe_unused]] int piece_index = 0;
  const bool stage_out = (reinterpret_cast<uintptr_t>(p.out) & 15) == 0;  // bulk copies need 16-byte addresses
  bool staged = false;  // the last piece's output went out through the Q tile
  uint32_t q_loads = 0;  // Q tiles loaded by TMA (s.q_full's phase)
  if (threadIdx.x == 0 && maps.out_by_tma) ptx::tma_prefetch_descriptor(&maps.out);
  if (threadIdx.x == 0 && maps.accum_by_tma) ptx::tma_prefetch_descriptor(&maps.accum);
  if (threadIdx.x == 0 && kDense && maps.q_by_tma) ptx::tma_prefetch_descriptor(&maps.q);
  // Where q has a map (16-bit caches), a tile whose 64 rows are all live loads every Q tile by TMA (the
  // first at the CTA's start took ~4.2 us to issue as 4608 cp.async, session 28); a partial tile only
  // after a staged store, whose 256-thread cp.async took ~3.5 us to issue at b=128 1024 h128 s1 (session
  // 28). A partial tile's first by a box mostly past s_q landed ~4.5 us later than cp.async at b=1 64k h16
  // s1 (sessions 22-24); by a box of its live rows (q_tail) it lost 1.1-1.2 % at b=256 512 h16 s1 while
  // winning 2.0-2.9 % at b=64 512 s2 (session 29, three A/Bs, s29-q-tail-once.patch).
  const bool full_tile = (blockIdx.x + 1) * kBlockM <= p.rows;
  // The consumers' schedule; kByPart decides at the first piece once its Q tile is ready (while it == 0: a part
  // whose first pieces hold no block decides again, with the same answer): measured there in session 38 counting
  // blocks with loads of its own, and in session 39 reading one word of the row for_each_piece read (1.001x).
  bool seesaw = kSched == Schedule::kSeesaw;
  for_each_piece(p, [&](const Piece& pc) {
    const bool q_by_tma = kDense && (staged || full_tile) && maps.q_by_tma;
    if (staged) {
      if (thread < 32) ptx::bulk_wait_group_read<0>();
      ptx::named_barrier_sync(kStagedRead, kConsumerThreads);
      FLASH_MLA_TRACE_AT(kSlotStagedRead);
      staged = false;
    }
    bool q_prescaled = false;  // per-tensor FP8 with a bf16 q: each row's prescale is in s.q_row_scale
    if (it == 0) FLASH_MLA_TRACE_AT(kSlotConsumerPiece);
    if (pc.end_block() > pc.first_block()) {
      if (q_by_tma) {
        if (threadIdx.x == 0) load_q_tma(p, s, maps.q, pc.req);
        FLASH_MLA_TRACE_FIRST_IF(threadIdx.x == 0, kSlotQIssued);
        FLASH_MLA_TRACE_AT(kSlotNextQIssued);
        ptx::mbarrier_wait(&s.q_full, q_loads++ & 1);
        FLASH_MLA_TRACE_AT(kSlotNextQLanded);
      } else if (kF16Tiles<kFormat> && p.q_dtype == DType::kFP8E4M3) {
        load_q_e4m3(p, s, pc.req, threadIdx.x);
      } else {
        load_q<T>(p, s, pc.req, threadIdx.x);
        if constexpr (kF16Tiles<kFormat>) {
          ptx::named_barrier_sync(kQLoaded, kConsumerThreads);  // other threads' copies visible
          q_to_f16_prescaled(s, threadIdx.x);
          q_prescaled = true;
        }
      }
    }
    ptx::fence_proxy_async_shared();
    ptx::named_barrier_sync(kQReady, kConsumerThreads);
    if (it == 0) FLASH_MLA_TRACE_AT(kSlotQReady);
    FLASH_MLA_TRACE_AT(kSlotPieceQReady + min(piece_index, kTracePieces - 1));
    if (warpgroup == 1 && thread < 32 && pc.next_req >= 0) prefetch_q(p, pc.next_req, thread);
    if constexpr (kSched == Schedule::kByPart) {
      if (it == 0) seesaw = part_takes_seesaw(p);
    }

    float o[128];
#pragma unroll
    for (int i = 0; i < 128; ++i) o[i] = 0.0f;
    // A warp whose 16 rows are all padding (past p.rows: zero-filled q, so S = 0) starts from a huge
    // running max: every block then gives its rows P = exp2(0 - kPadRowMax) = 0 and alpha = 1, so at 16
    // rows three quarters of P·V runs on zero operands, which draw less power under the card's cap (P
    // zeroed in the loop held a higher clock; this form ran 16/32-row rows 2.5-4.7 % faster; session 14,
    // docs/PERFORMANCE.md). Nothing in the block loop changes; store_output never writes these rows.
    // (Per row rather than per warp, the FP8 per-block kernel spilled.)
    const float m_start = blockIdx.x * kBlockM + (rp.row[0] & ~15) < p.rows ? -INFINITY : kPadRowMax;
    float m[2] = {m_start, m_start}, l[2] = {0.0f, 0.0f};
    float row_scale[2] = {scale_log2, scale_log2};
    if (q_prescaled) {
      row_scale[0] *= s.q_row_scale[rp.row[0]];
      row_scale[1] *= s.q_row_scale[rp.row[1]];
    }
    if (seesaw) {
      consumer_piece_seesaw<MmaT>(p, s, pc, warpgroup, thread, rp, row_scale, ring, it, o, m, l);
    } else {
      consumer_piece<MmaT>(p, s, pc, warpgroup, thread, rp, row_scale, it, o, m, l);
    }
    FLASH_MLA_TRACE_FIRST_IF(thread == 0, kSlotLoopDone + warpgroup);
    if (pc.n_splits == 1 && stage_out) {
      store_final_staged<T>(p, pc, s, rp, warpgroup, thread, o, m, l, warpgroup == 0 && rp.col == 0, out_scale,
                            maps.out_by_tma ? &maps.out : nullptr);
      staged = true;
    } else if (pc.n_splits > 1 && maps.accum_by_tma && full_tile) {
      store_partial_staged(p, pc, s, rp, warpgroup, thread, o, m, l, warpgroup == 0 && rp.col == 0, out_scale,
                           maps.accum);
      staged = true;
      if (p.release_pieces) {
        ptx::named_barrier_sync(kPartialStored, kConsumerThreads);
        if (threadIdx.x == 0) release_piece(p, pc);
      }
    } else {
      store_output<T>(p, pc, rp, warpgroup, o, m, l, warpgroup == 0 && rp.col == 0, out_scale);
      if (pc.n_splits > 1 && p.release_pieces) {
        ptx::named_barrier_sync(kPartialStored, kConsumerThreads);
        if (threadIdx.x == 0) release_piece(p, pc);
      }
    }
    FLASH_MLA_TRACE_AT(kSlotPieceStored + min(piece_index++, kTracePieces));
  });
  if (staged && thread < 32) ptx::bulk_wait_group_read<0>();  // the staged rows stay until read
  FLASH_MLA_TRACE_AT(kSlotExit);
}

}  // namespace flash_mla::sm90::dense

namespace flash_mla::sm90::dense {

#if defined(FLASH_MLA_TRACE)
// The trace buffers of the last launch's dtype and format, for a study program: [kTraceCtas][kTraceSlots]
// and [kPhaseCtas][2][kPhaseIters][kPhaseEvents].
extern void* g_trace_buffer;
extern void* g_phase_buffer;
#endif

// Launches decode_kernel<T, kFormat, kSched> on p.stream (the current device is p.device).
template <typename T, KvCacheFormat kFormat, Schedule kSched>
void launch_schedule(const DecodeParams& p, const TensorMaps& maps) {
  // The shared-memory opt-in is per device and kernel: set it once on each device the kernel runs on
  // (devices past the mask's 64 bits set it on every call).
  static std::atomic<uint64_t> configured{0};
  const uint64_t bit = p.device.index < 64 ? uint64_t{1} << p.device.index : 0;
  if ((configured.load(std::memory_order_acquire) & bit) == 0) {
    detail::cuda_check(cudaFuncSetAttribute(decode_kernel<T, kFormat, kSched>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize, kSharedBytes),
                       "cudaFuncSetAttribute (decode kernel shared memory)");
    configured.fetch_or(bit, std::memory_order_acq_rel);
  }
  const dim3 grid((p.rows + kBlockM - 1) / kBlockM, p.h_kv, p.num_sm_parts);
  decode_kernel<T, kFormat, kSched><<<grid, kThreads, kSharedBytes, static_cast<cudaStream_t>(p.stream)>>>(p, maps);
}

// FLASH_MLA_SM90_SCHEDULE=serial, =seesaw or =bypart (read once per process) forces a 16-bit call's
// schedule, for measurements; unset or anything else: `chosen` (by the row count, launch_decode).
inline Schedule schedule_override(Schedule chosen) {
  static const int forced = [] {
    const char* v = std::getenv("FLASH_MLA_SM90_SCHEDULE");
    const std::string s = v != nullptr ? v : "";
    auto as_int = [](Schedule x) { return static_cast<int>(x); };
    return s == "serial"   ? as_int(Schedule::kSerial)
           : s == "seesaw" ? as_int(Schedule::kSeesaw)
           : s == "bypart" ? as_int(Schedule::kByPart)
                           : -1;
  }();
  return forced >= 0 ? static_cast<Schedule>(forced) : chosen;
}

// Launches the main kernel on p.stream (the current device is p.device). Instantiated per dtype and
// cache format in decode_bf16.cu / decode_fp16.cu / decode_fp8.cu. 16-bit calls of kSeesawMinRows to
// kByPartMaxRows query rows per KV head choose the schedule by part, more rows run the seesaw
// (config.hpp).
template <typename T, KvCacheFormat kFormat>
void launch_decode(const DecodeParams& p, const TensorMaps& maps) {
#if defined(FLASH_MLA_TRACE)
  detail::cuda_check(cudaGetSymbolAddress(&g_trace_buffer, g_trace), "trace symbol");
  detail::cuda_check(cudaGetSymbolAddress(&g_phase_buffer, g_phase), "phase symbol");
#endif
  if constexpr (kFormat == KvCacheFormat::kDense) {
    const Schedule chosen = p.rows > kByPartMaxRows    ? Schedule::kSeesaw
                            : p.rows >= kSeesawMinRows ? Schedule::kByPart
                                                       : Schedule::kSerial;
    switch (schedule_override(chosen)) {
      case Schedule::kSeesaw:
        launch_schedule<T, kFormat, Schedule::kSeesaw>(p, maps);
        return;
      case Schedule::kByPart:
        launch_schedule<T, kFormat, Schedule::kByPart>(p, maps);
        return;
      case Schedule::kSerial:
        break;
    }
  }
  launch_schedule<T, kFormat, Schedule::kSerial>(p, maps);
}

}  // namespace flash_mla::sm90::dense
