#include "quant/ldlq.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "quant/dense_kernels.h"
#include "quant/parallel.h"

namespace marlin {
namespace {

constexpr int64_t kTile = 16;
constexpr int64_t kMaxWidth = 128;  // the widest strip (LdlOptions::block's limit)

void check_weights(const float* w, int64_t rows, int64_t cols) {
  MARLIN_CHECK(w != nullptr, "LDLQ: no weights");
  MARLIN_CHECK(rows > 0 && cols > 0 && rows % kTile == 0 && cols % kTile == 0,
               "LDLQ: a {} × {} weight is not whole {} × {} tiles", rows, cols, kTile, kTile);
  for (int64_t i = 0; i < rows * cols; ++i)
    MARLIN_CHECK(std::isfinite(w[i]), "LDLQ: weight ({}, {}) is {}", i / cols, i % cols, w[i]);
}

}  // namespace

std::vector<float> ldlq(const float* w, int64_t rows, int64_t cols, const BlockLdl& ldl, const StripQuantizer& quantize,
                        ThreadPool* pool) {
  check_weights(w, rows, cols);
  const int64_t n = cols, b = ldl.block;
  MARLIN_CHECK(ldl.n == n && b >= 1 && b <= kMaxWidth && n % b == 0 && int64_t(ldl.l.size()) == n * n,
               "LDLQ: an LDL of {} columns in blocks of {} for a weight of {} columns", ldl.n, b, n);
  MARLIN_CHECK(bool(quantize), "LDLQ: no strip quantizer");
  std::vector<float> q(size_t(rows * n)), target(size_t(rows * b)), strip(size_t(rows * b));
  std::vector<double> err(size_t(rows * n), 0.0);  // W − Ŵ of the strips done so far
  std::vector<double> feedback;                     // L[c0+b.., c0..c0+b) transposed: b × m
  for (int64_t k = n / b - 1; k >= 0; --k) {
    const int64_t c0 = k * b, done = c0 + b, m = n - done;
    feedback.resize(size_t(b * m));
    for (int64_t j = 0; j < m; ++j)
      for (int64_t c = 0; c < b; ++c) feedback[size_t(c * m + j)] = ldl.l[size_t((done + j) * n + c0 + c)];
    // target_k = W_k + E[:, done..n)·L[done..n, c0..c0+b): 4 rows share each pass over a column of
    // L; every element is one dot product in a fixed order (dot_rows), whatever the threads.
    parallel_ranges(pool, (rows + 3) / 4, 1, [&](int64_t begin, int64_t end) {
      const double* rows_e[4];
      double sums[4];
      for (int64_t g = begin; g < end; ++g) {
        const int64_t r0 = 4 * g;
        const int count = int(std::min<int64_t>(4, rows - r0));
        for (int t = 0; t < count; ++t) rows_e[t] = &err[size_t((r0 + t) * n + done)];
        for (int64_t c = 0; c < b; ++c) {
          dot_rows(rows_e, count, feedback.data() + c * m, m, sums);
          for (int t = 0; t < count; ++t)
            target[size_t((r0 + t) * b + c)] = float(double(w[(r0 + t) * n + c0 + c]) + sums[t]);
        }
      }
    });
    quantize(target.data(), rows, b, k, strip.data());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < b; ++c) {
        const float v = strip[size_t(r * b + c)];
        MARLIN_CHECK(std::isfinite(v), "LDLQ: the quantizer returned {} at ({}, {})", v, r, c0 + c);
        q[size_t(r * n + c0 + c)] = v;
        err[size_t(r * n + c0 + c)] = double(w[r * n + c0 + c]) - double(v);
      }
  }
  return q;
}

double proxy_loss(const float* w, const float* q, int64_t rows, int64_t cols, std::span<const double> hessian,
                  ThreadPool* pool) {
  const int64_t n = cols;
  MARLIN_CHECK(rows > 0 && cols > 0 && int64_t(hessian.size()) == n * n,
               "proxy loss: Hessian has {} entries, {} columns need {}", hessian.size(), n, n * n);
  // e·H·eᵀ from the lower triangle, Σ_i e_i·(h_ii·e_i + 2·Σ_{j<i} h_ij·e_j), 4 rows of E sharing
  // each pass over a row of H.
  std::vector<double> row_loss(static_cast<size_t>(rows), 0.0);
  parallel_ranges(pool, (rows + 3) / 4, 1, [&](int64_t begin, int64_t end) {
    std::vector<double> e(size_t(4 * n));
    const double* rows_e[4];
    double sums[4];
    for (int64_t g = begin; g < end; ++g) {
      const int64_t r0 = 4 * g;
      const int count = int(std::min<int64_t>(4, rows - r0));
      for (int t = 0; t < count; ++t) {
        for (int64_t i = 0; i < n; ++i) e[size_t(t * n + i)] = double(w[(r0 + t) * n + i]) - double(q[(r0 + t) * n + i]);
        rows_e[t] = &e[size_t(t * n)];
      }
      for (int64_t i = 0; i < n; ++i) {
        const double* hi = &hessian[size_t(i * n)];
        dot_rows(rows_e, count, hi, i, sums);
        for (int t = 0; t < count; ++t) {
          const double ei = rows_e[t][i];
          row_loss[size_t(r0 + t)] += ei * (hi[i] * ei + 2.0 * sums[t]);
        }
      }
    }
  });
  double loss = 0.0;
  for (double v : row_loss) loss += v;
  return loss;
}

LdlqResult quantize_ldlq(const float* w, int64_t rows, int64_t cols, std::span<const double> hessian,
                         const StripQuantizer& quantize, const LdlqOptions& options) {
  check_weights(w, rows, cols);
  MARLIN_CHECK(int64_t(hessian.size()) == cols * cols, "LDLQ: Hessian has {} entries, {} columns need {}",
               hessian.size(), cols, cols * cols);
  const BlockLdl factor = block_ldl(hessian, cols, options.ldl);
  LdlqResult result;
  result.weights = ldlq(w, rows, cols, factor, quantize, options.pool);
  result.damping = factor.damping;
  result.proxy_loss = proxy_loss(w, result.weights.data(), rows, cols, hessian, options.pool);
  return result;
}

}  // namespace marlin
