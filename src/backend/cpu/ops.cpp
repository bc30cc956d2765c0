#include "backend/cpu/ops.h"

#include <cmath>

namespace marlin::cpu {

#define MARLIN_MULTIVERSION __attribute__((target_clones("avx512f", "avx2,fma", "default")))

MARLIN_MULTIVERSION
void rms_norm(const float* x, const float* weight, float eps, int64_t n, float* out) {
  // Sum in double: n is small (the model width) and this keeps the norm exact to fp32.
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += double(x[i]) * double(x[i]);
  const float scale = float(1.0 / std::sqrt(sum / double(n) + double(eps)));
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * weight[i];
}

MARLIN_MULTIVERSION
void silu_mul(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

MARLIN_MULTIVERSION
void gelu_tanh_mul(float* gate, const float* up, int64_t n) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = 0.5f * g * (1.0f + std::tanh(kSqrt2OverPi * (g + 0.044715f * g * g * g))) * up[i];
  }
}

MARLIN_MULTIVERSION
void add_inplace(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

MARLIN_MULTIVERSION
void dot_rows(const float* q, const float* rows, int64_t n, int64_t dim, float scale, float* out) {
  const int64_t whole = dim - dim % 16;
  for (int64_t j = 0; j < n; ++j) {
    const float* row = rows + j * dim;
    // Sixteen partial sums let the compiler vectorize without -ffast-math.
    float partial[16] = {};
    for (int64_t d = 0; d < whole; d += 16)
      for (int i = 0; i < 16; ++i) partial[i] += q[d + i] * row[d + i];
    float sum = 0;
    for (int64_t d = whole; d < dim; ++d) sum += q[d] * row[d];
    for (float p : partial) sum += p;
    out[j] = scale * sum;
  }
}

MARLIN_MULTIVERSION
void weighted_row_accumulate(const float* weights, const float* rows, int64_t n, int64_t dim, float* out) {
  for (int64_t j = 0; j < n; ++j) {
    const float w = weights[j];
    const float* row = rows + j * dim;
    for (int64_t d = 0; d < dim; ++d) out[d] += w * row[d];
  }
}

void softmax(float* x, int64_t n) {
  float max = -INFINITY;
  for (int64_t i = 0; i < n; ++i) max = x[i] > max ? x[i] : max;
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  const float inv = float(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace marlin::cpu
