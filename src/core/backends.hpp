// The seam between the core and the backends: what each backend provides. The core validates and
// fills the parameter structs (params.hpp); backends trust them.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/params.hpp"

namespace flash_mla::detail {

// cpu/decode_cpu.cpp: out, lse <- decode, split pieces and combine, on the calling thread's pool.
void decode_cpu(const DecodeParams& params);
// cpu/quantize_cpu.cpp: the FP8 quantisers, on the calling thread.
void quantize_cpu(const QuantizeParams& params);

// cuda/runtime.cu (stubs in core/no_cuda.cpp for CPU-only builds).
int cuda_device_count_impl();
CudaDeviceInfo cuda_device_info_impl(int device_index);
// Copies a [rows, cols] int32 matrix with row stride `stride` (elements) to dense host memory; on a
// GPU, ordered on `stream` and synchronised with it.
void copy_int32_to_host(Device device, void* stream, int32_t* dst, const int32_t* src, size_t rows, size_t cols,
                        int64_t stride);
// True when this build has a decode kernel for the device's architecture.
bool sm90_kernel_built();
// Whether the sm90 kernel reads caches of this format with a q of this dtype (validate.cpp rejects
// the others, naming k_cache, before anything runs). The seam where FP8 support is switched on.
bool sm90_kernel_supports(KvCacheFormat format, DType q_dtype);

#if defined(FLASH_MLA_WITH_CUDA)
// cuda/sm90/decode_dense: main kernel then combine, on params.stream, on params.device.
void decode_sm90(const DecodeParams& params);
#endif

bool value_validation_requested(bool flag);

}  // namespace flash_mla::detail
