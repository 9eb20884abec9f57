// Named barriers (PTX ISA 9.7.13.1 bar.sync) and warpgroup register reallocation
// (9.7.19.5 setmaxnreg).
#pragma once

#include <cstdint>

namespace flash_mla::ptx {

// bar.sync id, count: wait until `count` threads (a multiple of 32) have arrived at barrier `id`.
__device__ __forceinline__ void named_barrier_sync(uint32_t id, uint32_t count) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}

// bar.arrive id, count: counts this thread's arrival at barrier `id` without waiting; the threads that
// wait there with bar.sync observe the memory accesses made before the arrival (9.7.13.1).
__device__ __forceinline__ void named_barrier_arrive(uint32_t id, uint32_t count) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(count) : "memory");
}

// setmaxnreg.inc / .dec.sync.aligned.u32: a warpgroup's register budget per thread.
template <uint32_t kRegs>
__device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}
template <uint32_t kRegs>
__device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}

}  // namespace flash_mla::ptx
