// Constants and the shared-memory plan of the narrow Hopper decode kernel: at most 32 query rows per
// (sequence, KV head), computed transposed so that wgmma's N, not its M = 64, is the row count.
#pragma once

#include <cstdint>

#include "cuda/sm90/decode_common.cuh"

namespace flash_mla::sm90::narrow {

inline constexpr int kRows = 32;  // wgmma N: query rows (zero-padded past h_q * s_q / h_kv)
inline constexpr int kStages = 2;
inline constexpr int kConsumerThreads = kWarpgroupThreads;  // one consumer warpgroup
inline constexpr int kThreads = 2 * kWarpgroupThreads;      // + one producer warpgroup
inline constexpr int kConsumerWarps = kConsumerThreads / 32;
inline constexpr int kColsPerThread = 8;  // columns 8i + 2(lane % 4) + e, i < 4, e < 2, of every m64n32 tile

// Named barriers among the consumer warpgroup's 128 threads (id 0 is __syncthreads).
enum NamedBarrier : uint32_t {
  kQReady = 1,   // Qᵀ stored and fenced; the previous piece's column sums were read
  kColumns = 2,  // per-warp column maxima (or sums) written / read
  kPReady = 3,   // Pᵀ and the zeroed V tail of this block written and fenced
};

// [32 rows, 64] 16-bit values, 128-byte swizzled (row r's chunk c at c ^ (r % 8)).
struct alignas(1024) RowTile {
  uint16_t v[kRows * kSubTileCols];
};

struct SharedStorage {
  SubTile k[kStages][kQKSubTiles];        // [stage][64 tokens, 576] KV blocks, 144 KiB
  RowTile q[kQKSubTiles];                 // [32 rows, 576] the queries, 36 KiB
  RowTile p;                              // [32 rows, 64 tokens] probabilities, 4 KiB
  float columns[kConsumerWarps][kRows];   // per-warp column max / sum
  uint64_t k_full[kStages];               // TMA bytes of a stage landed
  uint64_t k_free[kStages];               // every consumer thread finished with a stage
};

inline constexpr int kSharedBytes = static_cast<int>(sizeof(SharedStorage)) + 1024;  // + base alignment
static_assert(kSharedBytes <= 232448, "shared-memory plan exceeds the 227 KiB per-block limit");

}  // namespace flash_mla::sm90::narrow
