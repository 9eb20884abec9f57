// How flash-mla-bench fills ScheduleArgs and DecodeArgs for a workload, on any device: one place for
// the CPU and the GPU runners.
#pragma once

#include <cstddef>

#include "flash_mla/flash_mla.hpp"
#include "workload.hpp"

namespace flash_mla::bench {

// Where one call's tensors live (all on one device).
struct DecodeBuffers {
  void* q = nullptr;            // [b, s_q, h_q, 576]
  void* k_cache = nullptr;      // [num_pages, page, h_kv, 576]
  void* block_table = nullptr;  // [b, max_blocks_per_seq] int32
  void* seqlens = nullptr;      // [b] int32
  void* metadata = nullptr;     // [parts, 8] int32
  void* num_splits = nullptr;   // [b + 1] int32
  void* out = nullptr;          // [b, s_q, h_q, 512]
  void* lse = nullptr;          // [b, h_q, s_q] float32
  void* workspace = nullptr;    // decode_workspace_bytes(b, s_q, h_q, parts), 256-byte aligned
};

// num_sm_parts for this workload's rows on a device of `num_sms` SMs.
inline int decode_parts(const testing::Workload& w, int num_sms) {
  const auto& c = w.config;
  return num_sm_parts(num_sms, c.s_q * c.h_q / c.h_kv, c.h_kv);
}

inline size_t decode_workspace(const testing::Workload& w, int parts) {
  return decode_workspace_bytes(w.config.batch, w.config.s_q, w.config.h_q, parts);
}

inline ScheduleArgs schedule_args(const testing::Workload& w, Device device, const DecodeBuffers& b, int parts,
                                  void* stream) {
  const auto& c = w.config;
  ScheduleArgs a;
  a.cache_seqlens = w.seqlens_view(b.seqlens, device);
  a.num_q_tokens_per_head_k = c.s_q * c.h_q / c.h_kv;
  a.num_heads_k = c.h_kv;
  a.page_block_size = c.page_block_size;
  a.num_sms = 0;
  a.tile_scheduler_metadata = make_view(b.metadata, DType::kInt32, device, {parts, kMetadataWords});
  a.num_splits = make_view(b.num_splits, DType::kInt32, device, {c.batch + 1});
  a.stream = stream;
  return a;
}

inline DecodeArgs decode_args(const testing::Workload& w, Device device, const DecodeBuffers& b, int parts,
                              Backend backend, void* stream) {
  const auto& c = w.config;
  DecodeArgs a;
  a.q = w.q_view(b.q, device);
  a.k_cache = w.k_cache_view(b.k_cache, device);
  a.block_table = w.block_table_view(b.block_table, device);
  a.cache_seqlens = w.seqlens_view(b.seqlens, device);
  a.tile_scheduler_metadata = make_view(b.metadata, DType::kInt32, device, {parts, kMetadataWords});
  a.num_splits = make_view(b.num_splits, DType::kInt32, device, {c.batch + 1});
  a.softmax_scale = w.softmax_scale;
  a.causal = c.causal;
  a.out = w.out_view(b.out, device);
  a.lse = w.lse_view(b.lse, device);
  a.workspace = b.workspace;
  a.workspace_bytes = decode_workspace(w, parts);
  a.stream = stream;
  a.backend = backend;
  return a;
}

}  // namespace flash_mla::bench
