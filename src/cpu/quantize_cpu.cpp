// The FP8 quantisers of the public API (flash_mla.hpp: quantize_fp8_with_scale, quantize_fp8_per_tensor),
// one row of channels at a time on the calling thread. Tests: tests/test_fp8.cpp.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/backends.hpp"
#include "core/params.hpp"
#include "cpu/rows.hpp"

namespace flash_mla::detail {

namespace {

// 2^ceil(log2(max(amax / 448, 1e-4))), exactly. The quotient is taken in double: amax has 24
// significant bits and 448 = 7 * 2^6, so amax / 448 is either a power of two or more than 2^-24
// (relative) away from every one, much farther than double's rounding (2^-53) moves it. Below 1e-4
// the result is 2^-13, as for 1e-4 itself.
float group_scale(float amax) {
  const double t = std::max(static_cast<double>(amax) / kFP8E4M3Max, 1e-4);
  int exponent = 0;
  const double fraction = std::frexp(t, &exponent);  // t = fraction * 2^exponent, fraction in [0.5, 1)
  return std::ldexp(1.0f, fraction == 0.5 ? exponent - 1 : exponent);
}

// One token of one KV head, x[0:576], into the 656-byte FP8-with-scale row dst.
void quantize_token_with_scale(const float* x, uint8_t* dst) {
  for (int g = 0; g < kFP8NumScales; ++g) {
    const float* group = x + g * kFP8ScaleGroup;
    float amax = 0.0f;  // over the finite values: a NaN or an infinity affects only its own code
    for (int c = 0; c < kFP8ScaleGroup; ++c) {
      if (std::isfinite(group[c])) amax = std::max(amax, std::fabs(group[c]));
    }
    const float scale = group_scale(amax);
    // x / scale is exact (a power of two) unless it falls below float's normal range, far below e4m3's.
    for (int c = 0; c < kFP8ScaleGroup; ++c) dst[g * kFP8ScaleGroup + c] = float_to_fp8_e4m3(group[c] / scale);
    std::memcpy(dst + kFP8ScaleOffset + 4 * g, &scale, sizeof scale);
  }
  for (int c = 0; c < kHeadDimRope; ++c) {
    const uint16_t rope = float_to_bf16(x[kHeadDimV + c]);
    std::memcpy(dst + kFP8RopeOffset + 2 * c, &rope, sizeof rope);
  }
}

}  // namespace

void quantize_cpu(const QuantizeParams& p) {
  int64_t rows = 1;
  for (int d = 0; d < p.lead_ndim; ++d) rows *= p.lead_shape[d];
  // Per-tensor rows (any length) are converted kChunk channels at a time.
  constexpr int64_t kChunk = 4096;
  std::vector<float> x(static_cast<size_t>(std::min<int64_t>(p.channels, kChunk)));
  for (int64_t row = 0; row < rows; ++row) {
    // The row's offsets from its index in the leading dimensions (row-major).
    int64_t x_offset = 0, out_offset = 0, rest = row;
    for (int d = p.lead_ndim - 1; d >= 0; --d) {
      const int64_t i = rest % p.lead_shape[d];
      rest /= p.lead_shape[d];
      x_offset += i * p.x_stride[d];
      out_offset += i * p.out_stride[d];
    }
    uint8_t* dst = p.out + out_offset;
    if (p.with_scale) {
      load_row(p.x_dtype, p.x, x_offset, kHeadDim, x.data());
      quantize_token_with_scale(x.data(), dst);
      continue;
    }
    for (int64_t c0 = 0; c0 < p.channels; c0 += kChunk) {
      const int n = static_cast<int>(std::min(kChunk, p.channels - c0));
      load_row(p.x_dtype, p.x, x_offset + c0, n, x.data());
      for (int c = 0; c < n; ++c) dst[c0 + c] = float_to_fp8_e4m3(x[c] / p.descale);
    }
  }
}

}  // namespace flash_mla::detail
