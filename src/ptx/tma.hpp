// Bulk tensor copies (PTX ISA 9.7.9.25 cp.async.bulk.tensor) and the proxy fence that orders ordinary
// shared-memory stores before the async proxy (TMA, wgmma) reads them (9.7.13.4 fence.proxy.async).
#pragma once

#include <cuda.h>

#include <cuda/ptx>

#include <cstdint>

namespace flash_mla::ptx {

// cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.
__device__ __forceinline__ void tma_load_4d(void* smem_dst, const CUtensorMap* map, uint64_t* bar, int32_t c0,
                                            int32_t c1, int32_t c2, int32_t c3) {
  const int32_t coords[4] = {c0, c1, c2, c3};
  cuda::ptx::cp_async_bulk_tensor(cuda::ptx::space_cluster, cuda::ptx::space_global, smem_dst, map, coords, bar);
}

// prefetch.tensormap (9.7.9.26): pulls the descriptor into the cache before the first copy.
__device__ __forceinline__ void tma_prefetch_descriptor(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

// fence.proxy.async.shared::cta.
__device__ __forceinline__ void fence_proxy_async_shared() { cuda::ptx::fence_proxy_async(cuda::ptx::space_shared); }

}  // namespace flash_mla::ptx
