// TensorView, Error and the small to_string helpers of the public API.
#include <sstream>

#include "flash_mla/flash_mla.hpp"

namespace flash_mla {

const char* to_string(DType dtype) {
  switch (dtype) {
    case DType::kBF16: return "bfloat16";
    case DType::kFP16: return "float16";
    case DType::kFP32: return "float32";
    case DType::kInt32: return "int32";
    case DType::kFP8E4M3: return "float8_e4m3fn";
    case DType::kUInt8: return "uint8";
  }
  return "unknown dtype";
}

const char* to_string(KvCacheFormat format) {
  switch (format) {
    case KvCacheFormat::kDense: return "dense";
    case KvCacheFormat::kFP8WithScale: return "FP8 with scale (656 bytes per token)";
    case KvCacheFormat::kFP8PerTensor: return "per-tensor FP8 (576 e4m3 channels)";
  }
  return "unknown format";
}

std::string to_string(Device device) {
  return device.type == DeviceType::kCPU ? std::string("cpu") : "cuda:" + std::to_string(device.index);
}

const char* to_string(Backend backend) {
  switch (backend) {
    case Backend::kAuto: return "auto";
    case Backend::kCPU: return "cpu";
    case Backend::kSM90: return "sm90";
  }
  return "unknown backend";
}

size_t element_size(DType dtype) {
  switch (dtype) {
    case DType::kBF16:
    case DType::kFP16: return 2;
    case DType::kFP32:
    case DType::kInt32: return 4;
    case DType::kFP8E4M3:
    case DType::kUInt8: return 1;
  }
  return 0;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int d = 0; d < ndim; ++d) n *= shape[d];
  return n;
}

bool TensorView::is_contiguous() const {
  int64_t expected = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    if (shape[d] != 1 && stride[d] != expected) return false;
    expected *= shape[d];
  }
  return true;
}

TensorView make_view(void* data, DType dtype, Device device, std::initializer_list<int64_t> shape) {
  TensorView v;
  v.data = data;
  v.dtype = dtype;
  v.device = device;
  if (shape.size() > static_cast<size_t>(kMaxDims)) {
    throw Error("shape", "expected at most 4 dimensions, got " + std::to_string(shape.size()));
  }
  v.ndim = static_cast<int>(shape.size());
  int d = 0;
  for (int64_t s : shape) v.shape[d++] = s;
  int64_t stride = 1;
  for (d = v.ndim - 1; d >= 0; --d) {
    v.stride[d] = stride;
    stride *= v.shape[d];
  }
  return v;
}

TensorView make_view(void* data, DType dtype, Device device, std::initializer_list<int64_t> shape,
                     std::initializer_list<int64_t> stride) {
  if (shape.size() != stride.size()) {
    throw Error("stride", "expected one stride per dimension, got " + std::to_string(stride.size()) +
                " strides for " + std::to_string(shape.size()) + " dimensions");
  }
  TensorView v = make_view(data, dtype, device, shape);
  int d = 0;
  for (int64_t s : stride) v.stride[d++] = s;
  return v;
}

Error::Error(std::string argument, const std::string& message)
    : std::runtime_error("flash_mla: " + argument + ": " + message), argument_(std::move(argument)) {}

}  // namespace flash_mla
