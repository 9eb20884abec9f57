// Every check of every argument, in one place, for all backends and bindings. Messages read
// "flash_mla: <argument>: expected <what>, got <what>".
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "core/backends.hpp"
#include "core/params.hpp"
#include "core/schedule.hpp"

namespace flash_mla::detail {

namespace {

std::string shape_str(const TensorView& t) {
  std::ostringstream s;
  s << '[';
  for (int d = 0; d < t.ndim; ++d) s << (d ? ", " : "") << t.shape[d];
  s << ']';
  return s.str();
}

std::string shape_str(std::initializer_list<int64_t> shape) {
  std::ostringstream s;
  s << '[';
  bool first = true;
  for (int64_t v : shape) {
    s << (first ? "" : ", ") << v;
    first = false;
  }
  s << ']';
  return s.str();
}

[[noreturn]] void fail(const std::string& arg, const std::string& expected, const std::string& got) {
  throw Error(arg, "expected " + expected + ", got " + got);
}

void check_ndim(const TensorView& t, const char* arg, int ndim, const char* layout) {
  if (t.ndim != ndim) {
    fail(arg, std::to_string(ndim) + " dimensions " + layout, std::to_string(t.ndim) + " dimensions");
  }
  bool empty = false, overflow = false;
  int64_t count = 1;
  for (int d = 0; d < ndim; ++d) {
    if (t.shape[d] < 0) fail(arg, "non-negative sizes", "shape " + shape_str(t));
    if (t.stride[d] < 0) fail(arg, "non-negative strides", "stride " + std::to_string(t.stride[d]));
    empty = empty || t.shape[d] == 0;
    overflow = overflow || __builtin_mul_overflow(count, t.shape[d], &count);
  }
  // TensorView::numel would wrap, and a wrapped count of 0 would let a null pointer through.
  if (overflow && !empty) fail(arg, "an element count below 2^63", "shape " + shape_str(t));
}

// Sizes the backends hold in 32-bit ints (DecodeParams, ScheduleParams): larger ones would be
// truncated, not rejected, past this check.
void check_int32(int64_t value, const char* arg, const std::string& what) {
  if (value > std::numeric_limits<int32_t>::max()) fail(arg, what + " <= 2147483647", std::to_string(value));
}

void check_dtype(const TensorView& t, const char* arg, DType dtype) {
  if (t.dtype != dtype) fail(arg, std::string("dtype ") + to_string(dtype), to_string(t.dtype));
}

void check_shape(const TensorView& t, const char* arg, std::initializer_list<int64_t> shape) {
  int d = 0;
  for (int64_t v : shape) {
    if (t.shape[d++] != v) fail(arg, "shape " + shape_str(shape), shape_str(t));
  }
}

void check_contiguous(const TensorView& t, const char* arg) {
  if (!t.is_contiguous()) fail(arg, "a contiguous tensor", "shape " + shape_str(t) + " with other strides");
}

void check_last_dim_contiguous(const TensorView& t, const char* arg) {
  if (t.shape[t.ndim - 1] > 1 && t.stride[t.ndim - 1] != 1) {
    fail(arg, "last-dimension stride 1", std::to_string(t.stride[t.ndim - 1]));
  }
}

// `owner` names the tensor whose device the call runs on ("q", or "cache_seqlens" for the schedule).
void check_device(const TensorView& t, const char* arg, Device device, const char* owner = "q's") {
  if (t.device.type != device.type || t.device.index != device.index) {
    fail(arg, "a tensor on " + to_string(device) + " (" + owner + " device)", to_string(t.device));
  }
}

// Whether environment variable `name` is set to something other than "" or "0" (read on every call).
bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && v[0] != '\0' && std::string(v) != "0";
}

void check_data(const TensorView& t, const char* arg) {
  if (t.data == nullptr && t.numel() > 0) fail(arg, "a non-null data pointer", "nullptr");
  // Every backend reads and writes whole elements; on a GPU a misaligned one is a trap, not an error.
  const size_t es = std::max<size_t>(1, element_size(t.dtype));
  const uintptr_t misalignment = reinterpret_cast<uintptr_t>(t.data) % es;
  if (misalignment != 0) {
    fail(arg, "a data pointer aligned to its " + std::to_string(es) + "-byte elements",
         "an address ending in " + std::to_string(misalignment) + " mod " + std::to_string(es));
  }
}

// The Hopper kernel reads q and k_cache with 16-byte copies (TMA), so their base pointers and every
// stride must be 16-byte multiples.
void check_copy_engine_alignment(const TensorView& t, const char* arg) {
  const int64_t align_elems = 16 / static_cast<int64_t>(element_size(t.dtype));
  if (reinterpret_cast<uintptr_t>(t.data) % 16 != 0) {
    fail(arg, "a 16-byte aligned data pointer (sm90 backend)", "an address ending in " +
         std::to_string(reinterpret_cast<uintptr_t>(t.data) % 16) + " mod 16");
  }
  for (int d = 0; d < t.ndim - 1; ++d) {
    if (t.shape[d] > 1 && t.stride[d] % align_elems != 0) {
      fail(arg, "strides that are multiples of " + std::to_string(align_elems) +
           " elements (16 bytes, sm90 backend)", "stride " + std::to_string(t.stride[d]) +
           " in dimension " + std::to_string(d));
    }
  }
}

// A dequantisation factor: absent (a default TensorView), or a float32 tensor of shape (1,) on the
// call's device. Returns its data, or nullptr when absent; a required one must be given.
const float* check_descale(const TensorView& t, const char* arg, Device device, bool required, const char* role) {
  if (t.ndim == 0 && t.data == nullptr) {
    if (required) fail(arg, std::string("a float32 tensor of shape (1,), ") + role, "none");
    return nullptr;
  }
  check_ndim(t, arg, 1, "(1,)");
  check_device(t, arg, device);
  check_dtype(t, arg, DType::kFP32);
  check_shape(t, arg, {1});
  check_data(t, arg);
  return static_cast<const float*>(t.data);
}

}  // namespace

DecodeParams make_decode_params(const DecodeArgs& a, Backend backend) {
  const Device device = a.q.device;
  check_ndim(a.q, "q", 4, "[b, s_q, h_q, 576]");
  const int64_t b = a.q.shape[0], s_q = a.q.shape[1], h_q = a.q.shape[2];
  if (b < 1) fail("q", "batch size b >= 1", "b = " + std::to_string(b));
  if (s_q < 1) fail("q", "s_q >= 1", "s_q = " + std::to_string(s_q));
  if (h_q < 1) fail("q", "h_q >= 1", "h_q = " + std::to_string(h_q));
  if (a.q.shape[3] != kHeadDim) fail("q", "head dimension 576 (last dim)", std::to_string(a.q.shape[3]));
  check_int32(b, "q", "batch size b");
  check_int32(s_q * h_q, "q", "s_q * h_q");  // no overflow: check_ndim bounded b * s_q * h_q * 576
  const DType q_dtype = a.q.dtype;
  if (q_dtype != DType::kBF16 && q_dtype != DType::kFP16 && q_dtype != DType::kFP32 && q_dtype != DType::kFP8E4M3) {
    fail("q", "dtype bfloat16 or float16 (float8_e4m3fn with a per-tensor FP8 k_cache)", to_string(q_dtype));
  }
  if (q_dtype == DType::kFP32 && backend != Backend::kCPU) {
    fail("q", "dtype bfloat16 or float16 (float32 runs on the cpu backend only)", to_string(q_dtype));
  }
  check_last_dim_contiguous(a.q, "q");
  check_data(a.q, "q");

  check_ndim(a.k_cache, "k_cache", 4, "[num_blocks, page_block_size, h_kv, 576]");
  check_device(a.k_cache, "k_cache", device);
  const DType k_dtype = a.k_cache.dtype;
  const KvCacheFormat format = kv_cache_format(k_dtype, a.k_cache.shape[3]);
  switch (format) {
    case KvCacheFormat::kDense:
      if (q_dtype == DType::kFP8E4M3) {
        fail("q", std::string("dtype ") + to_string(k_dtype) + " (k_cache's; a float8_e4m3fn q needs a per-tensor "
             "FP8 k_cache)", to_string(q_dtype));
      }
      if (k_dtype != q_dtype) {
        fail("k_cache",
             std::string("dtype ") + to_string(q_dtype) + " (q's dtype) or an FP8 layout (uint8, float8_e4m3fn)",
             to_string(k_dtype));
      }
      break;
    case KvCacheFormat::kFP8WithScale:
      if (q_dtype != DType::kBF16) {
        fail("q", "dtype bfloat16 with a k_cache in the FP8-with-scale layout", to_string(q_dtype));
      }
      break;
    case KvCacheFormat::kFP8PerTensor:
      if (q_dtype != DType::kBF16 && q_dtype != DType::kFP8E4M3) {
        fail("q", "dtype bfloat16 or float8_e4m3fn with a per-tensor FP8 k_cache", to_string(q_dtype));
      }
      break;
  }
  const int64_t num_pages = a.k_cache.shape[0], page = a.k_cache.shape[1], h_kv = a.k_cache.shape[2];
  if (num_pages < 1) fail("k_cache", "at least one block (dim 0)", std::to_string(num_pages));
  if (page < 1) fail("k_cache", "page_block_size >= 1 (dim 1)", std::to_string(page));
  if (h_kv < 1) fail("k_cache", "h_kv >= 1 (dim 2)", std::to_string(h_kv));
  check_int32(page, "k_cache", "page_block_size (dim 1)");
  if (h_q % h_kv != 0) {
    fail("k_cache", "h_kv dividing h_q = " + std::to_string(h_q), "h_kv = " + std::to_string(h_kv));
  }
  check_last_dim_contiguous(a.k_cache, "k_cache");
  check_data(a.k_cache, "k_cache");

  if (a.head_dim_v != kHeadDimV) fail("head_dim_v", "512", std::to_string(a.head_dim_v));

  check_ndim(a.block_table, "block_table", 2, "[b, max_blocks_per_seq]");
  check_int32(a.block_table.shape[1], "block_table", "max_blocks_per_seq (dim 1)");
  check_device(a.block_table, "block_table", device);
  check_dtype(a.block_table, "block_table", DType::kInt32);
  if (a.block_table.shape[0] != b) {
    fail("block_table", "b = " + std::to_string(b) + " rows (q's batch)", shape_str(a.block_table));
  }
  check_last_dim_contiguous(a.block_table, "block_table");
  check_data(a.block_table, "block_table");

  check_ndim(a.cache_seqlens, "cache_seqlens", 1, "[b]");
  check_device(a.cache_seqlens, "cache_seqlens", device);
  check_dtype(a.cache_seqlens, "cache_seqlens", DType::kInt32);
  check_shape(a.cache_seqlens, "cache_seqlens", {b});
  check_contiguous(a.cache_seqlens, "cache_seqlens");
  check_data(a.cache_seqlens, "cache_seqlens");

  check_ndim(a.tile_scheduler_metadata, "tile_scheduler_metadata", 2, "[num_sm_parts, 8]");
  check_device(a.tile_scheduler_metadata, "tile_scheduler_metadata", device);
  check_dtype(a.tile_scheduler_metadata, "tile_scheduler_metadata", DType::kInt32);
  const int64_t parts = a.tile_scheduler_metadata.shape[0];
  if (parts < 1 || a.tile_scheduler_metadata.shape[1] != kMetadataWords) {
    fail("tile_scheduler_metadata", "shape [num_sm_parts >= 1, 8]", shape_str(a.tile_scheduler_metadata));
  }
  check_int32(parts, "tile_scheduler_metadata", "num_sm_parts (dim 0)");
  check_contiguous(a.tile_scheduler_metadata, "tile_scheduler_metadata");
  check_data(a.tile_scheduler_metadata, "tile_scheduler_metadata");

  check_ndim(a.num_splits, "num_splits", 1, "[b + 1]");
  check_device(a.num_splits, "num_splits", device);
  check_dtype(a.num_splits, "num_splits", DType::kInt32);
  if (a.num_splits.shape[0] != b + 1) {
    fail("num_splits", "shape [" + std::to_string(b + 1) + "] (b + 1; metadata of another batch?)",
         shape_str(a.num_splits));
  }
  check_contiguous(a.num_splits, "num_splits");
  check_data(a.num_splits, "num_splits");

  if (!std::isfinite(a.softmax_scale)) fail("softmax_scale", "a finite number", std::to_string(a.softmax_scale));

  check_ndim(a.out, "out", 4, "[b, s_q, h_q, 512]");
  check_device(a.out, "out", device);
  check_dtype(a.out, "out", decode_output_dtype(q_dtype, k_dtype));
  check_shape(a.out, "out", {b, s_q, h_q, kHeadDimV});
  check_contiguous(a.out, "out");
  check_data(a.out, "out");

  check_ndim(a.lse, "lse", 3, "[b, h_q, s_q]");
  check_device(a.lse, "lse", device);
  check_dtype(a.lse, "lse", DType::kFP32);
  check_shape(a.lse, "lse", {b, h_q, s_q});
  check_contiguous(a.lse, "lse");
  check_data(a.lse, "lse");

  const bool fp8_q = q_dtype == DType::kFP8E4M3, per_tensor = format == KvCacheFormat::kFP8PerTensor;
  const float* descale_q = check_descale(a.descale_q, "descale_q", device, fp8_q,
                                         "the dequantisation factor of a float8_e4m3fn q");
  const float* descale_k = check_descale(a.descale_k, "descale_k", device, per_tensor,
                                         "the dequantisation factor of a per-tensor FP8 k_cache");

  const size_t need = decode_workspace_bytes(b, s_q, h_q, parts);
  if (a.workspace_bytes < need) {
    fail("workspace_bytes", "at least " + std::to_string(need) + " (decode_workspace_bytes)",
         std::to_string(a.workspace_bytes));
  }
  if (a.workspace == nullptr) fail("workspace", "a non-null pointer", "nullptr");
  if (reinterpret_cast<uintptr_t>(a.workspace) % 256 != 0) {
    fail("workspace", "a 256-byte aligned pointer", "an unaligned pointer");
  }

  if (backend == Backend::kSM90) {
    if (!sm90_kernel_supports(format, q_dtype)) {
      fail("k_cache", "a bfloat16 or float16 cache (FP8 KV caches are not yet supported by the sm90 kernel)",
           std::string(to_string(format)) + " with a " + to_string(q_dtype) + " q");
    }
    check_copy_engine_alignment(a.q, "q");
    check_copy_engine_alignment(a.k_cache, "k_cache");
    // The combine stores four 16-bit outputs at a time (8 bytes).
    if (reinterpret_cast<uintptr_t>(a.out.data) % 8 != 0) {
      fail("out", "an 8-byte aligned data pointer (sm90 backend)", "an address ending in " +
           std::to_string(reinterpret_cast<uintptr_t>(a.out.data) % 8) + " mod 8");
    }
    // Launch-grid limits (gridDim.y and gridDim.z <= 65535): the combine kernel puts the s_q * h_q
    // (query row, KV head) pairs on gridDim.y (cuda/combine.cu), the decode kernel the schedule parts
    // on gridDim.z. Past them the launch itself fails, after the decode kernel has written out.
    constexpr int64_t kMaxGridYZ = 65535;
    if (s_q * h_q > kMaxGridYZ) {
      fail("q", "s_q * h_q <= 65535 (sm90 backend)", "s_q * h_q = " + std::to_string(s_q * h_q));
    }
    if (parts > kMaxGridYZ) {
      fail("tile_scheduler_metadata", "num_sm_parts <= 65535 (sm90 backend)", std::to_string(parts));
    }
  }

  DecodeParams p;
  p.dtype = decode_output_dtype(q_dtype, k_dtype);
  p.kv_format = format;
  p.q_dtype = q_dtype;
  p.k_row_bytes = a.k_cache.shape[3] * static_cast<int64_t>(element_size(k_dtype));
  p.descale_q = fp8_q ? descale_q : nullptr;
  p.descale_k = per_tensor ? descale_k : nullptr;
  p.device = device;
  p.stream = a.stream;
  p.batch = static_cast<int>(b);
  p.s_q = static_cast<int>(s_q);
  p.h_q = static_cast<int>(h_q);
  p.h_kv = static_cast<int>(h_kv);
  p.q_per_kv = static_cast<int>(h_q / h_kv);
  p.rows = static_cast<int>(s_q * (h_q / h_kv));
  p.page_block_size = static_cast<int>(page);
  p.max_blocks_per_seq = static_cast<int>(a.block_table.shape[1]);
  p.num_pages = num_pages;
  p.num_sm_parts = static_cast<int>(parts);
  p.softmax_scale = a.softmax_scale;
  p.causal = a.causal && s_q > 1;
  p.q = a.q.data;
  p.q_batch_stride = a.q.stride[0];
  p.q_seq_stride = a.q.stride[1];
  p.q_head_stride = a.q.stride[2];
  p.k = a.k_cache.data;
  p.k_page_stride = a.k_cache.stride[0];
  p.k_token_stride = a.k_cache.stride[1];
  p.k_head_stride = a.k_cache.stride[2];
  p.block_table = static_cast<const int32_t*>(a.block_table.data);
  p.block_table_stride = a.block_table.stride[0];
  p.seqlens = static_cast<const int32_t*>(a.cache_seqlens.data);
  p.metadata = static_cast<const int32_t*>(a.tile_scheduler_metadata.data);
  p.num_splits = static_cast<const int32_t*>(a.num_splits.data);
  p.out = a.out.data;
  p.lse = static_cast<float*>(a.lse.data);
  p.lse_accum = static_cast<float*>(a.workspace);
  p.o_accum = reinterpret_cast<float*>(static_cast<char*>(a.workspace) + workspace_lse_bytes((b + parts) * s_q * h_q));
  return p;
}

ScheduleParams make_schedule_params(const ScheduleArgs& a) {
  check_ndim(a.cache_seqlens, "cache_seqlens", 1, "[b]");
  check_dtype(a.cache_seqlens, "cache_seqlens", DType::kInt32);
  const int64_t b = a.cache_seqlens.shape[0];
  if (b < 1) fail("cache_seqlens", "batch size b >= 1", "b = " + std::to_string(b));
  check_int32(b, "cache_seqlens", "batch size b");
  check_contiguous(a.cache_seqlens, "cache_seqlens");
  check_data(a.cache_seqlens, "cache_seqlens");
  if (a.num_q_tokens_per_head_k < 1) {
    fail("num_q_tokens_per_head_k", ">= 1 (s_q * h_q / h_kv)", std::to_string(a.num_q_tokens_per_head_k));
  }
  if (a.num_heads_k < 1) fail("num_heads_k", ">= 1", std::to_string(a.num_heads_k));
  if (a.page_block_size < 1) fail("page_block_size", ">= 1", std::to_string(a.page_block_size));
  if (a.num_sms < 0) fail("num_sms", ">= 0 (0: the device's)", std::to_string(a.num_sms));
  const Device device = a.cache_seqlens.device;
  const int sms = a.num_sms > 0 ? a.num_sms : default_num_sms(device);
  const int parts = num_sm_parts(sms, a.num_q_tokens_per_head_k, a.num_heads_k);

  check_ndim(a.tile_scheduler_metadata, "tile_scheduler_metadata", 2, "[num_sm_parts, 8]");
  check_device(a.tile_scheduler_metadata, "tile_scheduler_metadata", device, "cache_seqlens'");
  check_dtype(a.tile_scheduler_metadata, "tile_scheduler_metadata", DType::kInt32);
  check_shape(a.tile_scheduler_metadata, "tile_scheduler_metadata", {parts, kMetadataWords});
  check_contiguous(a.tile_scheduler_metadata, "tile_scheduler_metadata");
  check_data(a.tile_scheduler_metadata, "tile_scheduler_metadata");

  check_ndim(a.num_splits, "num_splits", 1, "[b + 1]");
  check_device(a.num_splits, "num_splits", device, "cache_seqlens'");
  check_dtype(a.num_splits, "num_splits", DType::kInt32);
  check_shape(a.num_splits, "num_splits", {b + 1});
  check_contiguous(a.num_splits, "num_splits");
  check_data(a.num_splits, "num_splits");

  ScheduleParams p;
  p.device = device;
  p.stream = a.stream;
  p.batch = static_cast<int>(b);
  p.num_sm_parts = parts;
  p.rows = a.num_q_tokens_per_head_k;
  p.seqlens = static_cast<const int32_t*>(a.cache_seqlens.data);
  p.metadata = static_cast<int32_t*>(a.tile_scheduler_metadata.data);
  p.num_splits = static_cast<int32_t*>(a.num_splits.data);
  return p;
}

void validate_decode_values(const DecodeParams& p) {
  const size_t b = static_cast<size_t>(p.batch);
  std::vector<int32_t> seqlens(b), num_splits(b + 1);
  std::vector<int32_t> metadata(static_cast<size_t>(p.num_sm_parts) * kMetadataWords);
  std::vector<int32_t> table(b * static_cast<size_t>(p.max_blocks_per_seq));
  copy_int32_to_host(p.device, p.stream, seqlens.data(), p.seqlens, b, 1, 1);
  copy_int32_to_host(p.device, p.stream, num_splits.data(), p.num_splits, b + 1, 1, 1);
  copy_int32_to_host(p.device, p.stream, metadata.data(), p.metadata, metadata.size(), 1, 1);
  copy_int32_to_host(p.device, p.stream, table.data(), p.block_table, b, p.max_blocks_per_seq, p.block_table_stride);

  const int64_t capacity = static_cast<int64_t>(p.max_blocks_per_seq) * p.page_block_size;
  for (size_t i = 0; i < b; ++i) {
    if (seqlens[i] < 0 || seqlens[i] > capacity) {
      fail("cache_seqlens", "values in [0, max_blocks_per_seq * page_block_size = " +
           std::to_string(capacity) + "]", "cache_seqlens[" + std::to_string(i) + "] = " +
           std::to_string(seqlens[i]));
    }
    const int64_t used = (static_cast<int64_t>(seqlens[i]) + p.page_block_size - 1) / p.page_block_size;
    for (int64_t j = 0; j < used; ++j) {
      const int32_t page = table[i * p.max_blocks_per_seq + j];
      if (page < 0 || page >= p.num_pages) {
        fail("block_table", "entries of used pages in [0, num_blocks = " + std::to_string(p.num_pages) +
             ")", "block_table[" + std::to_string(i) + ", " + std::to_string(j) + "] = " +
             std::to_string(page));
      }
    }
  }
  // A NaN or infinite factor would turn every output of the call into NaN.
  const std::pair<const char*, const float*> descales[] = {{"descale_q", p.descale_q}, {"descale_k", p.descale_k}};
  for (const auto& [name, ptr] : descales) {
    if (ptr == nullptr) continue;
    int32_t bits = 0;
    copy_int32_to_host(p.device, p.stream, &bits, reinterpret_cast<const int32_t*>(ptr), 1, 1, 1);
    float value;
    std::memcpy(&value, &bits, sizeof value);
    if (!std::isfinite(value) || value <= 0.0f) {
      fail(name, "a finite value > 0", std::string(name) + "[0] = " + std::to_string(value));
    }
  }
  std::vector<int32_t> want_meta(metadata.size()), want_splits(b + 1);
  schedule_host(seqlens.data(), p.batch, p.num_sm_parts, p.rows, want_meta.data(), want_splits.data());
  if (want_meta != metadata || want_splits != num_splits) {
    fail("tile_scheduler_metadata", "the schedule of these cache_seqlens (get_mla_metadata)",
         "metadata computed for other sequence lengths, another batch or another num_q_tokens_per_head_k");
  }
}

QuantizeParams make_quantize_params(const TensorView& x, const TensorView& out, bool with_scale, float descale) {
  constexpr Device kHost{};
  if (x.ndim < 1 || x.ndim > kMaxDims) {
    fail("x", "1 to 4 dimensions [..., channels]", std::to_string(x.ndim) + " dimensions");
  }
  check_ndim(x, "x", x.ndim, "[..., channels]");
  check_device(x, "x", kHost, "the quantiser's");
  if (x.dtype != DType::kBF16 && x.dtype != DType::kFP16 && x.dtype != DType::kFP32) {
    fail("x", "dtype bfloat16, float16 or float32", to_string(x.dtype));
  }
  const int64_t channels = x.shape[x.ndim - 1];
  if (with_scale && channels != kHeadDim) {
    fail("x", "last dimension 576 (one token of one KV head)", std::to_string(channels));
  }
  check_last_dim_contiguous(x, "x");
  check_data(x, "x");

  const int64_t out_channels = with_scale ? kFP8WithScaleBytes : channels;
  check_ndim(out, "out", x.ndim, with_scale ? "(x's, with last dimension 656)" : "(x's)");
  check_device(out, "out", kHost, "the quantiser's");
  if (out.dtype != DType::kUInt8 && out.dtype != DType::kFP8E4M3) {
    fail("out", "dtype float8_e4m3fn or uint8", to_string(out.dtype));
  }
  for (int d = 0; d < x.ndim; ++d) {
    if (out.shape[d] != (d == x.ndim - 1 ? out_channels : x.shape[d])) {
      std::string want = "shape [";
      for (int e = 0; e < x.ndim; ++e) {
        want += (e ? ", " : "") + std::to_string(e == x.ndim - 1 ? out_channels : x.shape[e]);
      }
      fail("out", want + "]", shape_str(out));
    }
  }
  check_last_dim_contiguous(out, "out");
  check_data(out, "out");
  if (!with_scale && !(std::isfinite(descale) && descale > 0.0f)) {
    fail("descale", "a finite number > 0", std::to_string(descale));
  }

  QuantizeParams p;
  p.with_scale = with_scale;
  p.x_dtype = x.dtype;
  p.x = x.data;
  p.out = static_cast<uint8_t*>(out.data);
  p.lead_ndim = x.ndim - 1;
  for (int d = 0; d < p.lead_ndim; ++d) {
    p.lead_shape[d] = x.shape[d];
    p.x_stride[d] = x.stride[d];
    p.out_stride[d] = out.stride[d];
  }
  p.channels = channels;
  p.descale = descale;
  return p;
}

bool value_validation_requested(bool flag) { return flag || env_flag("FLASH_MLA_VALIDATE"); }

}  // namespace flash_mla::detail

namespace flash_mla {

KvCacheFormat kv_cache_format(DType k_cache_dtype, int64_t last_dim) {
  const std::string got = "last dimension " + std::to_string(last_dim);
  switch (k_cache_dtype) {
    case DType::kBF16:
    case DType::kFP16:
    case DType::kFP32:
      if (last_dim != kHeadDim) {
        detail::fail("k_cache", "head dimension 576 (last dim; 656 is the FP8-with-scale layout of a uint8 or "
                     "float8_e4m3fn cache)", std::to_string(last_dim));
      }
      return KvCacheFormat::kDense;
    case DType::kUInt8:
      if (last_dim != kFP8WithScaleBytes) {
        detail::fail("k_cache", "last dimension 656 for a uint8 cache (FP8 with scale: 512 e4m3 NoPE bytes, 4 "
                     "float32 scales, 64 bf16 RoPE channels; a per-tensor FP8 cache is float8_e4m3fn)", got);
      }
      return KvCacheFormat::kFP8WithScale;
    case DType::kFP8E4M3:
      if (last_dim == kFP8WithScaleBytes) return KvCacheFormat::kFP8WithScale;
      if (last_dim != kHeadDim) {
        detail::fail("k_cache", "last dimension 576 (per-tensor FP8) or 656 (FP8 with scale) for a "
                     "float8_e4m3fn cache", got);
      }
      return KvCacheFormat::kFP8PerTensor;
    case DType::kInt32: break;
  }
  detail::fail("k_cache", "dtype bfloat16, float16, float32, float8_e4m3fn or uint8", to_string(k_cache_dtype));
}

DType decode_output_dtype(DType q_dtype, DType k_cache_dtype) {
  return element_size(k_cache_dtype) == 1 ? DType::kBF16 : q_dtype;
}

}  // namespace flash_mla
