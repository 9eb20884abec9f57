// The seeded random fuzzer on the CPU backend (fuzz.hpp): FLASH_MLA_FUZZ_CASES cases (default 1000,
// about a minute on two cores), each against the float64 reference with exact invariants on every row
// and the guard bands around out, lse and the workspace. A failure prints the line that reruns it:
//   FLASH_MLA_FUZZ_SEED=<seed> ./tests/flash_mla_tests --gtest_filter=Fuzz.Cpu
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <utility>
#include <thread>

#include "fuzz.hpp"
#include "test_support.hpp"

namespace flash_mla::test {
namespace {

std::string run_cpu_case(const FuzzCase& c) {
  testing::Workload w = make_fuzz_workload(c);
  CpuDecode d(w, c.num_sms);
  d.run();
  if (!d.guards_intact()) return "a guard band around out, lse or the workspace was overwritten";
  return check_fuzz_output(c, w, d.out.data(), static_cast<const float*>(d.lse.data()));
}

TEST(Fuzz, Cpu) {
  run_fuzz(FuzzTarget::kCpu, 1000, "./tests/flash_mla_tests", "Fuzz.Cpu", run_cpu_case,
           static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
}

// The generator itself: deterministic, and covering every axis value on both targets.
TEST(Fuzz, CasesAreReproducibleAndCoverEveryAxis) {
  std::set<int> pages, s_qs, h_kvs, sms_default;
  std::set<DType> dtypes;
  std::set<std::pair<KvCacheFormat, bool>> formats;
  int causal = 0, zero_lengths = 0, sampled = 0, big_batches = 0, negative_scales = 0, long_sequences = 0;
  int split = 0;  // cases whose schedule cuts a sequence (the partials and the combine)
  for (uint64_t seed = 1; seed <= 1000; ++seed) {
    const FuzzCase c = make_fuzz_case(seed, FuzzTarget::kCpu);
    ASSERT_EQ(c.describe(), make_fuzz_case(seed, FuzzTarget::kCpu).describe());
    const auto& w = c.config;
    ASSERT_EQ(static_cast<int>(w.seqlens.size()), w.batch);
    ASSERT_GE(w.h_q, 1);
    ASSERT_LE(w.h_q, 128);
    ASSERT_EQ(w.h_q % w.h_kv, 0) << c.describe();
    pages.insert(w.page_block_size);
    s_qs.insert(w.s_q);
    h_kvs.insert(w.h_kv);
    dtypes.insert(w.dtype);
    formats.insert({w.kv_format, w.fp8_q});
    if (w.kv_format != KvCacheFormat::kDense) {
      ASSERT_EQ(w.dtype, DType::kBF16) << c.describe();
    }
    sms_default.insert(c.num_sms == 0);
    causal += w.causal && w.s_q > 1;
    zero_lengths += std::count(w.seqlens.begin(), w.seqlens.end(), 0) > 0;
    sampled += c.check_rows != 0;
    big_batches += w.batch > 64;
    negative_scales += c.softmax_scale < 0;
    long_sequences += *std::max_element(w.seqlens.begin(), w.seqlens.end()) >= 3000;
    const Schedule sched = host_schedule(w.seqlens, w.s_q * w.h_q / w.h_kv, w.h_kv, c.num_sms == 0 ? 132 : c.num_sms);
    split += sched.num_splits.back() > w.batch;
  }
  EXPECT_EQ(pages, (std::set<int>{1, 16, 32, 48, 64, 128, 256}));
  EXPECT_EQ(s_qs, (std::set<int>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(h_kvs, (std::set<int>{1, 2, 3, 4, 8}));
  EXPECT_EQ(dtypes.size(), 3u);
  EXPECT_EQ(formats.size(), 4u) << "dense, FP8 with scale, per-tensor FP8 with a bf16 and with an e4m3 q";
  EXPECT_EQ(sms_default.size(), 2u);
  EXPECT_GT(causal, 100);
  EXPECT_GT(zero_lengths, 100);
  EXPECT_GT(big_batches, 10);
  EXPECT_GT(negative_scales, 30);
  EXPECT_GT(long_sequences, 10);
  EXPECT_GT(split, 100) << "the whole-group schedule must not leave the split path untested";
  EXPECT_LT(sampled, 600) << "most cases should be checked on every row";

  // The GPU's first 200 cases: every page size the sm90 backend takes, no float32, one and several
  // 64-row query tiles per KV head, more parts than an H100 has SMs, sequences long enough for many
  // splits, and every FP8 cache format.
  int one_tile = 0, several_tiles = 0, many_parts = 0, long_gpu = 0;
  std::set<int> gpu_pages;
  std::set<std::pair<KvCacheFormat, bool>> gpu_formats;
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    const FuzzCase c = make_fuzz_case(seed, FuzzTarget::kSm90);
    const auto& w = c.config;
    gpu_pages.insert(w.page_block_size);
    ASSERT_NE(w.dtype, DType::kFP32);
    gpu_formats.insert({w.kv_format, w.fp8_q});
    ASSERT_EQ(w.h_q % w.h_kv, 0) << c.describe();
    (w.s_q * w.h_q / w.h_kv <= kBlockM ? one_tile : several_tiles) += 1;
    many_parts += c.num_sms > 132;
    long_gpu += *std::max_element(w.seqlens.begin(), w.seqlens.end()) >= 8192;
  }
  EXPECT_GT(one_tile, 40);
  EXPECT_GT(several_tiles, 40);
  EXPECT_GT(many_parts, 20);
  EXPECT_GT(long_gpu, 5);
  EXPECT_EQ(gpu_pages, (std::set<int>{1, 2, 16, 32, 48, 64, 100, 128, 256}));
  EXPECT_EQ(gpu_formats.size(), 4u) << "dense, FP8 with scale, per-tensor FP8 with a bf16 and with an e4m3 q";
}

}  // namespace
}  // namespace flash_mla::test
