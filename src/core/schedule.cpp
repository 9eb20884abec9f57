// Host implementation of the split-KV schedule (the arithmetic is in schedule_math.hpp, shared with
// the device kernel in cuda/schedule.cu).
#include "core/schedule.hpp"

#include <algorithm>
#include <vector>

#include "core/params.hpp"
#include "core/schedule_math.hpp"

namespace flash_mla::detail {

namespace {
struct WorkPos {
  int64_t req;
  int64_t block;
  bool operator==(const WorkPos& o) const { return req == o.req && block == o.block; }
};

// Every word but kPartBlocksWord (left 0).
void write_rows(const int32_t* seqlens, int batch, int num_sm_parts, int rows, int32_t* metadata,
                int32_t* num_splits) {
  std::vector<int64_t> start(static_cast<size_t>(batch) + 1, 0);
  for (int i = 0; i < batch; ++i) start[i + 1] = start[i] + schedule_cost(seqlens[i]);
  const int64_t total = start[batch];
  const int64_t part_size = schedule_part_size(total, num_sm_parts);

  num_splits[0] = 0;
  const int64_t group = schedule_group_size(batch, num_sm_parts);
  int64_t max_group_cost = 0;
  for (int64_t first = 0; first < batch; first += group) {
    max_group_cost = std::max(max_group_cost, start[std::min<int64_t>(batch, first + group)] - start[first]);
  }
  if (schedule_whole_groups(max_group_cost, part_size)) {
    for (int i = 0; i < batch; ++i) num_splits[i + 1] = i + 1;
    for (int p = 0; p < num_sm_parts; ++p) {
      schedule_write_group(metadata + static_cast<int64_t>(p) * kMetadataWords, p, group, batch, seqlens);
    }
    return;
  }
  if (batch > 0 && batch <= kGreedyMaxBatch && total < kGreedyMaxCost) {
    std::vector<int32_t> blocks(batch);
    for (int i = 0; i < batch; ++i) blocks[i] = static_cast<int32_t>(schedule_blocks(seqlens[i]));
    std::vector<GreedyState> before(batch);
    for (int64_t budget = schedule_greedy_low_budget(total, num_sm_parts, rows);; ++budget) {
      const GreedyWalk walk = schedule_greedy_walk(budget, rows);
      GreedyState state{0, 0};
      for (int i = 0; i < batch; ++i) {
        before[i] = state;
        state = schedule_greedy_step(walk, state, blocks[i]);
      }
      if (state.part + 1 > num_sm_parts) continue;
      for (int i = 0; i < batch; ++i) {
        num_splits[i + 1] = num_splits[i] + schedule_greedy_write(walk, before[i], i, batch, seqlens, metadata);
      }
      for (int p = state.part + 1; p < num_sm_parts; ++p) {
        schedule_write_empty(metadata + static_cast<int64_t>(p) * kMetadataWords, batch);
      }
      return;
    }
  }
  for (int i = 0; i < batch; ++i) {
    num_splits[i + 1] = num_splits[i] + schedule_pieces(start[i], start[i + 1] - start[i], part_size);
  }

  auto position = [&](int64_t x) -> WorkPos {
    if (x >= total) return {batch, 0};
    const int64_t req = std::upper_bound(start.begin(), start.end(), x) - start.begin() - 1;
    return {req, schedule_block_at(start[req], x)};
  };
  for (int p = 0; p < num_sm_parts; ++p) {
    int32_t* row = metadata + static_cast<int64_t>(p) * kMetadataWords;
    const int64_t x = p * part_size;
    const WorkPos begin = position(x);
    const WorkPos end = position(x + part_size);
    if (begin == end) {
      schedule_write_empty(row, batch);
      continue;
    }
    row[0] = static_cast<int32_t>(begin.req);
    row[1] = static_cast<int32_t>(begin.block * kBlockN);
    if (end.block == 0) {
      row[2] = static_cast<int32_t>(end.req - 1);
      row[3] = std::max(seqlens[end.req - 1], 0);
    } else {
      row[2] = static_cast<int32_t>(end.req);
      row[3] = static_cast<int32_t>(end.block * kBlockN);
    }
    row[4] = begin.block == 0 ? 0 : static_cast<int32_t>(p - schedule_first_piece_part(start[begin.req], part_size));
    row[5] = row[6] = row[7] = 0;
  }
}
}  // namespace

void schedule_host(const int32_t* seqlens, int batch, int num_sm_parts, int rows, int32_t* metadata,
                   int32_t* num_splits) {
  write_rows(seqlens, batch, num_sm_parts, rows, metadata, num_splits);
  for (int p = 0; p < num_sm_parts; ++p) {
    int32_t* row = metadata + static_cast<int64_t>(p) * kMetadataWords;
    row[kPartBlocksWord] = schedule_part_blocks(row, seqlens);
  }
}

}  // namespace flash_mla::detail
