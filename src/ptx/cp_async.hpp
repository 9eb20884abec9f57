// Non-bulk asynchronous copies (PTX ISA 9.7.9.3 cp.async): 16-byte gathers into shared memory for
// pages too small for one TMA box per page to pay.
#pragma once

#include <cstdint>

namespace flash_mla::ptx {

// cp.async.cg.shared.global with src-size: copies `src_bytes` (0 or 16) bytes and zero-fills the rest
// of the 16, so src_bytes = 0 writes zeros without reading `src`.
__device__ __forceinline__ void cp_async_16_zfill(void* smem_dst, const void* src, uint32_t src_bytes) {
  const uint32_t dst = static_cast<uint32_t>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}

// cp.async.commit_group: closes the group of this thread's copies issued since the last commit.
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

// cp.async.wait_group N: waits until at most N of this thread's committed groups are still pending.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

}  // namespace flash_mla::ptx
