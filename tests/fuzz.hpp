// Seeded random decode cases for the fuzzers: Fuzz.Cpu (test_fuzz.cpp, the CPU backend) and
// GpuFuzz.Sm90 (test_gpu_fuzz.cpp, the Hopper kernel). A case is a pure function of its seed and
// target, so one number reproduces it:
//   FLASH_MLA_FUZZ_SEED=N        run only the case of seed N
//   FLASH_MLA_FUZZ_CASES=N       number of cases (seeds FIRST .. FIRST + N - 1)
//   FLASH_MLA_FUZZ_FIRST_SEED=N  first seed (default 1)
// Each case is checked against the float64 reference (all rows, or a random sample when the
// reference would be slow), plus exact invariants on every row: out finite, rows without a visible key
// exactly out = 0 and lse = +inf, lse finite elsewhere; the caller also checks the guard bands.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "workload.hpp"

namespace flash_mla::test {

enum class FuzzTarget { kCpu, kSm90 };

struct FuzzCase {
  uint64_t seed = 0;
  FuzzTarget target = FuzzTarget::kCpu;
  testing::WorkloadConfig config;  // shapes, dtype, page size, lengths, causal, page placement
  float softmax_scale = 0.0f;      // passed as is (may be 0, tiny, large or negative)
  int num_sms = 0;                 // 0: get_mla_metadata's default (the device's SM count; 132 on CPU)
  int64_t check_rows = 0;          // rows checked against the float64 reference; 0: all
  std::string describe() const;    // one line: every parameter
};

// The case of `seed` for `target`, sized for that target's per-case budget (test time).
FuzzCase make_fuzz_case(uint64_t seed, FuzzTarget target);

// The case's inputs (testing::make_workload with the case's softmax scale).
testing::Workload make_fuzz_workload(const FuzzCase& c);

// "" when out ([b, s_q, h_q, 512], the workload's dtype) and lse ([b, h_q, s_q]) pass the invariants
// and the reference check, else what failed first.
std::string check_fuzz_output(const FuzzCase& c, const testing::Workload& w, const void* out, const float* lse);

// Runs the cases the environment selects (default_cases when FLASH_MLA_FUZZ_CASES is unset): builds
// each and calls run_case, which returns "" or a failure. A failure (or an exception) is reported as
//   FLASH_MLA_FUZZ_SEED=<seed> <executable> --gtest_filter=<test>
// followed by the case's parameters and what failed. Prints a one-line summary. With parallel_cases
// > 1, that many cases run at once (run_case must then be thread-safe).
void run_fuzz(FuzzTarget target, int default_cases, const std::string& executable, const std::string& test,
              const std::function<std::string(const FuzzCase&)>& run_case, int parallel_cases = 1);

}  // namespace flash_mla::test
