#include "fuzz.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <limits>
#include <numeric>
#include <sstream>
#include <thread>
#include <vector>

#include "flash_mla/flash_mla.hpp"

namespace flash_mla::test {

namespace {

// splitmix64 with its own integer and real draws: the same seed gives the same case with any
// compiler and standard library (std:: distributions are implementation-defined).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  int64_t uniform(int64_t lo, int64_t hi) {  // [lo, hi]
    return lo + static_cast<int64_t>(next() % static_cast<uint64_t>(hi - lo + 1));
  }
  double real() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  bool chance(double p) { return real() < p; }
  double log_uniform(double lo, double hi) { return std::exp(std::log(lo) + real() * (std::log(hi) - std::log(lo))); }
  template <typename T>
  T pick(std::initializer_list<T> values) {
    return *(values.begin() + uniform(0, static_cast<int64_t>(values.size()) - 1));
  }

 private:
  uint64_t state_;
};

// Per-case budgets (tuned for test time, not correctness). Work is counted in row-keys: one query
// row against one cached token (the decode and the reference both cost about 1100 multiply-adds each).
struct Budget {
  int64_t decode_row_keys;     // sum over rows of visible keys, for the decode call
  int64_t reference_row_keys;  // the same for the checked rows (more rows are sampled, not checked)
  int64_t kv_elements;         // elements of the KV cache pool, poisoned pages included
  int64_t rows;                // query rows b * s_q * h_q (q and out are generated and scanned)
};

// The CPU fuzzer runs its 1000 cases in about 40 s on two cores. On the GPU the float64 reference on
// the host dominates: about 5e7 row-keys for the 200 cases, some 15-30 s on 16 cores.
Budget budget(FuzzTarget target) {
  return target == FuzzTarget::kCpu ? Budget{100'000, 16'000, 3'000'000, 2'048}
                                    : Budget{400'000'000, 1'000'000, 48'000'000, 131'072};
}

int64_t pool_elements(const std::vector<int32_t>& lens, int page, int h_kv) {
  int64_t pages = 0;
  for (int32_t l : lens) pages += (std::max(l, 0) + page - 1) / page;
  return (pages + pages / 8 + 2) * page * h_kv * kHeadDim;  // make_workload's pool
}

int64_t decode_row_keys(const testing::WorkloadConfig& c) {
  int64_t keys = 0;
  for (int32_t l : c.seqlens) keys += std::max(l, 0);
  return keys * c.s_q * c.h_q;
}

int32_t draw_length(Rng& rng, int page, int max_len, int s_q) {
  const double u = rng.real();
  if (u < 0.10) return 0;
  if (u < 0.16) return 1;
  if (u < 0.22) return static_cast<int32_t>(rng.uniform(1, s_q + 1));  // causal rows partly or fully masked
  if (u < 0.36) {  // a page edge
    const int64_t k = rng.uniform(1, std::max(1, max_len / page));
    return static_cast<int32_t>(std::max<int64_t>(0, k * page + rng.uniform(-1, 1)));
  }
  if (u < 0.46) {  // a 64-token work-unit edge
    const int64_t k = rng.uniform(1, std::max(1, max_len / kBlockN));
    return static_cast<int32_t>(std::max<int64_t>(0, k * kBlockN + rng.uniform(-1, 1)));
  }
  return static_cast<int32_t>(rng.uniform(1, max_len));
}

}  // namespace

std::string FuzzCase::describe() const {
  const auto& c = config;
  std::ostringstream s;
  s << "b=" << c.batch << " s_q=" << c.s_q << " h_q=" << c.h_q << " h_kv=" << c.h_kv
    << " dtype=" << testing::dtype_short_name(c.dtype) << " kv=" << testing::kv_format_short_name(c.kv_format)
    << (c.fp8_q ? " q=fp8" : "")
    << " page=" << c.page_block_size << " causal=" << c.causal << " softmax_scale=" << softmax_scale
    << " pages=" << (c.scatter_pages ? "scattered" : "sequential") << " extra_blocks=" << c.extra_blocks_per_seq
    << " num_sms=" << num_sms << (num_sms == 0 ? "(default)" : "")
    << " checked_rows=" << (check_rows == 0 ? std::string("all") : std::to_string(check_rows)) << " seqlens=[";
  for (size_t i = 0; i < c.seqlens.size() && i < 24; ++i) s << (i ? "," : "") << c.seqlens[i];
  s << (c.seqlens.size() > 24 ? ",...]" : "]");
  return s.str();
}

FuzzCase make_fuzz_case(uint64_t seed, FuzzTarget target) {
  const bool cpu = target == FuzzTarget::kCpu;
  const Budget limit = budget(target);
  Rng rng(seed * 0xD1B54A32D192ED03ull + (cpu ? 1 : 2));
  FuzzCase fc;
  fc.seed = seed;
  fc.target = target;
  testing::WorkloadConfig& c = fc.config;
  c.seed = seed;

  c.dtype = cpu ? rng.pick({DType::kBF16, DType::kBF16, DType::kFP16, DType::kFP16, DType::kFP32})
                : rng.pick({DType::kBF16, DType::kFP16});
  // Every page size engines use, and some that neither divide nor are multiples of 64 (48: TMA copies
  // of 16 rows; 100: gathered).
  c.page_block_size =
      cpu ? rng.pick({1, 16, 32, 48, 64, 64, 128, 256}) : rng.pick({1, 2, 16, 32, 48, 64, 64, 100, 128, 256});
  c.s_q = rng.chance(0.4) ? 1 : static_cast<int>(rng.uniform(2, 6));
  // KV heads, then query heads per KV head, often at the edges of 32- and 64-row tiles.
  c.h_kv = rng.pick({1, 1, 1, 1, 1, 1, 2, 2, 3, 4, 8, 8});
  const int max_group = 128 / c.h_kv;
  int group = rng.chance(0.5) ? rng.pick({1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128})
                              : static_cast<int>(rng.uniform(1, max_group));
  c.h_q = c.h_kv * std::min(group, max_group);

  // Batch and lengths: mostly small batches of ragged lengths with many edge values; sometimes a big
  // batch of short sequences, one long sequence with few heads, or nothing but zeros.
  const double shape = rng.real();
  int max_len = static_cast<int>(std::lround(rng.log_uniform(1, cpu ? 3000 : 8192)));
  if (shape < 0.80) {
    c.batch = static_cast<int>(rng.uniform(1, 12));
  } else if (shape < 0.95) {
    c.batch = static_cast<int>(rng.uniform(13, 64));
  } else {
    c.batch = static_cast<int>(rng.uniform(65, cpu ? 200 : 600));
    max_len = std::min(max_len, 300);
    if (cpu) {  // few rows per sequence, so that the batch fits the CPU's row budget
      c.s_q = 1;
      c.h_kv = rng.pick({1, 1, 2});
      c.h_q = c.h_kv * rng.pick({1, 2, 4});
    }
  }
  const double lengths = rng.real();
  c.seqlens.resize(c.batch);
  if (lengths < 0.03) {
    std::fill(c.seqlens.begin(), c.seqlens.end(), 0);
  } else if (lengths < 0.09) {  // one long sequence; few heads so that it fits the budget
    c.batch = std::min(c.batch, 4);
    c.seqlens.resize(c.batch);
    for (auto& l : c.seqlens) l = draw_length(rng, c.page_block_size, 300, c.s_q);
    c.seqlens[rng.uniform(0, c.batch - 1)] = static_cast<int32_t>(rng.uniform(3000, cpu ? 5000 : 70000));
    c.h_kv = 1;
    c.h_q = static_cast<int>(rng.pick({1, 2, 3, 8, 16}));
    c.s_q = std::min(c.s_q, 2);
  } else {
    for (auto& l : c.seqlens) l = draw_length(rng, c.page_block_size, max_len, c.s_q);
  }

  c.causal = rng.chance(0.5);  // also with s_q == 1, where it has no effect
  c.scatter_pages = rng.chance(0.7);
  c.extra_blocks_per_seq = static_cast<int>(rng.uniform(0, 3));
  const double scale = rng.real();
  if (scale < 0.35) {
    fc.softmax_scale = 1.0f / 24.0f;  // 576^-0.5, FlashMLA's default
  } else if (scale < 0.70) {
    fc.softmax_scale = static_cast<float>(rng.log_uniform(0.01, 0.3));
  } else if (scale < 0.80) {
    fc.softmax_scale = rng.pick({0.0f, 1e-6f, 1e-3f});
  } else if (scale < 0.90) {
    fc.softmax_scale = static_cast<float>(rng.log_uniform(0.3, 1.0));
  } else {
    fc.softmax_scale = -static_cast<float>(rng.log_uniform(0.01, 0.3));
  }
  fc.num_sms = rng.chance(0.3) ? 0 : rng.chance(0.15) ? 1 : static_cast<int>(rng.uniform(1, 200));
  // FP8 caches (both targets), drawn from a stream of their own so that the other parameters of every
  // seed stay what they were.
  Rng format_rng(seed * 0xA0761D6478BD642Full + 3);
  if (format_rng.chance(0.3)) {
    c.kv_format = format_rng.chance(0.5) ? KvCacheFormat::kFP8WithScale : KvCacheFormat::kFP8PerTensor;
    c.fp8_q = c.kv_format == KvCacheFormat::kFP8PerTensor && format_rng.chance(0.5);
    c.dtype = DType::kBF16;
  }

  // Fit the budgets: drop sequences until the rows fit, shorten every sequence in proportion, then
  // drop sequences (or shorten the last) until the KV pool fits.
  const int64_t rows_per_seq = int64_t(c.s_q) * c.h_q;
  if (int64_t(c.seqlens.size()) * rows_per_seq > limit.rows) {
    c.seqlens.resize(static_cast<size_t>(std::max<int64_t>(1, limit.rows / rows_per_seq)));
  }
  const int64_t work = decode_row_keys(c);
  if (work > limit.decode_row_keys) {
    const double f = static_cast<double>(limit.decode_row_keys) / static_cast<double>(work);
    for (auto& l : c.seqlens) l = l > 0 ? std::max<int32_t>(1, static_cast<int32_t>(l * f)) : 0;
  }
  while (pool_elements(c.seqlens, c.page_block_size, c.h_kv) > limit.kv_elements) {
    if (c.seqlens.size() > 1) {
      c.seqlens.pop_back();
    } else if (c.seqlens[0] > 0) {
      c.seqlens[0] /= 2;
    } else {
      break;  // the smallest pool: a few pages of the widest page size
    }
  }
  c.batch = static_cast<int>(c.seqlens.size());
  const int64_t rows = int64_t(c.batch) * c.s_q * c.h_q, keys = decode_row_keys(c);
  if (keys > limit.reference_row_keys) {
    fc.check_rows = std::clamp<int64_t>(rows * limit.reference_row_keys / keys, 64, rows);
    if (fc.check_rows == rows) fc.check_rows = 0;
  }
  return fc;
}

testing::Workload make_fuzz_workload(const FuzzCase& c) {
  testing::Workload w = testing::make_workload(c.config);
  w.softmax_scale = c.softmax_scale;
  return w;
}

std::string check_fuzz_output(const FuzzCase& fc, const testing::Workload& w, const void* out, const float* lse) {
  const auto& c = w.config;
  // Exact invariants on every row; the float64 reference then on all or a sample of rows.
  for (int i = 0; i < c.batch; ++i) {
    const int L = std::max(w.seqlens[i], 0);
    for (int t = 0; t < c.s_q; ++t) {
      const int visible = c.causal && c.s_q > 1 ? std::max(0, L - c.s_q + t + 1) : L;
      for (int h = 0; h < c.h_q; ++h) {
        const int64_t row = (int64_t(i) * c.s_q + t) * c.h_q + h;
        std::ostringstream where;
        where << "(b=" << i << ", t=" << t << ", h=" << h << ", L=" << L << ", visible=" << visible << ")";
        for (int e = 0; e < kHeadDimV; ++e) {
          const float v = testing::load_as_float(c.dtype, out, row * kHeadDimV + e);
          if (visible == 0 ? v != 0.0f : !std::isfinite(v)) {
            std::ostringstream s;
            s << "out" << where.str() << "[" << e << "] = " << v << ", expected "
              << (visible == 0 ? "exactly 0 (no visible key)" : "a finite value");
            return s.str();
          }
        }
        const float l = lse[(int64_t(i) * c.h_q + h) * c.s_q + t];
        if (visible == 0 ? !(std::isinf(l) && l > 0) : !std::isfinite(l)) {
          std::ostringstream s;
          s << "lse" << where.str() << " = " << l << ", expected "
            << (visible == 0 ? "+inf (no visible key)" : "finite");
          return s.str();
        }
      }
    }
  }
  const testing::CheckResult r = testing::check_against_reference(w, out, lse, fc.check_rows, fc.seed);
  if (r.ok) return "";
  std::ostringstream s;
  s << r.first_failure << " (rows checked " << r.rows_checked << ", max abs err " << r.max_abs_err << ", cos diff "
    << r.cos_diff << ", max lse err " << r.max_lse_err << ")";
  return s.str();
}

void run_fuzz(FuzzTarget target, int default_cases, const std::string& executable, const std::string& test,
              const std::function<std::string(const FuzzCase&)>& run_case, int parallel_cases) {
  auto env = [](const char* name) -> const char* {
    const char* v = std::getenv(name);
    return v != nullptr && v[0] != '\0' ? v : nullptr;
  };
  uint64_t first = 1;
  int64_t count = default_cases;
  if (const char* v = env("FLASH_MLA_FUZZ_SEED")) {
    first = std::strtoull(v, nullptr, 10);
    count = 1;
  } else {
    if (const char* f = env("FLASH_MLA_FUZZ_FIRST_SEED")) first = std::strtoull(f, nullptr, 10);
    if (const char* n = env("FLASH_MLA_FUZZ_CASES")) count = std::strtoll(n, nullptr, 10);
  }
  constexpr int kReported = 10;  // failures printed in full; the rest are counted
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::string> failure(static_cast<size_t>(std::max<int64_t>(count, 0)));
  std::atomic<int64_t> next{0}, rows{0}, sampled{0};
  auto work = [&] {
    for (int64_t k = next.fetch_add(1); k < count; k = next.fetch_add(1)) {
      const FuzzCase c = make_fuzz_case(first + static_cast<uint64_t>(k), target);
      try {
        failure[k] = run_case(c);
      } catch (const std::exception& e) {
        failure[k] = std::string("threw: ") + e.what();
      }
      rows += int64_t(c.config.batch) * c.config.s_q * c.config.h_q;
      sampled += c.check_rows != 0;
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < parallel_cases; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();

  int64_t failures = 0;
  for (int64_t k = 0; k < count; ++k) {
    if (failure[k].empty() || ++failures > kReported) continue;
    const uint64_t seed = first + static_cast<uint64_t>(k);
    ADD_FAILURE() << "FLASH_MLA_FUZZ_SEED=" << seed << " " << executable << " --gtest_filter=" << test
                  << "\n  case: " << make_fuzz_case(seed, target).describe() << "\n  failed: " << failure[k];
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "[ fuzz     ] " << test << ": " << count << " cases (seeds " << first << ".."
            << first + static_cast<uint64_t>(std::max<int64_t>(count, 1)) - 1 << "), " << failures << " failed, "
            << rows.load() << " output rows, " << sampled.load() << " checked on sampled rows, " << seconds << " s"
            << std::endl;
  EXPECT_EQ(failures, 0) << failures << " of " << count << " cases failed (the first " << kReported
                         << " are reported above)";
}

}  // namespace flash_mla::test
