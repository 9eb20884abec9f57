// include/flash_mla/half.hpp against an independent model of the two formats: every fp16 and bf16
// value is decoded from its sign, exponent and mantissa fields with ldexp; float -> 16-bit rounding
// picks, among all finite values of the format (plus the infinity just past the largest), the nearest
// one, ties to the even bit pattern. Exhaustive over the 65536 patterns of each format and over every
// rounding midpoint; random floats for the rest.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "flash_mla/half.hpp"

namespace flash_mla {
namespace {

struct Format {
  const char* name;
  int mant_bits;  // stored mantissa bits
  int exp_bits;
  int bias;
  float (*to_float)(uint16_t);
  uint16_t (*from_float)(float);

  uint16_t inf_bits() const { return static_cast<uint16_t>(((1u << exp_bits) - 1) << mant_bits); }
  // The value of a non-negative pattern; the pattern inf_bits() is 2^(emax + 1), the "next" value a
  // round-up past the largest finite one lands on (it rounds to infinity).
  double magnitude(uint32_t bits) const {
    const uint32_t exp = bits >> mant_bits, mant = bits & ((1u << mant_bits) - 1);
    if (exp == 0) return std::ldexp(static_cast<double>(mant), 1 - bias - mant_bits);
    return std::ldexp(static_cast<double>(mant | (1u << mant_bits)), static_cast<int>(exp) - bias - mant_bits);
  }
  double value(uint16_t bits) const {
    const uint32_t exp = (bits >> mant_bits) & ((1u << exp_bits) - 1), mant = bits & ((1u << mant_bits) - 1);
    const double sign = bits & 0x8000u ? -1.0 : 1.0;
    if (exp == (1u << exp_bits) - 1) return mant ? std::numeric_limits<double>::quiet_NaN() : sign * INFINITY;
    return sign * magnitude(bits & 0x7fffu);
  }
  bool is_nan(uint16_t bits) const { return (bits & 0x7fffu) > inf_bits(); }

  // Round to nearest, ties to even, by search over the ordered table of non-negative values.
  uint16_t round(float f) const {
    if (std::isnan(f)) return static_cast<uint16_t>(inf_bits() | 1u);  // any NaN
    const uint16_t sign = std::signbit(f) ? 0x8000u : 0u;
    const double x = std::fabs(static_cast<double>(f));
    if (std::isinf(f) || x >= magnitude(inf_bits())) return sign | inf_bits();
    uint32_t lo = 0, hi = inf_bits();  // magnitude(lo) <= x < magnitude(hi)
    while (hi - lo > 1) {
      const uint32_t mid = (lo + hi) / 2;
      (magnitude(mid) <= x ? lo : hi) = mid;
    }
    const double midpoint = (magnitude(lo) + magnitude(hi)) / 2;  // exact in double
    uint32_t r = x < midpoint ? lo : x > midpoint ? hi : (lo % 2 == 0 ? lo : hi);
    return static_cast<uint16_t>(sign | r);
  }
};

const Format kFp16{"fp16", 10, 5, 15, fp16_to_float, float_to_fp16};
const Format kBf16{"bf16", 7, 8, 127, bf16_to_float, float_to_bf16};

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

void expect_rounds(const Format& fmt, float f) {
  const uint16_t got = fmt.from_float(f), want = fmt.round(f);
  if (std::isnan(f)) {
    ASSERT_TRUE(fmt.is_nan(got)) << fmt.name << ": NaN 0x" << std::hex << bits_of(f) << " -> 0x" << got;
  } else {
    ASSERT_EQ(got, want) << fmt.name << ": float 0x" << std::hex << bits_of(f) << " (" << std::dec << f << ") -> "
                         << std::hex << "0x" << got << ", expected 0x" << want;
  }
}

class Half : public ::testing::TestWithParam<const Format*> {};

TEST_P(Half, DecodesEveryPattern) {
  const Format& fmt = *GetParam();
  for (uint32_t b = 0; b < 65536; ++b) {
    const auto h = static_cast<uint16_t>(b);
    const float got = fmt.to_float(h);
    const double want = fmt.value(h);
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(got)) << fmt.name << " 0x" << std::hex << b;
    } else {
      ASSERT_EQ(static_cast<double>(got), want) << fmt.name << " 0x" << std::hex << b;
      ASSERT_EQ(std::signbit(got), (b & 0x8000u) != 0) << fmt.name << " 0x" << std::hex << b;  // -0 stays -0
    }
  }
}

TEST_P(Half, RoundTripIsIdentity) {
  const Format& fmt = *GetParam();
  for (uint32_t b = 0; b < 65536; ++b) {
    const auto h = static_cast<uint16_t>(b);
    const uint16_t back = fmt.from_float(fmt.to_float(h));
    if (fmt.is_nan(h)) {
      ASSERT_TRUE(fmt.is_nan(back)) << fmt.name << ": NaN 0x" << std::hex << b << " -> 0x" << back;
    } else {
      ASSERT_EQ(back, h) << fmt.name << " 0x" << std::hex << b;
    }
  }
}

// Every midpoint between neighbouring values (ties: even pattern wins), and the floats just below
// and just above each: the whole rounding decision of the format, including subnormals, the
// underflow to zero and the overflow to infinity.
TEST_P(Half, RoundsEveryMidpointAndItsNeighbours) {
  const Format& fmt = *GetParam();
  int exact_ties = 0;
  for (uint32_t b = 0; b < fmt.inf_bits(); ++b) {
    const double mid = (fmt.magnitude(b) + fmt.magnitude(b + 1)) / 2;
    const auto f = static_cast<float>(mid);
    exact_ties += static_cast<double>(f) == mid;
    for (float v : {f, std::nextafter(f, 0.0f), std::nextafter(f, INFINITY), float_of(bits_of(f) - 2),
                    float_of(bits_of(f) + 2)}) {
      expect_rounds(fmt, v);
      expect_rounds(fmt, -v);
    }
    expect_rounds(fmt, static_cast<float>(fmt.magnitude(b)));
  }
  EXPECT_GT(exact_ties, 30000);  // float holds the midpoint of nearly every pair: real ties were tested
}

TEST_P(Half, RoundsRandomFloats) {
  const Format& fmt = *GetParam();
  std::mt19937_64 rng(12345);
  // Any bit pattern (NaNs, infinities, huge and tiny values) ...
  for (int i = 0; i < 2'000'000; ++i) expect_rounds(fmt, float_of(static_cast<uint32_t>(rng())));
  // ... and floats whose exponent lies in or near the format's range.
  const int lo = 127 - fmt.bias - fmt.mant_bits - 3, hi = 127 + fmt.bias + 2;
  std::uniform_int_distribution<int> exp(std::max(lo, 0), std::min(hi, 255));
  for (int i = 0; i < 2'000'000; ++i) {
    const uint32_t u = static_cast<uint32_t>(rng() & 0x807fffffu) | (static_cast<uint32_t>(exp(rng)) << 23);
    expect_rounds(fmt, float_of(u));
  }
}

TEST_P(Half, SpecialValues) {
  const Format& fmt = *GetParam();
  EXPECT_EQ(fmt.from_float(0.0f), 0u);
  EXPECT_EQ(fmt.from_float(-0.0f), 0x8000u);
  EXPECT_EQ(fmt.from_float(INFINITY), fmt.inf_bits());
  EXPECT_EQ(fmt.from_float(-INFINITY), 0x8000u | fmt.inf_bits());
  EXPECT_TRUE(fmt.is_nan(fmt.from_float(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(fmt.is_nan(fmt.from_float(-std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(fmt.is_nan(fmt.from_float(std::numeric_limits<float>::signaling_NaN())));
  EXPECT_TRUE(fmt.is_nan(fmt.from_float(float_of(0x7f800001u))));  // NaN with only the lowest bit set
  EXPECT_EQ(fmt.from_float(std::numeric_limits<float>::max()), fmt.inf_bits());
  EXPECT_EQ(fmt.from_float(std::numeric_limits<float>::denorm_min()), 0u);
  EXPECT_EQ(fmt.from_float(1.0f), static_cast<uint16_t>(fmt.bias << fmt.mant_bits));
}

TEST(HalfKnownValues, Fp16) {
  EXPECT_EQ(float_to_fp16(65504.0f), 0x7bffu);     // largest finite
  EXPECT_EQ(float_to_fp16(65519.996f), 0x7bffu);   // below the midpoint to 65536
  EXPECT_EQ(float_to_fp16(65520.0f), 0x7c00u);     // the midpoint rounds to even: infinity
  EXPECT_EQ(float_to_fp16(std::ldexp(1.0f, -24)), 0x0001u);   // smallest subnormal
  EXPECT_EQ(float_to_fp16(std::ldexp(1.0f, -25)), 0x0000u);   // half of it: tie to even (zero)
  EXPECT_EQ(float_to_fp16(std::ldexp(1.5f, -25)), 0x0001u);
  EXPECT_EQ(float_to_fp16(std::ldexp(3.0f, -25)), 0x0002u);   // 1.5 ulp: tie to even (2)
  EXPECT_EQ(float_to_fp16(std::ldexp(1.0f, -14)), 0x0400u);   // smallest normal
  EXPECT_EQ(float_to_fp16(1.0f + std::ldexp(1.0f, -11)), 0x3c00u);  // tie to even (down)
  EXPECT_EQ(float_to_fp16(1.0f + std::ldexp(3.0f, -11)), 0x3c02u);  // tie to even (up)
  EXPECT_EQ(fp16_to_float(0x3555u), 0.333251953125f);
}

TEST(HalfKnownValues, Bf16) {
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80u);
  EXPECT_EQ(float_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80u);  // tie to even (down)
  EXPECT_EQ(float_to_bf16(1.0f + std::ldexp(3.0f, -8)), 0x3f82u);  // tie to even (up)
  EXPECT_EQ(float_to_bf16(float_of(0x7f7fffffu)), 0x7f80u);        // FLT_MAX rounds to infinity
  EXPECT_EQ(float_to_bf16(float_of(0x7f7f7fffu)), 0x7f7fu);        // just below the midpoint
  EXPECT_EQ(float_to_bf16(float_of(0x00008000u)), 0x0000u);        // subnormal tie to even
  EXPECT_EQ(float_to_bf16(float_of(0x00018000u)), 0x0002u);
  EXPECT_EQ(bf16_to_float(0xc0490fdbu >> 16), -3.140625f);
}

INSTANTIATE_TEST_SUITE_P(Formats, Half, ::testing::Values(&kFp16, &kBf16),
                         [](const ::testing::TestParamInfo<const Format*>& i) { return std::string(i.param->name); });

}  // namespace
}  // namespace flash_mla
