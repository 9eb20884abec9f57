// Helpers shared by the test executables: host buffers with guard bands, the host schedule through
// the public API, random batches of sequence lengths for schedule tests, and a CPU decode call
// assembled from a testing::Workload (random inputs, NaN-poisoned tails, float64 reference).
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "flash_mla/flash_mla.hpp"
#include "workload.hpp"

namespace flash_mla::test {

// Host memory with guard bands on both sides holding a known pattern, so that a write past either end
// is caught. data() is 256-byte aligned (the workspace's requirement).
class GuardedBuffer {
 public:
  static constexpr size_t kGuardBytes = 512;

  explicit GuardedBuffer(size_t bytes = 0);
  void* data() { return storage_.data() + offset_; }
  const void* data() const { return storage_.data() + offset_; }
  size_t size() const { return bytes_; }
  // Fills the payload (not the guards) with `byte`; 0xff makes every float/bf16/fp16 element a NaN.
  void fill(uint8_t byte);
  bool guards_intact() const;

 private:
  std::vector<uint8_t> storage_;
  size_t offset_ = 0;
  size_t bytes_ = 0;
};

// The schedule of one batch, as get_mla_metadata writes it for CPU tensors (num_sms 0: the default).
struct Schedule {
  int parts = 0;
  std::vector<int32_t> metadata;    // [parts, 8]
  std::vector<int32_t> num_splits;  // [b + 1]
};
Schedule host_schedule(const std::vector<int32_t>& seqlens, int rows, int h_kv, int num_sms);

// Runs `call`, which must throw Error for `argument` with a message that reads
// "flash_mla: <argument>: expected ..., got ..." and contains every one of `needles`.
template <typename Call>
void expect_error(Call&& call, const std::string& argument, std::initializer_list<std::string> needles) {
  try {
    call();
    ADD_FAILURE() << "no Error thrown; expected one naming '" << argument << "'";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_EQ(e.argument(), argument) << what;
    EXPECT_EQ(what.rfind("flash_mla: " + argument + ": expected ", 0), 0u) << what;
    EXPECT_NE(what.find(", got "), std::string::npos) << what;
    for (const std::string& n : needles) EXPECT_NE(what.find(n), std::string::npos) << "'" << n << "' not in: " << what;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw a non-flash_mla exception: " << e.what();
  }
}

// One schedule input: lengths, query rows per KV head (s_q * h_q / h_kv), KV heads and SM count.
struct ScheduleCase {
  std::vector<int32_t> seqlens;
  int rows = 1;
  int h_kv = 1;
  int num_sms = 132;
  std::string describe() const;
};
// `count` random cases: batch sizes from 1 to 5000, lengths from all-zero and scattered zeros to
// near INT32_MAX, many row / KV-head / SM counts. The first cases are fixed edge cases.
std::vector<ScheduleCase> schedule_cases(int count, uint64_t seed);

// Ragged lengths for decode tests: `special` first (0, 1, 63, 64, 65, page boundaries ...), then
// random lengths in [1, max_len], shuffled.
std::vector<int32_t> ragged_seqlens(std::vector<int32_t> special, int batch, int max_len, uint64_t seed);

// Number of keys query token t of sequence req sees (SPEC: bottom-right causal mask).
int visible_keys(const testing::Workload& w, int req, int t);

// A CPU decode call over a workload's buffers: metadata from get_mla_metadata, out and lse prefilled
// with NaN, workspace with garbage, each inside guard bands. Tests may edit `args` before run().
class CpuDecode {
 public:
  explicit CpuDecode(testing::Workload& w, int num_sms = 132);  // num_sms 0: get_mla_metadata's default
  CpuDecode(const CpuDecode&) = delete;
  CpuDecode& operator=(const CpuDecode&) = delete;

  void run() { mla_decode(args); }
  testing::CheckResult check(int64_t max_rows = 0, uint64_t seed = 1) const;
  float out_at(int64_t i) const { return testing::load_as_float(w.config.dtype, out.data(), i); }
  float lse_at(int64_t i) const { return static_cast<const float*>(lse.data())[i]; }
  bool guards_intact() const {
    return out.guards_intact() && lse.guards_intact() && workspace.guards_intact();
  }

  testing::Workload& w;
  Schedule schedule;
  GuardedBuffer out, lse, workspace;
  DecodeArgs args;
};

// A workload of random inputs (testing::make_workload: poisoned tails, garbage block-table tails), its
// cache in `format` (FP8 formats: dtype bf16; fp8_q: an e4m3 q, kFP8PerTensor only).
testing::Workload random_workload(int batch, int s_q, int h_q, int h_kv, std::vector<int32_t> lens, DType dtype,
                                  bool causal, uint64_t seed, int page = 64,
                                  KvCacheFormat format = KvCacheFormat::kDense, bool fp8_q = false);

// The FP8 variants the decode tests run (SPEC.md, "FP8 KV cache"): FP8 with scale (bf16 q), per-tensor
// e4m3 with a bf16 q, and per-tensor e4m3 with an e4m3 q.
struct FP8Variant {
  KvCacheFormat format;
  bool fp8_q;
  const char* name;  // for test names
};
inline constexpr FP8Variant kFP8Variants[] = {{KvCacheFormat::kFP8WithScale, false, "fp8"},
                                              {KvCacheFormat::kFP8PerTensor, false, "fp8tensor"},
                                              {KvCacheFormat::kFP8PerTensor, true, "fp8tensor_fp8q"}};

// random_workload with the variant's cache (q and out bf16).
testing::Workload fp8_workload(const FP8Variant& variant, int batch, int s_q, int h_q, int h_kv,
                               std::vector<int32_t> lens, bool causal, uint64_t seed, int page = 64);

// Multiplies query head `head` (every sequence and query token) of a bf16 q by `factor`, a power of
// two, so that the values stay exact: queries far outside f16's range for the FP8 tests.
void scale_query_head(testing::Workload& w, int head, float factor);

// Multiplies what the cache dequantises to by 2^k and softmax_scale by 2^-k, exactly (no value leaves its
// format's range): FP8 with scale, every token's four scales and 64 bf16 RoPE channels (tails too: NaN stays
// NaN); per tensor, descale_k. Every score stays as it was and V is 2^k times larger, so a decode's out is
// 2^k times the original's and its lse unchanged. Other formats: throws.
void rescale_fp8_cache(testing::Workload& w, int k);
// "" when each of the n `dtype` values of `out` is 2^k times `base`'s, exactly (NaN where base is NaN); else
// how many differ, and the first.
std::string scaled_mismatch(DType dtype, const void* base, const void* out, int64_t n, int k);

// Sets an environment variable for a scope (value nullptr: unsets it), restoring the previous value.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value);
  ~ScopedEnv();
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::unique_ptr<std::string> old_;
};

}  // namespace flash_mla::test
