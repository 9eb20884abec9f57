// The seeded random fuzzer on the Hopper kernel (fuzz.hpp; ctest label gpu, skips without an sm90
// device): FLASH_MLA_FUZZ_CASES cases (default 200) with bf16/fp16 and both FP8 caches (about 30 %),
// page sizes 1 to 256, batches up to 600, lengths up to 70000, h_q 1..128 over h_kv 1..8, s_q 1..6,
// num_sms 1..200 or the device's, each
// against the float64 reference (sampled rows for large cases) with exact invariants on every row and
// guard bands around out, lse and the workspace. A failure prints the line that reruns it:
//   FLASH_MLA_FUZZ_SEED=<seed> ./tests/flash_mla_gpu_tests --gtest_filter=GpuFuzz.Sm90
#include <gtest/gtest.h>

#include "fuzz.hpp"
#include "gpu_support.hpp"

namespace flash_mla::test {
namespace {

TEST(GpuFuzz, Sm90) {
  REQUIRE_SM90();
  Stream stream;
  run_fuzz(FuzzTarget::kSm90, 200, "./tests/flash_mla_gpu_tests", "GpuFuzz.Sm90", [&](const FuzzCase& c) {
    testing::Workload w = make_fuzz_workload(c);
    GpuDecode d(w, c.num_sms, stream);
    d.run();
    d.fetch();
    if (!d.guards_intact()) return std::string("a guard band around out, lse or the workspace was overwritten");
    return check_fuzz_output(c, w, d.out_host.data(), d.lse_host.data());
  });
}

}  // namespace
}  // namespace flash_mla::test
