// Constants and the shared-memory plan of the dense (bf16/fp16) Hopper decode kernel.
#pragma once

#include <cstdint>

#include "flash_mla/flash_mla.hpp"

namespace flash_mla::sm90 {

inline constexpr int kBlockM = flash_mla::kBlockM;  // query rows per CTA (wgmma M)
inline constexpr int kBlockN = flash_mla::kBlockN;  // KV tokens per pipeline stage
inline constexpr int kSubTileCols = 64;             // channels per TMA copy: one 128-byte swizzled row
inline constexpr int kQKSubTiles = kHeadDim / kSubTileCols;   // 9: Q·Kᵀ runs over all 576 channels
inline constexpr int kVSubTiles = kHeadDimV / kSubTileCols;   // 8: V is the first 512 channels
inline constexpr int kVSubTilesPerWarpgroup = kVSubTiles / 2;  // each consumer owns 256 output columns
inline constexpr int kStages = 2;
inline constexpr int kWarpgroupThreads = 128;
inline constexpr int kConsumerThreads = 2 * kWarpgroupThreads;
inline constexpr int kThreads = 3 * kWarpgroupThreads;  // two consumers + one producer warpgroup
inline constexpr int kSubTileBytes = kBlockN * kSubTileCols * 2;         // 8 KiB, 1024-byte aligned
inline constexpr uint32_t kKBlockBytes = kQKSubTiles * kSubTileBytes;    // 72 KiB per stage
// Register budgets after setmaxnreg: 2 * 128 * 232 + 128 * 40 = 64,512 <= 65,536.
inline constexpr uint32_t kConsumerRegs = 232;
inline constexpr uint32_t kProducerRegs = 40;

// Named barriers (id 0 is __syncthreads). Each pairs the two consumer warpgroups (256 threads).
enum NamedBarrier : uint32_t {
  kQReady = 1,    // Q tile stored and fenced by both consumers; the previous piece's stats were read
  kPFree = 2,     // consumer 1 finished P·V of the previous block: sP and sAlpha may be overwritten
  kPReady = 3,    // consumer 0 wrote P, alpha and the zeroed V tail of this block
  kRowStats = 4,  // consumer 0 wrote the final row max and row sum of the piece
};

// One 64x64 tile of 16-bit values in the 128-byte swizzle layout: row r's 16-byte chunk c lives at
// chunk c ^ (r % 8). TMA writes it, wgmma reads it (K-major for Q, K and P; N-major for V).
struct alignas(1024) SubTile {
  uint16_t v[kBlockN * kSubTileCols];
};

struct SharedStorage {
  SubTile q[kQKSubTiles];           // [64 rows, 576] the query tile, 72 KiB
  SubTile k[kStages][kQKSubTiles];  // [stage][64 tokens, 576] KV blocks, 144 KiB
  SubTile p;                        // [64 rows, 64 tokens] softmax probabilities, 8 KiB
  float alpha[kBlockM];             // per-row rescale of this block (consumer 0 -> consumer 1)
  float row_max[kBlockM];           // final row max (log2 domain) of the piece
  float row_sum[kBlockM];           // final row sum of the piece
  uint64_t k_full[kStages];         // TMA bytes of a stage landed
  uint64_t k_free[kStages];         // every consumer thread finished with a stage
};

inline constexpr int kSharedBytes = static_cast<int>(sizeof(SharedStorage)) + 1024;  // + base alignment
static_assert(kSharedBytes <= 232448, "shared-memory plan exceeds the 227 KiB per-block limit");

}  // namespace flash_mla::sm90
