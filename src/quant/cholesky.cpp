#include "quant/cholesky.h"

#include <algorithm>
#include <cmath>

#include "quant/dense_kernels.h"
#include "quant/parallel.h"

namespace marlin {
namespace {

constexpr int64_t kBlock = 64;  // rows per step of the blocked factorization

}  // namespace

// Row-oriented: entry (i, j) is (a_ij − L[i][0..j)·L[j][0..j)) / L_jj. The rows of a block of 64
// need only finished columns before the block, so they are computed 4 at a time per pass over each
// finished row (split over the threads); the block's own triangle follows row by row.
bool cholesky_lower(std::vector<double>& a, int64_t n, ThreadPool* pool) {
  double* m = a.data();
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t e = std::min(n, b + kBlock);
    parallel_ranges(pool, (e - b + 3) / 4, 1, [&](int64_t q0, int64_t q1) {
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t i0 = b + 4 * q;
        const int count = int(std::min<int64_t>(4, e - i0));
        const double* rows[4];
        for (int r = 0; r < count; ++r) rows[r] = m + (i0 + r) * n;
        double sums[4];
        for (int64_t j = 0; j < b; ++j) {
          dot_rows(rows, count, m + j * n, j, sums);
          for (int r = 0; r < count; ++r) m[(i0 + r) * n + j] = (m[(i0 + r) * n + j] - sums[r]) / m[j * n + j];
        }
      }
    });
    for (int64_t i = b; i < e; ++i) {
      double* ri = m + i * n;
      for (int64_t j = b; j < i; ++j) ri[j] = (ri[j] - dot(ri, m + j * n, j)) / m[j * n + j];
      const double pivot = ri[i] - dot(ri, ri, i);
      if (!(pivot > 0.0) || !std::isfinite(pivot)) return false;
      ri[i] = std::sqrt(pivot);
    }
  }
  return true;
}

bool inverse_hessian_factor(const std::vector<double>& h, int64_t n, double damping, std::vector<double>& u,
                            ThreadPool* pool) {
  // Reversal J (index i -> n−1−i): J·H·J = L·Lᵀ gives H = (J·L·J)(J·L·J)ᵀ with J·L·J upper, so
  // U = (J·L·J)⁻¹ = J·L⁻¹·J. (H stands for H + λI from here on.)
  std::vector<double> a(size_t(n * n));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j <= i; ++j) a[size_t(i * n + j)] = h[size_t((n - 1 - i) * n + (n - 1 - j))];
    a[size_t(i * n + i)] += damping;
  }
  if (!cholesky_lower(a, n, pool)) return false;

  // X = (L⁻¹)ᵀ: row j of X is column j of L⁻¹, the solution of L·x = e_j:
  //   X[j][i] = (δ_ij − L[i][j0..i)·X[j][j0..i)) / L_ii for i >= j (X[j][k] = 0 for k < j).
  // Rows of X are solved 4 at a time (j0 = their first row), sharing each pass over a row of L;
  // groups are independent, and group p (cost ~ (n − 4p)²) is paired with the mirrored one.
  std::vector<double> x(size_t(n * n), 0.0);
  const int64_t groups = (n + 3) / 4;
  auto solve_group = [&](int64_t g) {
    const int64_t j0 = 4 * g;
    const int count = int(std::min<int64_t>(4, n - j0));
    const double* rows[4];
    for (int r = 0; r < count; ++r) rows[r] = &x[size_t((j0 + r) * n + j0)];
    double sums[4];
    for (int64_t i = j0; i < n; ++i) {
      const double* li = &a[size_t(i * n)];
      dot_rows(rows, count, li + j0, i - j0, sums);
      for (int r = 0; r < count; ++r)
        if (i >= j0 + r) x[size_t((j0 + r) * n + i)] = ((i == j0 + r ? 1.0 : 0.0) - sums[r]) / li[i];
    }
  };
  parallel_ranges(pool, (groups + 1) / 2, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      solve_group(p);
      if (groups - 1 - p != p) solve_group(groups - 1 - p);
    }
  });
  // U[i][j] = L⁻¹[n−1−i][n−1−j] = X[n−1−j][n−1−i], nonzero for j >= i (written into L's storage,
  // which is no longer needed).
  std::fill(a.begin(), a.end(), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i; j < n; ++j) a[size_t(i * n + j)] = x[size_t((n - 1 - j) * n + (n - 1 - i))];
  u.swap(a);
  for (double v : u)
    if (!std::isfinite(v)) return false;
  return true;
}

}  // namespace marlin
