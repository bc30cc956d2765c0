// Exact scalar codecs for the small float formats of quantized weights and their scales.
//
//   E2M1 (fp4 values)   sign bit 3, exponent bits 2..1 (bias 1), mantissa bit 0; no inf/NaN.
//                       Magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6.
//   E4M3 (OCP FP8 E4M3FN, fp8 values and nvfp4 scales)  sign bit 7, exponent bits 6..3 (bias 7),
//                       mantissa bits 2..0; no inf; 0x7f / 0xff are NaN; max 448; subnormals m·2^-9.
//   E8M0 (mxfp4 scales) 2^(e − 127) for e in 0..254; 0xff is NaN; no sign, no zero.
//
// Encoders round to nearest, ties to even, and saturate: finite (and infinite) values beyond the
// largest magnitude map to it. Checked against torch (float8_e4m3fn, float8_e8m0fnu) and ml_dtypes
// (float4_e2m1fn) by tests/quant/test_fp_codes.cpp.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/half.h"

namespace marlin {

inline constexpr float kE2M1Max = 6.0f;
inline constexpr float kE4M3Max = 448.0f;

inline float e2m1_to_float(uint8_t code) {
  static constexpr float kValues[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                                        -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};
  return kValues[code & 0x0f];
}

// Nearest E2M1 code; ties go to the even mantissa (0.25 -> 0, 0.75 -> 1, 2.5 -> 2, 5 -> 4).
// NaN encodes as +0 (E2M1 has no NaN; quantizers reject non-finite weights before this).
inline uint8_t float_to_e2m1(float x) {
  if (std::isnan(x)) return 0;
  const uint8_t sign = std::signbit(x) ? 0x8 : 0x0;
  const float a = std::fabs(x);
  // Midpoints between consecutive magnitudes; at a tie the code with even mantissa (even code) wins.
  uint8_t code;
  if (a <= 0.25f) code = 0;
  else if (a < 0.75f) code = 1;
  else if (a <= 1.25f) code = 2;
  else if (a < 1.75f) code = 3;
  else if (a <= 2.5f) code = 4;
  else if (a < 3.5f) code = 5;
  else if (a <= 5.0f) code = 6;
  else code = 7;
  return uint8_t(sign | code);
}

inline float e4m3_to_float(uint8_t code) {
  const uint32_t sign = uint32_t(code & 0x80) << 24;
  const uint32_t exponent = (code >> 3) & 0x0f;
  const uint32_t mantissa = code & 0x07;
  if (exponent == 0x0f && mantissa == 0x07) return fp32_from_bits(sign | 0x7fc00000);
  if (exponent == 0) {
    const float magnitude = float(mantissa) * 0.001953125f;  // m · 2^-9
    return sign ? -magnitude : magnitude;
  }
  return fp32_from_bits(sign | ((exponent + 120) << 23) | (mantissa << 20));
}

inline uint8_t float_to_e4m3(float x) {
  const uint32_t bits = fp32_to_bits(x);
  const uint8_t sign = uint8_t((bits >> 24) & 0x80);
  const uint32_t abs = bits & 0x7fffffff;
  if (abs > 0x7f800000) return uint8_t(sign | 0x7f);  // NaN
  if (abs >= 0x43e00000) return uint8_t(sign | 0x7e);  // >= 448 (and inf): saturate
  if (abs < 0x3c800000) {                              // below 2^-6: subnormal (or zero) in E4M3
    // Exact: a · 2^9 < 8 is computed without rounding; then round to nearest even.
    const float scaled = fp32_from_bits(abs) * 512.0f;
    uint32_t m = uint32_t(scaled);
    const float rest = scaled - float(m);
    if (rest > 0.5f || (rest == 0.5f && (m & 1))) ++m;
    return uint8_t(sign | m);  // m == 8 is the smallest normal, 2^-6, as it should be
  }
  // Normal: keep 3 mantissa bits with round-to-nearest-even, rebias the exponent (127 -> 7).
  const uint32_t rounded = abs + 0x7ffff + ((abs >> 20) & 1);
  const uint32_t code = (rounded >> 20) - (120u << 3);
  return uint8_t(sign | (code > 0x7e ? 0x7e : code));
}

inline float e8m0_to_float(uint8_t code) {
  if (code == 0xff) return fp32_from_bits(0x7fc00000);
  return std::ldexp(1.0f, int(code) - 127);
}

// Nearest power of two to |x| (the sign is ignored), ties (1.5·2^k) rounding up as torch's
// float8_e8m0fnu conversion does; saturates to 2^127 above and to 2^-127 below (zero included);
// NaN -> 0xff.
inline uint8_t float_to_e8m0(float x) {
  if (std::isnan(x)) return 0xff;
  const uint32_t abs = fp32_to_bits(x) & 0x7fffffff;
  const int exponent = int(abs >> 23);  // biased fp32 exponent = the E8M0 code for 2^(e-127)
  if (exponent == 0) return (abs & 0x7fffff) >= 0x600000 ? 1 : 0;  // below 2^-126: to 2^-127 or 2^-126
  const int code = exponent + ((abs >> 22) & 1);  // mantissa >= 0.5 rounds up
  return uint8_t(code > 254 ? 254 : code);
}

}  // namespace marlin
