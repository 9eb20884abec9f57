// Warp-wide 8x8 matrix stores (PTX ISA, data movement instructions: stmatrix), in the fragment layout
// of mma and of wgmma's accumulators.
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

// The same, transposed: lane 8j + i addresses row i of matrix j's transpose, which receives column i
// of the fragment's matrix j (stmatrix .trans).
__device__ __forceinline__ void stmatrix_x4_trans(void* smem_row, const uint32_t (&r)[4]) {
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem_row));
  asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(r[0]),
               "r"(r[1]), "r"(r[2]), "r"(r[3])
               : "memory");
}

}  // namespace flash_mla::ptx
