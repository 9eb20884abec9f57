#include "test_support.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include "decode_call.hpp"
#include "flash_mla/half.hpp"

namespace flash_mla::test {

namespace {

uint8_t guard_byte(size_t i) { return static_cast<uint8_t>(0xA5u ^ (i * 31u)); }

constexpr Device kCpu{DeviceType::kCPU, 0};

}  // namespace

GuardedBuffer::GuardedBuffer(size_t bytes) : bytes_(bytes) {
  storage_.resize(2 * kGuardBytes + bytes + 256);
  for (size_t i = 0; i < storage_.size(); ++i) storage_[i] = guard_byte(i);
  const auto base = reinterpret_cast<uintptr_t>(storage_.data()) + kGuardBytes;
  offset_ = kGuardBytes + (256 - base % 256) % 256;
}

void GuardedBuffer::fill(uint8_t byte) { std::fill_n(storage_.begin() + offset_, bytes_, byte); }

bool GuardedBuffer::guards_intact() const {
  for (size_t i = 0; i < offset_; ++i) {
    if (storage_[i] != guard_byte(i)) return false;
  }
  for (size_t i = offset_ + bytes_; i < storage_.size(); ++i) {
    if (storage_[i] != guard_byte(i)) return false;
  }
  return true;
}

Schedule host_schedule(const std::vector<int32_t>& seqlens, int rows, int h_kv, int num_sms) {
  Schedule s;
  const int64_t b = static_cast<int64_t>(seqlens.size());
  s.parts = num_sm_parts(num_sms > 0 ? num_sms : default_num_sms(kCpu), rows, h_kv);
  s.metadata.assign(static_cast<size_t>(s.parts) * kMetadataWords, -7);
  s.num_splits.assign(static_cast<size_t>(b) + 1, -7);
  ScheduleArgs a;
  a.cache_seqlens = make_view(const_cast<int32_t*>(seqlens.data()), DType::kInt32, kCpu, {b});
  a.num_q_tokens_per_head_k = rows;
  a.num_heads_k = h_kv;
  a.num_sms = num_sms;
  a.tile_scheduler_metadata = make_view(s.metadata.data(), DType::kInt32, kCpu, {s.parts, kMetadataWords});
  a.num_splits = make_view(s.num_splits.data(), DType::kInt32, kCpu, {b + 1});
  get_mla_metadata(a);
  return s;
}

std::string ScheduleCase::describe() const {
  std::ostringstream s;
  s << "b=" << seqlens.size() << " rows=" << rows << " h_kv=" << h_kv << " num_sms=" << num_sms << " seqlens=[";
  for (size_t i = 0; i < seqlens.size() && i < 12; ++i) s << (i ? "," : "") << seqlens[i];
  s << (seqlens.size() > 12 ? ",...]" : "]");
  return s.str();
}

std::vector<ScheduleCase> schedule_cases(int count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto uniform = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  auto pick = [&](std::initializer_list<int> values) { return *(values.begin() + uniform(0, values.size() - 1)); };

  std::vector<ScheduleCase> cases;
  // Fixed edge cases first.
  cases.push_back({{0}, 1, 1, 132});
  cases.push_back({{1}, 1, 1, 132});
  cases.push_back({{INT32_MAX}, 1, 1, 132});
  cases.push_back({{INT32_MAX, 0, INT32_MAX}, 64, 1, 132});
  cases.push_back({std::vector<int32_t>(5000, 0), 128, 1, 132});
  cases.push_back({std::vector<int32_t>(5000, 1), 1, 1, 132});
  cases.push_back({std::vector<int32_t>(5000, INT32_MAX), 16, 1, 132});
  cases.push_back({std::vector<int32_t>(4096, 64), 128, 1, 1});
  cases.push_back({std::vector<int32_t>(7, 0), 1, 1, 1024});
  // Whole groups: 1000 groups of 5 (more groups than the device kernel's threads), one group of 5000
  // (like 4096 x 64 tokens on 1 SM above, a group the device kernel sums on a warp: more than 256
  // sequences), and a group cost exactly at T + kWholeGroupSlack (21 = 13 + 8) and one past it (23 > 14 + 8).
  cases.push_back({std::vector<int32_t>(5000, 100), 1, 1, 1024});
  cases.push_back({std::vector<int32_t>(5000, 100), 1, 1, 1});
  cases.push_back({{1024, 0}, 64, 1, 2});
  cases.push_back({{1152, 0}, 64, 1, 2});

  while (static_cast<int>(cases.size()) < count) {
    ScheduleCase c;
    const int b = pick({1, 1, 2, 3, 4, 5, 8, 13, 31, 64, 100, 132, 133, 257, 1000, 4096, 5000});
    c.seqlens.resize(b);
    const int kind = static_cast<int>(uniform(0, 7));
    const int64_t common = uniform(1, 2000);
    for (int i = 0; i < b; ++i) {
      int64_t len = 0;
      switch (kind) {
        case 0: len = uniform(0, 200); break;                                  // short
        case 1: len = uniform(0, 9) < 3 ? 0 : uniform(1, 5000); break;         // scattered zeros
        case 2: len = 0; break;                                                // all zero
        case 3: len = common; break;                                           // all equal
        case 4: len = std::max<int64_t>(0, 64 * uniform(0, 40) + uniform(-1, 1)); break;  // block edges
        case 5: len = uniform(0, 4) == 0 ? 0 : uniform(int64_t{1} << 30, INT32_MAX); break;  // huge
        case 6: len = uniform(0, 99) == 0 ? uniform(100000, 10000000) : uniform(0, 300); break;  // skewed
        default: len = 0; break;                                               // one long, rest zero
      }
      c.seqlens[i] = static_cast<int32_t>(len);
    }
    if (kind == 7) c.seqlens[uniform(0, b - 1)] = static_cast<int32_t>(uniform(1, 1 << 20));
    c.rows = pick({1, 2, 16, 63, 64, 65, 128, 256, 512});
    c.h_kv = pick({1, 1, 2, 3, 8});
    c.num_sms = pick({1, 2, 3, 7, 78, 114, 132, 132, 264, 1024});
    cases.push_back(std::move(c));
  }
  return cases;
}

std::vector<int32_t> ragged_seqlens(std::vector<int32_t> special, int batch, int max_len, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> len(1, max_len);
  special.resize(std::min<size_t>(special.size(), batch));
  while (static_cast<int>(special.size()) < batch) special.push_back(len(rng));
  std::shuffle(special.begin(), special.end(), rng);
  return special;
}

int visible_keys(const testing::Workload& w, int req, int t) {
  const int L = std::max(w.seqlens[req], 0);
  if (!w.config.causal || w.config.s_q == 1) return L;
  return std::max(0, L - w.config.s_q + t + 1);
}

CpuDecode::CpuDecode(testing::Workload& workload, int num_sms)
    : w(workload),
      schedule(host_schedule(w.seqlens, testing::q_rows_per_head_k(w), w.config.h_kv, num_sms)),
      out(static_cast<size_t>(w.out_elems()) * w.elem()),
      lse(static_cast<size_t>(w.lse_elems()) * sizeof(float)),
      workspace(testing::decode_workspace(w, schedule.parts)) {
  out.fill(0xff);
  lse.fill(0xff);
  workspace.fill(0x7f);
  testing::DecodeBuffers b;
  b.q = w.q.data();
  b.k_cache = w.k_cache.data();
  b.block_table = w.block_table.data();
  b.seqlens = w.seqlens.data();
  b.metadata = schedule.metadata.data();
  b.num_splits = schedule.num_splits.data();
  b.out = out.data();
  b.lse = lse.data();
  b.workspace = workspace.data();
  b.descale_q = &w.descale_q;
  b.descale_k = &w.descale_k;
  args = testing::decode_args(w, kCpu, b, schedule.parts, Backend::kAuto, nullptr);
}

testing::CheckResult CpuDecode::check(int64_t max_rows, uint64_t seed) const {
  return testing::check_against_reference(w, out.data(), static_cast<const float*>(lse.data()), max_rows, seed);
}

testing::Workload random_workload(int batch, int s_q, int h_q, int h_kv, std::vector<int32_t> lens, DType dtype,
                                  bool causal, uint64_t seed, int page, KvCacheFormat format, bool fp8_q) {
  testing::WorkloadConfig c;
  c.batch = batch;
  c.s_q = s_q;
  c.h_q = h_q;
  c.h_kv = h_kv;
  c.seqlens = std::move(lens);
  c.dtype = dtype;
  c.page_block_size = page;
  c.causal = causal;
  c.seed = seed;
  c.kv_format = format;
  c.fp8_q = fp8_q;
  return testing::make_workload(c);
}

testing::Workload fp8_workload(const FP8Variant& variant, int batch, int s_q, int h_q, int h_kv,
                               std::vector<int32_t> lens, bool causal, uint64_t seed, int page) {
  return random_workload(batch, s_q, h_q, h_kv, std::move(lens), DType::kBF16, causal, seed, page, variant.format,
                         variant.fp8_q);
}

void scale_query_head(testing::Workload& w, int head, float factor) {
  for (int64_t i = 0; i < w.q_elems(); ++i) {
    if ((i / kHeadDim) % w.config.h_q != head) continue;
    uint16_t bits;
    std::memcpy(&bits, w.q.data() + 2 * i, 2);
    bits = float_to_bf16(bf16_to_float(bits) * factor);
    std::memcpy(w.q.data() + 2 * i, &bits, 2);
  }
}

void rescale_fp8_cache(testing::Workload& w, int k) {
  const float factor = std::ldexp(1.0f, k);
  if (w.config.kv_format == KvCacheFormat::kFP8PerTensor) {
    w.descale_k *= factor;
  } else if (w.config.kv_format == KvCacheFormat::kFP8WithScale) {
    const int64_t row = w.k_row_bytes();
    for (int64_t r = 0; r < static_cast<int64_t>(w.k_cache.size()) / row; ++r) {
      uint8_t* token = w.k_cache.data() + r * row;
      for (int g = 0; g < kFP8NumScales; ++g) {
        float scale;
        std::memcpy(&scale, token + kFP8ScaleOffset + 4 * g, 4);
        scale *= factor;
        std::memcpy(token + kFP8ScaleOffset + 4 * g, &scale, 4);
      }
      for (int c = 0; c < kHeadDimRope; ++c) {
        uint16_t bits;
        std::memcpy(&bits, token + kFP8RopeOffset + 2 * c, 2);
        bits = float_to_bf16(bf16_to_float(bits) * factor);
        std::memcpy(token + kFP8RopeOffset + 2 * c, &bits, 2);
      }
    }
  } else {
    throw std::invalid_argument("rescale_fp8_cache: not an FP8 cache");
  }
  w.softmax_scale *= std::ldexp(1.0f, -k);
}

std::string scaled_mismatch(DType dtype, const void* base, const void* out, int64_t n, int k) {
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < n; ++i) {
    const float want = std::ldexp(testing::load_as_float(dtype, base, i), k);
    const float got = testing::load_as_float(dtype, out, i);
    if (got == want || (std::isnan(got) && std::isnan(want))) continue;
    if (bad++ == 0) first = i;
  }
  if (bad == 0) return "";
  std::ostringstream m;
  m << bad << " of " << n << " values are not 2^" << k << " times the original; first at " << first << ": "
    << testing::load_as_float(dtype, out, first) << " against " << testing::load_as_float(dtype, base, first);
  return m.str();
}

ScopedEnv::ScopedEnv(const char* name, const char* value) : name_(name) {
  if (const char* old = std::getenv(name)) old_ = std::make_unique<std::string>(old);
  if (value) {
    setenv(name, value, 1);
  } else {
    unsetenv(name);
  }
}

ScopedEnv::~ScopedEnv() {
  if (old_) {
    setenv(name_.c_str(), old_->c_str(), 1);
  } else {
    unsetenv(name_.c_str());
  }
}

}  // namespace flash_mla::test
