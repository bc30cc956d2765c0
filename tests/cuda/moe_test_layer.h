// Random sparse-MLP layers for the CUDA MoE tests: every expert's gate, up and down quantized by
// RTN from uniform weights (within ±2/sqrt(fan-in), so activations stay of order 1).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "core/thread_pool.h"
#include "quant/quant_buffers.h"
#include "quant/rtn.h"

namespace marlin::test {

// Uniform values in [-scale, scale) from a fast generator (the large layers hold 600M weights).
inline void fill_uniform(std::vector<float>& v, float scale, uint64_t seed) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& f : v) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    f = scale * (float(x >> 40) * 0x1p-23f - 1.0f);
  }
}

// The experts (views of `weights`, which the layer owns).
struct Layer {
  int64_t d_model = 0, d_ffn = 0;
  std::vector<QuantBuffers> weights;  // per expert: gate, up, down
  std::vector<ExpertWeights> experts;
};

inline Layer make_layer(int n_experts, int64_t d_model, int64_t d_ffn, const TensorFormat& format, uint64_t seed,
                        ThreadPool& pool) {
  Layer l{d_model, d_ffn, {}, {}};
  l.weights.reserve(size_t(3 * n_experts));
  std::vector<float> w;
  for (int e = 0; e < n_experts; ++e)
    for (int m = 0; m < 3; ++m) {
      const int64_t rows = m < 2 ? d_ffn : d_model, cols = m < 2 ? d_model : d_ffn;
      w.resize(size_t(rows * cols));
      fill_uniform(w, float(2.0 / std::sqrt(double(cols))), seed + uint64_t(3 * e + m));
      l.weights.push_back(quantize_rtn(w.data(), rows, cols, format, {}, &pool));
    }
  for (int e = 0; e < n_experts; ++e)
    l.experts.push_back({l.weights[size_t(3 * e)].view(), l.weights[size_t(3 * e + 1)].view(),
                         l.weights[size_t(3 * e + 2)].view()});
  return l;
}

}  // namespace marlin::test
