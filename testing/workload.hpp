// Decode workloads and the independent float64 reference, shared by the tests and flash-mla-bench.
//
// A Workload owns host copies of every input: random q and KV cache (normal(0, value_sd), 0.1 unless the
// config says otherwise; never zeros),
// pages placed at random in a pool larger than needed, NaN-poisoned tails of last pages and unused
// pages, and garbage block-table entries past each sequence's last page (SPEC's memory-safety rules).
// The cache may be in either FP8 format (SPEC.md, "FP8 KV cache"), filled by the library's quantisers;
// poisoned FP8 tokens hold NaN codes (0x7F / 0xFF), NaN scales and NaN RoPE channels. The reference
// then runs on the dequantised cache (and dequantised q), so the SPEC tolerances apply unchanged.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "flash_mla/flash_mla.hpp"

namespace flash_mla::testing {

struct WorkloadConfig {
  int batch = 1;
  int s_q = 1;
  int h_q = 16;
  int h_kv = 1;
  std::vector<int32_t> seqlens;  // [batch]
  DType dtype = DType::kBF16;  // q's and out's dtype (and the cache's, for a dense cache); bf16 with FP8
  KvCacheFormat kv_format = KvCacheFormat::kDense;
  bool fp8_q = false;  // q as float8_e4m3fn with descale_q (kFP8PerTensor only)
  int page_block_size = 64;
  bool causal = false;
  float softmax_scale = 0.0f;  // 0: 576^-0.5
  bool scatter_pages = true;   // random page placement (else sequential)
  bool poison = true;          // NaN tails/unused pages, garbage block-table tails
  int extra_blocks_per_seq = 2;  // block-table columns past the longest sequence
  uint64_t seed = 0;
  float value_sd = 0.1f;  // q's and the cache's values ~ normal(0, value_sd) (FP8: before quantisation)
};

// Sequence lengths: uniform `mean`, or ragged: normal(mean, mean / 2) clamped to [min_len, ...].
std::vector<int32_t> make_seqlens(int batch, int mean, bool ragged, int min_len, uint64_t seed);
// Sequence lengths drawn uniformly from [lo, hi], seeded.
std::vector<int32_t> uniform_random_seqlens(int batch, int lo, int hi, uint64_t seed);

struct Workload {
  WorkloadConfig config;
  float softmax_scale = 0.0f;
  int max_blocks_per_seq = 0;
  int64_t num_pages = 0;
  std::vector<uint8_t> q;        // [b, s_q, h_q, 576] of q_dtype(), contiguous
  std::vector<uint8_t> k_cache;  // [num_pages, page, h_kv, k_last_dim()] of k_dtype(), contiguous
  std::vector<int32_t> block_table;  // [b, max_blocks_per_seq]
  std::vector<int32_t> seqlens;      // [b]
  // Per-tensor dequantisation factors (used with fp8_q / kFP8PerTensor; 1 otherwise).
  float descale_q = 1.0f;
  float descale_k = 1.0f;

  size_t elem() const { return element_size(config.dtype); }  // out's element (q's and k's when dense)
  DType q_dtype() const { return config.fp8_q ? DType::kFP8E4M3 : config.dtype; }
  DType k_dtype() const;
  int64_t k_last_dim() const {
    return config.kv_format == KvCacheFormat::kFP8WithScale ? kFP8WithScaleBytes : kHeadDim;
  }
  int64_t k_row_bytes() const { return k_last_dim() * int64_t(element_size(k_dtype())); }  // one token, one head
  bool uses_descale_q() const { return config.fp8_q; }
  bool uses_descale_k() const { return config.kv_format == KvCacheFormat::kFP8PerTensor; }
  int64_t q_elems() const { return int64_t(config.batch) * config.s_q * config.h_q * kHeadDim; }
  int64_t out_elems() const { return int64_t(config.batch) * config.s_q * config.h_q * kHeadDimV; }
  int64_t lse_elems() const { return int64_t(config.batch) * config.h_q * config.s_q; }
  // Bytes and FLOPs of one call (PERF.md's counting convention).
  double bytes() const;
  double flops() const;

  // Views over the given buffers (which must have this workload's shapes).
  TensorView q_view(void* data, Device device) const;
  TensorView k_cache_view(void* data, Device device) const;
  TensorView block_table_view(void* data, Device device) const;
  TensorView seqlens_view(void* data, Device device) const;
  TensorView out_view(void* data, Device device) const;
  TensorView lse_view(void* data, Device device) const;
  TensorView descale_view(void* data, Device device) const;  // (1,) float32
};

Workload make_workload(const WorkloadConfig& config);

// Refills q ([b, s_q, h_q, 576] for the current config) with normal(0, value_sd) values drawn from `seed`,
// quantised with descale_q when config.fp8_q. make_workload calls it with config.seed.
void fill_queries(Workload& w, uint64_t seed);

// The values the decode must see, as SPEC.md defines them: element i of q (times descale_q for an
// e4m3 q), and token `token` of page `page`, KV head `kv`, dequantised: dst[0:576].
double q_value(const Workload& w, int64_t i);
void kv_row(const Workload& w, int64_t page, int token, int kv, double* dst);

// float64 reference of one output row (query token t, head h of sequence req): out[512] and lse.
// A row with no visible key gives out = 0, lse = +inf.
void reference_row(const Workload& w, int req, int t, int h, double* out, double* lse);

struct CheckResult {
  bool ok = true;
  int64_t rows_checked = 0;
  double max_abs_err = 0.0;   // over out
  double cos_diff = 0.0;      // 1 - cosine similarity over all checked out values
  double max_lse_err = 0.0;
  std::string first_failure;  // empty when ok
};

// Compares host copies of out ([b, s_q, h_q, 512] in the workload's dtype) and lse against the float64
// reference with SPEC.md's tolerances, on every row or on `max_rows` rows drawn at random (0: all).
CheckResult check_against_reference(const Workload& w, const void* out, const float* lse, int64_t max_rows = 0,
                                    uint64_t seed = 1);

// Reads element i of a buffer of `dtype` as float / writes float (e4m3: flash_mla/fp8.hpp's rounding).
float load_as_float(DType dtype, const void* data, int64_t i);
void store_from_float(DType dtype, void* data, int64_t i, float v);

// The short dtype name of test names, traces and the benchmark's reports: bf16, fp16, fp32, int32,
// fp8, uint8 (to_string(DType) gives the long one, bfloat16).
const char* dtype_short_name(DType dtype);
// The short name of a cache format, as flash-mla-bench's --kv takes it: dense, fp8, fp8-tensor.
const char* kv_format_short_name(KvCacheFormat format);

}  // namespace flash_mla::testing
