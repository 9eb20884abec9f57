// Row conversions of the CPU backend and the quantisers: stored elements of any input dtype to float.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>

#include "flash_mla/flash_mla.hpp"
#include "flash_mla/fp8.hpp"
#include "flash_mla/half.hpp"

namespace flash_mla::detail {

// float value of every e4m3 code: one load per element instead of a decode.
inline const float* e4m3_table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int code = 0; code < 256; ++code) t[code] = fp8_e4m3_to_float(static_cast<uint8_t>(code));
    return t;
  }();
  return table.data();
}

// dst[0:n] = elements offset .. offset + n - 1 of `base` (a bf16, fp16, fp32 or e4m3 array) as float.
inline void load_row(DType dtype, const void* base, int64_t offset, int n, float* dst) {
  switch (dtype) {
    case DType::kBF16: {
      const uint16_t* src = static_cast<const uint16_t*>(base) + offset;
      for (int c = 0; c < n; ++c) dst[c] = bf16_to_float(src[c]);
      break;
    }
    case DType::kFP16: {
      const uint16_t* src = static_cast<const uint16_t*>(base) + offset;
      for (int c = 0; c < n; ++c) dst[c] = fp16_to_float(src[c]);
      break;
    }
    case DType::kFP8E4M3: {
      const uint8_t* src = static_cast<const uint8_t*>(base) + offset;
      const float* table = e4m3_table();
      for (int c = 0; c < n; ++c) dst[c] = table[src[c]];
      break;
    }
    default: std::copy_n(static_cast<const float*>(base) + offset, n, dst);
  }
}

}  // namespace flash_mla::detail
