// Bulk tensor copies (PTX ISA 9.7.9.25 cp.async.bulk.tensor) and the proxy fence that orders ordinary
// shared-memory stores before the async proxy (TMA, wgmma) reads them (9.7.13.4 fence.proxy.async).
#pragma once

#include <cuda.h>

#include <cuda/ptx>

#include <cstdint>

namespace flash_mla::ptx {

// cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.L2::cache_hint
// (9.7.9.25): a 4-d box into shared memory, completing on `bar`, under an L2 cache policy (e.g. from
// l2_policy_evict_first()).
__device__ __forceinline__ void tma_load_4d(void* smem_dst, const CUtensorMap* map, uint64_t* bar, int32_t c0,
                                            int32_t c1, int32_t c2, int32_t c3, uint64_t policy) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.L2::cache_hint"
      " [%0], [%1, {%2, %3, %4, %5}], [%6], %7;\n" ::"r"(static_cast<uint32_t>(__cvta_generic_to_shared(smem_dst))),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3),
      "r"(static_cast<uint32_t>(__cvta_generic_to_shared(bar))), "l"(policy)
      : "memory");
}

// cp.async.bulk.tensor.4d.global.shared::cta.tile.bulk_group (9.7.9.25): a 4-d box from shared memory
// into the tensor, in this thread's current bulk async-group; coordinates outside the tensor are not
// written.
__device__ __forceinline__ void tma_store_4d(const CUtensorMap* map, const void* smem_src, int32_t c0, int32_t c1,
                                             int32_t c2, int32_t c3) {
  asm volatile("cp.async.bulk.tensor.4d.global.shared::cta.tile.bulk_group [%0, {%2, %3, %4, %5}], [%1];\n" ::"l"(
                   reinterpret_cast<uint64_t>(map)),
               "r"(static_cast<uint32_t>(__cvta_generic_to_shared(smem_src))), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
               : "memory");
}

// createpolicy.fractional.L2::evict_first.b64 (9.7.9.18): an L2 policy for data read once.
__device__ __forceinline__ uint64_t l2_policy_evict_first() {
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(policy));
  return policy;
}

// prefetch.tensormap (9.7.9.26): pulls the descriptor into the cache before the first copy.
__device__ __forceinline__ void tma_prefetch_descriptor(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

// cp.async.bulk.global.shared::cta.bulk_group (PTX ISA cp.async.bulk): `bytes` (a multiple of 16, both addresses
// 16-byte aligned) from shared to global memory, in this thread's current bulk async-group.
__device__ __forceinline__ void bulk_store(void* gmem_dst, const void* smem_src, uint32_t bytes) {
  cuda::ptx::cp_async_bulk(cuda::ptx::space_global, cuda::ptx::space_shared, gmem_dst, smem_src, bytes);
}

// cp.async.bulk.commit_group: closes this thread's bulk async-group.
__device__ __forceinline__ void bulk_commit_group() { cuda::ptx::cp_async_bulk_commit_group(); }

// cp.async.bulk.wait_group.read N: until at most N of this thread's bulk groups still read
// their shared-memory sources (the source may then be overwritten).
template <int N>
__device__ __forceinline__ void bulk_wait_group_read() {
  cuda::ptx::cp_async_bulk_wait_group_read(cuda::ptx::n32_t<N>{});
}

// cp.async.bulk.wait_group N: until at most N of this thread's bulk groups are still pending, their writes
// performed (wait_group.read only waits for their shared-memory reads).
template <int N>
__device__ __forceinline__ void bulk_wait_group() {
  cuda::ptx::cp_async_bulk_wait_group(cuda::ptx::n32_t<N>{});
}

// cp.async.bulk.prefetch.L2.global: `bytes` (a multiple of 16, 16-byte aligned) of global
// memory into L2, without waiting.
__device__ __forceinline__ void bulk_prefetch_l2(const void* gmem, uint32_t bytes) {
  asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(reinterpret_cast<uint64_t>(gmem)), "r"(bytes)
               : "memory");
}

// fence.proxy.async.shared::cta.
__device__ __forceinline__ void fence_proxy_async_shared() { cuda::ptx::fence_proxy_async(cuda::ptx::space_shared); }

// fence.proxy.async.global: orders this thread's async-proxy global accesses (bulk copies it waited for)
// with its later generic ones.
__device__ __forceinline__ void fence_proxy_async_global() { cuda::ptx::fence_proxy_async(cuda::ptx::space_global); }

}  // namespace flash_mla::ptx
