// Synthetic layers for the GPTQ/LDLQ/trellis tests and benches: input Hessians of activations with
// 8 strong shared directions, log-normal feature scales and unit noise (like real LLM layer inputs),
// accumulated by the production HessianAccumulator; weights with log-normal row and column scales.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "quant/hessian.h"

namespace marlin::testing {

inline std::vector<double> correlated_hessian(int64_t n, int64_t samples, uint32_t seed, ThreadPool* pool = nullptr) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> basis(size_t(8 * n)), scale(static_cast<size_t>(n)), x(size_t(samples * n));
  for (auto& v : basis) v = normal(rng);
  for (auto& s : scale) s = std::exp(0.7f * normal(rng));
  for (int64_t t = 0; t < samples; ++t) {
    float z[8];
    for (auto& v : z) v = 3.0f * normal(rng);
    for (int64_t i = 0; i < n; ++i) {
      float v = normal(rng);
      for (int d = 0; d < 8; ++d) v += z[d] * basis[size_t(d * n + i)];
      x[size_t(t * n + i)] = scale[size_t(i)] * v;
    }
  }
  HessianAccumulator acc(n);
  acc.add(x.data(), samples, pool);
  return acc.hessian();
}

// Weights with uneven row and column scales (log-normal, like real layers).
inline std::vector<float> layer_weights(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> row_scale(static_cast<size_t>(rows)), col_scale(static_cast<size_t>(cols)), w(size_t(rows * cols));
  for (auto& s : row_scale) s = 0.02f * std::exp(0.3f * normal(rng));
  for (auto& s : col_scale) s = std::exp(0.3f * normal(rng));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) w[size_t(r * cols + c)] = row_scale[size_t(r)] * col_scale[size_t(c)] * normal(rng);
  return w;
}

}  // namespace marlin::testing
