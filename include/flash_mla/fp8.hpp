// Bit-exact conversions between float and float8_e4m3fn (the "fn" variant: no infinities, one NaN
// pattern per sign, S.1111.111), for host code that fills or reads FP8 KV caches (CPU backend,
// quantisers, tests, benchmarks). The format: exponent bias 7, 3 mantissa bits, largest finite value
// 448 (S.1111.110), smallest subnormal 2^-9.
//
// float -> e4m3 rounds to nearest, ties to even, and saturates as the GPU's cvt.rn.satfinite does:
// finite values beyond ±448 and ±infinity become ±448; NaN stays NaN (0x7F, or 0xFF with the sign bit).
#pragma once

#include <cstdint>
#include <cstring>

namespace flash_mla {

inline constexpr float kFP8E4M3Max = 448.0f;

inline float fp8_e4m3_to_float(uint8_t v) {
  const uint32_t sign = static_cast<uint32_t>(v & 0x80u) << 24;
  const uint32_t exp = (v >> 3) & 0xfu, mant = v & 0x7u;
  uint32_t bits;
  if (exp == 0xfu && mant == 0x7u) {
    bits = sign | 0x7fc00000u;  // the NaN pattern
  } else if (exp != 0) {
    bits = sign | ((exp + 120u) << 23) | (mant << 20);  // rebias 7 -> 127
  } else {
    // Subnormal: mant * 2^-9, exact in float (a power-of-two product of a small integer).
    float f = static_cast<float>(mant) * 0x1p-9f;
    std::memcpy(&bits, &f, 4);
    bits |= sign;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint8_t float_to_fp8_e4m3(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7fu;     // NaN
  if (abs >= 0x43e00000u) return sign | 0x7eu;    // >= 448 (infinity included): saturate
  if (abs < 0x3c800000u) {                        // below 2^-6, the smallest normal: multiples of 2^-9
    float magnitude;
    std::memcpy(&magnitude, &abs, 4);
    // magnitude * 512 is exact and below 8; round half to even by hand (no dependence on the FPU mode).
    const float scaled = magnitude * 512.0f;
    uint32_t k = static_cast<uint32_t>(scaled);
    const float rest = scaled - static_cast<float>(k);
    if (rest > 0.5f || (rest == 0.5f && (k & 1u))) ++k;
    return sign | static_cast<uint8_t>(k);  // k == 8 is 2^-6, the smallest normal's pattern
  }
  // Normal: rebias the exponent (127 -> 7) and round the 23-bit mantissa to 3 bits, half to even; a
  // carry out of the mantissa moves to the exponent, and nothing below 448 can carry past 0x7E.
  const uint32_t rebiased = abs - (120u << 23);
  const uint32_t rounded = rebiased + 0x7ffffu + ((rebiased >> 20) & 1u);
  return sign | static_cast<uint8_t>(rounded >> 20);
}

}  // namespace flash_mla
