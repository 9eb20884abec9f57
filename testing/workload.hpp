// Decode workloads and the independent float64 reference, shared by the tests and flash-mla-bench.
//
// A Workload owns host copies of every input: random q and KV cache (randn / 10 scale, never zeros),
// pages placed at random in a pool larger than needed, NaN-poisoned tails of last pages and unused
// pages, and garbage block-table entries past each sequence's last page (SPEC's memory-safety rules).
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
  DType dtype = DType::kBF16;
  int page_block_size = 64;
  bool causal = false;
  float softmax_scale = 0.0f;  // 0: 576^-0.5
  bool scatter_pages = true;   // random page placement (else sequential)
  bool poison = true;          // NaN tails/unused pages, garbage block-table tails
  int extra_blocks_per_seq = 2;  // block-table columns past the longest sequence
  uint64_t seed = 0;
};

// Sequence lengths: uniform `mean`, or ragged: normal(mean, mean / 2) clamped to [min_len, ...].
std::vector<int32_t> make_seqlens(int batch, int mean, bool ragged, int min_len, uint64_t seed);

struct Workload {
  WorkloadConfig config;
  float softmax_scale = 0.0f;
  int max_blocks_per_seq = 0;
  int64_t num_pages = 0;
  std::vector<uint8_t> q;        // [b, s_q, h_q, 576] of config.dtype, contiguous
  std::vector<uint8_t> k_cache;  // [num_pages, page, h_kv, 576] of config.dtype, contiguous
  std::vector<int32_t> block_table;  // [b, max_blocks_per_seq]
  std::vector<int32_t> seqlens;      // [b]

  size_t elem() const { return element_size(config.dtype); }
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
};

Workload make_workload(const WorkloadConfig& config);

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

// Reads element i of a buffer of `dtype` as float / writes float.
float load_as_float(DType dtype, const void* data, int64_t i);
void store_from_float(DType dtype, void* data, int64_t i, float v);

// The short dtype name of test names, traces and the benchmark's reports: bf16, fp16, fp32, int32
// (to_string(DType) gives the long one, bfloat16).
const char* dtype_short_name(DType dtype);

}  // namespace flash_mla::testing
