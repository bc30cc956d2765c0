// The sampling rule shared by the CPU (backend/sampling.cpp) and the GPU (backend/cuda/sampling.cu):
// the per-row request and the arithmetic both use, written so that both pick the same token, bit
// for bit, from the same logits and the same random number. C++17 and host/device: nvcc reads it.
//
// The rule, for one row of logits (Hugging Face's processor order):
//  1. Penalties: each distinct recent token t seen c times: l = l > 0 ? l / rep : l · rep, then
//     l −= presence + frequency · c.
//  2. Clean: NaN → −inf, −0 → +0. Temperature 0: the argmax, the lowest id among equal maxima.
//  3. Order σ: logit descending, then id ascending. x = (l − max) / T (exactly 0 for the maximum),
//     weight w = sampling_exp(x), fixed-point weight q = ⌊w · 2^40⌋ (integer sums are exact in
//     any order, so the GPU's parallel sums equal the CPU's sequential ones).
//  4. Kept: the first L tokens of σ, L the shortest length with L ≥ top_k (when set), or
//     L ≥ #{x ≥ ln(min_p)}, or (top_p < 1) prefix mass ≥ top_p · (mass of the top-k set), compared
//     in double.
//  5. Draw: target = ⌊total · U / 2^53⌋ for the row's random integer U < 2^53; the token is the
//     first kept token, by ascending id, whose running sum of q exceeds target. Token p is drawn
//     with probability q_p / total.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define MARLIN_HOST_DEVICE __host__ __device__
#else
#define MARLIN_HOST_DEVICE
#endif

namespace marlin {

// One row's sampling parameters (plain data: the CUDA backend uploads an array of them).
struct SampleRow {
  float temperature = 0;           // 0: greedy
  int32_t top_k = 0;               // 0 (or ≥ vocab): off
  float top_p = 1;                 // in (0, 1]
  float log_min_p = -INFINITY;     // ln(min_p); −inf: off
  float repetition_penalty = 1;    // > 0
  float presence_penalty = 0;
  float frequency_penalty = 0;
  int32_t penalty_begin = 0;       // this row's (token, count) pairs in the batch's list
  int32_t penalty_count = 0;
  uint64_t draw = 0;               // uniform random integer below 2^53
};

// A recent token and how often it occurs in the penalty window (distinct tokens within a row).
struct TokenCount {
  int32_t token = 0;
  int32_t count = 0;
};

constexpr int kSampleWeightBits = 40;
// vocab · 2^40 < 2^63: every sum of fixed-point weights fits in an int64.
constexpr int64_t kMaxSampleVocab = int64_t(1) << 23;

namespace sampling {

// Single-precision IEEE operations that the GPU compiler may not fuse into FMAs (on the host,
// x86-64 without -mfma has none to fuse into), so both sides round identically.
MARLIN_HOST_DEVICE inline float mul(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
MARLIN_HOST_DEVICE inline float add(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
MARLIN_HOST_DEVICE inline float sub(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
MARLIN_HOST_DEVICE inline float div(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

MARLIN_HOST_DEVICE inline float penalize(float l, int32_t count, float repetition, float presence, float frequency) {
  if (repetition != 1.0f) l = l > 0 ? div(l, repetition) : mul(l, repetition);
  return sub(l, add(presence, mul(frequency, float(count))));
}

// NaN → −inf, −0 → +0 (so that equal logits have equal order keys).
MARLIN_HOST_DEVICE inline float clean(float l) { return l != l ? -INFINITY : add(l, 0.0f); }

// Order-preserving key of a cleaned logit: a > b ⇔ key(a) > key(b).
MARLIN_HOST_DEVICE inline uint32_t order_key(float l) {
  uint32_t bits;
#ifdef __CUDA_ARCH__
  bits = __float_as_uint(l);
#else
  std::memcpy(&bits, &l, 4);
#endif
  return (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;
}
MARLIN_HOST_DEVICE inline float key_logit(uint32_t key) {
  const uint32_t bits = (key & 0x80000000u) ? key & 0x7fffffffu : ~key;
#ifdef __CUDA_ARCH__
  return __uint_as_float(bits);
#else
  float l;
  std::memcpy(&l, &bits, 4);
  return l;
#endif
}

// (l − max) / T, exactly 0 for the maximum itself (also when it is ±inf).
MARLIN_HOST_DEVICE inline float scaled_logit(float l, float max, float temperature) {
  return l == max ? 0.0f : div(sub(l, max), temperature);
}

// e^x for x ≤ 0 from +, −, × and exponent bits only (Cody–Waite reduction, degree-7 Taylor
// polynomial; a few ulp), so that host and device agree exactly; 0 below −80 (and for −inf).
MARLIN_HOST_DEVICE inline float sampling_exp(float x) {
  if (!(x >= -80.0f)) return 0.0f;
  const float round_shift = 12582912.0f;  // 1.5 · 2^23: adding it rounds to an integer
  const float n = sub(add(mul(x, 1.44269504f), round_shift), round_shift);  // x · log2(e), rounded
  // ln 2 = hi + lo with hi of 15 significant bits, so n · hi is exact for |n| ≤ 2^9.
  const float r = sub(sub(x, mul(n, 0.693145751953125f)), mul(n, 1.428606765330187e-06f));
  float p = 1.0f / 5040;
  p = add(mul(p, r), 1.0f / 720);
  p = add(mul(p, r), 1.0f / 120);
  p = add(mul(p, r), 1.0f / 24);
  p = add(mul(p, r), 1.0f / 6);
  p = add(mul(p, r), 0.5f);
  p = add(mul(p, r), 1.0f);
  p = add(mul(p, r), 1.0f);
  const uint32_t scale_bits = uint32_t(int(n) + 127) << 23;  // 2^n, n ≥ −116: a normal float
  float scale;
#ifdef __CUDA_ARCH__
  scale = __uint_as_float(scale_bits);
#else
  std::memcpy(&scale, &scale_bits, 4);
#endif
  return mul(p, scale);
}

// ⌊e^x · 2^40⌋ for x = scaled_logit(...).
MARLIN_HOST_DEVICE inline uint64_t fixed_weight(float x) {
  return static_cast<uint64_t>(mul(sampling_exp(x), 1099511627776.0f));
}

// The top-p threshold on prefix masses (+inf when top-p is off), and whether a prefix mass reaches it.
MARLIN_HOST_DEVICE inline double top_p_threshold(float top_p, uint64_t top_k_mass) {
  if (top_p >= 1.0f) return INFINITY;
#ifdef __CUDA_ARCH__
  return __dmul_rn(double(top_p), __ull2double_rn(top_k_mass));
#else
  return double(top_p) * double(top_k_mass);
#endif
}
MARLIN_HOST_DEVICE inline bool reaches(uint64_t mass, double threshold) {
#ifdef __CUDA_ARCH__
  return __ull2double_rn(mass) >= threshold;
#else
  return double(mass) >= threshold;
#endif
}

// ⌊total · draw / 2^53⌋ (< total for total < 2^63, draw < 2^53).
MARLIN_HOST_DEVICE inline uint64_t draw_target(uint64_t total, uint64_t draw) {
#ifdef __CUDA_ARCH__
  const uint64_t hi = __umul64hi(total, draw), lo = total * draw;
#else
  const unsigned __int128 product = static_cast<unsigned __int128>(total) * draw;
  const auto hi = uint64_t(product >> 64), lo = uint64_t(product);
#endif
  return (hi << 11) | (lo >> 53);
}

}  // namespace sampling
}  // namespace marlin
