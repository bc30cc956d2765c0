// The procedural codebook of the trellis quantizer (quant/trellis.h): every L-bit trellis state
// (L = 16 in production; tests use smaller L with the same formula) names one value, computed by
// a few integer instructions and one fp16 addition, so no table is stored anywhere. In the spirit
// of QTIP's "3INST" computed codes (Tseng et al., 2024); the constants here are this project's own,
// chosen by a search for the smallest Kolmogorov–Smirnov distance to a normal distribution.
//
// The formula, exactly (a GPU kernel must reproduce it bit for bit):
//   x      = (kTrellisMul · state + kTrellisAdd) mod 2^32            (32-bit unsigned multiply-add)
//   pieces = (x & 0x8fff8fff) | 0x30003000                          (one LOP3 on a GPU)
//   lo, hi = the low and high 16 bits of `pieces`, each read as an IEEE fp16: the sign and the
//            two low exponent bits and the 10 mantissa bits come from x, the three high exponent
//            bits are fixed to 011, so |lo|, |hi| ∈ [2^-3, 2) and neither is ever subnormal/inf/nan
//   code   = fp16(lo + hi), the exact sum rounded once to nearest-even (what __hadd computes; on
//            the host the sum is exact in fp32 and then rounded; an exact zero is +0)
//   value  = fp32(code) · kTrellisScale                              (one fp32 multiply, rounded)
// Over the 2^16 states, `value` has mean ≈ 0, variance ≈ 1 and a Kolmogorov–Smirnov distance to
// N(0, 1) below 0.01 (tests/quant/test_trellis.cpp). A kernel may instead fold kTrellisScale into
// its own scale and use `code` directly (two codes per HADD2 on half2 pairs), or, where half an
// fp16 ulp per weight is tolerable, multiply both pieces and let the sum stay exact (the GPU GEMV).
//
// C++17, no library calls: nvcc device code includes this header.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define MARLIN_TRELLIS_HD __host__ __device__
#else
#define MARLIN_TRELLIS_HD
#endif

namespace marlin {

constexpr uint32_t kTrellisMul = 0x8ecd7297u;
constexpr uint32_t kTrellisAdd = 0x2d17a2d6u;
constexpr uint32_t kTrellisPieceMask = 0x8fff8fffu;
constexpr uint32_t kTrellisPieceBits = 0x30003000u;
// 1 / (standard deviation of `code` over the 2^16 states), so `value` has unit variance.
constexpr float kTrellisScale = 0.8046254f;

// The two fp16 pieces of `state` (low piece in bits 0..15, high piece in bits 16..31).
MARLIN_TRELLIS_HD constexpr uint32_t trellis_pieces(uint32_t state) {
  return ((kTrellisMul * state + kTrellisAdd) & kTrellisPieceMask) | kTrellisPieceBits;
}

namespace trellis_detail {

MARLIN_TRELLIS_HD inline float bits_to_float(uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  return __builtin_bit_cast(float, bits);
#endif
}

MARLIN_TRELLIS_HD inline uint32_t float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  return __builtin_bit_cast(uint32_t, f);
#endif
}

// fp16 -> fp32 for a normal fp16 (exponent field 1..30; the pieces and nonzero codes all are).
MARLIN_TRELLIS_HD inline float normal_fp16_to_float(uint32_t h) {
  return bits_to_float(((h & 0x8000u) << 16) | (((h & 0x7fffu) + (112u << 10)) << 13));
}

}  // namespace trellis_detail

// The fp16 bits of the code of `state`: round-to-nearest-even of the exact sum of its two pieces.
// The sum is exact in fp32 (both pieces are multiples of 2^-13 below 2 in magnitude), and it is
// either +0 or at least 2^-13 in magnitude, inside fp16's normal range, so one rounding suffices.
MARLIN_TRELLIS_HD inline uint16_t trellis_code_fp16(uint32_t state) {
  const uint32_t pieces = trellis_pieces(state);
#if defined(__CUDA_ARCH__)
  const float sum = __fadd_rn(trellis_detail::normal_fp16_to_float(pieces & 0xffffu),
                              trellis_detail::normal_fp16_to_float(pieces >> 16));
#else
  const float sum = trellis_detail::normal_fp16_to_float(pieces & 0xffffu) + trellis_detail::normal_fp16_to_float(pieces >> 16);
#endif
  const uint32_t bits = trellis_detail::float_to_bits(sum);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  const uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude == 0) return uint16_t(sign);
  const uint32_t rounded = magnitude + 0xfffu + ((magnitude >> 13) & 1u);
  return uint16_t(sign | ((rounded - (112u << 23)) >> 13));
}

// The fp32 value of fp16 code bits produced by trellis_code_fp16 (zero or normal).
MARLIN_TRELLIS_HD inline float trellis_code_to_float(uint16_t code) {
  if ((code & 0x7fffu) == 0) return 0.0f;
  return trellis_detail::normal_fp16_to_float(code);
}

// The codebook value of `state` (approximately N(0, 1) over all 2^16 states).
MARLIN_TRELLIS_HD inline float trellis_value(uint32_t state) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(trellis_code_to_float(trellis_code_fp16(state)), kTrellisScale);
#else
  return trellis_code_to_float(trellis_code_fp16(state)) * kTrellisScale;
#endif
}

// Host only (trellis_code.cpp): the values of all 2^16 states, computed once; the codebook of a
// smaller state width L is its first 2^L entries.
const float* trellis_value_table();

}  // namespace marlin
