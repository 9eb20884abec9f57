// mbarrier (PTX ISA 9.7.13.15): the transaction barriers TMA copies complete on. Thin names over
// libcu++'s cuda::ptx wrappers.
#pragma once

#include <cuda/ptx>

#include <cstdint>

namespace flash_mla::ptx {

// mbarrier.init (9.7.13.15.9).
__device__ __forceinline__ void mbarrier_init(uint64_t* bar, uint32_t arrivals) {
  cuda::ptx::mbarrier_init(bar, arrivals);
}

// fence.mbarrier_init.release.cluster (9.7.13.4): makes initialised barriers visible to the async proxy.
__device__ __forceinline__ void fence_barrier_init() {
  cuda::ptx::fence_mbarrier_init(cuda::ptx::sem_release, cuda::ptx::scope_cluster);
}

// mbarrier.arrive.expect_tx (9.7.13.15.12): one arrival, and `bytes` more transaction bytes to come.
__device__ __forceinline__ void mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  cuda::ptx::mbarrier_arrive_expect_tx(cuda::ptx::sem_release, cuda::ptx::scope_cta, cuda::ptx::space_shared, bar,
                                       bytes);
}

// mbarrier.arrive (9.7.13.15.13).
__device__ __forceinline__ void mbarrier_arrive(uint64_t* bar) { cuda::ptx::mbarrier_arrive(bar); }

// mbarrier.try_wait.parity (9.7.13.15.16), spun until the phase with `parity` has completed.
__device__ __forceinline__ void mbarrier_wait(uint64_t* bar, uint32_t parity) {
  while (!cuda::ptx::mbarrier_try_wait_parity(bar, parity)) {
  }
}

// mbarrier.test_wait.parity (9.7.13.15.16): whether the phase with `parity` has completed, without
// waiting.
__device__ __forceinline__ bool mbarrier_test(uint64_t* bar, uint32_t parity) {
  return cuda::ptx::mbarrier_test_wait_parity(bar, parity);
}

}  // namespace flash_mla::ptx
