#include "workload.hpp"

#include <algorithm>
#include <atomic>
#include <thread>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <numeric>
#include <random>
#include <sstream>

#include "flash_mla/fp8.hpp"
#include "flash_mla/half.hpp"

namespace flash_mla::testing {

namespace {

// A small, fast normal generator (splitmix64 + Box-Muller): workloads of a few GB are filled in
// seconds, chunk by chunk in parallel, with the same values whatever the thread count.
class Normal {
 public:
  Normal(uint64_t seed, float sd) : state_(seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull), sd_(sd) {}
  float operator()() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = (double(next() >> 11) + 0.5) * 0x1.0p-53, u2 = double(next() >> 11) * 0x1.0p-53;
    const double r = std::sqrt(-2.0 * std::log(u1)) * sd_, a = 6.283185307179586 * u2;
    spare_ = float(r * std::sin(a));
    has_spare_ = true;
    return float(r * std::cos(a));
  }

 private:
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t state_;
  float sd_;
  float spare_ = 0.0f;
  bool has_spare_ = false;
};

constexpr Device kHost{};
constexpr int64_t kFillChunk = 1 << 16;  // elements of q filled per task

template <typename Fn>
void parallel_chunks(int64_t n, Fn&& fn) {
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(n, std::thread::hardware_concurrency()));
  std::atomic<int64_t> next{0};
  auto work = [&] {
    for (int64_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) fn(i);
  };
  std::vector<std::thread> pool;
  for (int64_t w = 1; w < workers; ++w) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
}

}  // namespace

const char* dtype_short_name(DType dtype) {
  switch (dtype) {
    case DType::kBF16: return "bf16";
    case DType::kFP16: return "fp16";
    case DType::kFP32: return "fp32";
    case DType::kInt32: return "int32";
    case DType::kFP8E4M3: return "fp8";
    case DType::kUInt8: return "uint8";
  }
  return "?";
}

const char* kv_format_short_name(KvCacheFormat format) {
  switch (format) {
    case KvCacheFormat::kDense: return "dense";
    case KvCacheFormat::kFP8WithScale: return "fp8";
    case KvCacheFormat::kFP8PerTensor: return "fp8-tensor";
  }
  return "?";
}

float load_as_float(DType dtype, const void* data, int64_t i) {
  switch (dtype) {
    case DType::kBF16: return bf16_to_float(static_cast<const uint16_t*>(data)[i]);
    case DType::kFP16: return fp16_to_float(static_cast<const uint16_t*>(data)[i]);
    case DType::kFP32: return static_cast<const float*>(data)[i];
    case DType::kInt32: return static_cast<float>(static_cast<const int32_t*>(data)[i]);
    case DType::kFP8E4M3: return fp8_e4m3_to_float(static_cast<const uint8_t*>(data)[i]);
    case DType::kUInt8: return static_cast<float>(static_cast<const uint8_t*>(data)[i]);
  }
  return 0.0f;
}

void store_from_float(DType dtype, void* data, int64_t i, float v) {
  switch (dtype) {
    case DType::kBF16: static_cast<uint16_t*>(data)[i] = float_to_bf16(v); break;
    case DType::kFP16: static_cast<uint16_t*>(data)[i] = float_to_fp16(v); break;
    case DType::kFP32: static_cast<float*>(data)[i] = v; break;
    case DType::kInt32: static_cast<int32_t*>(data)[i] = static_cast<int32_t>(v); break;
    case DType::kFP8E4M3: static_cast<uint8_t*>(data)[i] = float_to_fp8_e4m3(v); break;
    case DType::kUInt8: static_cast<uint8_t*>(data)[i] = static_cast<uint8_t>(v); break;
  }
}

std::vector<int32_t> make_seqlens(int batch, int mean, bool ragged, int min_len, uint64_t seed) {
  std::vector<int32_t> lens(batch, mean);
  if (!ragged) return lens;
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> dist(mean, mean / 2.0);
  for (auto& l : lens) l = std::max(min_len, static_cast<int32_t>(std::lround(dist(rng))));
  return lens;
}

std::vector<int32_t> uniform_random_seqlens(int batch, int lo, int hi, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> pick(lo, hi);
  std::vector<int32_t> lens(batch);
  for (auto& l : lens) l = pick(rng);
  return lens;
}

DType Workload::k_dtype() const {
  switch (config.kv_format) {
    case KvCacheFormat::kDense: return config.dtype;
    case KvCacheFormat::kFP8WithScale: return DType::kUInt8;
    case KvCacheFormat::kFP8PerTensor: return DType::kFP8E4M3;
  }
  return config.dtype;
}

double Workload::bytes() const {
  const double tokens = std::accumulate(seqlens.begin(), seqlens.end(), 0.0);
  const double b = config.batch, rows = double(config.s_q) * config.h_q;
  return tokens * config.h_kv * double(k_row_bytes()) + b * rows * kHeadDim * double(element_size(q_dtype())) +
         b * rows * kHeadDimV * double(elem());
}

double Workload::flops() const {
  const double tokens = std::accumulate(seqlens.begin(), seqlens.end(), 0.0);
  return 2.0 * config.s_q * config.h_q * (kHeadDim + kHeadDimV) * tokens;
}

TensorView Workload::q_view(void* data, Device device) const {
  return make_view(data, q_dtype(), device, {config.batch, config.s_q, config.h_q, kHeadDim});
}
TensorView Workload::k_cache_view(void* data, Device device) const {
  return make_view(data, k_dtype(), device, {num_pages, config.page_block_size, config.h_kv, k_last_dim()});
}
TensorView Workload::block_table_view(void* data, Device device) const {
  return make_view(data, DType::kInt32, device, {config.batch, max_blocks_per_seq});
}
TensorView Workload::seqlens_view(void* data, Device device) const {
  return make_view(data, DType::kInt32, device, {config.batch});
}
TensorView Workload::out_view(void* data, Device device) const {
  return make_view(data, config.dtype, device, {config.batch, config.s_q, config.h_q, kHeadDimV});
}
TensorView Workload::lse_view(void* data, Device device) const {
  return make_view(data, DType::kFP32, device, {config.batch, config.h_q, config.s_q});
}
TensorView Workload::descale_view(void* data, Device device) const {
  return make_view(data, DType::kFP32, device, {1});
}

void fill_queries(Workload& w, uint64_t seed) {
  const int64_t n = w.q_elems();
  w.q.resize(static_cast<size_t>(n) * element_size(w.q_dtype()));
  parallel_chunks((n + kFillChunk - 1) / kFillChunk, [&](int64_t chunk) {
    Normal normal(seed * 1000003 + uint64_t(chunk), w.config.value_sd);
    const int64_t begin = chunk * kFillChunk, count = std::min(n, begin + kFillChunk) - begin;
    if (!w.config.fp8_q) {
      for (int64_t i = begin; i < begin + count; ++i) store_from_float(w.config.dtype, w.q.data(), i, normal());
      return;
    }
    std::vector<float> x(static_cast<size_t>(count));
    for (float& v : x) v = normal();
    quantize_fp8_per_tensor(make_view(x.data(), DType::kFP32, kHost, {count}), w.descale_q,
                            make_view(w.q.data() + begin, DType::kFP8E4M3, kHost, {count}));
  });
}

namespace {

// What a poisoned token of an FP8 cache holds: NaN codes of both signs, and in the FP8-with-scale
// layout NaN scales and NaN RoPE channels.
void poison_fp8_row(KvCacheFormat format, uint8_t* row) {
  const int fp8_channels = format == KvCacheFormat::kFP8WithScale ? kHeadDimV : kHeadDim;
  for (int c = 0; c < fp8_channels; ++c) row[c] = c % 2 ? 0xFF : 0x7F;
  if (format != KvCacheFormat::kFP8WithScale) return;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int g = 0; g < kFP8NumScales; ++g) std::memcpy(row + kFP8ScaleOffset + 4 * g, &nan, sizeof nan);
  for (int c = 0; c < kHeadDimRope; ++c) {
    const uint16_t rope = c % 2 ? 0xFFC0 : 0x7FC0;
    std::memcpy(row + kFP8RopeOffset + 2 * c, &rope, sizeof rope);
  }
}

}  // namespace

Workload make_workload(const WorkloadConfig& c) {
  if (static_cast<int>(c.seqlens.size()) != c.batch) throw Error("seqlens", "expected one length per sequence");
  if (c.kv_format != KvCacheFormat::kDense && c.dtype != DType::kBF16) {
    throw Error("dtype", std::string("expected bf16 (q and out) with an FP8 cache, got ") + to_string(c.dtype));
  }
  if (c.fp8_q && c.kv_format != KvCacheFormat::kFP8PerTensor) {
    throw Error("fp8_q", "expected a per-tensor FP8 cache with an e4m3 q");
  }
  Workload w;
  w.config = c;
  w.seqlens = c.seqlens;
  w.softmax_scale = c.softmax_scale != 0.0f ? c.softmax_scale : 1.0f / std::sqrt(float(kHeadDim));
  const int page = c.page_block_size;
  int64_t used_pages = 0;
  int max_blocks = 1;
  for (int32_t l : w.seqlens) {
    const int blocks = (std::max(l, 0) + page - 1) / page;
    used_pages += blocks;
    max_blocks = std::max(max_blocks, blocks);
  }
  w.max_blocks_per_seq = max_blocks + c.extra_blocks_per_seq;
  // A pool with spare pages, so scattered placement leaves unused (poisoned) pages in between.
  w.num_pages = std::max<int64_t>(1, used_pages + used_pages / 8 + 2);

  std::mt19937_64 rng(c.seed * 0x9E3779B97F4A7C15ull + 12345);  // page placement and garbage
  // Per-tensor factors that put about 7 standard deviations at e4m3's 448; not powers of two, so the
  // decode's multiply by them is exercised.
  std::mt19937_64 scale_rng(c.seed * 0x9E3779B97F4A7C15ull + 777);
  std::uniform_real_distribution<float> spread(1.0f, 1.5f);
  const float seven_sd = 0.7f * (c.value_sd / 0.1f);
  if (w.uses_descale_q()) w.descale_q = seven_sd / kFP8E4M3Max * spread(scale_rng);
  if (w.uses_descale_k()) w.descale_k = seven_sd / kFP8E4M3Max * spread(scale_rng);
  fill_queries(w, c.seed);

  std::vector<int32_t> pages(w.num_pages);
  std::iota(pages.begin(), pages.end(), 0);
  if (c.scatter_pages) std::shuffle(pages.begin(), pages.end(), rng);
  w.block_table.assign(static_cast<size_t>(c.batch) * w.max_blocks_per_seq, 0);
  std::vector<int32_t> valid_tokens(w.num_pages, 0);  // tokens of each page that hold real data
  std::uniform_int_distribution<int> garbage_kind(0, 2);
  int64_t next = 0;
  for (int i = 0; i < c.batch; ++i) {
    const int32_t len = std::max(w.seqlens[i], 0);
    const int blocks = (len + page - 1) / page;
    int32_t* table = &w.block_table[static_cast<size_t>(i) * w.max_blocks_per_seq];
    for (int j = 0; j < blocks; ++j) {
      table[j] = pages[next++];
      valid_tokens[table[j]] = std::min(page, len - j * page);
    }
    for (int j = blocks; j < w.max_blocks_per_seq; ++j) {
      if (!c.poison) {
        table[j] = pages[j % w.num_pages];
        continue;
      }
      const int kind = garbage_kind(rng);  // what engines leave there: -1, a huge index, a stale page
      table[j] = kind == 0 ? -1 : kind == 1 ? 2147480000 : pages[(next + j) % w.num_pages];
    }
  }

  // Real tokens get random values; page tails and unused pages get NaN when poisoned. FP8 caches are
  // quantised from random floats by the library's quantisers, then poisoned token by token.
  const int64_t row_bytes = w.k_row_bytes(), page_bytes = page * c.h_kv * row_bytes;
  w.k_cache.resize(static_cast<size_t>(w.num_pages * page_bytes));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  parallel_chunks(w.num_pages, [&](int64_t pg) {
    Normal normal(c.seed * 7919 + uint64_t(pg) * 104729 + 1, c.value_sd);
    if (c.kv_format == KvCacheFormat::kDense) {
      const int64_t row = int64_t(c.h_kv) * kHeadDim;  // elements per token
      const int64_t base = pg * page * row;
      for (int64_t e = 0; e < page * row; ++e) {
        const bool real = e / row < valid_tokens[pg] || !c.poison;
        store_from_float(c.dtype, w.k_cache.data(), base + e, real ? normal() : nan);
      }
      return;
    }
    const int64_t rows = int64_t(page) * c.h_kv;  // token-head rows of the page
    std::vector<float> x(static_cast<size_t>(rows * kHeadDim));
    for (float& v : x) v = normal();
    uint8_t* dst = w.k_cache.data() + pg * page_bytes;
    const TensorView x_view = make_view(x.data(), DType::kFP32, kHost, {rows, kHeadDim});
    const TensorView out_view = make_view(dst, w.k_dtype(), kHost, {rows, w.k_last_dim()});
    if (c.kv_format == KvCacheFormat::kFP8WithScale) {
      quantize_fp8_with_scale(x_view, out_view);
    } else {
      quantize_fp8_per_tensor(x_view, w.descale_k, out_view);
    }
    if (!c.poison) return;
    for (int64_t r = int64_t(valid_tokens[pg]) * c.h_kv; r < rows; ++r) {
      poison_fp8_row(c.kv_format, dst + r * row_bytes);
    }
  });
  return w;
}

double q_value(const Workload& w, int64_t i) {
  if (w.config.fp8_q) return double(fp8_e4m3_to_float(w.q[static_cast<size_t>(i)])) * double(w.descale_q);
  return load_as_float(w.config.dtype, w.q.data(), i);
}

void kv_row(const Workload& w, int64_t page, int token, int kv, double* dst) {
  const auto& c = w.config;
  const int64_t row = (page * c.page_block_size + token) * c.h_kv + kv;  // token-head row of the cache
  const uint8_t* bytes = w.k_cache.data() + row * w.k_row_bytes();
  switch (c.kv_format) {
    case KvCacheFormat::kDense:
      for (int d = 0; d < kHeadDim; ++d) dst[d] = load_as_float(c.dtype, bytes, d);
      return;
    case KvCacheFormat::kFP8PerTensor:
      for (int d = 0; d < kHeadDim; ++d) dst[d] = double(fp8_e4m3_to_float(bytes[d])) * double(w.descale_k);
      return;
    case KvCacheFormat::kFP8WithScale:
      for (int d = 0; d < kHeadDimV; ++d) {
        float scale;
        std::memcpy(&scale, bytes + kFP8ScaleOffset + 4 * (d / kFP8ScaleGroup), sizeof scale);
        dst[d] = double(fp8_e4m3_to_float(bytes[d])) * double(scale);
      }
      for (int d = 0; d < kHeadDimRope; ++d) {
        uint16_t rope;
        std::memcpy(&rope, bytes + kFP8RopeOffset + 2 * d, sizeof rope);
        dst[kHeadDimV + d] = bf16_to_float(rope);
      }
      return;
  }
}

void reference_row(const Workload& w, int req, int t, int h, double* out, double* lse) {
  const auto& c = w.config;
  const int L = std::max(w.seqlens[req], 0);
  const int visible = c.causal && c.s_q > 1 ? std::max(0, L - c.s_q + t + 1) : L;
  std::fill(out, out + kHeadDimV, 0.0);
  if (visible == 0) {
    *lse = std::numeric_limits<double>::infinity();
    return;
  }
  const int kv = h / (c.h_q / c.h_kv);
  const int64_t q_off = ((int64_t(req) * c.s_q + t) * c.h_q + h) * kHeadDim;
  std::vector<double> q(kHeadDim), s(visible), k(kHeadDim);
  for (int d = 0; d < kHeadDim; ++d) q[d] = q_value(w, q_off + d);
  auto load_k = [&](int j) {  // k <- token j of the sequence, dequantised
    const int32_t page = w.block_table[size_t(req) * w.max_blocks_per_seq + j / c.page_block_size];
    kv_row(w, page, j % c.page_block_size, kv, k.data());
  };
  double m = -std::numeric_limits<double>::infinity();
  for (int j = 0; j < visible; ++j) {
    load_k(j);
    double dot = 0.0;
    for (int d = 0; d < kHeadDim; ++d) dot += q[d] * k[d];
    s[j] = dot * double(w.softmax_scale);
    m = std::max(m, s[j]);
  }
  double sum = 0.0;
  for (int j = 0; j < visible; ++j) sum += std::exp(s[j] - m);
  for (int j = 0; j < visible; ++j) {
    const double p = std::exp(s[j] - m) / sum;
    load_k(j);
    for (int d = 0; d < kHeadDimV; ++d) out[d] += p * k[d];
  }
  *lse = m + std::log(sum);
}

CheckResult check_against_reference(const Workload& w, const void* out, const float* lse, int64_t max_rows,
                                    uint64_t seed) {
  const auto& c = w.config;
  const int64_t total_rows = int64_t(c.batch) * c.s_q * c.h_q;
  std::vector<int64_t> rows;
  if (max_rows <= 0 || max_rows >= total_rows) {
    rows.resize(total_rows);
    std::iota(rows.begin(), rows.end(), 0);
  } else {
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<int64_t> pick(0, total_rows - 1);
    for (int64_t i = 0; i < max_rows; ++i) rows.push_back(pick(rng));
  }
  CheckResult r;
  double xy = 0.0, xx = 0.0, yy = 0.0;
  auto fail = [&](const std::string& what) {
    if (r.ok) r.first_failure = what;
    r.ok = false;
  };
  std::mutex mutex;
  parallel_chunks(static_cast<int64_t>(rows.size()), [&](int64_t index) {
    const int64_t row = rows[index];
    const int h = int(row % c.h_q), t = int((row / c.h_q) % c.s_q), req = int(row / (int64_t(c.h_q) * c.s_q));
    std::vector<double> ref(kHeadDimV);
    double ref_lse;
    reference_row(w, req, t, h, ref.data(), &ref_lse);
    std::ostringstream where;
    where << "(b=" << req << ", t=" << t << ", h=" << h << ", L=" << w.seqlens[req] << ")";
    std::vector<std::string> failures;
    double max_abs = 0.0, max_lse = 0.0, dxy = 0.0, dxx = 0.0, dyy = 0.0;
    for (int d = 0; d < kHeadDimV; ++d) {
      const double got = load_as_float(c.dtype, out, row * kHeadDimV + d);
      const double err = std::abs(got - ref[d]);
      if (!std::isfinite(got) || (err > 8e-4 && err > 2.01 / 128 * std::abs(ref[d]))) {
        std::ostringstream msg;
        msg << "out" << where.str() << "[" << d << "] = " << got << ", reference " << ref[d];
        failures.push_back(msg.str());
      }
      if (std::isfinite(got)) max_abs = std::max(max_abs, err);
      dxy += got * ref[d];
      dxx += got * got;
      dyy += ref[d] * ref[d];
    }
    const double got_lse = lse[(int64_t(req) * c.h_q + h) * c.s_q + t];
    if (std::isinf(ref_lse) || std::isnan(ref_lse)) {
      if (!(std::isinf(got_lse) && got_lse > 0)) {
        std::ostringstream msg;
        msg << "lse" << where.str() << " = " << got_lse << ", reference +inf (no visible key)";
        failures.push_back(msg.str());
      }
    } else {
      const double err = std::abs(got_lse - ref_lse);
      if (!std::isfinite(got_lse) || (err > 1e-6 && err > 8.01 / 65536 * std::abs(ref_lse))) {
        std::ostringstream msg;
        msg << "lse" << where.str() << " = " << got_lse << ", reference " << ref_lse;
        failures.push_back(msg.str());
      }
      if (std::isfinite(got_lse)) max_lse = err;
    }
    std::lock_guard<std::mutex> lock(mutex);
    ++r.rows_checked;
    r.max_abs_err = std::max(r.max_abs_err, max_abs);
    r.max_lse_err = std::max(r.max_lse_err, max_lse);
    xy += dxy;
    xx += dxx;
    yy += dyy;
    for (const auto& f : failures) fail(f);
  });
  const double denom = xx + yy;
  r.cos_diff = denom > 0 ? 1.0 - 2.0 * xy / denom : 0.0;
  if (r.cos_diff > 5e-6) fail("cosine difference " + std::to_string(r.cos_diff) + " > 5e-6");
  return r;
}

}  // namespace flash_mla::testing
