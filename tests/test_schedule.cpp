// The host split-KV schedule, through the public API (get_mla_metadata on CPU tensors). Every
// schedule is decoded exactly as the kernels read it and checked for the properties decoding relies
// on: each 64-token block of each sequence is computed once, each sequence's pieces own distinct
// partial-result slots, and the parts are balanced.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <climits>
#include <random>
#include <sstream>

#include "test_support.hpp"

namespace flash_mla::test {
namespace {

constexpr Device kCpu{DeviceType::kCPU, 0};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// One piece of work as a kernel reads metadata row `part`: tokens [begin, end) of sequence req.
struct Piece {
  int part;
  int64_t begin, end;
  int split;
};

// Whether part p holds sequences [p*k, (p+1)*k), k = ceil(b / P), whole.
bool takes_whole_groups(int b, const Schedule& s) {
  const int64_t k = ceil_div(b, s.parts);
  bool whole_groups = s.num_splits[b] == b;
  for (int p = 0; p < s.parts && whole_groups; ++p) {
    const int32_t* row = &s.metadata[static_cast<size_t>(p) * kMetadataWords];
    whole_groups = p * k >= b ? row[0] == b : row[0] == p * k && row[2] == std::min<int64_t>(b, (p + 1) * k) - 1;
  }
  return whole_groups;
}

::testing::AssertionResult schedule_is_valid(const std::vector<int32_t>& seqlens, const Schedule& s) {
  const int b = static_cast<int>(seqlens.size());
  const int P = s.parts;
  auto fail = [](auto&&... what) {
    std::ostringstream m;
    (m << ... << what);
    return ::testing::AssertionFailure() << m.str();
  };
  if (static_cast<int64_t>(s.metadata.size()) != int64_t{P} * kMetadataWords) return fail("metadata size");
  if (static_cast<int64_t>(s.num_splits.size()) != b + 1) return fail("num_splits size");

  // Decode every part as the kernels do.
  std::vector<std::vector<Piece>> pieces(b);
  std::vector<int64_t> part_cost(P, 0);
  for (int p = 0; p < P; ++p) {
    const int32_t* row = &s.metadata[static_cast<size_t>(p) * kMetadataWords];
    if (row[5] != 0 || row[6] != 0) return fail("part ", p, ": words 5..6 are not 0");
    if (row[0] > row[2]) {  // empty part
      if (row[7] != 0) return fail("part ", p, ": empty, but word 7 says ", row[7], " blocks");
      if (row[0] != b || row[1] != 0 || row[2] != b - 1 || row[3] != 0 || row[4] != 0) {
        return fail("part ", p, ": empty part not encoded as [b, 0, b - 1, 0, 0, 0, 0, 0]: [", row[0], ", ",
                    row[1], ", ", row[2], ", ", row[3], ", ", row[4], "]");
      }
      continue;
    }
    int64_t part_blocks = 0;
    if (row[0] < 0 || row[2] >= b) return fail("part ", p, ": requests [", row[0], ", ", row[2], "] outside the batch");
    for (int req = row[0]; req <= row[2]; ++req) {
      const int64_t L = seqlens[req];
      Piece pc{p, req == row[0] ? row[1] : 0, req == row[2] ? row[3] : L, req == row[0] ? row[4] : 0};
      if (pc.begin < 0 || pc.begin % kBlockN != 0 || pc.end > L || (pc.end != L && pc.end % kBlockN != 0)) {
        return fail("part ", p, ": tokens [", pc.begin, ", ", pc.end, ") of sequence ", req, " (L = ", L,
                    ") are not 64-aligned pieces of it");
      }
      if (L > 0 ? pc.begin >= pc.end : pc.begin != 0 || pc.end != 0) {
        return fail("part ", p, ": empty piece [", pc.begin, ", ", pc.end, ") of sequence ", req, " (L = ", L, ")");
      }
      pieces[req].push_back(pc);
      part_cost[p] += ceil_div(pc.end, kBlockN) - pc.begin / kBlockN + kSplitFixedCost;
      part_blocks += ceil_div(pc.end, kBlockN) - pc.begin / kBlockN;
    }
    if (row[7] != std::min<int64_t>(part_blocks, INT32_MAX)) {
      return fail("part ", p, ": word 7 says ", row[7], " blocks, its pieces hold ", part_blocks);
    }
  }

  if (s.num_splits[0] != 0) return fail("num_splits[0] = ", s.num_splits[0]);
  int64_t total_cost = 0;
  for (int i = 0; i < b; ++i) {
    const int64_t L = seqlens[i];
    total_cost += ceil_div(L, kBlockN) + kSplitFixedCost;
    auto& ps = pieces[i];
    const int64_t n = s.num_splits[i + 1] - int64_t{s.num_splits[i]};
    if (n < 1) return fail("num_splits not increasing at ", i, ": ", s.num_splits[i], " -> ", s.num_splits[i + 1]);
    if (L <= 0 && ps.size() != 1) return fail("empty sequence ", i, " appears in ", ps.size(), " parts, expected 1");
    if (static_cast<int64_t>(ps.size()) != n) {
      return fail("sequence ", i, " (L = ", L, "): ", ps.size(), " pieces present, num_splits says ", n);
    }
    // The pieces, in token order, tile [0, L) and are numbered 0 .. n-1 in that order.
    std::sort(ps.begin(), ps.end(), [](const Piece& x, const Piece& y) { return x.begin < y.begin; });
    int64_t next = 0;
    for (size_t k = 0; k < ps.size(); ++k) {
      if (ps[k].begin != next) {
        return fail("sequence ", i, " (L = ", L, "): piece ", k, " starts at token ", ps[k].begin, ", expected ",
                    next, " (a gap or an overlap)");
      }
      if (ps[k].split != static_cast<int>(k)) {
        return fail("sequence ", i, ": piece at token ", ps[k].begin, " has split index ", ps[k].split,
                    ", expected ", k);
      }
      next = ps[k].end;
    }
    if (next != L) return fail("sequence ", i, ": pieces end at token ", next, ", L = ", L);
  }
  if (s.num_splits[b] > int64_t{b} + P) return fail("num_splits[b] = ", s.num_splits[b], " > b + parts = ", b + P);

  // Balance. Whole groups (no sequence cut, part p holding sequences [p*k, (p+1)*k) with
  // k = ceil(b / P)) stay within T + kWholeGroupSlack, T = ceil(total / P). The greedy cut (batches up
  // to kGreedyMaxBatch) needs a budget of at most T + 2F + 2: a part closes with less than F + 2 of its
  // budget unused, and each of the P - 1 cuts adds one piece (F) to the total. The cost line (larger
  // batches) keeps every part within T + F.
  const int64_t slack = takes_whole_groups(b, s)  ? kWholeGroupSlack
                        : b <= kGreedyMaxBatch ? 2 * kSplitFixedCost + 2
                                               : kSplitFixedCost;
  const int64_t bound = ceil_div(total_cost, P) + slack;
  for (int p = 0; p < P; ++p) {
    if (part_cost[p] > bound) return fail("part ", p, " costs ", part_cost[p], " > ceil(total / P) + ", slack);
  }
  return ::testing::AssertionSuccess();
}

TEST(Schedule, RandomBatchesHaveEveryProperty) {
  const auto cases = schedule_cases(3000, 20240501);
  int split_cases = 0, empty_part_cases = 0;
  for (const ScheduleCase& c : cases) {
    const Schedule s = host_schedule(c.seqlens, c.rows, c.h_kv, c.num_sms);
    ASSERT_TRUE(schedule_is_valid(c.seqlens, s)) << c.describe();
    const int b = static_cast<int>(c.seqlens.size());
    split_cases += s.num_splits.back() > b;
    for (int p = 0; p < s.parts; ++p) empty_part_cases += s.metadata[p * kMetadataWords] == b;
  }
  // The generator must reach both regimes, or the properties above were checked on easy inputs only.
  EXPECT_GT(split_cases, 300);
  EXPECT_GT(empty_part_cases, 300);
}

// Hand-worked schedules, pinning the documented row layout.
// The greedy cut. Sequence 0 has 20 blocks, sequence 1 is empty; F = 5, and at 64 rows a cut leaves at
// least 2 blocks. Whole, sequence 0 would cost 25 > ceil(30 / 2) + kWholeGroupSlack = 23. Budgets
// 15..17 need three parts: part 0 takes blocks [0, T - 5) of sequence 0, part 1 the other 25 - T
// blocks (cost 30 - T), and the F that sequence 1 costs no longer fits. T = 18: part 0 is blocks [0, 13) (cost 18),
// part 1 blocks [13, 20) (split 1) and sequence 1 (cost 12 + 5 = 17).
TEST(Schedule, HandWorkedExample) {
  const Schedule s = host_schedule({1280, 0}, 64, 1, 2);
  ASSERT_EQ(s.parts, 2);
  EXPECT_EQ(s.metadata, (std::vector<int32_t>{0, 0, 0, 832, 0, 0, 0, 13, /**/ 0, 832, 1, 0, 1, 0, 0, 7}));
  EXPECT_EQ(s.num_splits, (std::vector<int32_t>{0, 2, 3}));
}

// The smallest largest part over every way to cut the batch, in order, into at most P parts, each
// piece costing F + its blocks and a part that ends inside a sequence holding at least `min_cut` of its
// blocks: a dynamic program over block positions, independent of the library's walk.
int64_t best_max_part(const std::vector<int32_t>& seqlens, int P, int64_t min_cut) {
  struct Pos {
    int req;
    int64_t block;
  };
  std::vector<Pos> pos;  // every place a part may end: a sequence's end, or a block inside a sequence
  std::vector<int64_t> blocks;
  for (int i = 0; i < static_cast<int>(seqlens.size()); ++i) {
    blocks.push_back(ceil_div(std::max(seqlens[i], 0), kBlockN));
    for (int64_t j = 1; j < blocks[i]; ++j) pos.push_back({i, j});
    pos.push_back({i, blocks[i]});
  }
  // cost of a part from end position a (exclusive; -1 = the batch start) to end position e.
  auto cost = [&](int a, int e) -> int64_t {
    const Pos from = a < 0 ? Pos{0, 0} : pos[a].block == blocks[pos[a].req] ? Pos{pos[a].req + 1, 0} : pos[a];
    const Pos to = pos[e];
    if (from.req > to.req) return -1;
    if (to.block < blocks[to.req] && to.block - (from.req == to.req ? from.block : 0) < min_cut) return -1;
    int64_t c = 0;
    for (int i = from.req; i <= to.req; ++i) {
      const int64_t lo = i == from.req ? from.block : 0, hi = i == to.req ? to.block : blocks[i];
      if (hi <= lo && blocks[i] > 0) return -1;
      c += kSplitFixedCost + hi - lo;
    }
    return c;
  };
  const int E = static_cast<int>(pos.size());
  constexpr int64_t kInf = INT64_MAX / 4;
  // best[j][e]: the smallest largest part of j parts ending at position e.
  std::vector<std::vector<int64_t>> best(P + 1, std::vector<int64_t>(E, kInf));
  for (int e = 0; e < E; ++e) {
    const int64_t c = cost(-1, e);
    if (c >= 0) best[1][e] = c;
  }
  for (int j = 2; j <= P; ++j) {
    for (int e = 0; e < E; ++e) {
      for (int a = 0; a < e; ++a) {
        const int64_t c = best[j - 1][a] < kInf ? cost(a, e) : -1;
        if (c >= 0) best[j][e] = std::min(best[j][e], std::max(best[j - 1][a], c));
      }
    }
  }
  int64_t answer = kInf;
  for (int j = 1; j <= P; ++j) answer = std::min(answer, best[j][E - 1]);
  return answer;
}

// The greedy cut's largest part is the smallest any ordered cut into the parts can reach, on small
// random batches whose whole groups do not fit (checked against best_max_part).
TEST(Schedule, GreedyCutIsOptimal) {
  std::mt19937_64 rng(20261129);
  int checked = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    const int b = 1 + static_cast<int>(rng() % 4), P = 2 + static_cast<int>(rng() % 4);
    const int rows = rng() % 2 ? 16 : 64;
    std::vector<int32_t> lens(b);
    for (auto& l : lens) l = rng() % 5 == 0 ? 0 : 1 + static_cast<int32_t>(rng() % (64 * 12));
    const Schedule s = host_schedule(lens, rows, 1, P);  // num_sm_parts(P, rows <= 64, 1) = P
    ASSERT_EQ(s.parts, P);
    ASSERT_TRUE(schedule_is_valid(lens, s));
    if (takes_whole_groups(b, s)) continue;  // the greedy cut is what is checked
    int64_t largest = 0;
    for (int p = 0; p < P; ++p) {
      const int32_t* row = &s.metadata[static_cast<size_t>(p) * kMetadataWords];
      if (row[0] > row[2]) continue;
      int64_t c = 0;
      for (int req = row[0]; req <= row[2]; ++req) {
        const int64_t begin = req == row[0] ? row[1] : 0, end = req == row[2] ? row[3] : lens[req];
        c += kSplitFixedCost + ceil_div(end, kBlockN) - begin / kBlockN;
      }
      largest = std::max(largest, c);
    }
    std::ostringstream what;
    what << "P=" << P << " rows=" << rows << " lens=";
    for (int32_t l : lens) what << l << ' ';
    ASSERT_EQ(largest, best_max_part(lens, P, rows <= 32 ? 1 : 2)) << what.str();
    ++checked;
  }
  EXPECT_GT(checked, 300);
}

// The greedy cut, block by block: the words get_mla_metadata must write, from a walk written here
// (one block or one piece's F at a time), independent of the library's closed-form step.
Schedule block_by_block_greedy(const std::vector<int32_t>& lens, int rows, int P) {
  const int b = static_cast<int>(lens.size());
  const int64_t F = kSplitFixedCost, min_cut = rows <= 32 ? 1 : 2;
  int64_t blocks = 0;
  for (int32_t l : lens) blocks += ceil_div(std::max(l, 0), kBlockN);
  for (int64_t T = std::max(F + min_cut, ceil_div(blocks + b * F, P));; ++T) {
    Schedule s;
    s.parts = P;
    s.metadata.assign(static_cast<size_t>(P) * kMetadataWords, 0);
    s.num_splits.assign(b + 1, 0);
    std::vector<std::array<int64_t, 5>> parts;  // begin_req, begin_block, begin_split, end_req, end_token
    int64_t left = T;
    std::array<int64_t, 5> open{0, 0, 0, 0, 0};
    for (int i = 0; i < b; ++i) {
      const int64_t n = ceil_div(std::max(lens[i], 0), kBlockN);
      int64_t k = 0, split = 0;
      bool started = false;  // this piece's F is paid
      while (true) {
        if (!started) {
          if (left >= F + (n - k) || left - F >= min_cut) {  // the piece fits whole, or a cut does
            left -= F;
            started = true;
          } else {  // the part ends before sequence i (a fresh part always starts a piece, so k == 0)
            open[3] = i - 1;
            open[4] = std::max(lens[i - 1], 0);
            parts.push_back(open);
            open = {i, k, split, 0, 0};
            left = T;
            continue;
          }
        }
        if (k == n) break;
        if (left >= 1) {
          --left;
          ++k;
          continue;
        }
        parts.push_back({open[0], open[1], open[2], i, k * kBlockN});  // the part is full inside sequence i
        ++split;
        open = {i, k, split, 0, 0};
        left = T;
        started = false;
      }
      s.num_splits[i + 1] = s.num_splits[i] + static_cast<int32_t>(split + 1);
    }
    open[3] = b - 1;
    open[4] = std::max(lens[b - 1], 0);
    parts.push_back(open);
    if (static_cast<int64_t>(parts.size()) > P) continue;
    for (int p = 0; p < P; ++p) {
      int32_t* row = &s.metadata[static_cast<size_t>(p) * kMetadataWords];
      if (p < static_cast<int>(parts.size())) {
        const auto& q = parts[p];
        row[0] = static_cast<int32_t>(q[0]);
        row[1] = static_cast<int32_t>(q[1] * kBlockN);
        row[2] = static_cast<int32_t>(q[3]);
        row[3] = static_cast<int32_t>(q[4]);
        row[4] = static_cast<int32_t>(q[2]);
        for (int64_t req = q[0]; req <= q[3]; ++req) {  // word 7: the part's blocks
          const int64_t end = req == q[3] ? q[4] : std::max(lens[req], 0);
          row[7] += static_cast<int32_t>(ceil_div(end, kBlockN) - (req == q[0] ? q[1] : 0));
        }
      } else {
        row[0] = b;
        row[2] = b - 1;
      }
    }
    return s;
  }
}

TEST(Schedule, GreedyCutMatchesABlockByBlockWalk) {
  std::mt19937_64 rng(7);
  int checked = 0, checked_long = 0;
  for (int trial = 0; trial < 3400; ++trial) {
    // Short sequences over up to 40 parts, then a few long ones over up to 132 (large quotients).
    const bool long_ones = trial >= 3000;
    const int b = 1 + static_cast<int>(rng() % (long_ones ? 6 : 24));
    const int P = 1 + static_cast<int>(rng() % (long_ones ? 132 : 40));
    const int rows = rng() % 2 ? 16 : 64;
    std::vector<int32_t> lens(b);
    for (auto& l : lens) l = rng() % 6 == 0 ? 0 : static_cast<int32_t>(rng() % (64 * (long_ones ? 20000 : 40)));
    const Schedule s = host_schedule(lens, rows, 1, P);
    if (takes_whole_groups(b, s)) continue;
    const Schedule want = block_by_block_greedy(lens, rows, P);
    std::ostringstream what;
    what << "P=" << P << " rows=" << rows << " lens=";
    for (int32_t l : lens) what << l << ' ';
    ASSERT_EQ(s.metadata, want.metadata) << what.str();
    ASSERT_EQ(s.num_splits, want.num_splits) << what.str();
    ++checked;
    checked_long += long_ones ? 1 : 0;
  }
  EXPECT_GT(checked, 1100);
  EXPECT_GT(checked_long, 200);
}

// Whole sequences. Costs 7 and 5, T = 6: one sequence per part costs at most 7 <= T + 8 = 14.
TEST(Schedule, HandWorkedWholeSequences) {
  const Schedule s = host_schedule({128, 0}, 64, 1, 2);
  ASSERT_EQ(s.parts, 2);
  EXPECT_EQ(s.metadata, (std::vector<int32_t>{0, 0, 0, 128, 0, 0, 0, 2, /**/ 1, 0, 1, 0, 0, 0, 0, 0}));
  EXPECT_EQ(s.num_splits, (std::vector<int32_t>{0, 1, 2}));
}

// The slack's edge: costs 21 and 5 on two parts (T = 13) keep sequence 0 whole at exactly T + 8;
// costs 23 and 5 (T = 14) cut it.
TEST(Schedule, WholeGroupSlackIsInclusive) {
  EXPECT_EQ(host_schedule({1024, 0}, 64, 1, 2).num_splits, (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(host_schedule({1152, 0}, 64, 1, 2).num_splits, (std::vector<int32_t>{0, 2, 3}));
}

// FlashMLA's b = 128 grid on 132 parts: every sequence whole on a part of its own, four parts empty;
// with groups of two on 66 parts (h_q = 128) at 4096 tokens, two parts empty.
TEST(Schedule, UniformBatchesKeepSequencesWhole) {
  for (int rows : {16, 128}) {
    const std::vector<int32_t> lens(128, rows == 16 ? 8192 : 4096);
    const Schedule s = host_schedule(lens, rows, 1, 132);
    ASSERT_TRUE(schedule_is_valid(lens, s)) << "rows=" << rows;
    EXPECT_EQ(s.num_splits.back(), 128) << "rows=" << rows;
    int empty = 0;
    for (int p = 0; p < s.parts; ++p) empty += s.metadata[p * kMetadataWords] == 128;
    EXPECT_EQ(empty, rows == 16 ? 4 : 2) << "rows=" << rows;
  }
}

TEST(Schedule, SinglePartNeverSplits) {
  for (const ScheduleCase& c : schedule_cases(200, 7)) {
    const Schedule s = host_schedule(c.seqlens, c.rows, c.h_kv, 1);
    ASSERT_EQ(s.parts, 1);
    const int b = static_cast<int>(c.seqlens.size());
    int64_t blocks = 0;
    for (int32_t L : c.seqlens) blocks += ceil_div(std::max(L, 0), kBlockN);
    const auto word7 = static_cast<int32_t>(std::min<int64_t>(blocks, INT32_MAX));
    const auto words = std::vector<int32_t>{0, 0, b - 1, std::max(c.seqlens.back(), 0), 0, 0, 0, word7};
    EXPECT_EQ(s.metadata, words) << c.describe();
    for (int i = 0; i <= b; ++i) ASSERT_EQ(s.num_splits[i], i) << c.describe();
  }
}

// Word 7 counts negative lengths as empty sequences: 0 + 2 + 0 + 1 blocks in the one part.
TEST(Schedule, PartBlocksTreatNegativeLengthsAsEmpty) {
  const Schedule s = host_schedule({-5, 100, -1, 64}, 64, 1, 1);
  ASSERT_EQ(s.parts, 1);
  EXPECT_EQ(s.metadata[7], 3);
}

TEST(Schedule, AllZeroLengthsPlaceEachSequenceOnce) {
  for (int b : {1, 2, 131, 132, 133, 5000}) {
    for (int num_sms : {1, 3, 132, 1024}) {
      const std::vector<int32_t> lens(b, 0);
      const Schedule s = host_schedule(lens, 1, 1, num_sms);
      ASSERT_TRUE(schedule_is_valid(lens, s)) << "b=" << b << " num_sms=" << num_sms;
      EXPECT_EQ(s.num_splits.back(), b);
    }
  }
}

TEST(Schedule, LongSequencesAreSplitAcrossParts) {
  // One long sequence and 132 parts: it must be cut so that no part does more than its share.
  const std::vector<int32_t> lens{64 * 1000};
  const Schedule s = host_schedule(lens, 1, 1, 132);
  ASSERT_TRUE(schedule_is_valid(lens, s));
  EXPECT_GE(s.num_splits[1], 100);
  EXPECT_LE(s.num_splits[1], 132);
}

TEST(Schedule, HugeLengthsDoNotOverflow) {
  std::vector<int32_t> lens(5000, INT32_MAX);
  lens[17] = 0;
  lens[4999] = INT32_MAX - 63;
  for (int num_sms : {1, 132, 1024}) {
    const Schedule s = host_schedule(lens, 128, 1, num_sms);
    ASSERT_TRUE(schedule_is_valid(lens, s)) << "num_sms=" << num_sms;
  }
}

// The greedy cut's int32 walk at the edge of its range: 31 sequences of 2^25 blocks and a ragged rest
// total just under 2^30 cost units; a 32nd such sequence puts the total past it (the cost line).
TEST(Schedule, GreedyCutNearItsLimitDoesNotOverflow) {
  for (int extra : {0, 1}) {
    std::vector<int32_t> lens(31 + extra, INT32_MAX);
    lens[3] = INT32_MAX - 64 * 1000;
    lens.push_back(0);
    lens.push_back(1);
    for (int num_sms : {2, 132, 1000}) {
      for (int rows : {16, 64}) {
        const Schedule s = host_schedule(lens, rows, 1, num_sms);
        ASSERT_TRUE(schedule_is_valid(lens, s)) << "extra=" << extra << " num_sms=" << num_sms << " rows=" << rows;
      }
    }
  }
}

TEST(Schedule, DependsOnlyOnItsInputs) {
  std::mt19937_64 rng(99);
  for (const ScheduleCase& c : schedule_cases(300, 3)) {
    const Schedule a = host_schedule(c.seqlens, c.rows, c.h_kv, c.num_sms);
    // Same lengths in another buffer, outputs prefilled with random words: the same words come out.
    std::vector<int32_t> lens = c.seqlens;
    std::vector<int32_t> meta(a.metadata.size()), splits(a.num_splits.size());
    for (auto& v : meta) v = static_cast<int32_t>(rng());
    for (auto& v : splits) v = static_cast<int32_t>(rng());
    ScheduleArgs args;
    const int64_t b = static_cast<int64_t>(lens.size());
    args.cache_seqlens = make_view(lens.data(), DType::kInt32, kCpu, {b});
    args.num_q_tokens_per_head_k = c.rows;
    args.num_heads_k = c.h_kv;
    args.num_sms = c.num_sms;
    args.page_block_size = 1 + static_cast<int>(rng() % 256);  // does not enter the schedule
    args.tile_scheduler_metadata = make_view(meta.data(), DType::kInt32, kCpu, {a.parts, kMetadataWords});
    args.num_splits = make_view(splits.data(), DType::kInt32, kCpu, {b + 1});
    get_mla_metadata(args);
    ASSERT_EQ(meta, a.metadata) << c.describe();
    ASSERT_EQ(splits, a.num_splits) << c.describe();
    ASSERT_EQ(lens, c.seqlens) << "get_mla_metadata wrote to cache_seqlens";
  }
}

TEST(Schedule, DefaultSmCountOnCpuIs132) {
  EXPECT_EQ(default_num_sms(kCpu), 132);
  std::vector<int32_t> lens{300, 0, 5, 7000};
  const Schedule want = host_schedule(lens, 128, 1, 132);
  std::vector<int32_t> meta(want.metadata.size()), splits(want.num_splits.size());
  ScheduleArgs args;
  args.cache_seqlens = make_view(lens.data(), DType::kInt32, kCpu, {4});
  args.num_q_tokens_per_head_k = 128;
  args.num_sms = 0;
  args.tile_scheduler_metadata = make_view(meta.data(), DType::kInt32, kCpu, {want.parts, kMetadataWords});
  args.num_splits = make_view(splits.data(), DType::kInt32, kCpu, {5});
  get_mla_metadata(args);
  EXPECT_EQ(meta, want.metadata);
  EXPECT_EQ(splits, want.num_splits);
}

TEST(NumSmParts, MatchesFormula) {
  EXPECT_EQ(num_sm_parts(132, 128, 1), 66);  // DeepSeek decode on an H100: two 64-row tiles
  EXPECT_EQ(num_sm_parts(132, 64, 1), 132);
  EXPECT_EQ(num_sm_parts(132, 65, 1), 66);
  EXPECT_EQ(num_sm_parts(132, 1, 1), 132);
  EXPECT_EQ(num_sm_parts(132, 512, 1), 16);
  EXPECT_EQ(num_sm_parts(132, 128, 2), 33);
  EXPECT_EQ(num_sm_parts(132, 16, 8), 16);
  EXPECT_EQ(num_sm_parts(78, 128, 1), 39);
  EXPECT_EQ(num_sm_parts(1, 128, 1), 1);
  EXPECT_EQ(num_sm_parts(3, 1000, 8), 1);
  for (int sms = 1; sms <= 300; sms += 7) {
    for (int rows : {1, 63, 64, 65, 127, 128, 129, 512, 4096}) {
      for (int h_kv : {1, 2, 3, 8, 128}) {
        const int tiles = (rows + 63) / 64;
        ASSERT_EQ(num_sm_parts(sms, rows, h_kv), std::max(1, sms / (h_kv * tiles)))
            << sms << " SMs, " << rows << " rows, h_kv " << h_kv;
      }
    }
  }
}

}  // namespace
}  // namespace flash_mla::test
