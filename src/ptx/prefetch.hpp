// Cache prefetch hints (PTX ISA 9.7.9.15 prefetch): nothing waits for them and nothing changes but
// where a line is cached.
#pragma once

namespace flash_mla::ptx {

// prefetch.global.L2: brings the 128-byte line holding `src` into L2. `src` must be an address the
// caller could load.
__device__ __forceinline__ void prefetch_l2(const void* src) { asm volatile("prefetch.global.L2 [%0];\n" ::"l"(src)); }

}  // namespace flash_mla::ptx
