// The torch binding of flash_mla: registers the ops torch.ops.flash_mla.{get_mla_metadata,fwd_kvcache,
// quantize_fp8_with_scale,quantize_fp8_per_tensor}.
// It converts torch tensors to flash_mla::TensorView, allocates outputs and split-KV scratch with
// torch's allocator on the tensors' device (so CUDA-graph capture gets them from the graph's pool),
// passes torch's current CUDA stream, and calls the C++ API. No host synchronisation, no reads of
// device values: all checking is the core's (core/validate.cpp), whose messages name the argument.
//
// Only the LibTorch stable ABI is used (TORCH_TARGET_VERSION = 2.10, see python/CMakeLists.txt), so
// the module loads under every torch >= 2.10. Fake (meta) kernels are registered from Python
// (flash_mla/_ops.py). Tests: python/tests/.
#include <Python.h>

#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "flash_mla/flash_mla.hpp"

namespace {

using torch::headeronly::ScalarType;
using torch::stable::Tensor;

flash_mla::DType to_dtype(ScalarType type, const char* arg) {
  switch (type) {
    case ScalarType::BFloat16: return flash_mla::DType::kBF16;
    case ScalarType::Half: return flash_mla::DType::kFP16;
    case ScalarType::Float: return flash_mla::DType::kFP32;
    case ScalarType::Int: return flash_mla::DType::kInt32;
    case ScalarType::Float8_e4m3fn: return flash_mla::DType::kFP8E4M3;
    case ScalarType::Byte: return flash_mla::DType::kUInt8;
    default:
      throw flash_mla::Error(arg, std::string("expected dtype bfloat16, float16, float32, int32, float8_e4m3fn or "
                                              "uint8, got ") + torch::headeronly::toString(type));
  }
}

ScalarType to_scalar_type(flash_mla::DType dtype) {
  switch (dtype) {
    case flash_mla::DType::kBF16: return ScalarType::BFloat16;
    case flash_mla::DType::kFP16: return ScalarType::Half;
    case flash_mla::DType::kFP32: return ScalarType::Float;
    case flash_mla::DType::kInt32: return ScalarType::Int;
    case flash_mla::DType::kFP8E4M3: return ScalarType::Float8_e4m3fn;
    case flash_mla::DType::kUInt8: return ScalarType::Byte;
  }
  return ScalarType::Undefined;
}

flash_mla::Device to_device(const Tensor& t, const char* arg) {
  if (t.is_cpu()) return {flash_mla::DeviceType::kCPU, 0};
#if defined(FLASH_MLA_TORCH_CUDA)
  if (t.is_cuda()) return {flash_mla::DeviceType::kCUDA, t.get_device_index()};
  throw flash_mla::Error(arg, "expected a cpu or cuda tensor, got another device type");
#else
  throw flash_mla::Error(arg, "expected a cpu tensor (this flash_mla was built without CUDA support)");
#endif
}

flash_mla::TensorView to_view(const Tensor& t, const char* arg) {
  flash_mla::TensorView v;
  if (t.dim() > flash_mla::kMaxDims) {
    throw flash_mla::Error(arg, "expected at most 4 dimensions, got " + std::to_string(t.dim()));
  }
  v.data = t.data_ptr();
  v.dtype = to_dtype(t.scalar_type(), arg);
  v.device = to_device(t, arg);
  v.ndim = static_cast<int>(t.dim());
  for (int d = 0; d < v.ndim; ++d) {
    v.shape[d] = t.size(d);
    v.stride[d] = t.stride(d);
  }
  return v;
}

// An optional tensor argument (descale_q, descale_k): none is the default TensorView.
flash_mla::TensorView to_view(const std::optional<Tensor>& t, const char* arg) {
  return t.has_value() ? to_view(*t, arg) : flash_mla::TensorView{};
}

void* current_stream(const Tensor& t) {
#if defined(FLASH_MLA_TORCH_CUDA)
  if (t.is_cuda()) {
    void* stream = nullptr;
    TORCH_ERROR_CODE_CHECK(aoti_torch_get_current_cuda_stream(t.get_device_index(), &stream));
    return stream;
  }
#endif
  return nullptr;
}

// torch turns a std::exception into RuntimeError; the message keeps flash_mla's
// "flash_mla: <argument>: expected <x>, got <y>".
template <class F>
auto rethrow_as_runtime_error(F&& body) {
  try {
    return body();
  } catch (const flash_mla::Error& e) {
    throw std::runtime_error(e.what());
  }
}

// A schema int (64 bits) the C++ API takes as int: out of range, an error naming it, not a truncation.
int int_arg(int64_t value, const char* arg) {
  if (value < std::numeric_limits<int32_t>::min() || value > std::numeric_limits<int32_t>::max()) {
    throw flash_mla::Error(arg, "expected a 32-bit integer, got " + std::to_string(value));
  }
  return static_cast<int>(value);
}

std::tuple<Tensor, Tensor> get_mla_metadata(Tensor cache_seqlens, int64_t num_q_tokens_per_head_k,
                                            int64_t num_heads_k, std::optional<int64_t> num_sms) {
  return rethrow_as_runtime_error([&] {
    flash_mla::ScheduleArgs args;
    args.cache_seqlens = to_view(cache_seqlens, "cache_seqlens");
    args.num_q_tokens_per_head_k = int_arg(num_q_tokens_per_head_k, "num_q_tokens_per_head_k");
    args.num_heads_k = int_arg(num_heads_k, "num_heads_k");
    args.num_sms = int_arg(num_sms.value_or(0), "num_sms");
    // The outputs' shapes: num_sm_parts of the SM count the core will use (ScheduleArgs::num_sms).
    const int sms = args.num_sms > 0 ? args.num_sms : flash_mla::default_num_sms(args.cache_seqlens.device);
    const int64_t parts = flash_mla::num_sm_parts(sms, args.num_q_tokens_per_head_k, args.num_heads_k);
    const int64_t b = cache_seqlens.dim() == 1 ? cache_seqlens.size(0) : 0;
    const std::vector<int64_t> metadata_shape{parts, flash_mla::kMetadataWords}, splits_shape{b + 1};
    Tensor metadata = torch::stable::new_empty(cache_seqlens, metadata_shape, ScalarType::Int);
    Tensor num_splits = torch::stable::new_empty(cache_seqlens, splits_shape, ScalarType::Int);
    args.tile_scheduler_metadata = to_view(metadata, "tile_scheduler_metadata");
    args.num_splits = to_view(num_splits, "num_splits");
    args.stream = current_stream(cache_seqlens);
    flash_mla::get_mla_metadata(args);
    return std::make_tuple(metadata, num_splits);
  });
}

std::tuple<Tensor, Tensor> fwd_kvcache(Tensor q, Tensor k_cache, Tensor block_table, Tensor cache_seqlens,
                                       int64_t head_dim_v, Tensor tile_scheduler_metadata, Tensor num_splits,
                                       double softmax_scale, bool causal, std::optional<Tensor> descale_q,
                                       std::optional<Tensor> descale_k) {
  return rethrow_as_runtime_error([&] {
    flash_mla::DecodeArgs args;
    args.q = to_view(q, "q");
    args.k_cache = to_view(k_cache, "k_cache");
    args.block_table = to_view(block_table, "block_table");
    args.cache_seqlens = to_view(cache_seqlens, "cache_seqlens");
    args.head_dim_v = int_arg(head_dim_v, "head_dim_v");
    args.tile_scheduler_metadata = to_view(tile_scheduler_metadata, "tile_scheduler_metadata");
    args.num_splits = to_view(num_splits, "num_splits");
    args.softmax_scale = static_cast<float>(softmax_scale);
    args.causal = causal;
    args.descale_q = to_view(descale_q, "descale_q");
    args.descale_k = to_view(descale_k, "descale_k");
    // Shapes come from q (a view's unused dimensions read 0); the core rejects anything inconsistent,
    // head_dim_v != 512 included, before touching memory.
    const int64_t b = args.q.shape[0], s_q = args.q.shape[1], h_q = args.q.shape[2];
    const std::vector<int64_t> out_shape{b, s_q, h_q, flash_mla::kHeadDimV}, lse_shape{b, h_q, s_q};
    const ScalarType out_type = to_scalar_type(flash_mla::decode_output_dtype(args.q.dtype, args.k_cache.dtype));
    Tensor out = torch::stable::new_empty(q, out_shape, out_type);
    Tensor lse = torch::stable::new_empty(q, lse_shape, ScalarType::Float);
    args.out = to_view(out, "out");
    args.lse = to_view(lse, "lse");
    const int64_t parts = tile_scheduler_metadata.dim() > 0 ? tile_scheduler_metadata.size(0) : 0;
    const size_t workspace_bytes = flash_mla::decode_workspace_bytes(b, s_q, h_q, parts);
    // The core wants 256-byte aligned scratch; torch's CPU allocator guarantees only 64 bytes.
    constexpr size_t kAlign = 256;
    const std::vector<int64_t> workspace_shape{static_cast<int64_t>(workspace_bytes + kAlign - 1)};
    Tensor workspace = torch::stable::new_empty(q, workspace_shape, ScalarType::Byte);
    const uintptr_t base = reinterpret_cast<uintptr_t>(workspace.data_ptr());
    args.workspace = reinterpret_cast<void*>((base + kAlign - 1) / kAlign * kAlign);
    args.workspace_bytes = workspace_bytes;
    args.stream = current_stream(q);
    flash_mla::mla_decode(args);
    return std::make_tuple(out, lse);
  });
}

// The quantisers run on the host (CPU tensors); the core checks x and the output's shape.
Tensor quantize_fp8_with_scale(Tensor x) {
  return rethrow_as_runtime_error([&] {
    const flash_mla::TensorView xv = to_view(x, "x");
    std::vector<int64_t> shape(xv.shape, xv.shape + xv.ndim);
    if (!shape.empty()) shape.back() = flash_mla::kFP8WithScaleBytes;
    Tensor out = torch::stable::new_empty(x, shape, ScalarType::Byte);
    flash_mla::quantize_fp8_with_scale(xv, to_view(out, "out"));
    return out;
  });
}

Tensor quantize_fp8_per_tensor(Tensor x, double descale) {
  return rethrow_as_runtime_error([&] {
    const flash_mla::TensorView xv = to_view(x, "x");
    const std::vector<int64_t> shape(xv.shape, xv.shape + xv.ndim);
    Tensor out = torch::stable::new_empty(x, shape, ScalarType::Float8_e4m3fn);
    flash_mla::quantize_fp8_per_tensor(xv, static_cast<float>(descale), to_view(out, "out"));
    return out;
  });
}

}  // namespace

STABLE_TORCH_LIBRARY(flash_mla, m) {
  m.def("get_mla_metadata(Tensor cache_seqlens, int num_q_tokens_per_head_k, int num_heads_k, "
        "int? num_sms=None) -> (Tensor tile_scheduler_metadata, Tensor num_splits)");
  m.def("fwd_kvcache(Tensor q, Tensor k_cache, Tensor block_table, Tensor cache_seqlens, int head_dim_v, "
        "Tensor tile_scheduler_metadata, Tensor num_splits, float softmax_scale, bool causal, "
        "Tensor? descale_q=None, Tensor? descale_k=None) -> (Tensor out, Tensor lse)");
  m.def("quantize_fp8_with_scale(Tensor x) -> Tensor");
  m.def("quantize_fp8_per_tensor(Tensor x, float descale) -> Tensor");
}

STABLE_TORCH_LIBRARY_IMPL(flash_mla, CPU, m) {
  m.impl("get_mla_metadata", TORCH_BOX(&get_mla_metadata));
  m.impl("fwd_kvcache", TORCH_BOX(&fwd_kvcache));
  m.impl("quantize_fp8_with_scale", TORCH_BOX(&quantize_fp8_with_scale));
  m.impl("quantize_fp8_per_tensor", TORCH_BOX(&quantize_fp8_per_tensor));
}

#if defined(FLASH_MLA_TORCH_CUDA)
STABLE_TORCH_LIBRARY_IMPL(flash_mla, CUDA, m) {
  m.impl("get_mla_metadata", TORCH_BOX(&get_mla_metadata));
  m.impl("fwd_kvcache", TORCH_BOX(&fwd_kvcache));
}
#endif

// `import flash_mla._C` loads this file, which runs the registrations above. The module is empty.
PyMODINIT_FUNC PyInit__C(void) {
  static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr, nullptr, nullptr, nullptr,
                               nullptr};
  return PyModule_Create(&module);
}
