// How a decode call is assembled from a testing::Workload and its buffers, on any device: the
// ScheduleArgs and DecodeArgs of flash-mla-bench's CPU and GPU runners and of the tests' CpuDecode and
// GpuDecode, filled in one place.
#pragma once

#include <cstddef>

#include "flash_mla/flash_mla.hpp"
#include "workload.hpp"

namespace flash_mla::testing {

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
  void* descale_q = nullptr;    // (1,) float32 holding w.descale_q: needed when w.uses_descale_q()
  void* descale_k = nullptr;    // (1,) float32 holding w.descale_k: needed when w.uses_descale_k()
};

// Query rows per KV head, s_q * h_q / h_kv: the schedule's num_q_tokens_per_head_k.
int q_rows_per_head_k(const Workload& w);

// num_sm_parts for this workload's rows on a device of `num_sms` SMs.
int decode_parts(const Workload& w, int num_sms);

// decode_workspace_bytes for this workload split into `parts` pieces.
size_t decode_workspace(const Workload& w, int parts);

// get_mla_metadata's arguments: seqlens in, metadata and num_splits out. num_sms 0: the device's
// default (the SM count `parts` was computed for when that is the default).
ScheduleArgs schedule_args(const Workload& w, Device device, const DecodeBuffers& b, int parts, void* stream,
                           int num_sms = 0);

// mla_decode's arguments over `b`, with the workload's scale and mask, and the descales the workload's
// formats use (none otherwise); workspace_bytes is exactly decode_workspace(w, parts).
DecodeArgs decode_args(const Workload& w, Device device, const DecodeBuffers& b, int parts, Backend backend,
                       void* stream);

}  // namespace flash_mla::testing
