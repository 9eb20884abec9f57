// Constraints on the compiler alone (an empty asm statement; no instruction is emitted).
#pragma once

namespace flash_mla::ptx {

// Returns v through an empty asm that the compiler must assume produces a new value each time it
// runs: what is computed from the result stays where it is used rather than being hoisted out of an
// enclosing loop and held in registers across it.
__device__ __forceinline__ int opaque(int v) {
  asm volatile("" : "+r"(v));
  return v;
}

}  // namespace flash_mla::ptx
