// The vectorized inner loops of GPTQ's dense work (Hessian accumulation, Cholesky, error
// propagation). Each is compiled for x86-64-v4 (AVX-512), x86-64-v3 (AVX2 + FMA) and baseline
// x86-64, picked once at load time (GCC target_clones): one machine always runs the same code and
// gets bit-identical results, but the last bits may differ between machines.
#pragma once

#include <cstdint>

namespace marlin {

// out[r] = Σ_k rows[r][k]·v[k] over k < n, for r < count (1..4), in one pass over v. Each sum is
// accumulated in the same fixed lane order whatever `count` is, so a row's result does not depend
// on the rows it is computed with.
void dot_rows(const double* const* rows, int count, const double* v, int64_t n, double* out);

inline double dot(const double* a, const double* b, int64_t n) {
  double out;
  dot_rows(&a, 1, b, n, &out);
  return out;
}

// Adds the 4 × 16 block of Σ_t x[t][i]·x[t][j] for i in [i0, i0+4), j in [j0, j0+16) to
// sum[i·stride + j], over t < n rows of x (row-major, `stride` doubles per row; every index must be
// inside the row). Each element is accumulated over t in order, whatever block it is computed in.
void add_gram_block(const double* x, int64_t n, int64_t stride, int64_t i0, int64_t j0, double* sum);

// w[j] −= Σ_k e[k]·u[k·stride + j] for j < len, k < count.
void subtract_combination(float* w, const float* e, const float* u, int64_t stride, int64_t count, int64_t len);

}  // namespace marlin
