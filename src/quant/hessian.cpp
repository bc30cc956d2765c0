#include "quant/hessian.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "quant/dense_kernels.h"
#include "quant/parallel.h"

namespace marlin {
namespace {

// Activation rows per pass: their transpose (cols × kChunk doubles) is what every dot reads.
constexpr int64_t kChunk = 64;

}  // namespace

HessianAccumulator::HessianAccumulator(int64_t cols) : cols_(cols) {
  MARLIN_CHECK(cols > 0 && cols <= kMaxHessianCols, "Hessian of {} columns is out of range (1..{})", cols,
               kMaxHessianCols);
  sum_.assign(size_t(cols * cols), 0.0);
}

void HessianAccumulator::add(const float* x, int64_t n, ThreadPool* pool) {
  MARLIN_CHECK(n >= 0 && (n == 0 || x != nullptr), "Hessian: bad batch of {} rows", n);
  const int64_t c = cols_;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < c; ++i)
      MARLIN_CHECK(std::isfinite(x[t * c + i]), "activation row {}, feature {} is {}", t, i, x[t * c + i]);
  std::vector<double> xt(size_t(c * kChunk));  // transposed chunk: feature-major
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t m = std::min(kChunk, n - start);
    for (int64_t t = 0; t < m; ++t) {
      for (int64_t i = 0; i < c; ++i) xt[size_t(i * kChunk + t)] = x[(start + t) * c + i];
    }
    // Rows of the upper triangle 4 at a time, sharing each pass over a feature's column; group p
    // (cost ~ c − 4p) is paired with the mirrored one to balance the threads.
    const int64_t groups = (c + 3) / 4;
    auto add_group = [&](int64_t g) {
      const int64_t i0 = 4 * g;
      const int count = int(std::min<int64_t>(4, c - i0));
      const double* rows[4];
      for (int r = 0; r < count; ++r) rows[r] = &xt[size_t((i0 + r) * kChunk)];
      double sums[4];
      for (int64_t j = i0; j < c; ++j) {
        dot_rows(rows, count, &xt[size_t(j * kChunk)], m, sums);
        for (int r = 0; r < count; ++r)
          if (j >= i0 + r) sum_[size_t((i0 + r) * c + j)] += sums[r];
      }
    };
    parallel_ranges(pool, (groups + 1) / 2, 1, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        add_group(p);
        if (groups - 1 - p != p) add_group(groups - 1 - p);
      }
    });
  }
  samples_ += n;
}

std::vector<double> HessianAccumulator::hessian() const {
  MARLIN_CHECK(samples_ > 0, "Hessian: no activations were added");
  const int64_t c = cols_;
  std::vector<double> h(size_t(c * c));
  const double f = 2.0 / double(samples_);
  for (int64_t i = 0; i < c; ++i) {
    for (int64_t j = i; j < c; ++j) {
      const double v = f * sum_[size_t(i * c + j)];
      h[size_t(i * c + j)] = v;
      h[size_t(j * c + i)] = v;
    }
  }
  return h;
}

}  // namespace marlin
