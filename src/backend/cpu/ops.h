// Elementwise and reduction ops on fp32 vectors (CPU). Hot loops are compiled for several ISAs
// and picked at load time (GCC target_clones).
#pragma once

#include <cstdint>

namespace marlin::cpu {

// out = x / sqrt(mean(x²) + eps) * weight, over n elements (out may alias x).
void rms_norm(const float* x, const float* weight, float eps, int64_t n, float* out);

// gate[i] = silu(gate[i]) * up[i]
void silu_mul(float* gate, const float* up, int64_t n);

// y[i] += x[i]
void add_inplace(float* y, const float* x, int64_t n);

// Σ a[i]·b[i] in fp32.
float dot(const float* a, const float* b, int64_t n);

// y[i] += a · x[i]
void axpy(float a, const float* x, float* y, int64_t n);

// In-place softmax over n values; returns nothing, values sum to 1.
void softmax(float* x, int64_t n);

}  // namespace marlin::cpu
