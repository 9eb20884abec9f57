// ScheduleArgs and DecodeArgs for a workload (decode_call.hpp).
#include "decode_call.hpp"

namespace flash_mla::testing {

int q_rows_per_head_k(const Workload& w) { return w.config.s_q * w.config.h_q / w.config.h_kv; }

int decode_parts(const Workload& w, int num_sms) { return num_sm_parts(num_sms, q_rows_per_head_k(w), w.config.h_kv); }

size_t decode_workspace(const Workload& w, int parts) {
  return decode_workspace_bytes(w.config.batch, w.config.s_q, w.config.h_q, parts);
}

ScheduleArgs schedule_args(const Workload& w, Device device, const DecodeBuffers& b, int parts, void* stream,
                           int num_sms) {
  const auto& c = w.config;
  ScheduleArgs a;
  a.cache_seqlens = w.seqlens_view(b.seqlens, device);
  a.num_q_tokens_per_head_k = q_rows_per_head_k(w);
  a.num_heads_k = c.h_kv;
  a.page_block_size = c.page_block_size;
  a.num_sms = num_sms;
  a.tile_scheduler_metadata = make_view(b.metadata, DType::kInt32, device, {parts, kMetadataWords});
  a.num_splits = make_view(b.num_splits, DType::kInt32, device, {c.batch + 1});
  a.stream = stream;
  return a;
}

DecodeArgs decode_args(const Workload& w, Device device, const DecodeBuffers& b, int parts, Backend backend,
                       void* stream) {
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
  if (w.uses_descale_q()) a.descale_q = w.descale_view(b.descale_q, device);
  if (w.uses_descale_k()) a.descale_k = w.descale_view(b.descale_k, device);
  a.workspace = b.workspace;
  a.workspace_bytes = decode_workspace(w, parts);
  a.stream = stream;
  a.backend = backend;
  return a;
}

}  // namespace flash_mla::testing
