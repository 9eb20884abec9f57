// include/flash_mla/fp8.hpp and the FP8 quantisers (quantize_fp8_with_scale, quantize_fp8_per_tensor)
// against an independent model of float8_e4m3fn: each of the 256 codes decoded from its sign, exponent
// and mantissa fields with ldexp (bias 7; exponent 0 subnormal; S.1111.111 NaN, no infinities), and
// float -> e4m3 as the nearest of the 127 finite magnitudes by search, ties to the even code,
// saturating at 448. Exhaustive over the codes and every rounding midpoint; random floats for the rest.
// The quantisers are checked byte for byte against SPEC.md's rule computed here another way.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "flash_mla/fp8.hpp"
#include "flash_mla/half.hpp"
#include "test_support.hpp"

namespace flash_mla::test {
namespace {

constexpr Device kCpu{DeviceType::kCPU, 0};
constexpr uint8_t kMaxCode = 0x7E;  // 448

// The model: the magnitude of a non-negative finite code (0 .. 0x7E).
double magnitude(uint8_t code) {
  const int exp = code >> 3, mant = code & 7;
  if (exp == 0) return std::ldexp(static_cast<double>(mant), -9);
  return std::ldexp(static_cast<double>(8 + mant), exp - 10);
}

bool is_nan_code(uint8_t code) { return (code & 0x7F) == 0x7F; }

// The model's rounding: nearest finite magnitude, ties to the even code; beyond 448 (and infinity)
// saturate; NaN -> a NaN code of the same sign.
uint8_t model_round(float f) {
  const uint8_t sign = std::signbit(f) ? 0x80 : 0x00;
  if (std::isnan(f)) return sign | 0x7F;
  const double x = std::fabs(static_cast<double>(f));
  if (x >= magnitude(kMaxCode)) return sign | kMaxCode;
  uint8_t lo = 0;  // magnitude(lo) <= x < magnitude(lo + 1)
  while (lo < kMaxCode && magnitude(lo + 1) <= x) ++lo;
  const double mid = (magnitude(lo) + magnitude(lo + 1)) / 2;
  const uint8_t r = x < mid ? lo : x > mid ? lo + 1 : (lo % 2 == 0 ? lo : lo + 1);
  return sign | r;
}

float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

TEST(E4M3, DecodesEveryCode) {
  int nans = 0;
  for (int c = 0; c < 256; ++c) {
    const auto code = static_cast<uint8_t>(c);
    const float got = fp8_e4m3_to_float(code);
    if (is_nan_code(code)) {
      ++nans;
      EXPECT_TRUE(std::isnan(got)) << "code 0x" << std::hex << c;
      continue;
    }
    const double want = (code & 0x80 ? -1.0 : 1.0) * magnitude(code & 0x7F);
    EXPECT_EQ(static_cast<double>(got), want) << "code 0x" << std::hex << c;
    EXPECT_EQ(std::signbit(got), (code & 0x80) != 0) << "code 0x" << std::hex << c;  // -0 stays -0
  }
  EXPECT_EQ(nans, 2);
  EXPECT_EQ(fp8_e4m3_to_float(0x7E), 448.0f);
  EXPECT_EQ(fp8_e4m3_to_float(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(fp8_e4m3_to_float(0x08), std::ldexp(1.0f, -6));
  EXPECT_EQ(fp8_e4m3_to_float(0x38), 1.0f);
}

TEST(E4M3, RoundTripIsIdentity) {
  for (int c = 0; c < 256; ++c) {
    const auto code = static_cast<uint8_t>(c);
    const uint8_t back = float_to_fp8_e4m3(fp8_e4m3_to_float(code));
    if (is_nan_code(code)) {
      EXPECT_EQ(back, code) << "NaN keeps its sign";
    } else {
      EXPECT_EQ(back, code) << "code 0x" << std::hex << c;
    }
  }
}

// Every midpoint between neighbouring magnitudes (ties go to the even code), the floats just below and
// above it, both signs; then the midpoint past 448 and the saturation beyond.
TEST(E4M3, RoundsEveryMidpointAndItsNeighbours) {
  int ties = 0;
  for (uint8_t c = 0; c < kMaxCode; ++c) {
    const double mid = (magnitude(c) + magnitude(c + 1)) / 2;
    const auto f = static_cast<float>(mid);
    ASSERT_EQ(static_cast<double>(f), mid) << "midpoints of e4m3 are floats";
    ++ties;
    for (float v : {f, std::nextafter(f, 0.0f), std::nextafter(f, INFINITY), static_cast<float>(magnitude(c))}) {
      for (float s : {v, -v}) {
        ASSERT_EQ(float_to_fp8_e4m3(s), model_round(s)) << s;
      }
    }
    EXPECT_EQ(float_to_fp8_e4m3(f), c % 2 == 0 ? c : c + 1) << "tie at " << mid;
  }
  EXPECT_EQ(ties, kMaxCode);
  for (float v : {448.0f, 450.0f, 463.99f, 464.0f, 480.0f, 1e6f, std::numeric_limits<float>::max()}) {
    EXPECT_EQ(float_to_fp8_e4m3(v), 0x7E) << v;
    EXPECT_EQ(float_to_fp8_e4m3(-v), 0xFE) << v;
  }
}

TEST(E4M3, RoundsRandomFloatsToTheNearestCode) {
  std::mt19937_64 rng(2024);
  // Any bit pattern: NaNs, infinities, huge, tiny and denormal floats ...
  for (int i = 0; i < 200'000; ++i) {
    const float f = float_of(static_cast<uint32_t>(rng()));
    const uint8_t got = float_to_fp8_e4m3(f);
    if (std::isnan(f)) {
      ASSERT_TRUE(is_nan_code(got));
    } else {
      ASSERT_EQ(got, model_round(f)) << f;
    }
  }
  // ... and floats in and around e4m3's range, where decode(encode(x)) must be a nearest code.
  std::uniform_int_distribution<int> exp(127 - 13, 127 + 9);
  for (int i = 0; i < 200'000; ++i) {
    const uint32_t u = static_cast<uint32_t>(rng() & 0x807fffffu) | (static_cast<uint32_t>(exp(rng)) << 23);
    const float f = float_of(u);
    const uint8_t got = float_to_fp8_e4m3(f);
    ASSERT_EQ(got, model_round(f)) << f;
    if (std::fabs(f) > 448.0f) continue;
    const double err = std::fabs(static_cast<double>(fp8_e4m3_to_float(got)) - f);
    for (uint8_t c = 0; c <= kMaxCode; ++c) {
      ASSERT_LE(err, std::fabs(std::copysign(magnitude(c), f) - f)) << f << " is nearer code 0x" << std::hex << int(c);
    }
  }
}

TEST(E4M3, SpecialValues) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(float_to_fp8_e4m3(nan), 0x7F);
  EXPECT_EQ(float_to_fp8_e4m3(-nan), 0xFF);
  EXPECT_EQ(float_to_fp8_e4m3(std::numeric_limits<float>::signaling_NaN()), 0x7F);
  EXPECT_EQ(float_to_fp8_e4m3(INFINITY), 0x7E);   // saturates, as cvt.rn.satfinite does
  EXPECT_EQ(float_to_fp8_e4m3(-INFINITY), 0xFE);
  EXPECT_EQ(float_to_fp8_e4m3(0.0f), 0x00);
  EXPECT_EQ(float_to_fp8_e4m3(-0.0f), 0x80);
  EXPECT_EQ(float_to_fp8_e4m3(std::numeric_limits<float>::denorm_min()), 0x00);
  EXPECT_EQ(float_to_fp8_e4m3(std::ldexp(1.0f, -9)), 0x01);    // smallest subnormal
  EXPECT_EQ(float_to_fp8_e4m3(std::ldexp(1.0f, -10)), 0x00);   // half of it: tie to even (zero)
  EXPECT_EQ(float_to_fp8_e4m3(std::ldexp(3.0f, -10)), 0x02);   // 1.5 ulp: tie to even (2)
  EXPECT_EQ(float_to_fp8_e4m3(std::ldexp(15.0f, -10)), 0x08);  // 7.5 ulp: tie to 8 = the smallest normal
  EXPECT_EQ(float_to_fp8_e4m3(1.0f + 1.0f / 16), 0x38);        // tie to even (down)
  EXPECT_EQ(float_to_fp8_e4m3(1.0f + 3.0f / 16), 0x3A);        // tie to even (up)
  EXPECT_EQ(float_to_fp8_e4m3(432.0f), 0x7E);                  // tie between 416 and 448: even (448)
  EXPECT_EQ(float_to_fp8_e4m3(-3.0f), 0xC4);
}

// ---------------------------------------------------------------------------------------------
// Quantisers.

// SPEC's scale for a group's largest finite magnitude, found by search: the smallest power of two 2^k
// with 2^k >= amax / 448 and 2^k >= 1e-4 (1e-4 lies between 2^-14 and 2^-13).
float spec_scale(float amax) {
  int k = -13;
  while (std::ldexp(448.0, k) < static_cast<double>(amax)) ++k;
  return std::ldexp(1.0f, k);
}

// x: `rows` tokens of 576 floats. Checks every byte of `out` (rows of `stride` bytes) against SPEC.
void expect_with_scale_bytes(const std::vector<float>& x, const uint8_t* out, int64_t rows, int64_t stride) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* t = &x[static_cast<size_t>(r) * kHeadDim];
    const uint8_t* o = out + r * stride;
    for (int g = 0; g < 4; ++g) {
      float amax = 0.0f;
      for (int c = 128 * g; c < 128 * (g + 1); ++c) {
        if (std::isfinite(t[c])) amax = std::max(amax, std::fabs(t[c]));
      }
      const float want_scale = spec_scale(amax);
      float scale;
      std::memcpy(&scale, o + 512 + 4 * g, 4);
      ASSERT_EQ(scale, want_scale) << "token " << r << " group " << g << " amax " << amax;
      for (int c = 128 * g; c < 128 * (g + 1); ++c) {
        ASSERT_EQ(o[c], model_round(static_cast<float>(static_cast<double>(t[c]) / want_scale)))
            << "token " << r << " channel " << c << " x " << t[c];
      }
    }
    for (int c = 0; c < 64; ++c) {
      uint16_t rope;
      std::memcpy(&rope, o + 528 + 2 * c, 2);
      ASSERT_EQ(rope, float_to_bf16(t[512 + c])) << "token " << r << " RoPE channel " << c;
    }
  }
}

TEST(QuantizeFP8WithScale, MatchesSpecOnRandomTokens) {
  std::mt19937_64 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> log_scale(-18.0f, 12.0f);
  const int64_t rows = 300;
  std::vector<float> x(rows * kHeadDim);
  for (int64_t r = 0; r < rows; ++r) {
    // Each group its own magnitude, from far below 1e-4 * 448 to far above 448.
    for (int g = 0; g < 5; ++g) {
      const float m = std::exp2(log_scale(rng));
      for (int c = 128 * g; c < std::min(128 * (g + 1), kHeadDim); ++c) x[r * kHeadDim + c] = m * normal(rng);
    }
  }
  // Groups whose amax is exactly 448 * 2^k (scale 2^k, the largest code 0x7E) or just above it, one
  // at SPEC's floor and one of zeros (scale 2^-13).
  auto set_group = [&](int64_t token, int g, float bound, float largest) {
    float* group = &x[static_cast<size_t>(token * kHeadDim + 128 * g)];
    for (int c = 0; c < 128; ++c) group[c] = bound * std::sin(static_cast<float>(c));
    group[0] = largest;
  };
  set_group(0, 0, 100.0f, 448.0f);
  set_group(1, 1, 25.0f, -448.0f * 0.25f);
  set_group(2, 2, 1000.0f, std::nextafter(448.0f * 8.0f, INFINITY));
  set_group(3, 0, 1e-5f, 1e-4f * 448.0f);
  set_group(4, 1, 0.0f, 0.0f);
  std::vector<uint8_t> out(rows * kFP8WithScaleBytes, 0xAB);
  quantize_fp8_with_scale(make_view(x.data(), DType::kFP32, kCpu, {rows, kHeadDim}),
                          make_view(out.data(), DType::kUInt8, kCpu, {rows, kFP8WithScaleBytes}));
  expect_with_scale_bytes(x, out.data(), rows, kFP8WithScaleBytes);
  float s;
  std::memcpy(&s, &out[512], 4);
  EXPECT_EQ(s, 1.0f);
  EXPECT_EQ(out[0], 0x7E);
  std::memcpy(&s, &out[kFP8WithScaleBytes + 516], 4);
  EXPECT_EQ(s, 0.25f);
  std::memcpy(&s, &out[2 * kFP8WithScaleBytes + 520], 4);
  EXPECT_EQ(s, 16.0f);
  std::memcpy(&s, &out[4 * kFP8WithScaleBytes + 516], 4);
  EXPECT_EQ(s, std::ldexp(1.0f, -13));
}

// Dequantised values are within half an e4m3 step (relative 2^-4) of the input, except where the
// scale's floor leaves them in e4m3's subnormal range.
TEST(QuantizeFP8WithScale, DequantisesWithinHalfAStep) {
  std::mt19937_64 rng(8);
  std::normal_distribution<float> normal(0.0f, 0.1f);
  const int64_t rows = 64;
  std::vector<float> x(rows * kHeadDim);
  for (float& v : x) v = normal(rng);
  std::vector<uint8_t> out(rows * kFP8WithScaleBytes);
  quantize_fp8_with_scale(make_view(x.data(), DType::kFP32, kCpu, {rows, kHeadDim}),
                          make_view(out.data(), DType::kFP8E4M3, kCpu, {rows, kFP8WithScaleBytes}));
  for (int64_t r = 0; r < rows; ++r) {
    for (int c = 0; c < kHeadDimV; ++c) {
      float scale;
      std::memcpy(&scale, &out[r * kFP8WithScaleBytes + 512 + 4 * (c / 128)], 4);
      const float v = x[r * kHeadDim + c], q = fp8_e4m3_to_float(out[r * kFP8WithScaleBytes + c]) * scale;
      const float bound = std::max(std::fabs(v) / 16, std::ldexp(scale, -10));  // relative, or subnormal half-step
      ASSERT_LE(std::fabs(q - v), bound) << "token " << r << " channel " << c;
    }
  }
}

TEST(QuantizeFP8WithScale, NonFiniteInputsAffectOnlyThemselves) {
  std::mt19937_64 rng(9);
  std::normal_distribution<float> normal(0.0f, 0.1f);
  std::vector<float> x(2 * kHeadDim);
  for (float& v : x) v = normal(rng);
  x[5] = std::numeric_limits<float>::quiet_NaN();
  x[130] = INFINITY;
  x[300] = -INFINITY;
  x[520] = std::numeric_limits<float>::quiet_NaN();  // RoPE: NaN stays a bf16 NaN
  std::vector<uint8_t> out(2 * kFP8WithScaleBytes);
  quantize_fp8_with_scale(make_view(x.data(), DType::kFP32, kCpu, {2, kHeadDim}),
                          make_view(out.data(), DType::kUInt8, kCpu, {2, kFP8WithScaleBytes}));
  expect_with_scale_bytes(x, out.data(), 2, kFP8WithScaleBytes);
  EXPECT_EQ(out[5], 0x7F);
  EXPECT_EQ(out[130], 0x7E);
  EXPECT_EQ(out[300], 0xFE);
  for (int g = 0; g < 4; ++g) {
    float s;
    std::memcpy(&s, &out[512 + 4 * g], 4);
    EXPECT_TRUE(std::isfinite(s) && s > 0.0f && s < 1.0f) << "group " << g << " scale " << s;
  }
  uint16_t rope;
  std::memcpy(&rope, &out[528 + 2 * 8], 2);
  EXPECT_TRUE(std::isnan(bf16_to_float(rope)));
}

// bf16 and fp16 inputs, a strided input (a slice of wider rows) and padded output rows: the same bytes
// as from the float values of the same inputs, and the padding untouched.
TEST(QuantizeFP8WithScale, InputDtypesAndStrides) {
  std::mt19937_64 rng(10);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  const int64_t blocks = 3, page = 5, wide = 600, padded = 700;
  for (DType dt : {DType::kBF16, DType::kFP16, DType::kFP32}) {
    SCOPED_TRACE(testing::dtype_short_name(dt));
    const size_t es = element_size(dt);
    std::vector<uint8_t> x(blocks * page * wide * es);
    std::vector<float> values(blocks * page * kHeadDim);
    for (int64_t r = 0; r < blocks * page; ++r) {
      for (int c = 0; c < kHeadDim; ++c) {
        testing::store_from_float(dt, x.data(), r * wide + 10 + c, normal(rng));
        values[r * kHeadDim + c] = testing::load_as_float(dt, x.data(), r * wide + 10 + c);
      }
    }
    std::vector<uint8_t> out(blocks * page * padded, 0x5C);
    quantize_fp8_with_scale(
        make_view(x.data() + 10 * es, dt, kCpu, {blocks, page, kHeadDim}, {page * wide, wide, 1}),
        make_view(out.data(), DType::kUInt8, kCpu, {blocks, page, kFP8WithScaleBytes}, {page * padded, padded, 1}));
    expect_with_scale_bytes(values, out.data(), blocks * page, padded);
    for (int64_t r = 0; r < blocks * page; ++r) {
      for (int64_t b = kFP8WithScaleBytes; b < padded; ++b) ASSERT_EQ(out[r * padded + b], 0x5C) << "padding written";
    }
  }
}

TEST(QuantizeFP8PerTensor, IsTheNearestCodeOfXOverDescale) {
  std::mt19937_64 rng(11);
  std::normal_distribution<float> normal(0.0f, 0.2f);
  for (float descale : {1.0f, 0.7f / 448.0f, 3.0f, 1.0f / 1024.0f}) {
    SCOPED_TRACE(descale);
    const int64_t rows = 7, cols = 1000;  // any last dimension
    std::vector<uint16_t> x(rows * cols);
    for (auto& v : x) v = float_to_bf16(normal(rng));
    x[3] = float_to_bf16(std::numeric_limits<float>::quiet_NaN());
    x[4] = float_to_bf16(-INFINITY);
    std::vector<uint8_t> out(rows * cols);
    quantize_fp8_per_tensor(make_view(x.data(), DType::kBF16, kCpu, {rows, cols}), descale,
                            make_view(out.data(), DType::kFP8E4M3, kCpu, {rows, cols}));
    for (int64_t i = 0; i < rows * cols; ++i) {
      ASSERT_EQ(out[i], model_round(bf16_to_float(x[i]) / descale)) << i;
    }
    EXPECT_EQ(out[3], 0x7F);
    EXPECT_EQ(out[4], 0xFE);
  }
}

TEST(QuantizeValidation, NamesTheArgument) {
  std::vector<float> x(2 * kHeadDim, 0.5f);
  std::vector<uint8_t> out(2 * kFP8WithScaleBytes);
  const TensorView xv = make_view(x.data(), DType::kFP32, kCpu, {2, kHeadDim});
  const TensorView ov = make_view(out.data(), DType::kUInt8, kCpu, {2, kFP8WithScaleBytes});
  ASSERT_NO_THROW(quantize_fp8_with_scale(xv, ov));
  TensorView bad = xv;
  bad.device = Device{DeviceType::kCUDA, 0};
  expect_error([&] { quantize_fp8_with_scale(bad, ov); }, "x", {"a tensor on cpu", "got cuda:0"});
  bad = xv;
  bad.dtype = DType::kInt32;
  expect_error([&] { quantize_fp8_with_scale(bad, ov); }, "x", {"bfloat16, float16 or float32", "got int32"});
  bad = make_view(x.data(), DType::kFP32, kCpu, {2, 575});
  expect_error([&] { quantize_fp8_with_scale(bad, ov); }, "x", {"last dimension 576", "got 575"});
  bad = xv;
  bad.stride[1] = 2;
  expect_error([&] { quantize_fp8_with_scale(bad, ov); }, "x", {"last-dimension stride 1", "got 2"});
  bad = xv;
  bad.ndim = 0;
  expect_error([&] { quantize_fp8_with_scale(bad, ov); }, "x", {"1 to 4 dimensions", "got 0 dimensions"});

  TensorView bad_out = ov;
  bad_out.dtype = DType::kBF16;
  expect_error([&] { quantize_fp8_with_scale(xv, bad_out); }, "out", {"float8_e4m3fn or uint8", "got bfloat16"});
  bad_out = make_view(out.data(), DType::kUInt8, kCpu, {2, kHeadDim});
  expect_error([&] { quantize_fp8_with_scale(xv, bad_out); }, "out", {"shape [2, 656]", "got [2, 576]"});
  bad_out = make_view(out.data(), DType::kUInt8, kCpu, {1, kFP8WithScaleBytes});
  expect_error([&] { quantize_fp8_with_scale(xv, bad_out); }, "out", {"shape [2, 656]", "got [1, 656]"});
  bad_out = make_view(out.data(), DType::kUInt8, kCpu, {kFP8WithScaleBytes * 2});
  expect_error([&] { quantize_fp8_with_scale(xv, bad_out); }, "out", {"2 dimensions", "got 1 dimensions"});
  bad_out = ov;
  bad_out.data = nullptr;
  expect_error([&] { quantize_fp8_with_scale(xv, bad_out); }, "out", {"non-null data pointer", "got nullptr"});
  bad_out = ov;
  bad_out.device = Device{DeviceType::kCUDA, 0};
  expect_error([&] { quantize_fp8_with_scale(xv, bad_out); }, "out", {"a tensor on cpu", "got cuda:0"});

  const TensorView pv = make_view(out.data(), DType::kFP8E4M3, kCpu, {2, kHeadDim});
  ASSERT_NO_THROW(quantize_fp8_per_tensor(xv, 0.01f, pv));
  for (float descale : {0.0f, -1.0f, std::numeric_limits<float>::quiet_NaN(), INFINITY}) {
    expect_error([&] { quantize_fp8_per_tensor(xv, descale, pv); }, "descale", {"a finite number > 0"});
  }
  expect_error([&] { quantize_fp8_per_tensor(xv, 0.01f, ov); }, "out", {"shape [2, 576]", "got [2, 656]"});
}

}  // namespace
}  // namespace flash_mla::test
