#include "workload.hpp"

#include <algorithm>
#include <atomic>
#include <thread>
#include <cmath>
#include <limits>
#include <mutex>
#include <numeric>
#include <random>
#include <sstream>

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
  }
  return "?";
}

float load_as_float(DType dtype, const void* data, int64_t i) {
  switch (dtype) {
    case DType::kBF16: return bf16_to_float(static_cast<const uint16_t*>(data)[i]);
    case DType::kFP16: return fp16_to_float(static_cast<const uint16_t*>(data)[i]);
    case DType::kFP32: return static_cast<const float*>(data)[i];
    case DType::kInt32: return static_cast<float>(static_cast<const int32_t*>(data)[i]);
  }
  return 0.0f;
}

void store_from_float(DType dtype, void* data, int64_t i, float v) {
  switch (dtype) {
    case DType::kBF16: static_cast<uint16_t*>(data)[i] = float_to_bf16(v); break;
    case DType::kFP16: static_cast<uint16_t*>(data)[i] = float_to_fp16(v); break;
    case DType::kFP32: static_cast<float*>(data)[i] = v; break;
    case DType::kInt32: static_cast<int32_t*>(data)[i] = static_cast<int32_t>(v); break;
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

double Workload::bytes() const {
  const double tokens = std::accumulate(seqlens.begin(), seqlens.end(), 0.0);
  const double b = config.batch, rows = double(config.s_q) * config.h_q;
  return (tokens * config.h_kv * kHeadDim + b * rows * kHeadDim + b * rows * kHeadDimV) * double(elem());
}

double Workload::flops() const {
  const double tokens = std::accumulate(seqlens.begin(), seqlens.end(), 0.0);
  return 2.0 * config.s_q * config.h_q * (kHeadDim + kHeadDimV) * tokens;
}

TensorView Workload::q_view(void* data, Device device) const {
  return make_view(data, config.dtype, device, {config.batch, config.s_q, config.h_q, kHeadDim});
}
TensorView Workload::k_cache_view(void* data, Device device) const {
  return make_view(data, config.dtype, device, {num_pages, config.page_block_size, config.h_kv, kHeadDim});
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

Workload make_workload(const WorkloadConfig& c) {
  if (static_cast<int>(c.seqlens.size()) != c.batch) throw Error("seqlens", "expected one length per sequence");
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
  const size_t es = element_size(c.dtype);
  constexpr int64_t kChunk = 1 << 16;
  w.q.resize(static_cast<size_t>(w.q_elems()) * es);
  parallel_chunks((w.q_elems() + kChunk - 1) / kChunk, [&](int64_t chunk) {
    Normal normal(c.seed * 1000003 + uint64_t(chunk), 0.1f);
    for (int64_t i = chunk * kChunk; i < std::min(w.q_elems(), (chunk + 1) * kChunk); ++i) {
      store_from_float(c.dtype, w.q.data(), i, normal());
    }
  });

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

  // Real tokens get random values; page tails and unused pages get NaN when poisoned.
  const int64_t row = int64_t(c.h_kv) * kHeadDim;  // elements per token
  w.k_cache.resize(static_cast<size_t>(w.num_pages * page * row) * es);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  parallel_chunks(w.num_pages, [&](int64_t pg) {
    Normal normal(c.seed * 7919 + uint64_t(pg) * 104729 + 1, 0.1f);
    const int64_t base = pg * page * row;
    for (int64_t e = 0; e < page * row; ++e) {
      const bool real = e / row < valid_tokens[pg] || !c.poison;
      store_from_float(c.dtype, w.k_cache.data(), base + e, real ? normal() : nan);
    }
  });
  return w;
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
  std::vector<double> q(kHeadDim), s(visible);
  for (int d = 0; d < kHeadDim; ++d) q[d] = load_as_float(c.dtype, w.q.data(), q_off + d);
  auto k_row = [&](int j) {
    const int32_t page = w.block_table[size_t(req) * w.max_blocks_per_seq + j / c.page_block_size];
    return ((int64_t(page) * c.page_block_size + j % c.page_block_size) * c.h_kv + kv) * kHeadDim;
  };
  double m = -std::numeric_limits<double>::infinity();
  for (int j = 0; j < visible; ++j) {
    const int64_t k_off = k_row(j);
    double dot = 0.0;
    for (int d = 0; d < kHeadDim; ++d) dot += q[d] * load_as_float(c.dtype, w.k_cache.data(), k_off + d);
    s[j] = dot * double(w.softmax_scale);
    m = std::max(m, s[j]);
  }
  double sum = 0.0;
  for (int j = 0; j < visible; ++j) sum += std::exp(s[j] - m);
  for (int j = 0; j < visible; ++j) {
    const double p = std::exp(s[j] - m) / sum;
    const int64_t k_off = k_row(j);
    for (int d = 0; d < kHeadDimV; ++d) out[d] += p * load_as_float(c.dtype, w.k_cache.data(), k_off + d);
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
