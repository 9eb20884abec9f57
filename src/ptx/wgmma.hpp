// wgmma (PTX ISA 9.7.15 "Asynchronous Warpgroup Level Matrix Multiply-Accumulate"): the warpgroup
// matrix instructions the Hopper kernels use, with both operands in shared memory, fp32 accumulators.
// Generated shapes only: m64n64k16 (Q·Kᵀ, K-major B) and m64n256k16 (P·V, N-major B); the narrow FP8
// kernel's m64n16k16 and m64n32k16 (f16) and m64n32k32 (e4m3) with A in registers and a K-major B.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace flash_mla::ptx {

template <typename T>
inline constexpr bool kIsBf16 = std::is_same_v<T, __nv_bfloat16>;
template <typename T>
inline constexpr bool kIsFp16 = std::is_same_v<T, __half>;

// Swizzle modes of a shared-memory matrix descriptor (bits 62-63; 9.7.15.5.1.2.2).
enum class Swizzle : uint64_t { kNone = 0, k128B = 1, k64B = 2, k32B = 3 };

// Shared-memory matrix descriptor (9.7.15.5.1.2.2): start address, leading- and stride-dimension byte
// offsets (all >> 4), swizzle mode. Base offset 0: every tile starts on a 1024-byte boundary.
__device__ __forceinline__ uint64_t make_smem_desc(const void* smem, uint32_t leading_bytes, uint32_t stride_bytes,
                                                   Swizzle swizzle) {
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  return static_cast<uint64_t>((addr & 0x3FFFF) >> 4) | (static_cast<uint64_t>(leading_bytes >> 4) << 16) |
         (static_cast<uint64_t>(stride_bytes >> 4) << 32) | (static_cast<uint64_t>(swizzle) << 62);
}

// `desc` moved `bytes` (a multiple of 16) further into shared memory: a 32-bit add to its address field
// (bits 0-13, address >> 4). Shared memory ends below 256 KiB, so the field cannot carry into the
// leading byte offset, and the high word stays the caller's: one add per wgmma operand where
// make_smem_desc at each address costs five uniform instructions.
__device__ __forceinline__ uint64_t smem_desc_at(uint64_t desc, uint32_t bytes) {
  const uint32_t lo = static_cast<uint32_t>(desc) + (bytes >> 4);
  return (desc & 0xFFFFFFFF00000000ull) | lo;
}

// wgmma.fence (9.7.15.6.1): orders register/shared accesses before the next wgmma.mma_async.
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }

// wgmma.commit_group (9.7.15.6.2).
__device__ __forceinline__ void wgmma_commit_group() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}

// wgmma.wait_group (9.7.15.6.3): at most N groups still pending.
template <int N>
__device__ __forceinline__ void wgmma_wait_group() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

// Keeps the compiler from moving accumulator reads/writes across an asynchronous wgmma.
template <int N>
__device__ __forceinline__ void fence_registers(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

template <int N>
__device__ __forceinline__ void fence_registers(uint32_t (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+r"(r[i])::"memory");
}

// The asm of one shape, for an operand type string ("bf16" or "f16"): d[] accumulators, then desc_a,
// desc_b and the scale-d predicate.
#define FLASH_MLA_WGMMA_M64N64K16(TYPE)                                                        \
  asm volatile(                                                                          \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                                     \
      "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE " {"                      \
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31" \
      "}, %32, %33, p, 1, 1, 0, 0;\n}\n"                                           \
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]) \
      : "l"(desc_a), "l"(desc_b), "r"(scale_d))

#define FLASH_MLA_WGMMA_M64N256K16_TN(TYPE)                                                        \
  asm volatile(                                                                          \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"                                     \
      "wgmma.mma_async.sync.aligned.m64n256k16.f32." TYPE "." TYPE " {"                      \
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, " \
      "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, " \
      "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, " \
      "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, " \
      "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127" \
      "}, %128, %129, p, 1, 1, 0, 1;\n}\n"                                           \
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), \
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), \
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), \
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), \
        "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), \
        "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), \
        "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), \
        "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), \
        "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), \
        "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]),                                                     \
        "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]),                                                     \
        "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]),                                                     \
        "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]),                                                     \
        "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127]) \
      : "l"(desc_a), "l"(desc_b), "r"(scale_d))

// D[64x64] (+)= A[64x16] * B[16x64]; A and B K-major in shared memory (9.7.15.5).
template <typename T>
__device__ __forceinline__ void wgmma_m64n64k16_ss(float (&d)[32], uint64_t desc_a, uint64_t desc_b, int scale_d) {
  static_assert(kIsBf16<T> || kIsFp16<T>, "bf16 or fp16 operands");
  if constexpr (kIsBf16<T>) {
    FLASH_MLA_WGMMA_M64N64K16("bf16");
  } else {
    FLASH_MLA_WGMMA_M64N64K16("f16");
  }
}

// D[64x256] (+)= A[64x16] * B[16x256]; A K-major, B N-major (imm-trans-b = 1) in shared memory.
template <typename T>
__device__ __forceinline__ void wgmma_m64n256k16_ss_tn(float (&d)[128], uint64_t desc_a, uint64_t desc_b, int scale_d) {
  static_assert(kIsBf16<T> || kIsFp16<T>, "bf16 or fp16 operands");
  if constexpr (kIsBf16<T>) {
    FLASH_MLA_WGMMA_M64N256K16_TN("bf16");
  } else {
    FLASH_MLA_WGMMA_M64N256K16_TN("f16");
  }
}

// The asm of a D[64x32] wgmma with A in registers (d[16] accumulators, a[4], desc_b, scale_d): SHAPE
// and TYPES name the instruction, IMM its immediate operands after scale-d.
#define FLASH_MLA_WGMMA_M64N32_RS(SHAPE_TYPES, IMM)                                                           \
  asm volatile(                                                                                             \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %21, 0;\n"                                                           \
      "wgmma.mma_async.sync.aligned." SHAPE_TYPES " "                                                      \
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, "                           \
      "{%16, %17, %18, %19}, %20, p, " IMM ";\n}\n"                                                         \
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),      \
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]) \
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d))

// D[64x32] (+)= A[64x16] * B[16x32], f16; A in registers (the mma fragment: a[0] row lane/4, columns
// 2(lane%4) + {0, 1}; a[1] row + 8; a[2], a[3] the same rows at columns + 8), B K-major in shared
// memory. wgmma reads a[] asynchronously: keep it unchanged until wgmma_wait_group says the group is
// done (fence_registers(a) after the wait keeps the compiler from reusing the registers earlier).
__device__ __forceinline__ void wgmma_m64n32k16_rs_f16(float (&d)[16], const uint32_t (&a)[4], uint64_t desc_b,
                                                       int scale_d) {
  FLASH_MLA_WGMMA_M64N32_RS("m64n32k16.f32.f16.f16", "1, 1, 0");
}

// D[64x32] (+)= A[64x16] * B[16x32], bf16, A in registers: wgmma_m64n32k16_rs_f16 on bf16 operands (the same
// fragment and register rule).
__device__ __forceinline__ void wgmma_m64n32k16_rs_bf16(float (&d)[16], const uint32_t (&a)[4], uint64_t desc_b,
                                                        int scale_d) {
  FLASH_MLA_WGMMA_M64N32_RS("m64n32k16.f32.bf16.bf16", "1, 1, 0");
}

// D[64x16] (+)= A[64x16] * B[16x16], f16, A in registers: the m64n32k16 form above at half the width
// (its 16-row variant, d[8]); the same fragment and register rule.
#define FLASH_MLA_WGMMA_M64N16K16_RS(TYPES)                                                                   \
  asm volatile(                                                                                             \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %13, 0;\n"                                                           \
      "wgmma.mma_async.sync.aligned.m64n16k16.f32." TYPES " "                                               \
      "{%0, %1, %2, %3, %4, %5, %6, %7}, {%8, %9, %10, %11}, %12, p, 1, 1, 0;\n}\n"                           \
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])        \
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d))

__device__ __forceinline__ void wgmma_m64n16k16_rs_f16(float (&d)[8], const uint32_t (&a)[4], uint64_t desc_b,
                                                       int scale_d) {
  FLASH_MLA_WGMMA_M64N16K16_RS("f16.f16");
}

// D[64x16] (+)= A[64x16] * B[16x16], bf16, A in registers: wgmma_m64n16k16_rs_f16 on bf16 operands (the
// same fragment and register rule).
__device__ __forceinline__ void wgmma_m64n16k16_rs_bf16(float (&d)[8], const uint32_t (&a)[4], uint64_t desc_b,
                                                        int scale_d) {
  FLASH_MLA_WGMMA_M64N16K16_RS("bf16.bf16");
}

// 8-bit float types of wgmma's B operand.
enum class Fp8 { kE4M3, kE5M2 };

// D[64x32] (+)= A[64x32] * B[32x32], fp32 accumulators, A e4m3 in registers (the 8-bit mma fragment:
// a[0] row lane/4, columns 4(lane%4) + 0..3 as bytes low to high; a[1] row + 8; a[2], a[3] the same
// rows at columns + 16), B e4m3 or e5m2, K-major in shared memory (the only major-ness 8-bit types
// have). The tensor cores add each product group to the accumulator with fewer mantissa bits than
// fp32 (keep chains short and add their results in fp32). Same register rule as the f16 form above.
template <Fp8 kB>
__device__ __forceinline__ void wgmma_m64n32k32_rs_e4m3(float (&d)[16], const uint32_t (&a)[4], uint64_t desc_b,
                                                        int scale_d) {
  if constexpr (kB == Fp8::kE4M3) {
    FLASH_MLA_WGMMA_M64N32_RS("m64n32k32.f32.e4m3.e4m3", "1, 1");
  } else {
    FLASH_MLA_WGMMA_M64N32_RS("m64n32k32.f32.e4m3.e5m2", "1, 1");
  }
}

#undef FLASH_MLA_WGMMA_M64N64K16
#undef FLASH_MLA_WGMMA_M64N256K16_TN
#undef FLASH_MLA_WGMMA_M64N32_RS
#undef FLASH_MLA_WGMMA_M64N16K16_RS

}  // namespace flash_mla::ptx
