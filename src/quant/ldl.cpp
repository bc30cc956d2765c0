#include "quant/ldl.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "quant/cholesky.h"
#include "quant/hessian.h"
#include "quant/parallel.h"

namespace marlin {
namespace {

void check_square(std::span<const double> h, int64_t n) {
  MARLIN_CHECK(n > 0 && n <= kMaxHessianCols, "Hessian of {} columns is out of range (1..{})", n, kMaxHessianCols);
  MARLIN_CHECK(int64_t(h.size()) == n * n, "Hessian has {} entries, {} columns need {}", h.size(), n, n * n);
}

// a ← the lower triangle of H + λI, zeros above; then the Cholesky factor in place.
bool factor(std::span<const double> h, int64_t n, double damping, std::vector<double>& a, ThreadPool* pool) {
  std::fill(a.begin(), a.end(), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    std::copy(h.begin() + i * n, h.begin() + i * n + i + 1, a.begin() + i * n);
    a[size_t(i * n + i)] += damping;
  }
  return cholesky_lower(a, n, pool);
}

// Turns the Cholesky factor C (lower triangle of a, zeros above) into L in place, and D.
void cholesky_to_block_ldl(std::vector<double>& a, int64_t n, int64_t b, std::vector<double>& d,
                           ThreadPool* pool) {
  // C_k, the diagonal blocks of C, stacked like D (n × b), before L's identity blocks replace them.
  std::vector<double> ck(size_t(n * b));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t base = i / b * b;
    std::copy(a.begin() + i * n + base, a.begin() + i * n + base + b, ck.begin() + i * b);
  }
  // D_k = C_k·C_kᵀ (C_k lower triangular: the sum stops at min(i, j)).
  d.assign(size_t(n * b), 0.0);
  for (int64_t base = 0; base < n; base += b)
    for (int64_t i = 0; i < b; ++i)
      for (int64_t j = 0; j < b; ++j) {
        double s = 0.0;
        for (int64_t m = 0; m <= std::min(i, j); ++m) s += ck[size_t((base + i) * b + m)] * ck[size_t((base + j) * b + m)];
        d[size_t((base + i) * b + j)] = s;
      }
  // Row r of L, block k < r's block: x with x·C_k = C[r, block k], by back substitution over j.
  auto row_of_l = [&](int64_t r) {
    double* row = &a[size_t(r * n)];
    const int64_t own = r / b * b;
    for (int64_t base = 0; base < own; base += b) {
      const double* c = &ck[size_t(base * b)];
      double* x = row + base;
      for (int64_t j = b - 1; j >= 0; --j) {
        double s = x[j];
        for (int64_t m = j + 1; m < b; ++m) s -= x[m] * c[m * b + j];
        x[j] = s / c[j * b + j];
      }
    }
    std::fill(row + own, row + n, 0.0);
    row[r] = 1.0;
  };
  // Row r costs ~ r: pair it with row n−1−r.
  parallel_ranges(pool, (n + 1) / 2, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      row_of_l(r);
      if (n - 1 - r != r) row_of_l(n - 1 - r);
    }
  });
}

}  // namespace

double gershgorin_lower_bound(std::span<const double> h, int64_t n) {
  check_square(h, n);
  std::vector<double> radius(static_cast<size_t>(n), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < i; ++j) {
      const double a = std::abs(h[size_t(i * n + j)]);
      radius[size_t(i)] += a;
      radius[size_t(j)] += a;
    }
  double g = std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < n; ++i) g = std::min(g, h[size_t(i * n + i)] - radius[size_t(i)]);
  return g;
}

BlockLdl block_ldl(std::span<const double> h, int64_t n, const LdlOptions& options) {
  check_square(h, n);
  const int64_t b = options.block;
  MARLIN_CHECK(b >= 1 && b <= 128 && n % b == 0, "block LDL: block {} does not divide {} columns (or is not 1..128)",
               b, n);
  MARLIN_CHECK(options.percdamp > 0.0 && std::isfinite(options.percdamp), "block LDL: dampening {} is not positive",
               options.percdamp);
  MARLIN_CHECK(options.damping_retries >= 0 && options.damping_retries <= 20, "block LDL: {} dampening retries",
               options.damping_retries);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j <= i; ++j)
      MARLIN_CHECK(std::isfinite(h[size_t(i * n + j)]), "Hessian entry ({}, {}) is {}", i, j, h[size_t(i * n + j)]);
  double mean_diag = 0.0;
  for (int64_t i = 0; i < n; ++i) mean_diag += h[size_t(i * n + i)];
  mean_diag /= double(n);
  MARLIN_CHECK(mean_diag > 0.0, "block LDL: the Hessian's mean diagonal is {}, not positive", mean_diag);

  BlockLdl out;
  out.n = n;
  out.block = b;
  const double g = gershgorin_lower_bound(h, n);
  out.gershgorin_psd = g >= 0.0;
  std::vector<double> a(size_t(n * n));
  double damping = options.percdamp * mean_diag;
  bool ok = false;
  for (int attempt = 0; attempt <= options.damping_retries && !ok; ++attempt) {
    if (attempt > 0) damping *= 10.0;
    ok = factor(h, n, damping, a, options.pool);
  }
  if (!ok && g < 0.0) {
    damping = options.percdamp * mean_diag - g;
    out.gershgorin_shift = true;
    ok = factor(h, n, damping, a, options.pool);
  }
  MARLIN_CHECK(ok, "block LDL: the Hessian of {} columns is not positive definite even with dampening {}", n,
               damping);
  out.damping = damping;
  cholesky_to_block_ldl(a, n, b, out.d, options.pool);
  out.l = std::move(a);
  return out;
}

}  // namespace marlin
