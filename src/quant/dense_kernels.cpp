#include "quant/dense_kernels.h"

namespace marlin {
namespace {

// Unaligned loads of 4 doubles (GCC vector extension; lowered to SSE2 pairs on baseline x86-64).
typedef double V4 __attribute__((vector_size(32), aligned(8), may_alias));

template <int C>
__attribute__((always_inline)) inline void dot_rows_fixed(const double* const* rows, const double* v, int64_t n, double* out) {
  V4 acc0[C], acc1[C];
  for (int r = 0; r < C; ++r) acc0[r] = acc1[r] = V4{0, 0, 0, 0};
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    const V4 v0 = *reinterpret_cast<const V4*>(v + k), v1 = *reinterpret_cast<const V4*>(v + k + 4);
    for (int r = 0; r < C; ++r) {
      acc0[r] += *reinterpret_cast<const V4*>(rows[r] + k) * v0;
      acc1[r] += *reinterpret_cast<const V4*>(rows[r] + k + 4) * v1;
    }
  }
  for (int r = 0; r < C; ++r) {
    const V4 a = acc0[r] + acc1[r];
    double s = (a[0] + a[1]) + (a[2] + a[3]);
    for (int64_t t = k; t < n; ++t) s += rows[r][t] * v[t];
    out[r] = s;
  }
}

}  // namespace

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
void dot_rows(const double* const* rows, int count, const double* v, int64_t n, double* out) {
  switch (count) {
    case 1: return dot_rows_fixed<1>(rows, v, n, out);
    case 2: return dot_rows_fixed<2>(rows, v, n, out);
    case 3: return dot_rows_fixed<3>(rows, v, n, out);
    default: return dot_rows_fixed<4>(rows, v, n, out);
  }
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
void add_gram_block(const double* x, int64_t n, int64_t stride, int64_t i0, int64_t j0, double* sum) {
  // 4 rows × 2 vectors of 8 in registers; per row of x: 4 broadcasts, 2 loads, 8 fused multiply-adds.
  typedef double V8 __attribute__((vector_size(64), aligned(8), may_alias));
  V8 acc[4][2] = {};
  for (int64_t t = 0; t < n; ++t) {
    const double* row = x + t * stride;
    const V8 b0 = *reinterpret_cast<const V8*>(row + j0), b1 = *reinterpret_cast<const V8*>(row + j0 + 8);
    for (int r = 0; r < 4; ++r) {
      const double a = row[i0 + r];
      acc[r][0] += a * b0;
      acc[r][1] += a * b1;
    }
  }
  for (int r = 0; r < 4; ++r) {
    double* out = sum + (i0 + r) * stride + j0;
    for (int k = 0; k < 8; ++k) {
      out[k] += acc[r][0][k];
      out[k + 8] += acc[r][1][k];
    }
  }
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
void subtract_combination(float* __restrict w, const float* e, const float* u, int64_t stride, int64_t count,
                          int64_t len) {
  int64_t k = 0;
  // Four rows of u per pass: each w element is loaded and stored count/4 times instead of count.
  for (; k + 4 <= count; k += 4) {
    const float e0 = e[k], e1 = e[k + 1], e2 = e[k + 2], e3 = e[k + 3];
    const float* __restrict u0 = u + k * stride;
    const float* __restrict u1 = u0 + stride;
    const float* __restrict u2 = u1 + stride;
    const float* __restrict u3 = u2 + stride;
    for (int64_t j = 0; j < len; ++j) w[j] -= (e0 * u0[j] + e1 * u1[j]) + (e2 * u2[j] + e3 * u3[j]);
  }
  for (; k < count; ++k) {
    const float ek = e[k];
    const float* __restrict uk = u + k * stride;
    for (int64_t j = 0; j < len; ++j) w[j] -= ek * uk[j];
  }
}

}  // namespace marlin
