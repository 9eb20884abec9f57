// stmatrix (PTX ISA 9.7.13.4.16): a warp stores 8x8 tiles of 16-bit values from the mma fragment layout
// (lane l holds row l/4, columns 2(l%4), 2(l%4)+1). With .trans each tile lands transposed.
#pragma once

#include <cstdint>

namespace flash_mla::ptx {

// stmatrix.sync.aligned.m8n8.x4.trans.shared.b16: four tiles; lane 8k + r gives the address of row r
// of tile k (after transposition); r0..r3 are this lane's fragments of tiles 0..3.
__device__ __forceinline__ void stmatrix_x4_trans(void* smem_row, uint32_t r0, uint32_t r1, uint32_t r2, uint32_t r3) {
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem_row));
  asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(r0),
               "r"(r1), "r"(r2), "r"(r3)
               : "memory");
}

}  // namespace flash_mla::ptx
