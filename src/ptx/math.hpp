// Special-function unit instructions (PTX ISA, floating-point instructions: ex2).
#pragma once

namespace flash_mla::ptx {

// 2^x by one MUFU.EX2 (ex2.approx.ftz.f32; -inf -> +0, NaN -> NaN): the instruction exp2f compiles
// to, without the range test and two multiplies per call (SASS) that exp2f adds to keep results below
// 2^-126 subnormal; here they flush to +0.
__device__ __forceinline__ float exp2_ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

}  // namespace flash_mla::ptx
