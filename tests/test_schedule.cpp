// The host split-KV schedule, through the public API (get_mla_metadata on CPU tensors). Every
// schedule is decoded exactly as the kernels read it and checked for the properties decoding relies
// on: each 64-token block of each sequence is computed once, each sequence's pieces own distinct
// partial-result slots, and the parts are balanced.
#include <gtest/gtest.h>

#include <algorithm>
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
    if (row[5] != 0 || row[6] != 0 || row[7] != 0) return fail("part ", p, ": words 5..7 are not 0");
    if (row[0] > row[2]) {  // empty part
      if (row[0] != b || row[1] != 0 || row[2] != b - 1 || row[3] != 0 || row[4] != 0) {
        return fail("part ", p, ": empty part not encoded as [b, 0, b - 1, 0, 0, 0, 0, 0]: [", row[0], ", ",
                    row[1], ", ", row[2], ", ", row[3], ", ", row[4], "]");
      }
      continue;
    }
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

  // The cost line keeps every part within T + F. Whole groups (no sequence cut, part p holding
  // sequences [p*k, (p+1)*k) with k = ceil(b / P)) may take up to kWholeGroupSlack instead.
  const int64_t k = ceil_div(b, P);
  bool whole_groups = s.num_splits[b] == b;
  for (int p = 0; p < P && whole_groups; ++p) {
    const int32_t* row = &s.metadata[static_cast<size_t>(p) * kMetadataWords];
    whole_groups = p * k >= b ? row[0] == b : row[0] == p * k && row[2] == std::min<int64_t>(b, (p + 1) * k) - 1;
  }
  const int64_t bound = ceil_div(total_cost, P) + (whole_groups ? kWholeGroupSlack : kSplitFixedCost);
  for (int p = 0; p < P; ++p) {
    if (part_cost[p] > bound) return fail("part ", p, " costs ", part_cost[p], " > ceil(total / P) + ", bound);
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
// The cost line. Costs: sequence 0 has 20 blocks + F = 25, sequence 1 (empty) F = 5; total 30, two
// parts of T = 15. Whole sequences would cost 25 > T + kWholeGroupSlack = 23. Part 0 covers cost [0, 15): sequence
// 0's prefix and its first 10 blocks. Part 1 starts at block 10 of sequence 0 (its split 1), then
// sequence 1.
TEST(Schedule, HandWorkedExample) {
  const Schedule s = host_schedule({1280, 0}, 64, 1, 2);
  ASSERT_EQ(s.parts, 2);
  EXPECT_EQ(s.metadata, (std::vector<int32_t>{0, 0, 0, 640, 0, 0, 0, 0, /**/ 0, 640, 1, 0, 1, 0, 0, 0}));
  EXPECT_EQ(s.num_splits, (std::vector<int32_t>{0, 2, 3}));
}

// Whole sequences. Costs 7 and 5, T = 6: one sequence per part costs at most 7 <= T + 8 = 14.
TEST(Schedule, HandWorkedWholeSequences) {
  const Schedule s = host_schedule({128, 0}, 64, 1, 2);
  ASSERT_EQ(s.parts, 2);
  EXPECT_EQ(s.metadata, (std::vector<int32_t>{0, 0, 0, 128, 0, 0, 0, 0, /**/ 1, 0, 1, 0, 0, 0, 0, 0}));
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
    EXPECT_EQ(s.metadata, (std::vector<int32_t>{0, 0, b - 1, std::max(c.seqlens.back(), 0), 0, 0, 0, 0}))
        << c.describe();
    for (int i = 0; i <= b; ++i) ASSERT_EQ(s.num_splits[i], i) << c.describe();
  }
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
