// The flat parameter structs every backend consumes. Filled once, by core/validate.cpp, after every
// check has passed; backends trust them. Strides are in elements.
#pragma once

#include <cstddef>
#include <cstdint>

#include "flash_mla/flash_mla.hpp"

namespace flash_mla::detail {

// Metadata words a CUDA decode call uses as counters (flash_mla.hpp, "Split-KV schedule"): in the row of
// the part holding a split sequence's first piece, the pieces stored so far (over every query tile and
// KV head) and the combine CTAs that have seen them all. The schedule writes both as 0, and the combine
// puts them back to 0 once every one of its CTAs of the sequence has waited.
inline constexpr int kPiecesStoredWord = 5;
inline constexpr int kCombinesWaitedWord = 6;
static_assert(kCombinesWaitedWord == kPiecesStoredWord + 1, "sm90 launch.cu zeroes the two words as one span");
// The 64-token blocks of the part's pieces, which the schedule writes (schedule_part_blocks) and nothing
// changes during a call: the sm90 by-part kernel picks each CTA's consumer schedule by it.
inline constexpr int kPartBlocksWord = 7;

struct DecodeParams {
  DType dtype = DType::kBF16;  // out's dtype; also q's and k's for a kDense cache
  Device device{};
  void* stream = nullptr;

  int batch = 0;
  int s_q = 0;
  int h_q = 0;
  int h_kv = 0;
  int q_per_kv = 0;  // h_q / h_kv: query heads sharing one KV head
  int rows = 0;      // s_q * q_per_kv: query rows per (sequence, KV head); row r = t * q_per_kv + h
  int page_block_size = 0;
  int max_blocks_per_seq = 0;
  int64_t num_pages = 0;
  int num_sm_parts = 0;
  float softmax_scale = 0.0f;
  bool causal = false;

  // The FP8 seam: a backend that reads only kDense caches of `dtype` q can ignore these fields, and
  // validate.cpp asks it (sm90_kernel_supports, backends.hpp) before dispatching anything else to it.
  //   kDense         k row = 576 elements of `dtype`; q_dtype == dtype.
  //   kFP8WithScale  k row = kFP8WithScaleBytes (656) bytes: bytes [0, 512) e4m3 NoPE, [512, 528) four
  //                  float32 scales (channel c < 512 is fp8[c] * scale[c / 128]), [528, 656) 64 bf16
  //                  RoPE channels; q_dtype == kBF16, descales unused.
  //   kFP8PerTensor  k row = 576 e4m3 bytes, channel c is fp8[c] * descale_k[0]; q_dtype kBF16, or
  //                  kFP8E4M3 with q channel c = fp8[c] * descale_q[0].
  // The token and page strides of a 1-byte cache are in bytes and need not be multiples of the row.
  KvCacheFormat kv_format = KvCacheFormat::kDense;
  DType q_dtype = DType::kBF16;
  int64_t k_row_bytes = 0;             // bytes of one token of one KV head: 576 * element size or 656
  const float* descale_q = nullptr;    // (1,) on `device`; non-null exactly when q_dtype is kFP8E4M3
  const float* descale_k = nullptr;    // (1,) on `device`; non-null exactly for kFP8PerTensor

  const void* q = nullptr;  // [b, s_q, h_q, 576] of q_dtype
  int64_t q_batch_stride = 0, q_seq_stride = 0, q_head_stride = 0;
  const void* k = nullptr;  // [num_pages, page_block_size, h_kv, k_row_bytes / element size]
  int64_t k_page_stride = 0, k_token_stride = 0, k_head_stride = 0;
  const int32_t* block_table = nullptr;  // [b, max_blocks_per_seq]
  int64_t block_table_stride = 0;
  const int32_t* seqlens = nullptr;      // [b]
  const int32_t* metadata = nullptr;     // [num_sm_parts, 8]
  const int32_t* num_splits = nullptr;   // [b + 1]
  // Set by the CUDA launch (cuda/combine.hpp, combine_is_dependent): the combine runs as a programmatic
  // dependent of the decode kernel, so the decode kernel releases each split piece (metadata words above).
  bool release_pieces = false;

  void* out = nullptr;   // [b, s_q, h_q, 512] contiguous
  float* lse = nullptr;  // [b, h_q, s_q] contiguous
  // Split-KV scratch, slot-major: slot s (of b + num_sm_parts) holds h_kv * rows entries.
  float* lse_accum = nullptr;  // [slots, h_kv, rows]
  float* o_accum = nullptr;    // [slots, h_kv, rows, 512]
};

// One quantiser call over CPU tensors: x [lead..., channels] -> out [lead..., out_channels].
struct QuantizeParams {
  bool with_scale = false;  // FP8 with scale (out_channels 656) or per-tensor (out_channels = channels)
  DType x_dtype = DType::kBF16;
  const void* x = nullptr;
  uint8_t* out = nullptr;
  int lead_ndim = 0;  // leading dimensions (0..3), then the contiguous channel dimension
  int64_t lead_shape[kMaxDims - 1] = {1, 1, 1};
  int64_t x_stride[kMaxDims - 1] = {0, 0, 0};    // elements
  int64_t out_stride[kMaxDims - 1] = {0, 0, 0};  // bytes
  int64_t channels = 0;
  float descale = 1.0f;  // per-tensor only
};

struct ScheduleParams {
  Device device{};
  void* stream = nullptr;
  int batch = 0;
  int num_sm_parts = 0;
  int rows = 0;                      // query rows per (sequence, KV head): s_q * h_q / h_kv
  const int32_t* seqlens = nullptr;  // [b]
  int32_t* metadata = nullptr;       // [num_sm_parts, 8]
  int32_t* num_splits = nullptr;     // [b + 1]
};

// Bytes of the workspace's first array, lse_accum: `entries` = (b + num_sm_parts) * s_q * h_q floats,
// padded to 256 bytes so that o_accum (entries * 512 floats) starts aligned. The one description of
// the layout, for decode_workspace_bytes and make_decode_params.
inline size_t workspace_lse_bytes(int64_t entries) {
  return (static_cast<size_t>(entries) * sizeof(float) + 255) / 256 * 256;
}

// Fill the parameter structs; throw Error naming the argument on the first failed check.
DecodeParams make_decode_params(const DecodeArgs& args, Backend backend);
ScheduleParams make_schedule_params(const ScheduleArgs& args);
QuantizeParams make_quantize_params(const TensorView& x, const TensorView& out, bool with_scale, float descale);
// Optional value checks (synchronise on CUDA): block-table entries, seqlens and metadata.
void validate_decode_values(const DecodeParams& params);

}  // namespace flash_mla::detail
