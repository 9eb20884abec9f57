// Constraints on the compiler alone (an empty asm statement; no instruction is emitted).
#pragma once

#include <cstdint>

namespace flash_mla::ptx {

// Returns v through an empty asm that the compiler must assume produces a new value each time it
// runs: what is computed from the result stays where it is used rather than being hoisted out of an
// enclosing loop and held in registers across it.
__device__ __forceinline__ int opaque(int v) {
  asm volatile("" : "+r"(v));
  return v;
}

// The same for a shared-memory descriptor's low word, the other way round: computed once before a loop, it
// cannot be recomputed inside it from what it was made of (the compiler rematerialised the address chain,
// ~10 instructions, in every block), so it stays in a register.
__device__ __forceinline__ uint64_t opaque_low(uint64_t v) {
  const auto lo = static_cast<uint32_t>(opaque(static_cast<int>(static_cast<uint32_t>(v))));
  return (v & 0xFFFFFFFF00000000ull) | lo;
}

}  // namespace flash_mla::ptx
