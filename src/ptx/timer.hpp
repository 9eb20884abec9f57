// The global nanosecond timer (PTX ISA 10.25 %globaltimer), comparable across SMs, unlike clock64:
// for timeline studies and the combine's wait limit.
#pragma once

#include <cstdint>

namespace flash_mla::ptx {

__device__ __forceinline__ uint64_t global_timer_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

}  // namespace flash_mla::ptx
