// Constants and the shared-memory plan of the dense (bf16/fp16) Hopper decode kernel (64 query rows
// per CTA).
#pragma once

#include <cstdint>

#include "cuda/sm90/decode_common.cuh"

namespace flash_mla::sm90::dense {

inline constexpr int kBlockM = flash_mla::kBlockM;  // query rows per CTA (wgmma M)
// One consumer schedule ("serial"): consumer 0 computes S = Q·Kᵀ and the softmax of every block,
// consumer 1 only its half of P·V (~4100 cycles per block against 2176 of tensor math; the phase
// timeline is in docs/PERFORMANCE.md, session 5). The seesaw schedule of FlashMLA's 2025-04 kernel was
// built twice (sessions 3 and 4) and measured 3-16 % slower on every row; it was removed (design and
// measurements: docs/DESIGN.md, "What was tried").
inline constexpr int kVSubTilesPerWarpgroup = kVSubTiles / 2;  // each consumer owns 256 output columns
inline constexpr int kStages = 2;
// Pages whose copies (page_copy_rows: 8 rows for 24-token pages, 4 for 100) are shorter than this are
// gathered with cp.async by the whole producer warpgroup (measured on an
// H100, b=128: at 8-token pages the gather ran 433/414 us against TMA boxes' 443/442 for h_q 16/128;
// at 16 the boxes won, 419/380 against 423/400; one box per 1-token page ran 4.5x slower than 64).
inline constexpr int kMinTmaPage = 16;
inline constexpr int kConsumerThreads = 2 * kWarpgroupThreads;
inline constexpr int kThreads = 3 * kWarpgroupThreads;  // two consumers + one producer warpgroup
// Register budgets after setmaxnreg: 2 * 128 * 232 + 128 * 40 = 64,512 <= 65,536. ptxas allocates
// the consumers' region within this budget, not the entry cap of 168 (65536 / 384): the same
// consumer code compiled without setmaxnreg spills and serialises its wgmma (C7512), and needs 216
// (208 spills; docs/DESIGN.md, "Register budget").
inline constexpr uint32_t kConsumerRegs = 232;
inline constexpr uint32_t kProducerRegs = 40;
// FP8 caches: the producer warpgroup dequantises (in shared memory, or through registers for gathered
// pages), so it keeps more. setmaxnreg.inc takes registers only from what .dec released out of the
// 168 per thread allocated at launch, so 2 * consumer + producer <= 3 * 168 = 504: 2 * 200 + 104. ptxas: 0 spills
// with load_q's addresses kept out of the piece loop (ptx::opaque); before that fix the consumers
// needed 216, which left the producer 72, too few ("FP8 with scale" spilled).
inline constexpr uint32_t kFP8ConsumerRegs = 200;
inline constexpr uint32_t kFP8ProducerRegs = 104;

// Named barriers (id 0 is __syncthreads), each pairing the two consumer warpgroups (256 threads). The
// hand-offs use bar.sync on both sides: each hand-off's other side is already waiting there, so a sync
// costs nothing over an arrive, and the ordering is explicit to compute-sanitizer's racecheck as well.
enum NamedBarrier : uint32_t {
  kQReady = 1,    // Q tile stored and fenced by both consumers; the previous piece's stats were read
  // Consumer 0's four warps (128 threads): every warp's wait for Q·K(j)ᵀ has returned, so no warp's share
  // of that wgmma still reads stage j's RoPE sub-tile when P of block j overwrites it.
  kQKRead = 2,
  kPReady = 3,    // consumer 0 wrote P, alpha and the zeroed V tail of this block
  kRowStats = 4,  // consumer 0's final row max and sum
  // The FP8 TMA producer's 128 threads (not the consumers'): every thread has read the raw bytes of
  // the block that the remaining 16-bit tiles overwrite.
  kRawRead = 5,
  kQLoaded = 6,  // per-tensor FP8, bf16 q: every consumer's Q copies landed (before the f16 prescale)
  // A consumer's 128 threads (kStaged + warpgroup, so 7 and 8): its half of the staged output is in
  // shared memory.
  kStaged = 7,
  kStagedConsumer1 = 8,  // kStaged + 1, named so that no other barrier takes it
  kStagedRead = 9,  // both consumers: the bulk copies of the staged output have read it (Q may be reloaded)
  kPartialStored = 10,  // both consumers stored their halves of a split piece's partial (release_piece)
};

// A finished piece's final output goes out through the Q tile (free once the piece's last Q·Kᵀ is
// done): each consumer's 256 columns of the 64 rows as 16-bit values, rows kStagedRowBytes apart (16
// bytes of padding put the 8 rows of a warp's 4-byte stores in 32 different banks), then one 512-byte
// bulk copy per row.
inline constexpr int kStagedRowBytes = kHeadDimV + 16;


struct SharedStorage {
  SubTile q[kQKSubTiles];           // [64 rows, 576] the query tile, 72 KiB
  SubTile k[kStages][kQKSubTiles];  // [stage][64 tokens, 576] KV blocks, 144 KiB
  float alpha[kStages][kBlockM];    // per-row rescale of the block in each stage (P is in its RoPE sub-tile)
  float row_max[kBlockM];           // the piece's final row max (log2)
  float row_sum[kBlockM];           // the piece's final row sum
  float q_row_scale[kBlockM];       // per-tensor FP8, bf16 q: each row's prescale 2^e (q_to_f16_prescaled)
  uint64_t k_full[kStages];         // a stage's bytes landed
  uint64_t k_free[kStages];         // every consumer thread finished with a stage
  uint64_t k_raw[kStages][2];       // FP8 caches: a stage's raw bytes landed (TMA; [1]: the later part)
};

inline constexpr int kSharedBytes = static_cast<int>(sizeof(SharedStorage)) + 1024;  // + base alignment
static_assert(2 * kBlockM * kStagedRowBytes <= static_cast<int>(sizeof(SharedStorage::q)),
              "the staged output must fit in the Q tile");
static_assert(kSharedBytes <= 232448, "shared-memory plan exceeds the 227 KiB per-block limit");

}  // namespace flash_mla::sm90::dense
