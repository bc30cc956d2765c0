#include "quant/ldlq.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
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
  const double* l = ldl.l.data();
  for (int64_t k = n / b - 1; k >= 0; --k) {
    const int64_t c0 = k * b;
    // target_k = W_k + Σ_{j >= c0+b} E[:, j]·L[j, c0..c0+b): every row sums j in order.
    parallel_ranges(pool, rows, 4, [&](int64_t begin, int64_t end) {
      double acc[kMaxWidth];
      for (int64_t r = begin; r < end; ++r) {
        for (int64_t c = 0; c < b; ++c) acc[c] = w[r * n + c0 + c];
        const double* e = &err[size_t(r * n)];
        for (int64_t j = c0 + b; j < n; ++j) {
          const double ej = e[j];
          const double* lj = l + j * n + c0;
          for (int64_t c = 0; c < b; ++c) acc[c] += ej * lj[c];
        }
        for (int64_t c = 0; c < b; ++c) target[size_t(r * b + c)] = float(acc[c]);
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
  std::vector<double> row_loss(static_cast<size_t>(rows));
  parallel_ranges(pool, rows, 1, [&](int64_t begin, int64_t end) {
    std::vector<double> e(static_cast<size_t>(n));
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t i = 0; i < n; ++i) e[size_t(i)] = double(w[r * n + i]) - double(q[r * n + i]);
      // e·H·eᵀ from the lower triangle: Σ_i e_i·(h_ii·e_i + 2·Σ_{j<i} h_ij·e_j).
      double total = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        const double* hi = &hessian[size_t(i * n)];
        double off = 0.0;
        for (int64_t j = 0; j < i; ++j) off += hi[j] * e[size_t(j)];
        total += e[size_t(i)] * (hi[i] * e[size_t(i)] + 2.0 * off);
      }
      row_loss[size_t(r)] = total;
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
