// Constants and the shared-memory plan of the dense (bf16/fp16) Hopper decode kernel (64 query rows
// per CTA).
#pragma once

#include <cstdint>

#include "cuda/sm90/decode_common.cuh"

namespace flash_mla::sm90::dense {

inline constexpr int kBlockM = flash_mla::kBlockM;  // query rows per CTA (wgmma M)
// The consumer schedules. Both are compiled, and launch_decode picks serial unless FLASH_MLA_SM90_SEESAW=1
// (DecodeParams::sm90_seesaw), so one build runs either for an A/B measurement: a temporary doubling
// of the kernels, to be collapsed to the faster schedule once the seesaw has been measured.
//   kSerial: consumer 0 computes S = Q·Kᵀ and the softmax of every block, consumer 1 only its half of
//            P·V (measured on an H100 at h_q = 128: ~4100 cycles per block against 2176 of tensor math).
//   kSeesaw: blocks go in pairs (a, b); consumer 0 scores a, consumer 1 scores b, each folds its own
//            block into its 256 columns first (P from registers), then the other's (P through shared
//            memory); the stages are released in three groups each (kernel.cuh, "Seesaw schedule").
enum class Schedule { kSerial, kSeesaw };
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

// Named barriers (id 0 is __syncthreads). Each pairs the two consumer warpgroups (256 threads) unless
// it says otherwise. The serial hand-offs use bar.sync on both sides: each hand-off's other side is
// already waiting there, so a sync costs nothing over an arrive, and the ordering is explicit to
// compute-sanitizer's racecheck as well. The seesaw's publish with bar.arrive (the publisher goes on)
// and wait with bar.sync; each is arrived at once per pair and waited for before the publisher can
// arrive again (kernel.cuh says why), so arrivals of two pairs never meet in one barrier.
enum NamedBarrier : uint32_t {
  kQReady = 1,    // Q tile stored and fenced by both consumers; the previous piece's stats were read
  kPFree = 2,     // serial: consumer 1 finished P·V of the previous block, sP and alpha may be overwritten
  kPReady = 3,    // serial: consumer 0 wrote P, alpha and the zeroed V tail of this block
  kRowStats = 4,  // both consumers' row sums (seesaw) or consumer 0's final row max and sum (serial)
  kStatsA = 5,    // seesaw: consumer 0 published alpha and the running max after block a
  kStatsB = 6,    // seesaw: consumer 1 published alpha and the running max after block b
  kPaReady = 7,   // seesaw: consumer 0 wrote P(a)·alpha_b to sP (P(a) when the pair has no b)
  kPbReady = 8,   // seesaw: consumer 1 wrote P(b) to stage 1's RoPE sub-tile
  kTailZeroedLeft = 9,    // seesaw, consumer 0's 128 threads: around zeroing its V half of a tail block
  kTailZeroedRight = 10,  // seesaw, consumer 1's 128 threads: likewise
};

// The sub-tile of a stage that only Q·Kᵀ reads (channels 512..575, the RoPE part; V is 0..511). The
// seesaw writes block b's P into stage 1's once consumer 1's Q·K(b)ᵀ is done: the 8 KiB that a second
// P buffer would need and that is not left beside Q and two stages.
inline constexpr int kRopeSubTile = kVSubTiles;

// The seesaw releases each stage in three groups, each with its own full and free mbarrier, so that
// the producer refills part of a stage while the pair is still running: the RoPE sub-tile, V left
// (sub-tiles 0-3, consumer 0's P·V columns) and V right (4-7, consumer 1's). Block a (stage 0) frees
// RoPE after consumer 0's Q·K(a)ᵀ, V left after consumer 0's P·V(a), V right after consumer 1's P·V(a);
// block b (stage 1) frees V right after consumer 1's P·V(b), RoPE (holding P(b)) and V left after
// consumer 0's P·V(b). The producer fills, and the next Q·Kᵀ on the stage reads, the groups in that order.
enum Group : int { kGroupRope = 0, kGroupVLeft = 1, kGroupVRight = 2 };
inline constexpr int kGroups = 3;
__host__ __device__ constexpr int group_first_sub_tile(int g) {
  return g == kGroupRope ? kRopeSubTile : g == kGroupVLeft ? 0 : kVSubTilesPerWarpgroup;
}
__host__ __device__ constexpr int group_sub_tiles(int g) { return g == kGroupRope ? 1 : kVSubTilesPerWarpgroup; }
__host__ __device__ constexpr int release_order(int stage, int i) {
  return stage == 0 ? (i == 0 ? kGroupRope : i == 1 ? kGroupVLeft : kGroupVRight)
                    : (i == 0 ? kGroupVRight : i == 1 ? kGroupRope : kGroupVLeft);
}
// Arrivals that free a group: 128 when one consumer is its last reader, 256 when both read it (stage
// 0's V right: Q·K(a)ᵀ and consumer 1's P·V(a); stage 1's V left: Q·K(b)ᵀ and consumer 0's P·V(b)).
__host__ __device__ constexpr uint32_t group_free_arrivals(int stage, int g) {
  return (stage == 0 && g == kGroupVRight) || (stage == 1 && g == kGroupVLeft) ? 256 : 128;
}

struct SharedStorage {
  SubTile q[kQKSubTiles];           // [64 rows, 576] the query tile, 72 KiB
  SubTile k[kStages][kQKSubTiles];  // [stage][64 tokens, 576] KV blocks, 144 KiB
  SubTile p;                        // [64 rows, 64 tokens] serial: P; seesaw: P(a)·alpha_b, 8 KiB
  float alpha[kStages][kBlockM];    // per-row rescale of a stage's block (serial: [0] only)
  float row_max[kStages][kBlockM];  // seesaw: running row max (log2) after a stage's block; serial: [0] final
  float row_sum[2][kBlockM];        // seesaw: row sum of each consumer's own blocks; serial: [0] final
  uint64_t k_full[kStages];         // serial: a stage's bytes landed
  uint64_t k_free[kStages];         // serial: every consumer thread finished with a stage
  uint64_t g_full[kStages][kGroups];  // seesaw: a release group's bytes landed
  uint64_t g_free[kStages][kGroups];  // seesaw: a release group's last readers finished with it
};

inline constexpr int kSharedBytes = static_cast<int>(sizeof(SharedStorage)) + 1024;  // + base alignment
static_assert(kSharedBytes <= 232448, "shared-memory plan exceeds the 227 KiB per-block limit");

}  // namespace flash_mla::sm90::dense
