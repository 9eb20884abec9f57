// CUDA runtime error handling and the current-device guard shared by the CUDA backends.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "flash_mla/flash_mla.hpp"

namespace flash_mla::detail {

inline void cuda_check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    cudaGetLastError();  // clears a non-sticky error (e.g. a bad launch configuration); sticky ones stay
    throw Error("cuda", std::string(what) + " failed: " + cudaGetErrorString(status));
  }
}

// Makes `device` current for the scope (tensors on cuda:1 run on cuda:1 whatever is current).
class CudaDeviceGuard {
 public:
  explicit CudaDeviceGuard(int device) {
    cuda_check(cudaGetDevice(&previous_), "cudaGetDevice");
    if (previous_ != device) cuda_check(cudaSetDevice(device), "cudaSetDevice");
  }
  ~CudaDeviceGuard() {
    int now = previous_;
    if (cudaGetDevice(&now) == cudaSuccess && now != previous_) cudaSetDevice(previous_);
  }
  CudaDeviceGuard(const CudaDeviceGuard&) = delete;
  CudaDeviceGuard& operator=(const CudaDeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

}  // namespace flash_mla::detail
