// Device queries and host copies for the CUDA build (the CPU-only build has core/no_cuda.cpp).
#include <algorithm>

#include "core/backends.hpp"
#include "cuda/cuda_check.hpp"

namespace flash_mla::detail {

int cuda_device_count_impl() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

CudaDeviceInfo cuda_device_info_impl(int device_index) {
  const int count = cuda_device_count_impl();
  if (device_index < 0 || device_index >= count) {
    throw Error("device", "expected a CUDA device index in [0, " + std::to_string(count) + "), got " +
                std::to_string(device_index));
  }
  cudaDeviceProp prop{};
  cuda_check(cudaGetDeviceProperties(&prop, device_index), "cudaGetDeviceProperties");
  return {prop.multiProcessorCount, prop.major, prop.minor, prop.name};
}

void copy_int32_to_host(Device device, int32_t* dst, const int32_t* src, size_t rows, size_t cols,
                        int64_t stride) {
  if (rows == 0 || cols == 0) return;
  if (device.type == DeviceType::kCPU) {
    for (size_t r = 0; r < rows; ++r) std::copy_n(src + r * stride, cols, dst + r * cols);
    return;
  }
  CudaDeviceGuard guard(device.index);
  cuda_check(cudaMemcpy2D(dst, cols * sizeof(int32_t), src, stride * sizeof(int32_t), cols * sizeof(int32_t),
                          rows, cudaMemcpyDeviceToHost),
             "cudaMemcpy2D (value validation)");
}

}  // namespace flash_mla::detail
