// Constants and the shared-memory plan of the narrow Hopper decode kernel for FP8 caches: at most 32
// query rows per (sequence, KV head) of a per-tensor or an FP8-with-scale cache, computed
// transposed so that wgmma's N, not its M = 64, is the row count, with the cache's e4m3 bytes kept raw
// in shared memory (K converted to f16 in registers, V fed to e4m3 wgmma as bytes).
#pragma once

#include <cstdint>
#include <type_traits>

#include "cuda/sm90/decode_common.cuh"

namespace flash_mla::sm90::narrow {

inline constexpr int kRows = 32;  // wgmma N: query rows (zero past h_q * s_q / h_kv)
// Warpgroup roles: two score warpgroups (Sᵀ = K·Qᵀ, softmax, Pᵀ) take alternate blocks of a piece; one
// value warpgroup runs P·V for every block into the only Oᵀ and stores the piece; one thread of the
// producer warpgroup copies.
inline constexpr int kScoreWarpgroups = 2;
inline constexpr int kValueWarpgroup = kScoreWarpgroups;     // warpgroup index 2
inline constexpr int kProducerWarpgroup = kScoreWarpgroups + 1;
inline constexpr int kConsumerThreads = kWarpgroupThreads;  // per consumer warpgroup
inline constexpr int kThreads = (kScoreWarpgroups + 2) * kWarpgroupThreads;
inline constexpr int kConsumerWarps = kConsumerThreads / 32;
// setmaxnreg budgets: 232 + 2 * 128 + 24 = 512 = 4 * 128, the registers allocated per thread at launch.
// The value warpgroup holds Oᵀ (128 fp32; 64 with 16 rows); a score warpgroup Sᵀ (16; 8 with 16 rows),
// Q·Kᵀ's A fragments (40), the running max and (except with scale at 32 rows) P's reference, the column scales and
// limits; with 16 rows Qᵀ's descriptor and, per tensor, the own tile's partial (8, kScoreTiles); at the launch's
// 128 the score warpgroups issue no setmaxnreg.
inline constexpr uint32_t kLaunchRegs = 65536 / kThreads;  // 128 (ptxas -v: "Used 128 registers")
inline constexpr uint32_t kValueRegs = 232;
inline constexpr uint32_t kScoreRegs = 128;
inline constexpr uint32_t kProducerRegs = 24;
static_assert(kValueRegs + kScoreWarpgroups * kScoreRegs + kProducerRegs <= (kScoreWarpgroups + 2) * kLaunchRegs,
              "setmaxnreg budgets exceed the registers allocated at launch");
// A stage: one 64-token block of raw e4m3 rows as four 128-channel boxes and a fifth, each 8 KiB; the four
// [64 tokens, 128 bytes] 128-byte swizzled: token t's 16-byte chunk c at c ^ (t % 8). With scale, box g < 4
// is scale group g and the fifth holds the 64 bf16 RoPE channels (swizzled the same way). Per tensor the
// fifth holds the 64 RoPE bytes only, as [64 tokens, 64 bytes] unswizzled (its first 4 KiB; kRopeBoxCols),
// copied by a map of those channels alone, so that no copy reads past the row.
inline constexpr int kRawBoxCols = 128;
inline constexpr int kRawBoxes = (kHeadDim + kRawBoxCols - 1) / kRawBoxCols;  // 5
inline constexpr int kRawBoxBytes = kBlockN * kRawBoxCols;                   // 8 KiB
inline constexpr int kRopeBoxCols = kHeadDim - kHeadDimV;                    // 64
// Four stages: the two score warpgroups and the value warpgroup hold one each, one is in flight.
inline constexpr int kStages = 4;
// Pᵀ slots between the score warpgroups and the value warpgroup (block it uses slot it % kPSlots); with
// scale a slot is two tiles (room made by its 16-row Qᵀ tiles).
inline constexpr int kPSlots = 4;
// The running max moves when a block's max exceeds it by more than kNarrowLag (log2 units; the dense
// kernel's kMaxLag is 8), so P ≤ 2^kNarrowLag, and P·V runs on P·kPScale ≤ 2^8 (kernel.cuh, split_h):
// a lower lag buys e4m3/e5m2 range for small P, at more blocks that move the max.
inline constexpr float kNarrowLag = 4.0f;
inline constexpr int kPScaleLog2 = 4;  // 8 - kNarrowLag
inline constexpr float kPScale = 1 << kPScaleLog2;
static_assert(kPScaleLog2 + kNarrowLag == 8.0f, "P·kPScale <= 2^8");
// Up to kSideRows query rows the kernel runs at N = 16 and puts Pᵀ's two terms side by side (rows r and
// 16 + r of one B, both e4m3, the second kLoScale larger: kernel.cuh, split_h), halving P·V's wgmma.
inline constexpr int kSideRows = 16;
inline constexpr float kLoScale = 32.0f;
// P·V's last kScoreTiles channel tiles (of kVSubTiles) run on the score warpgroups, each for its own blocks into
// its own part of those tiles' Oᵀ (on its own running max, like its sums), merged by the value warpgroup at the
// piece's end (kernel.cuh, issue_own_tiles): per tensor with 16 rows, where session 34's source counters put ~29 %
// of the score warps' samples on their stage wait, which the value warpgroup's P·V holds up (b=128 h16 s1 rows
// 0.98-1.0x). One tile: a second one's partials (8 KiB more) do not fit in shared memory; at 32 rows a merged form
// ran 0.999-1.034x (docs/experiments/s34-own32.patch).
template <int kCols, bool kScaled>
inline constexpr int kScoreTiles = kCols == 4 && !kScaled ? 1 : 0;
static_assert(kScoreTiles<4, false> >= 0 && kScoreTiles<4, false> < kVSubTiles, "the value warpgroup keeps a tile");
// FP8 with scale (kernel.cuh, "With scale"): up to kRows rows, both forms. A block's Pᵀ is one per scale
// group: with 16 rows two per 4 KiB tile, in slots of two tiles; with 32 rows one per tile, groups 0 and 1
// in the block's own stage (its RoPE box, free once Q·Kᵀ has read it) and groups 2 and 3 in slots of two
// tiles, of which only kWideScaledPSlots fit beside the 36 KiB Qᵀ.
inline constexpr int kScaledRows = kRows;
inline constexpr int kWideScaledPSlots = 2;
// With scale, box g < 4 of a stage is scale group g, and P·V's channel tile mt (64 channels) lies in group
// mt / 2 (kernel.cuh's producer and pv_block).
static_assert(kFP8ScaleGroup == kRawBoxCols && kFP8ScaleGroup == 2 * kSubTileCols, "a scale group is one raw box");

// Named barriers (id 0 is __syncthreads). kQReady pairs the score warpgroups (256 threads); kColumns and
// kPReady are per score warpgroup (128 threads, id + warpgroup).
enum NamedBarrier : uint32_t {
  kQReady = 1,   // Qᵀ, the row prescales and limits stored; both done with the previous piece's
  kColumns = 2,  // every warp's column maxima (or sums) of this block written (2, 3)
  kPReady = 4,   // the threads' votes of this block reduced (4, 5: barrier.red); also before the tail zeroing,
                 // and after a moved max (every warp's reads of s.columns before the next write). barrier.red
                 // and barrier.sync share the id: legal as each use is taken by all 128 threads (PTX forbids
                 // mixing them within one active barrier phase)
  kPartialStored = 6,  // the value warpgroup stored a split piece's partial (release_piece)
  kBoxFree = 7,        // with scale and 32 rows: every warp's Q·Kᵀ read the block's box 4 (7, 8)
};

// [32 rows, 128 bytes] (64 16-bit values or 128 bytes), 128-byte swizzled (row r's chunk c at c ^ (r % 8)).
struct alignas(1024) RowTile {
  uint16_t v[kRows * kSubTileCols];
};

// [16 rows, 128 bytes], 128-byte swizzled as RowTile: with scale, Qᵀ's tiles (its rows past 16 are never read).
struct alignas(1024) HalfRowTile {
  uint16_t v[kSideRows * kSubTileCols];
};

struct alignas(1024) RawStage {
  uint8_t box[kRawBoxes][kRawBoxBytes];
};

// The plan of the kCols form (4: up to 16 rows, 8: up to 32); kScaled: FP8 with scale (16-row Qᵀ tiles with
// 16 rows, slots of two Pᵀ tiles, the blocks' scales), otherwise per tensor (with 16 rows, the own tiles' partials:
// score_o).
template <int kCols, bool kScaled>
struct SharedStorage {
  static constexpr bool kHalfQ = kScaled && kCols == 4;    // Qᵀ tiles of 16 rows
  static constexpr bool kPInStage = kScaled && kCols == 8;  // groups 0, 1 of a block's Pᵀ in its stage's box 4
  static constexpr int kSlots = kPInStage ? kWideScaledPSlots : kPSlots;
  static constexpr int kSlotTiles = kScaled ? 2 : 1;
  RawStage k[kStages];                       // raw e4m3 blocks, 160 KiB
  // Qᵀ as f16, channels permuted (kernel.cuh), 36 KiB; with scale, tile 8 (the RoPE) as bf16, and with 16
  // rows only 16 rows a tile (18 KiB).
  using QTile = std::conditional_t<kHalfQ, HalfRowTile, RowTile>;
  QTile q[kQKSubTiles];
  // Pᵀ per slot, 4 KiB (16 in all): [32 rows, 64 tokens e4m3, then 64 e5m2]; with 16 rows, the e4m3 lo term
  // in rows 16..31. With scale, slot i is tiles 2i, 2i + 1: with 16 rows (8 slots' worth, 32 KiB) scale group
  // g's Pᵀ at tile 2i + g / 2, bytes 64 (g % 2) of each row; with 32 rows (16 KiB) group 2 + j's at tile
  // 2i + j, groups 0 and 1 at bytes 4096 g of the block's stage's box 4.
  RowTile p[kSlots * kSlotTiles];
  float p_ref[kSlots][kRows];                // the column max each slot's Pᵀ was computed against
  float columns[kScoreWarpgroups][kConsumerWarps][kRows];  // per-warp column maxima or sums
  float stats_m[2][kScoreWarpgroups][kRows];  // per piece (parity): each score warpgroup's final max
  float stats_l[2][kScoreWarpgroups][kRows];  // and column sum
  float q_row_scale[kRows];                  // a bf16 q row's prescale 2^e
  float col_scale[kRows];                    // the piece's score scale (log2 domain) per query row
  int col_limit[kRows];                      // the piece's last visible token + 1 per query row
  uint64_t k_full[kStages];                  // a stage's bytes landed
  uint64_t k_free[kStages];                  // the value warpgroup finished with a stage
  uint64_t p_full[kSlots];                   // a score warpgroup stored a slot's Pᵀ and reference
  uint64_t p_free[kSlots];                   // the value warpgroup finished with a slot
  uint64_t stats_full[2];                    // both score warpgroups stored a piece's statistics (and score_o)
  uint64_t stats_free[2];                    // the value warpgroup read them
  // With scale only (one unused entry each per tensor): a stage's four scales per token (TMA), and each
  // slot's per-group maximum |scale| over its block's live tokens (its Pᵀ of group g holds P * scale /
  // maximum).
  alignas(128) float k_scale[kScaled ? kStages : 1][kBlockN][kFP8NumScales];  // a TMA destination: 128-byte aligned
  alignas(16) float p_group_max[kScaled ? kSlots : 1][kFP8NumScales];
  // Per score warpgroup, its part of the last kScoreTiles channel tiles' Oᵀ at a piece's end, in each thread's
  // accumulator order (one unused entry without them): written before stats_full, read before stats_free.
  static constexpr int kOwnTiles = kScoreTiles<kCols, kScaled>;
  alignas(16) float score_o[kOwnTiles ? kScoreWarpgroups : 1][kOwnTiles ? kOwnTiles : 1]
                           [kOwnTiles ? kConsumerThreads : 1][kOwnTiles ? 2 * kCols : 1];
};

template <int kCols, bool kScaled>
inline constexpr int kSharedBytes = static_cast<int>(sizeof(SharedStorage<kCols, kScaled>)) + 1024;  // + alignment
static_assert(kSharedBytes<4, false> <= 232448, "16-row per-tensor plan exceeds the 227 KiB per-block limit");
static_assert(kSharedBytes<8, false> <= 232448, "32-row per-tensor plan exceeds the 227 KiB per-block limit");
static_assert(kSharedBytes<4, true> <= 232448, "16-row with-scale plan exceeds the 227 KiB per-block limit");
static_assert(kSharedBytes<8, true> <= 232448, "32-row with-scale plan exceeds the 227 KiB per-block limit");

}  // namespace flash_mla::sm90::narrow
