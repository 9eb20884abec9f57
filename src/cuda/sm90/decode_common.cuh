// Device helpers shared by the sm90 decode kernels: the pieces of a schedule part, packing, quad
// reductions and the 128-byte swizzle of a 64x64 16-bit tile.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>

#include "core/params.hpp"
#include "cuda/piece_counters.cuh"
#include "ptx/wgmma.hpp"

namespace flash_mla::sm90 {

using detail::DecodeParams;

inline constexpr int kBlockN = flash_mla::kBlockN;  // KV tokens per pipeline stage
inline constexpr int kSubTileCols = 64;             // channels per TMA copy: one 128-byte swizzled row
inline constexpr int kQKSubTiles = kHeadDim / kSubTileCols;   // 9: Q·Kᵀ runs over all 576 channels
inline constexpr int kVSubTiles = kHeadDimV / kSubTileCols;   // 8: V is the first 512 channels
inline constexpr int kSubTileBytes = kBlockN * kSubTileCols * 2;         // 8 KiB, 1024-byte aligned
inline constexpr uint32_t kKBlockBytes = kQKSubTiles * kSubTileBytes;    // 72 KiB per stage
inline constexpr int kWarpgroupThreads = 128;

// One 64x64 tile of 16-bit values in the 128-byte swizzle layout: row r's 16-byte chunk c lives at
// chunk c ^ (r % 8). TMA writes it, wgmma reads it (K-major, or MN-major for V).
struct alignas(1024) SubTile {
  uint16_t v[kBlockN * kSubTileCols];
};

// One piece of work: the tokens [token_begin, token_end) of sequence `req`.
struct Piece {
  int req;
  int seqlen;
  int token_begin;
  int token_end;
  int split;     // index among the sequence's pieces
  int n_splits;  // pieces of the sequence; 1 means "write the final output"
  int next_req;  // the sequence of the next piece visited (for_each_piece's order), or -1 after the last
  __device__ int first_block() const { return token_begin / kBlockN; }
  __device__ int end_block() const {
    return token_end > token_begin ? (token_end + kBlockN - 1) / kBlockN : first_block();
  }
};

// This CTA's row of the schedule metadata.
__device__ __forceinline__ const int32_t* part_row(const DecodeParams& p) {
  return p.metadata + static_cast<int64_t>(blockIdx.z) * kMetadataWords;
}

// Visits the pieces of this CTA's part: when the part ends inside a sequence (its last piece is the
// first piece of a split sequence), that piece first, then the others in order. A split piece stores a
// 64-row fp32 partial (128 KiB), a whole sequence's output half of that, and the CTA's last store is
// the one nothing else overlaps. (H200, session 19: the small split rows it was meant for hold one
// piece per part under the greedy cut, so nothing moved there; the long h128 s2/s4 rows ran 2-2.7 %
// faster, whole-group rows whose order did not change among them: code placement.) Plain loads (not
// __ldg): metadata may be produced by a kernel earlier in the same stream. Clamped so that metadata of
// another batch cannot index out of bounds; lengths past the block table's capacity are truncated as
// on the CPU backend.
template <typename Fn>
__device__ __forceinline__ void for_each_piece(const DecodeParams& p, Fn&& fn) {
  const int32_t* row = part_row(p);
  const int begin_req = max(row[0], 0), end_req = min(row[2], p.batch - 1);
  if (begin_req > end_req) return;  // (else end_req - begin_req below can overflow on garbage words)
  const int64_t capacity = static_cast<int64_t>(p.max_blocks_per_seq) * p.page_block_size;
  const int64_t slots = static_cast<int64_t>(p.batch) + p.num_sm_parts;
  auto seqlen = [&](int req) {
    return static_cast<int>(min(max(static_cast<int64_t>(p.seqlens[req]), int64_t{0}), capacity));
  };
  const bool cut_last = end_req > begin_req && row[3] < seqlen(end_req);
  auto visit = [&](int k) { return cut_last ? (k == 0 ? end_req : begin_req + k - 1) : begin_req + k; };
  for (int k = 0; k <= end_req - begin_req; ++k) {
    const int req = visit(k);
    Piece pc;
    pc.req = req;
    pc.seqlen = seqlen(req);
    pc.token_begin = req == begin_req ? max(row[1], 0) : 0;
    pc.token_end = req == end_req ? min(row[3], pc.seqlen) : pc.seqlen;
    pc.split = req == begin_req ? row[4] : 0;
    pc.next_req = k < end_req - begin_req ? visit(k + 1) : -1;
    const int first = p.num_splits[req];
    pc.n_splits = p.num_splits[req + 1] - first;
    const int64_t slot = static_cast<int64_t>(first) + pc.split;
    if (pc.n_splits < 1 || (pc.n_splits > 1 && (slot < 0 || slot >= slots))) continue;
    fn(pc);
  }
}

// Visits every 64-token block of this CTA's pieces in for_each_piece's order, as the producers walk them:
// fn(piece, block-table row of its sequence, block index, position of the block in the CTA's stream).
template <typename Fn>
__device__ __forceinline__ void for_each_block(const DecodeParams& p, Fn&& fn) {
  uint32_t it = 0;
  for_each_piece(p, [&](const Piece& pc) {
    const int32_t* table = p.block_table + static_cast<int64_t>(pc.req) * p.block_table_stride;
    for (int blk = pc.first_block(); blk < pc.end_block(); ++blk, ++it) fn(pc, table, blk, it);
  });
}

// Rows of one page copy for pages of P tokens: the largest power of two dividing P, at most 64. It
// divides both 64 and P, so every copy lies inside one page and one 64-token block, whatever P is: a
// divisor of 64 gives P, a multiple of 64 gives 64, 48 gives 16, 100 gives 4.
__host__ __device__ constexpr int page_copy_rows(int page) { return (page & -page) < kBlockN ? page & -page : kBlockN; }

// Pages whose copies (page_copy_rows: 8 rows for 24-token pages, 4 for 100) are shorter than this are
// gathered with cp.async by the dense kernel's whole producer warpgroup (measured on an
// H100, b=128: at 8-token pages the gather ran 433/414 us against TMA boxes' 443/442 for h_q 16/128;
// at 16 the boxes won, 419/380 against 423/400; one box per 1-token page ran 4.5x slower than 64); the
// narrow kernel takes only pages copied by TMA. A block copied by TMA needs at most kMaxTmaCopies copies.
inline constexpr int kMinTmaPage = 16;
inline constexpr int kMaxTmaCopies = kBlockN / kMinTmaPage;
static_assert(kMaxTmaCopies <= 32, "the dense kernel's TMA producers issue copy j from lane j of one warp");

// Where the pages of a 64-token block are: copy j holds the block's rows j*R .. j*R + R - 1
// (R = page_copy_rows(P)), at token (64 * blk + j * R) % P of page table[(64 * blk + j * R) / P]. A page
// of 64 tokens or a multiple of 64 holds the whole block (one copy); a divisor of 64 tiles it.
struct BlockPages {
  int page_size;
  int rows_per_copy;  // page_copy_rows(P)
  __device__ explicit BlockPages(int page) : page_size(page), rows_per_copy(page_copy_rows(page)) {}

  // Copies a block needs when `valid` of its tokens lie before the sequence end (valid > 0).
  __device__ int copies(int valid) const {
    return (min(valid, kBlockN) + rows_per_copy - 1) / rows_per_copy;
  }
  // Bytes one copy lands for all nine sub-tiles (a copy never passes its page; a page outside the pool
  // reads as zeros, which TMA counts).
  __device__ uint32_t copy_bytes() const {
    return static_cast<uint32_t>(rows_per_copy) * kSubTileCols * 2 * kQKSubTiles;
  }

  struct Copy {
    int32_t page;           // pool index from the block table
    int32_t token_in_page;  // first token of the copy within its page
    int row;                // first row of the copy within the 64-token tile
  };
  // Copy j of a block that needs `copies`; for j >= copies none (zeros): its table entry may lie past the
  // sequence's pages (garbage) and is not read.
  __device__ Copy copy(const int32_t* table, int blk, int j, int copies) const {
    if (j >= copies) return {};
    const int64_t token = static_cast<int64_t>(blk) * kBlockN + j * rows_per_copy;
    return {table[token / page_size], static_cast<int32_t>(token % page_size), j * rows_per_copy};
  }
};

template <typename T>
__device__ __forceinline__ uint32_t pack2(float a, float b) {
  if constexpr (ptx::kIsBf16<T>) {
    __nv_bfloat162 v = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<uint32_t*>(&v);
  } else {
    __half2 v = __floats2half2_rn(a, b);
    return *reinterpret_cast<uint32_t*>(&v);
  }
}

// The two values of a pack2 word, exactly.
template <typename T>
__device__ __forceinline__ float2 unpack2(uint32_t v) {
  if constexpr (ptx::kIsBf16<T>) {
    return make_float2(__uint_as_float(v << 16), __uint_as_float(v & 0xffff0000u));
  } else {
    return __half22float2(*reinterpret_cast<const __half2*>(&v));
  }
}

__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}

// A running max as the reference its P is computed against: 0 while the row (column) has no finite score
// (m = -inf), so that exp2(s - reference) stays finite and masked scores give 0.
__device__ __forceinline__ float finite_reference(float m) { return m == -INFINITY ? 0.0f : m; }

__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// Per-tensor FP8 with a bf16 q: each query row is multiplied by 2^-e so that its largest finite
// magnitude lands in [2^14, 2^15) of f16, and 2^e joins that row's softmax scale. finite_absmax folds
// a bf16 pair into a running maximum, ignoring NaN and infinities (which stay NaN and infinite).
__device__ __forceinline__ float finite_absmax(float absmax, uint32_t bf16_pair) {
  const float2 f = unpack2<__nv_bfloat16>(bf16_pair);
  const float a = fabsf(f.x), b = fabsf(f.y);
  if (a < INFINITY) absmax = fmaxf(absmax, a);  // false for NaN and infinity
  if (b < INFINITY) absmax = fmaxf(absmax, b);
  return absmax;
}

// 2^-e (down) and 2^e (up) for a row whose largest finite magnitude is absmax: e = floor(log2(absmax))
// - 14 from the exponent field, clamped to [-126, 113] so that both are normal floats built exactly
// from their exponent fields (bf16's largest row, 2^127, still lands in [2^14, 2^15); only rows whose
// maximum is below 2^-112, zero or subnormal, land lower).
struct RowPrescale {
  float down, up;
};
__device__ __forceinline__ RowPrescale row_prescale(float absmax) {
  const int exponent = static_cast<int>((__float_as_uint(absmax) >> 23) & 0xFF) - 127;
  const int e = min(max(exponent - 14, -126), 113);
  return {__int_as_float((127 - e) << 23), __int_as_float((127 + e) << 23)};
}

// The softmax's running max moves only when a block's max exceeds it by more than kMaxLag (log2
// units, FA4's thresholded rescale): P may then reach 2^kMaxLag, which bf16/f16 P and fp32 sums hold
// as well, and most blocks keep alpha = 1.
inline constexpr float kMaxLag = 8.0f;

// Element offset in q of global query row gr (= t * q_per_kv + h_in_group) of sequence req, under the
// CTA's KV head.
__device__ __forceinline__ int64_t q_row_offset(const DecodeParams& p, int req, int gr) {
  const int t = gr / p.q_per_kv, h = blockIdx.y * p.q_per_kv + gr % p.q_per_kv;
  return req * p.q_batch_stride + t * p.q_seq_stride + h * p.q_head_stride;
}

// Two e4m3 values (the low 16 bits of `pair`) as an f16 pair, exactly: one cvt.rn.f16x2.e4m3x2 (every
// e4m3 value, subnormal ones included, is a normal f16; NaN stays NaN). Per-tensor caches use f16
// tiles and f16 consumers: against the ~4.5 instructions per pair of the bf16 route this made the
// per-tensor rows 9-11 % faster on an H200 (docs/PERFORMANCE.md). A word's upper pair:
// ptx::e4m3x2_hi_to_f16x2 (src/ptx/convert.hpp), without a shift.
__device__ __forceinline__ uint32_t e4m3x2_to_f16x2(uint32_t pair) {
  const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(pair), __NV_E4M3);
  return static_cast<uint32_t>(h.x) | (static_cast<uint32_t>(h.y) << 16);
}

// A per-tensor descale (nullptr: 1).
__device__ __forceinline__ float descale_or_one(const float* d) { return d != nullptr ? *d : 1.0f; }

// log2(e): scores go into the log2 domain (exp2) by the softmax scale times this.
inline constexpr float kLog2e = 1.4426950408889634f;

// A finished query row of a piece: its running max m (log2 domain) and sum l give the output's factor
// `inv` (out_scale / l; 0 for a row that saw no token) and its lse (natural log).
struct RowResult {
  bool empty;
  float inv;
  float lse;
};
__device__ __forceinline__ RowResult finish_row(float m, float l, float out_scale) {
  constexpr float kLn2 = 0.6931471805599453f;
  const bool empty = l == 0.0f;
  return {empty, empty ? 0.0f : out_scale / l, (m + __log2f(l)) * kLn2};
}

// Where row `gr` (of this CTA's KV head, blockIdx.y) of a piece goes: with one split, the final output's
// row (req, t, h) and lse index (req, h, t); else the fp32 partial's slot, for both.
struct RowSlot {
  bool final;
  int64_t row;
  int64_t lse;
};
__device__ __forceinline__ RowSlot row_slot(const DecodeParams& p, const Piece& pc, int gr) {
  const int kv = blockIdx.y, t = gr / p.q_per_kv, h = kv * p.q_per_kv + gr % p.q_per_kv;
  if (pc.n_splits == 1) {
    return {true, (static_cast<int64_t>(pc.req) * p.s_q + t) * p.h_q + h,
            (static_cast<int64_t>(pc.req) * p.h_q + h) * p.s_q + t};
  }
  const int64_t slot = static_cast<int64_t>(p.num_splits[pc.req]) + pc.split;
  const int64_t idx = (slot * p.h_kv + kv) * p.rows + gr;
  return {false, idx, idx};
}

// Releases a split piece's partial result to the combine, which is launched as a programmatic dependent
// of the decode kernel and may already be waiting for it (cuda/combine.cu, wait_for_pieces). Called by
// one thread once every thread of the CTA that stored part of the piece has met it at a barrier: the
// release makes those stores visible at GPU scope (cumulative through the barrier) before the count.
// The count goes to word kPiecesStoredWord of the metadata row of the part holding the sequence's first
// piece: parts hold a sequence's pieces in consecutive order, so that part is this one minus the
// piece's split index.
__device__ __forceinline__ void release_piece(const DecodeParams& p, const Piece& pc) {
  const int first_part = static_cast<int>(blockIdx.z) - pc.split;
  if (first_part < 0) return;  // metadata of another batch: the combine does not wait on it either
  detail::metadata_counter(p, first_part, detail::kPiecesStoredWord).fetch_add(1, cuda::memory_order_release);
}

// Byte offset of 16-byte chunk `chunk` of row `row` in a 128-byte-swizzled 64x64 tile.
__device__ __forceinline__ uint32_t swizzled_offset(int row, int chunk) {
  return static_cast<uint32_t>(row * 128 + ((chunk ^ (row & 7)) << 4));
}

}  // namespace flash_mla::sm90
