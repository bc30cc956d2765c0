// Shared helpers of the CUDA op tests: fp16 test data and element-wise tolerance checks.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "backend/cuda/device_info.h"
#include "core/half.h"

namespace marlin::test {

#define MARLIN_REQUIRE_GPU() \
  if (::marlin::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device"

// 2^-11: the relative rounding error of fp16 (10 stored mantissa bits, round to nearest).
constexpr double kHalfUlp = 1.0 / 2048;

inline std::vector<uint16_t> random_halves(size_t n, float lo, float hi, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<uint16_t> v(n);
  for (auto& h : v) h = fp32_to_fp16(dist(rng));
  return v;
}

inline std::vector<float> to_float(const std::vector<uint16_t>& h) {
  std::vector<float> f(h.size());
  for (size_t i = 0; i < h.size(); ++i) f[i] = fp16_to_fp32(h[i]);
  return f;
}

// Expects |got[i] − ref[i]| ≤ tolerance(i) everywhere; reports the first few misses and the count.
inline void expect_within(const std::vector<float>& got, const std::vector<double>& ref,
                          const std::function<double(size_t)>& tolerance, const char* what) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  size_t misses = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::abs(double(got[i]) - ref[i]);
    if (!(err <= tolerance(i))) {  // also catches NaN
      if (++misses <= 5)
        ADD_FAILURE() << what << "[" << i << "]: got " << got[i] << ", expected " << ref[i] << " (error " << err
                      << ", tolerance " << tolerance(i) << ")";
    }
  }
  EXPECT_EQ(misses, 0u) << what << ": elements out of tolerance";
}

}  // namespace marlin::test
