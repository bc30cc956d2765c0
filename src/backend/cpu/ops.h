// Elementwise and reduction ops on fp32 vectors (CPU). Hot loops are compiled for several ISAs
// and picked at load time (GCC target_clones).
#pragma once

#include <cstdint>

namespace marlin::cpu {

// out = x / sqrt(mean(x²) + eps) * weight, over n elements (out may alias x).
void rms_norm(const float* x, const float* weight, float eps, int64_t n, float* out);

// gate[i] = silu(gate[i]) * up[i]
void silu_mul(float* gate, const float* up, int64_t n);

// gate[i] = gelu_tanh(gate[i]) * up[i]: 0.5·g·(1 + tanh(sqrt(2/π)·(g + 0.044715·g³))).
void gelu_tanh_mul(float* gate, const float* up, int64_t n);

// y[i] += x[i]
void add_inplace(float* y, const float* x, int64_t n);

// out[j] = scale · Σ_d q[d]·rows[j·dim + d] for j < n: one query against n consecutive rows.
void dot_rows(const float* q, const float* rows, int64_t n, int64_t dim, float scale, float* out);

// out[d] += Σ_j weights[j]·rows[j·dim + d] for d < dim, adding row after row in order (so rows
// split into runs and accumulated run after run sum exactly as one run would).
void weighted_row_accumulate(const float* weights, const float* rows, int64_t n, int64_t dim, float* out);

// In-place softmax over n values; returns nothing, values sum to 1.
void softmax(float* x, int64_t n);

}  // namespace marlin::cpu
