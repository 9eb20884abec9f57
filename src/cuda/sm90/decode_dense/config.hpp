// Constants and the shared-memory plan of the dense (bf16/fp16) Hopper decode kernel (64 query rows
// per CTA).
#pragma once

#include <cstdint>

#include "cuda/sm90/decode_common.cuh"

namespace flash_mla::sm90::dense {

inline constexpr int kBlockM = flash_mla::kBlockM;  // query rows per CTA (wgmma M)
// Two consumer schedules. Serial: consumer 0 computes S = Q·Kᵀ and the softmax of every block, consumer
// 1 only its half of P·V (~3750 cycles per block against 2176 of tensor math; docs/PERFORMANCE.md,
// session 24). The seesaw (kSeesawMinRows below; kernel.cuh's header): the consumers score alternate
// blocks of a pair, with each stage released in three groups; sessions 3-5's whole-stage forms were
// 3-16 % slower on every row (docs/DESIGN.md, "What was tried").
inline constexpr int kVSubTilesPerWarpgroup = kVSubTiles / 2;  // each consumer owns 256 output columns
inline constexpr int kStages = 2;
// 16-bit calls with at least this many query rows per KV head (2+ row tiles) run the seesaw
// (consumer_piece_seesaw), since session 38 by part up to kByPartMaxRows (below). H200, session 26, 1 pass,
// eca302c (the warp-uniform role) with every call on the seesaw against its serial schedule: 128-row rows
// -0.8 ... -5.2 %; 64-row rows: b=128 16384 h64 s1 -3.4 % but the short and small-batch h16 s4 rows +4.3 ...
// +9.7 %; 32 rows and fewer +0.3 ... +8.9 %. The 256-row rows ran the seesaw since efaca86 (16384 h128 s2
// -3.6 / -4.0 %, 2 passes; -5.5 % more with the uniform role) (docs/PERFORMANCE.md).
inline constexpr int kSeesawMinRows = kBlockM + 1;
// The consumer schedule of a launch: serial, the seesaw, or chosen by each CTA from its part
// (part_takes_seesaw, kernel.cuh). Calls of 65-128 rows (two row tiles) choose by part. H200, session 38,
// 2 passes each: with every such call on the serial schedule, parts of 4-31 blocks (b=1-16 h128 s1 at 4k-64k
// tokens) ran 1.2-3.5 % faster than on the seesaw (b=8 16384, 31 blocks, +0.3 %), parts of 1-2 or 62+ blocks
// 0.6-2.5 % slower. By part, against the seesaw for all, the 23 h128 s1 rows of the small, perf and FlashMLA
// grids ran 0.992x (geometric mean; b=8 4096 -3.9 %, b=1 65536 -3.1 %, b=4 4096 +1.1 %, the b=128 rows
// 0.995-1.003x). Calls of more than 128 rows keep the seesaw, which won there at every part length measured
// (512 rows: 3.5-6.7 %, 4-block parts included).
enum class Schedule { kSerial, kSeesaw, kByPart };
inline constexpr int kByPartMaxRows = 2 * kBlockM;
// A part of at most kSeesawShortPart or at least kSeesawLongPart blocks runs the seesaw, else the serial
// schedule.
inline constexpr int kSeesawShortPart = 2;
inline constexpr int kSeesawLongPart = 40;
inline constexpr int kConsumerThreads = 2 * kWarpgroupThreads;
inline constexpr int kThreads = 3 * kWarpgroupThreads;  // two consumers + one producer warpgroup
// Register budgets after setmaxnreg: 2 * 128 * 232 + 128 * 40 = 64,512, all of the 168 per thread the
// CTA holds from its launch (65536 / 384, rounded down to 8). ptxas allocates the consumers' region
// within this budget, not the entry cap of 168: the same consumer code compiled without setmaxnreg
// spills and serialises its wgmma (C7512), and needs 216 (208 spills; docs/DESIGN.md, "Register
// budget"). setmaxnreg.inc waits until .dec has released enough, so a budget over the launch's hangs
// the consumers: a build with a 48-register producer (65,536 in all) never finished its first call
// (session 30; the cause inferred from this arithmetic).
inline constexpr uint32_t kLaunchRegs = 65536 / kThreads / 8 * 8;  // 168 (ptxas -v: "Used 168 registers")
inline constexpr uint32_t kConsumerRegs = 232;
inline constexpr uint32_t kProducerRegs = 40;
static_assert(2 * kConsumerRegs + kProducerRegs <= 3 * kLaunchRegs, "setmaxnreg budget exceeds the launch's");
// FP8 caches: the producer warpgroup dequantises (in shared memory, or through registers for gathered
// pages), so it keeps more, within the same launch budget: 2 * 200 + 104 = 504 = 3 * 168. ptxas: 0 spills
// with load_q's addresses kept out of the piece loop (ptx::opaque); before that fix the consumers
// needed 216, which left the producer 72, too few ("FP8 with scale" spilled).
inline constexpr uint32_t kFP8ConsumerRegs = 200;
inline constexpr uint32_t kFP8ProducerRegs = 104;
static_assert(2 * kFP8ConsumerRegs + kFP8ProducerRegs <= 3 * kLaunchRegs, "setmaxnreg budget exceeds the launch's");

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
  // The seesaw (16-bit caches, consumer_piece_seesaw), both consumers (256 threads):
  kSeesawOrder = 11,  // consumer 0 issued S(a): consumer 1 issues S(b) behind it
  kSeesawA = 12,      // consumer 0 published the running max after block a, P(a) and a's zeroed V tail
  kSeesawB = 13,      // consumer 1 published the running max after block b, P(b) and b's zeroed V tail
  kSeesawPFree = 14,  // consumer 1's P(a)·V_R(a) is done: the next pair's P(a) may overwrite the P tile
  // Consumer 1's four warps are past their wait for S(b), so P(b) may overwrite stage b's RoPE
  // sub-tile: the barrier its 128 threads also use in store_final_staged (never at the same time).
  kQKRead1 = kStagedConsumer1,
};

// The seesaw releases and refills each stage in three groups of sub-tiles, so that the next pair's
// S = Q·Kᵀ can start on the groups freed first (docs/DESIGN.md, "A compact seesaw").
enum KGroup : int { kGroupVL = 0, kGroupVR = 1, kGroupRope = 2, kGroups = 3 };

// A finished piece's final output goes out through the Q tile (free once the piece's last Q·Kᵀ is
// done): each consumer's 256 columns of the 64 rows as 16-bit values, rows kStagedRowBytes apart (16
// bytes of padding put the 8 rows of a warp's 4-byte stores in 32 different banks), then one 512-byte
// bulk copy per row.
inline constexpr int kStagedRowBytes = kHeadDimV + 16;


struct SharedStorage {
  SubTile q[kQKSubTiles];           // [64 rows, 576] the query tile, 72 KiB
  SubTile k[kStages][kQKSubTiles];  // [stage][64 tokens, 576] KV blocks, 144 KiB
  SubTile p_a;                      // the seesaw: P of a pair's block a (consumer 1's P(a)·V_R(a) reads it)
  union {
    float alpha[kStages][kBlockM];  // serial: per-row rescale of the block in each stage (P in its RoPE sub-tile)
    float m_pub[kStages][kBlockM];  // seesaw: the running max after block a ([0]) and after block b ([1])
  };
  float row_max[kBlockM];           // the piece's final row max (log2)
  float row_sum[kBlockM];           // the piece's final row sum (the seesaw: consumer 0's part)
  float row_sum1[kBlockM];          // the seesaw: consumer 1's part of the row sum
  float q_row_scale[kBlockM];       // per-tensor FP8, bf16 q: each row's prescale 2^e (q_to_f16_prescaled)
  uint64_t k_full[kStages];         // a stage's bytes landed
  uint64_t k_free[kStages];         // every consumer thread finished with a stage
  uint64_t k_raw[kStages][2];       // FP8 caches: a stage's raw bytes landed (TMA; [1]: the later part)
  uint64_t g_full[kStages][kGroups];  // the seesaw: a group of a stage's sub-tiles landed
  uint64_t g_free[kStages][kGroups];  // the seesaw: every reader of a group is done with it
  uint64_t q_full;                    // Q by TMA (TensorMaps::q): the piece's query tile landed
};

inline constexpr int kSharedBytes = static_cast<int>(sizeof(SharedStorage)) + 1024;  // + base alignment
static_assert(2 * kBlockM * kStagedRowBytes <= static_cast<int>(sizeof(SharedStorage::q)),
              "the staged output must fit in the Q tile");
static_assert(kSharedBytes <= 232448, "shared-memory plan exceeds the 227 KiB per-block limit");

}  // namespace flash_mla::sm90::dense
