// Conversions (PTX ISA 9.7.9.21 cvt) beyond what cuda_fp8.h's intrinsics compile to well.
#pragma once

#include <cstdint>

namespace flash_mla::ptx {

// cvt.rn.f16x2.e4m3x2 of the word's upper two bytes: byte 2 as the low f16, byte 3 as the high one (the
// same conversion as cuda_fp8.h's of `word >> 16`). F2FP reads the upper half of its source register
// itself (R.H1), so this costs one instruction where the shifted form costs two.
__device__ __forceinline__ uint32_t e4m3x2_hi_to_f16x2(uint32_t word) {
  uint32_t out;
  asm("{\n.reg .b16 lo, hi;\nmov.b32 {lo, hi}, %1;\ncvt.rn.f16x2.e4m3x2 %0, hi;\n}\n" : "=r"(out) : "r"(word));
  return out;
}

}  // namespace flash_mla::ptx
