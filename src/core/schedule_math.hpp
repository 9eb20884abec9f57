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

// Index among the sequence's pieces of the piece that begins at block > 0 of boundary x = p*T.
FLASH_MLA_HD int32_t schedule_split_index(int64_t start, int64_t x, int64_t part_size) {
  return static_cast<int32_t>(floor_div(x, part_size) - floor_div(start + kSplitFixedCost, part_size));
}

FLASH_MLA_HD int64_t schedule_group_size(int batch, int num_sm_parts) {
  return (static_cast<int64_t>(batch) + num_sm_parts - 1) / num_sm_parts;
}

// Whether parts take whole groups of sequences, given the costliest group. The slack is larger than
// F: a cut costs more than its piece's prologue and epilogue (the combine, the partial store).
FLASH_MLA_HD bool schedule_whole_groups(int64_t max_group_cost, int64_t part_size) {
  return max_group_cost <= part_size + kWholeGroupSlack;
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

}  // namespace flash_mla::detail
