// Device queries and host copies for the CUDA build (the CPU-only build has core/no_cuda.cpp).
#include <algorithm>
#include <mutex>
#include <optional>
#include <vector>

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

// Queried once per device and cached: every decode call asks (backend selection, default SM count),
// and cudaGetDeviceProperties costs microseconds of host time.
CudaDeviceInfo cuda_device_info_impl(int device_index) {
  static const int count = cuda_device_count_impl();
  if (device_index < 0 || device_index >= count) {
    throw Error("device", "expected a CUDA device index in [0, " + std::to_string(count) + "), got " +
                std::to_string(device_index));
  }
  static std::mutex mutex;
  static std::vector<std::optional<CudaDeviceInfo>> cache(static_cast<size_t>(count));
  std::lock_guard<std::mutex> lock(mutex);
  auto& entry = cache[static_cast<size_t>(device_index)];
  if (!entry) {
    cudaDeviceProp prop{};
    cuda_check(cudaGetDeviceProperties(&prop, device_index), "cudaGetDeviceProperties");
    entry = CudaDeviceInfo{prop.multiProcessorCount, prop.major, prop.minor, prop.name};
  }
  return *entry;
}

void copy_int32_to_host(Device device, void* stream, int32_t* dst, const int32_t* src, size_t rows, size_t cols,
                        int64_t stride) {
  if (rows == 0 || cols == 0) return;
  if (device.type == DeviceType::kCPU) {
    for (size_t r = 0; r < rows; ++r) std::copy_n(src + r * stride, cols, dst + r * cols);
    return;
  }
  // On the caller's stream, so the copy sees what earlier work on it (get_mla_metadata) wrote, even
  // when that stream does not synchronise with the legacy default stream.
  CudaDeviceGuard guard(device.index);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  cuda_check(cudaMemcpy2DAsync(dst, cols * sizeof(int32_t), src, stride * sizeof(int32_t), cols * sizeof(int32_t),
                               rows, cudaMemcpyDeviceToHost, s),
             "cudaMemcpy2DAsync (value validation)");
  cuda_check(cudaStreamSynchronize(s), "cudaStreamSynchronize (value validation)");
}

}  // namespace flash_mla::detail
