// The split-KV schedule as arithmetic shared by the host implementation (core/schedule.cpp) and the
// device kernel (cuda/schedule.cu), so both produce the same words by construction.
//
// Cost line: sequence i occupies [S_i, S_i + c_i) with c_i = ceil(L_i / 64) + F (F = the fixed cost of
// a piece: prologue, epilogue, a combine row). Part p owns the cost interval [p*T, (p+1)*T) with
// T = ceil(total / P). A cost position x maps to a work position (sequence, block):
//   x in the fixed-cost prefix of sequence i (x - S_i <= F) -> (i, 0): whole sequences move forward
//   rather than leave a piece of fixed cost only;
//   otherwise                                               -> (i, x - S_i - F).
// Part p covers the work positions [pos(p*T), pos((p+1)*T)). Every block is covered once; each part
// costs at most T + F; each of the P - 1 inner boundaries adds at most one piece, so the pieces total
// at most b + P - 1. Everything is computable in parallel from a prefix sum (no serial walk).
//
// Whole sequences instead: when the batch divides into groups of k = ceil(b / P) consecutive sequences,
// one group per part, and no group costs more than T + kWholeGroupSlack, part p takes
// sequences [p*k, (p+1)*k) whole. No sequence is split, so nothing is merged. At b = 128 on 132 parts
// the cost line cut nearly every sequence in two (a second Q load, partial stores, the combine);
// whole sequences ran 1-8 % faster where this test passes (docs/PERFORMANCE.md, session 12).
#pragma once

#include <cstdint>

#include "flash_mla/flash_mla.hpp"

#if defined(__CUDACC__)
#define FLASH_MLA_HD __host__ __device__ __forceinline__
#else
#define FLASH_MLA_HD inline
#endif

namespace flash_mla::detail {

FLASH_MLA_HD int64_t schedule_blocks(int32_t seqlen) {
  return seqlen <= 0 ? 0 : (static_cast<int64_t>(seqlen) + kBlockN - 1) / kBlockN;
}

FLASH_MLA_HD int64_t schedule_cost(int32_t seqlen) { return schedule_blocks(seqlen) + kSplitFixedCost; }

FLASH_MLA_HD int64_t schedule_part_size(int64_t total_cost, int num_sm_parts) {
  return (total_cost + num_sm_parts - 1) / num_sm_parts;
}

FLASH_MLA_HD int64_t floor_div(int64_t a, int64_t b) { return a / b; }  // a >= 0, b > 0

// Pieces of a sequence starting at cost S with cost c: 1 + the part boundaries (multiples of T)
// strictly inside its block region (S + F, S + c).
FLASH_MLA_HD int32_t schedule_pieces(int64_t start, int64_t cost, int64_t part_size) {
  const int64_t lo = start + kSplitFixedCost;
  const int64_t hi = start + cost;
  if (hi - 1 <= lo) return 1;
  return static_cast<int32_t>(1 + floor_div(hi - 1, part_size) - floor_div(lo, part_size));
}

// Block offset inside sequence (starting at cost S) of the work position of cost x, S <= x < S + c.
FLASH_MLA_HD int64_t schedule_block_at(int64_t start, int64_t x) {
  const int64_t offset = x - start;
  return offset <= kSplitFixedCost ? 0 : offset - kSplitFixedCost;
}

// The part holding the first piece of a sequence starting at cost S (the part whose interval holds the
// end of its fixed cost): a piece that begins at block > 0 of boundary p*T has index
// p - schedule_first_piece_part(S, T) among the sequence's pieces. One division per sequence: a long
// sequence's thread writes many parts, and two 64-bit divisions per part took the schedule kernel to
// 18.6 us at b=65 with one 64k sequence (9.2 with this; H200, session 19).
FLASH_MLA_HD int64_t schedule_first_piece_part(int64_t start, int64_t part_size) {
  return floor_div(start + kSplitFixedCost, part_size);
}

FLASH_MLA_HD int64_t schedule_group_size(int batch, int num_sm_parts) {
  return (static_cast<int64_t>(batch) + num_sm_parts - 1) / num_sm_parts;
}

// Whether parts take whole groups of sequences, given the costliest group. The slack is larger than
// F: a cut costs more than its piece's prologue and epilogue (the combine, the partial store).
FLASH_MLA_HD bool schedule_whole_groups(int64_t max_group_cost, int64_t part_size) {
  return max_group_cost <= part_size + kWholeGroupSlack;
}

// Word kPartBlocksWord of a part's row: the 64-token blocks its pieces cover, from words 0..3 as the
// kernels read them (0 for an empty part), at most INT32_MAX. Written once every row is, on the host and
// on the device alike. schedule_piece_blocks: the blocks of sequence req's piece in the part (row[0] <= req
// <= row[2]), summed by schedule_part_blocks or, on the device, by a warp's lanes for parts of many sequences.
FLASH_MLA_HD int64_t schedule_piece_blocks(const int32_t* row, const int32_t* seqlens, int32_t req) {
  const int64_t begin = req == row[0] ? row[1] : 0;
  const int64_t end = req == row[2] ? row[3] : (seqlens[req] > 0 ? seqlens[req] : 0);
  return (end + kBlockN - 1) / kBlockN - begin / kBlockN;
}
FLASH_MLA_HD int32_t schedule_clamp_blocks(int64_t n) { return n < INT32_MAX ? static_cast<int32_t>(n) : INT32_MAX; }
FLASH_MLA_HD int32_t schedule_part_blocks(const int32_t* row, const int32_t* seqlens) {
  int64_t n = 0;
  for (int32_t req = row[0]; req <= row[2]; ++req) n += schedule_piece_blocks(row, seqlens, req);
  return schedule_clamp_blocks(n);
}

// The metadata row of an empty part.
FLASH_MLA_HD void schedule_write_empty(int32_t* row, int batch) {
  row[0] = batch;
  row[1] = 0;
  row[2] = batch - 1;
  row[3] = 0;
  row[4] = 0;
  row[5] = row[6] = row[7] = 0;
}

// The metadata row of part p when parts take whole groups of `group` sequences.
FLASH_MLA_HD void schedule_write_group(int32_t* row, int p, int64_t group, int batch, const int32_t* seqlens) {
  const int64_t first = p * group;
  if (first >= batch) {
    schedule_write_empty(row, batch);
    return;
  }
  const int64_t last = first + group < batch ? first + group - 1 : batch - 1;
  row[0] = static_cast<int32_t>(first);
  row[1] = 0;
  row[2] = static_cast<int32_t>(last);
  row[3] = seqlens[last] > 0 ? seqlens[last] : 0;
  row[4] = 0;
  row[5] = row[6] = row[7] = 0;
}

// The greedy cut (batches of up to kGreedyMaxBatch sequences that whole groups do not fit, whose cost
// line totals less than kGreedyMaxCost). Every piece, not only a sequence's first, costs F + its blocks,
// and part after part takes pieces in batch order up to a budget T; a sequence that does not fit is cut
// where the part is full when that leaves min_cut of its blocks there, else the part ends before it.
// The schedule is the smallest T for which num_sm_parts parts suffice (the host tries T upward, the
// device 32 at a time: both find the same T). Unlike the cost line, no part exceeds T: the cost line
// snaps a boundary inside a sequence's fixed cost back to the sequence start, so a part could cost
// T + F, and it charges F to a sequence's first piece only (b=64 256..1024 s4: 8 parts empty, others
// at T + F; H200, session 18).
//
// min_cut: a piece loads the CTA's Q tile and stores an fp32 partial of its rows that the combine reads
// back, so a 1-block piece moves ~4.5 blocks' bytes besides its block at 64 rows and ~1.1 at 16.
// Measured (H200, session 18, F = 5): with 1-block cuts b=1 4096 h128 s1 ran 17 % and b=2 4096 h16 s4
// 15 % slower than with the cost line, b=2 4096 h16 s1 (16 rows) 4 % faster; F = 2 / 3 at 16 / 32 rows
// changed nothing measurable.
//
// The walk is one step per sequence on a state (cost used in the open part, the open part), in int32
// and without branches: the device's serial walks with branches and 64-bit arithmetic took 53-93 us at
// b = 64-128 (session 18); this one 9.6 us at b=64 256..1024 and 14.7 at b=128 ragged 8192 (the cost
// line 6.3 and 6.8; H200, session 19, the whole kernel under ncu). kGreedyMaxBatch is 64: the b=128
// rows ran no faster greedy (-0.2...+0.9 %), so they keep the cheaper cost line.
// Seen on a line of `unit` = T - F block slots per part, a sequence that does not fit fills slots
// [start, start + n) from the open part's used cost (a cut) or from a fresh part's 0, so its last piece
// ends at slot (start + n - 1) % unit + 1 of the part (start + n - 1) / unit parts on. The rows are
// written afterwards, a sequence at a time, from the states before each sequence.
inline constexpr int64_t kGreedyMaxCost = int64_t{1} << 30;

struct GreedyWalk {
  int32_t budget;   // T
  int32_t unit;     // T - F: the blocks of a piece that fills a fresh part (>= min_cut)
  int32_t min_cut;  // the fewest blocks a cut leaves in the part it closes
  uint32_t magic;   // 0xffffffff / unit, for quotients by unit with one correction
};

struct GreedyState {
  int32_t used;  // cost taken in the open part; 0 only before the batch's first sequence
  int32_t part;  // the open part
};

FLASH_MLA_HD int32_t schedule_greedy_min_cut(int rows) { return rows <= 32 ? 1 : 2; }

FLASH_MLA_HD GreedyWalk schedule_greedy_walk(int64_t budget, int rows) {
  const int32_t unit = static_cast<int32_t>(budget - kSplitFixedCost);
  return {static_cast<int32_t>(budget), unit, schedule_greedy_min_cut(rows), 0xffffffffu / static_cast<uint32_t>(unit)};
}

// The smallest budget worth trying: the cost line's total (F per sequence) shared by all parts, and at
// least F + min_cut (a part must hold a cut).
FLASH_MLA_HD int64_t schedule_greedy_low_budget(int64_t total_cost, int num_sm_parts, int rows) {
  const int64_t share = (total_cost + num_sm_parts - 1) / num_sm_parts;
  const int64_t least = kSplitFixedCost + schedule_greedy_min_cut(rows);
  return share > least ? share : least;
}

// Whether a sequence of n blocks fits whole in the open part, and whether, if not, the open part keeps
// min_cut of its blocks (a cut) rather than ending before it. The step and the writer both decide here.
FLASH_MLA_HD bool schedule_greedy_fits(const GreedyWalk& w, GreedyState s, int32_t n) {
  return s.used + static_cast<int32_t>(kSplitFixedCost) + n <= w.budget;
}
FLASH_MLA_HD bool schedule_greedy_cuts(const GreedyWalk& w, GreedyState s) { return s.used <= w.unit - w.min_cut; }

// a / unit for 0 <= a < 2^31: the high word of a * magic is the quotient or one less.
FLASH_MLA_HD int32_t schedule_greedy_quotient(const GreedyWalk& w, int32_t a) {
  int32_t q = static_cast<int32_t>((static_cast<uint64_t>(static_cast<uint32_t>(a)) * w.magic) >> 32);
  return a - q * w.unit >= w.unit ? q + 1 : q;
}

// The state after a sequence of n blocks.
FLASH_MLA_HD GreedyState schedule_greedy_step(const GreedyWalk& w, GreedyState s, int32_t n) {
  const bool cut = schedule_greedy_cuts(w, s);
  const int32_t last = (cut ? s.used : 0) + n - 1;  // -1 only for an empty sequence in a fresh part
  const int32_t q = schedule_greedy_quotient(w, last > 0 ? last : 0);
  const GreedyState moved{static_cast<int32_t>(kSplitFixedCost) + last - q * w.unit + 1, s.part + (cut ? 0 : 1) + q};
  const GreedyState whole{s.used + static_cast<int32_t>(kSplitFixedCost) + n, s.part};
  return schedule_greedy_fits(w, s, n) ? whole : moved;
}

// Sequence i's words, given the state before it: the rows of the parts that begin or end inside it
// (rows past num_sm_parts are never reached by a budget that fits). Returns its pieces.
FLASH_MLA_HD int32_t schedule_greedy_write(const GreedyWalk& w, GreedyState s, int i, int batch,
                                           const int32_t* seqlens, int32_t* metadata) {
  auto begin = [&](int32_t part, int32_t block, int32_t split) {
    int32_t* row = metadata + static_cast<int64_t>(part) * kMetadataWords;
    row[0] = i;
    row[1] = block * static_cast<int32_t>(kBlockN);
    row[4] = split;
    row[5] = row[6] = row[7] = 0;
  };
  auto end = [&](int32_t part, int32_t req, int32_t token) {
    int32_t* row = metadata + static_cast<int64_t>(part) * kMetadataWords;
    row[2] = req;
    row[3] = token;
  };
  const int32_t n = static_cast<int32_t>(schedule_blocks(seqlens[i]));
  if (s.used == 0) begin(s.part, 0, 0);
  int32_t first = s.part, q = 0;  // the part of piece 0, and the part ends inside the sequence
  if (!schedule_greedy_fits(w, s, n)) {
    int32_t start = s.used;
    if (!schedule_greedy_cuts(w, s)) {  // the part ends before sequence i, which opens the next
      end(s.part, i - 1, seqlens[i - 1] > 0 ? seqlens[i - 1] : 0);
      first = s.part + 1;
      start = 0;
      begin(first, 0, 0);
    }
    q = schedule_greedy_quotient(w, start + n - 1 > 0 ? start + n - 1 : 0);
    for (int32_t k = 1; k <= q; ++k) {
      const int32_t block = k * w.unit - start;
      end(first + k - 1, i, block * static_cast<int32_t>(kBlockN));
      begin(first + k, block, k);
    }
  }
  if (i == batch - 1) end(first + q, i, seqlens[i] > 0 ? seqlens[i] : 0);
  return q + 1;
}

}  // namespace flash_mla::detail
