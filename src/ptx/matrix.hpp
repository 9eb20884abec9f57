// Warp-wide 8x8 matrix loads and stores (PTX ISA, data movement instructions: ldmatrix, stmatrix), in
// the fragment layout of mma and of wgmma's accumulators.
#pragma once

#include <cstdint>

namespace flash_mla::ptx {

// Four 8x8 matrices of 16-bit values: r[j] holds matrix j's elements (row lane / 4, columns 2 (lane % 4)
// and + 1) as one 32-bit pair; lane 8j + i gives the shared-memory address of row i of matrix j.
__device__ __forceinline__ void stmatrix_x4(void* smem_row, const uint32_t (&r)[4]) {
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem_row));
  asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(r[0]),
               "r"(r[1]), "r"(r[2]), "r"(r[3])
               : "memory");
}

// Four 8x8 matrices of 16-bit values loaded transposed: lane 8j + i gives the shared-memory address of
// row i of matrix j (16 bytes); r[j] receives column lane / 4 of matrix j, rows 2 (lane % 4) (low half)
// and + 1 (high half) (ldmatrix .trans).
__device__ __forceinline__ void ldmatrix_x4_trans(const void* smem_row, uint32_t (&r)[4]) {
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem_row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}

}  // namespace flash_mla::ptx
