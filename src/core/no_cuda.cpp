// CPU-only builds: the CUDA entry points of backends.hpp, answering "no GPU".
#include <algorithm>

#include "core/backends.hpp"

namespace flash_mla::detail {

int cuda_device_count_impl() { return 0; }

CudaDeviceInfo cuda_device_info_impl(int device_index) {
  throw Error("device", "expected a CUDA device, got cuda:" + std::to_string(device_index) +
              " in a build without the CUDA backend");
}

void copy_int32_to_host(Device device, void* /*stream*/, int32_t* dst, const int32_t* src, size_t rows, size_t cols,
                        int64_t stride) {
  if (device.type != DeviceType::kCPU) cuda_device_info_impl(device.index);
  for (size_t r = 0; r < rows; ++r) std::copy_n(src + r * stride, cols, dst + r * cols);
}

bool sm90_kernel_built() { return false; }

bool sm90_kernel_supports(KvCacheFormat, DType) { return false; }

}  // namespace flash_mla::detail
