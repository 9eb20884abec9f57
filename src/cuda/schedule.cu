// Device implementation of the split-KV schedule: one CTA (the arithmetic is core/schedule_math.hpp,
// shared with the host implementation, so both write the same words). Graph-capturable: one launch on
// the caller's stream, no host synchronisation.
//
// Pass 1 sums the cost line and finds the costliest group of whole sequences; when whole groups fit
// the bound, each thread writes its parts' rows and write_rows returns there. Small batches take the
// greedy cut instead: warp 0 walks the batch once per lane (32 budgets at once, one branch-free int32
// step per sequence, each lane's states kept in shared memory), then a thread per sequence writes the
// rows that begin or end in it and a scan of its pieces gives num_splits. Larger batches take the cost
// line: pass 2 walks the batch in chunks of kThreads sequences: an exclusive scan gives each
// sequence's start S_i, an inclusive scan of its piece count gives num_splits[i + 1], and the thread
// that owns the boundary x = p*T records part p's first work position in words 5..7 of row p
// (scratch). Pass 3 turns begin(p) and begin(p + 1) into the final row and clears the scratch. Last, a
// thread per part counts its blocks into word kPartBlocksWord, or a warp per part of more than
// kThreadGroupLimit sequences (pass 1's rule, below).
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cuda/functional>

#include "core/backends.hpp"
#include "core/params.hpp"
#include "core/schedule.hpp"
#include "core/schedule_math.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/warp_sum.cuh"

namespace flash_mla::detail {

namespace {

constexpr int kThreads = 256;
// Pass 1 sums groups of up to kThreadGroupLimit sequences on one thread each, larger ones on a warp
// each (few parts of many sequences; H200 under ncu, session 13: one group of 4096 took 195 us on a
// thread and 54 us on a warp, 132 groups of 38 took 7 us on threads and 14 us on warps).
constexpr int64_t kThreadGroupLimit = 256;

// Every word but kPartBlocksWord (left 0); called by all of the CTA's threads. metadata is not __restrict__:
// threads read rows that others wrote.
__device__ __forceinline__ void write_rows(const int32_t* __restrict__ seqlens, int batch, int parts, int rows,
                                           int32_t* metadata, int32_t* __restrict__ num_splits) {
  using Scan = cub::BlockScan<int64_t, kThreads>;
  using Reduce = cub::BlockReduce<int64_t, kThreads>;
  __shared__ union {
    typename Scan::TempStorage scan;
    typename Reduce::TempStorage reduce;
  } tmp;
  __shared__ int64_t s_total, s_max_group;

  const int64_t group = schedule_group_size(batch, parts);
  int64_t local = 0, local_max = 0;
  if (group <= kThreadGroupLimit) {  // a thread per group
    for (int64_t first = threadIdx.x * group; first < batch; first += kThreads * group) {
      int64_t cost = 0;
      for (int64_t i = first; i < first + group && i < batch; ++i) cost += schedule_cost(seqlens[i]);
      local += cost;
      local_max = max(local_max, cost);
    }
  } else {  // a warp per group, lanes striding over it
    const int lane = threadIdx.x % 32;
    for (int64_t first = threadIdx.x / 32 * group; first < batch; first += kThreads / 32 * group) {
      int64_t cost = 0;
      for (int64_t i = first + lane; i < first + group && i < batch; i += 32) cost += schedule_cost(seqlens[i]);
      cost = warp_sum(cost);
      if (lane == 0) {
        local += cost;
        local_max = max(local_max, cost);
      }
    }
  }
  const int64_t block_total = Reduce(tmp.reduce).Sum(local);
  __syncthreads();
  const int64_t block_max = Reduce(tmp.reduce).Reduce(local_max, cuda::maximum<int64_t>{});
  if (threadIdx.x == 0) {
    s_total = block_total;
    s_max_group = block_max;
  }
  __syncthreads();
  const int64_t total = s_total;
  const int64_t part_size = schedule_part_size(total, parts);

  if (threadIdx.x == 0) num_splits[0] = 0;
  if (schedule_whole_groups(s_max_group, part_size)) {
    for (int i = threadIdx.x; i < batch; i += kThreads) num_splits[i + 1] = i + 1;
    for (int p = threadIdx.x; p < parts; p += kThreads) {
      schedule_write_group(metadata + static_cast<int64_t>(p) * kMetadataWords, p, group, batch, seqlens);
    }
    return;
  }
  if (batch > 0 && batch <= kGreedyMaxBatch && total < kGreedyMaxCost) {
    // Warp 0 walks the batch, lane l with budget low + l, each lane keeping its state before every
    // sequence; then a thread per sequence writes its words from the first fitting lane's states.
    static_assert(kGreedyMaxBatch <= kThreads, "one thread per sequence writes the greedy cut");
    static_assert(kGreedyMaxBatch % 4 == 0, "the walk reads four sequences' blocks at a time");
    __shared__ __align__(16) int32_t s_blocks[kGreedyMaxBatch];
    __shared__ GreedyState s_before[kGreedyMaxBatch][32];
    __shared__ int32_t s_budget, s_lane, s_parts;
    for (int i = threadIdx.x; i < batch; i += kThreads) {
      s_blocks[i] = static_cast<int32_t>(schedule_blocks(seqlens[i]));
    }
    __syncthreads();
    if (threadIdx.x < 32) {
      const int lane = threadIdx.x;
      for (int64_t base = schedule_greedy_low_budget(total, parts, rows);; base += 32) {
        const GreedyWalk walk = schedule_greedy_walk(base + lane, rows);
        GreedyState state{0, 0};
        for (int i = 0; i < batch; i += 4) {  // one load per four steps, off the steps' dependency chain
          const int4 n = *reinterpret_cast<const int4*>(&s_blocks[i]);
          const int32_t four[4] = {n.x, n.y, n.z, n.w};
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            if (i + k < batch) {
              s_before[i + k][lane] = state;
              state = schedule_greedy_step(walk, state, four[k]);
            }
          }
        }
        const uint32_t ballot = __ballot_sync(0xffffffffu, state.part + 1 <= parts);
        if (ballot != 0) {
          if (lane == __ffs(ballot) - 1) {
            s_budget = walk.budget;
            s_lane = lane;
            s_parts = state.part + 1;
          }
          break;
        }
      }
    }
    __syncthreads();
    const GreedyWalk walk = schedule_greedy_walk(s_budget, rows);
    const int i = threadIdx.x;
    const int64_t pieces =
        i < batch ? schedule_greedy_write(walk, s_before[i][s_lane], i, batch, seqlens, metadata) : 0;
    int64_t pieces_incl;
    Scan(tmp.scan).InclusiveSum(pieces, pieces_incl);
    if (i < batch) num_splits[i + 1] = static_cast<int32_t>(pieces_incl);
    for (int p = s_parts + threadIdx.x; p < parts; p += kThreads) {
      schedule_write_empty(metadata + static_cast<int64_t>(p) * kMetadataWords, batch);
    }
    return;
  }
  int64_t cost_carry = 0, split_carry = 0;
  for (int base = 0; base < batch; base += kThreads) {
    const int i = base + threadIdx.x;
    const int64_t cost = i < batch ? schedule_cost(seqlens[i]) : 0;
    int64_t start, cost_sum;
    __syncthreads();
    Scan(tmp.scan).ExclusiveSum(cost, start, cost_sum);
    start += cost_carry;
    cost_carry += cost_sum;
    const int64_t pieces = i < batch ? schedule_pieces(start, cost, part_size) : 0;
    int64_t pieces_incl, pieces_sum;
    __syncthreads();
    Scan(tmp.scan).InclusiveSum(pieces, pieces_incl, pieces_sum);
    if (i < batch) {
      num_splits[i + 1] = static_cast<int32_t>(split_carry + pieces_incl);
      const int64_t first_piece_part = schedule_first_piece_part(start, part_size);
      for (int64_t p = (start + part_size - 1) / part_size; p * part_size < start + cost; ++p) {
        int32_t* row = metadata + p * kMetadataWords;
        const int64_t block = schedule_block_at(start, p * part_size);
        row[5] = i;
        row[6] = static_cast<int32_t>(block);
        row[7] = block == 0 ? 0 : static_cast<int32_t>(p - first_piece_part);
      }
    }
    split_carry += pieces_sum;
  }
  __syncthreads();

  for (int base = 0; base < parts; base += kThreads) {
    const int p = base + threadIdx.x;
    int32_t begin_req = batch, begin_block = 0, begin_split = 0, end_req = batch, end_block = 0;
    if (p < parts) {
      if (p * part_size < total) {
        const int32_t* row = metadata + static_cast<int64_t>(p) * kMetadataWords;
        begin_req = row[5];
        begin_block = row[6];
        begin_split = row[7];
      }
      if ((p + 1) * part_size < total) {
        const int32_t* next = metadata + static_cast<int64_t>(p + 1) * kMetadataWords;
        end_req = next[5];
        end_block = next[6];
      }
    }
    __syncthreads();
    if (p < parts) {
      int32_t* row = metadata + static_cast<int64_t>(p) * kMetadataWords;
      if (begin_req == end_req && begin_block == end_block) {
        schedule_write_empty(row, batch);
      } else {
        row[0] = begin_req;
        row[1] = begin_block * kBlockN;
        row[2] = end_block == 0 ? end_req - 1 : end_req;
        row[3] = end_block == 0 ? max(seqlens[end_req - 1], 0) : end_block * kBlockN;
        row[4] = begin_split;
        row[5] = row[6] = row[7] = 0;
      }
    }
  }
}

__global__ void __launch_bounds__(kThreads) schedule_kernel(const int32_t* __restrict__ seqlens, int batch,
                                                            int parts, int rows, int32_t* metadata,
                                                            int32_t* __restrict__ num_splits) {
  __shared__ int32_t s_long[kThreads];  // parts of more than kThreadGroupLimit sequences, a warp each (pass 1's rule)
  __shared__ int32_t s_longs;
  if (threadIdx.x == 0) s_longs = 0;
  write_rows(seqlens, batch, parts, rows, metadata, num_splits);
  __syncthreads();  // every row written (the CTA's global writes are visible to its threads past the barrier)
  for (int p = threadIdx.x; p < parts; p += kThreads) {
    int32_t* row = metadata + static_cast<int64_t>(p) * kMetadataWords;
    if (static_cast<int64_t>(row[2]) - row[0] < kThreadGroupLimit) {
      row[kPartBlocksWord] = schedule_part_blocks(row, seqlens);
      continue;
    }
    const int slot = atomicAdd(&s_longs, 1);
    if (slot < kThreads) {
      s_long[slot] = p;
    } else {
      row[kPartBlocksWord] = schedule_part_blocks(row, seqlens);  // more long parts than slots (b > 2^16)
    }
  }
  __syncthreads();
  const int lane = threadIdx.x % 32, longs = min(s_longs, kThreads);
  for (int i = threadIdx.x / 32; i < longs; i += kThreads / 32) {
    int32_t* row = metadata + static_cast<int64_t>(s_long[i]) * kMetadataWords;
    int64_t n = 0;
    for (int32_t req = row[0] + lane; req <= row[2]; req += 32) n += schedule_piece_blocks(row, seqlens, req);
    n = warp_sum(n);
    if (lane == 0) row[kPartBlocksWord] = schedule_clamp_blocks(n);
  }
}

}  // namespace

void schedule_cuda(const ScheduleParams& p) {
  CudaDeviceGuard guard(p.device.index);
  schedule_kernel<<<1, kThreads, 0, static_cast<cudaStream_t>(p.stream)>>>(p.seqlens, p.batch, p.num_sm_parts,
                                                                           p.rows, p.metadata, p.num_splits);
  cuda_check(cudaGetLastError(), "schedule kernel launch");
}

}  // namespace flash_mla::detail
