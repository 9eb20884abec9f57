// Constants and the shared-memory plan of the dense (bf16/fp16) Hopper decode kernel (64 query rows
// per CTA).
#pragma once

#include <cstdint>

#include "cuda/sm90/decode_common.cuh"

namespace flash_mla::sm90::dense {

inline constexpr int kBlockM = flash_mla::kBlockM;  // query rows per CTA (wgmma M)
// The consumer schedule, one compile-time switch so that one branch builds either for an A/B run
// (flip this line and rebuild; the dense variants compile with 0 spills in both, the FP8 ones spill
// 28 bytes in the seesaw at kFP8ConsumerRegs):
//   true  "seesaw": the consumers compute S = Q·Kᵀ for alternate blocks, exchange P and the running
//         max through shared memory, and each accumulates its 256 output columns over every block
//         (kernel.cuh, "Seesaw schedule"). Measured on an H200: 3-8 % slower than serial on every
//         perf row (the pair holds both stages; docs/DESIGN.md says what should fix it).
//   false "serial": consumer 0 computes S and the softmax of every block, consumer 1 only its P·V
//         (measured on an H100 at h_q = 128: ~4100 cycles per block against 2176 of tensor math).
inline constexpr bool kSeesaw = false;
inline constexpr int kVSubTilesPerWarpgroup = kVSubTiles / 2;  // each consumer owns 256 output columns
inline constexpr int kStages = 2;
// Pages smaller than this are gathered with cp.async by the whole producer warpgroup (measured on an
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
// FP8 caches: the producer warpgroup dequantises through registers (two rows per thread in flight), so
// it keeps more. setmaxnreg.inc takes registers only from what .dec released out of the 168 per thread
// allocated at launch, so 2 * consumer + producer <= 3 * 168 = 504: 2 * 200 + 104. ptxas: 0 spills
// with load_q's addresses kept out of the piece loop (ptx::opaque); before that fix the consumers
// needed 216, which left the producer 72, too few ("FP8 with scale" spilled).
inline constexpr uint32_t kFP8ConsumerRegs = 200;
inline constexpr uint32_t kFP8ProducerRegs = 104;

// Named barriers (id 0 is __syncthreads). Each pairs the two consumer warpgroups (256 threads), both
// sides with bar.sync: each hand-off's other side is already waiting there, so a sync costs nothing
// over an arrive, and the ordering is explicit to compute-sanitizer's racecheck as well.
enum NamedBarrier : uint32_t {
  kQReady = 1,    // Q tile stored and fenced by both consumers; the previous piece's stats were read
  kPFree = 2,     // serial: consumer 1 finished P·V of the previous block, sP and alpha may be overwritten
  kPReady = 3,    // serial: consumer 0 wrote P, alpha and the zeroed V tail of this block
  kRowStats = 4,  // both consumers' row sums (seesaw) or consumer 0's final row max and sum (serial)
};

// The sub-tile of a stage that only Q·Kᵀ reads (channels 512..575, the RoPE part; V is 0..511). The
// seesaw schedule writes a block's P there once the owner's Q·Kᵀ of that block is done: 8 KiB that a
// second P buffer would need and that is not left beside Q and two stages.
inline constexpr int kRopeSubTile = kVSubTiles;

struct SharedStorage {
  SubTile q[kQKSubTiles];           // [64 rows, 576] the query tile, 72 KiB
  SubTile k[kStages][kQKSubTiles];  // [stage][64 tokens, 576] KV blocks, 144 KiB
  SubTile p;                        // [64 rows, 64 tokens] serial: softmax probabilities, 8 KiB
  float alpha[kStages][kBlockM];    // per-row rescale of a stage's block (serial: [0] only)
  float row_max[kStages][kBlockM];  // seesaw: running row max (log2) after a stage's block; serial: [0] final
  float row_sum[2][kBlockM];        // seesaw: row sum of each consumer's own blocks; serial: [0] final
  uint64_t k_full[kStages];         // TMA bytes of a stage landed
  uint64_t k_free[kStages];         // every consumer thread finished with a stage
  uint64_t p_full[kStages];         // seesaw: the block's owner (128 arrivals) wrote P, alpha, max, V tail
};

inline constexpr int kSharedBytes = static_cast<int>(sizeof(SharedStorage)) + 1024;  // + base alignment
static_assert(kSharedBytes <= 232448, "shared-memory plan exceeds the 227 KiB per-block limit");

}  // namespace flash_mla::sm90::dense
