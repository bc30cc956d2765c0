#include "quant/hessian.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "quant/dense_kernels.h"
#include "quant/parallel.h"

namespace marlin {
namespace {

// Activation rows per pass, converted to double (kChunk × stride doubles, L2-resident).
constexpr int64_t kChunk = 64;
// The Gram blocks are 4 rows × 16 columns (add_gram_block).
constexpr int64_t kRowBlock = 4, kColBlock = 16;

// The accumulator's row length: cols rounded up to whole column blocks.
int64_t padded_cols(int64_t cols) {
  MARLIN_CHECK(cols > 0 && cols <= kMaxHessianCols, "Hessian of {} columns is out of range (1..{})", cols,
               kMaxHessianCols);
  return (cols + kColBlock - 1) / kColBlock * kColBlock;
}

}  // namespace

HessianAccumulator::HessianAccumulator(int64_t cols) : cols_(cols), stride_(padded_cols(cols)) {
  sum_.assign(size_t(stride_ * stride_), 0.0);
}

uint64_t HessianAccumulator::memory_bytes(int64_t cols) {
  const auto stride = uint64_t(padded_cols(cols));
  return stride * stride * sizeof(double);
}

void HessianAccumulator::add(const float* x, int64_t n, ThreadPool* pool) {
  MARLIN_CHECK(n >= 0 && (n == 0 || x != nullptr), "Hessian: bad batch of {} rows", n);
  const int64_t c = cols_;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < c; ++i)
      MARLIN_CHECK(std::isfinite(x[t * c + i]), "activation row {}, feature {} is {}", t, i, x[t * c + i]);
  // Zero padding to whole blocks: padded features contribute nothing.
  const int64_t stride = stride_;
  std::vector<double> xd(static_cast<size_t>(kChunk * stride), 0.0);
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t m = std::min(kChunk, n - start);
    for (int64_t t = 0; t < m; ++t)
      for (int64_t i = 0; i < c; ++i) xd[size_t(t * stride + i)] = x[(start + t) * c + i];
    // Blocks of 4 rows of the upper triangle; block p (cost ~ c − 4p) is paired with the mirrored
    // one to balance the threads. Every element sums over t in order, so threads do not change it.
    const int64_t blocks = stride / kRowBlock;
    auto add_rows = [&](int64_t p) {
      const int64_t i0 = p * kRowBlock;
      for (int64_t j0 = i0 / kColBlock * kColBlock; j0 < stride; j0 += kColBlock)
        add_gram_block(xd.data(), m, stride, i0, j0, sum_.data());
    };
    parallel_ranges(pool, (blocks + 1) / 2, 1, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        add_rows(p);
        if (blocks - 1 - p != p) add_rows(blocks - 1 - p);
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
      const double v = f * sum_[size_t(i * stride_ + j)];
      h[size_t(i * c + j)] = v;
      h[size_t(j * c + i)] = v;
    }
  }
  return h;
}

}  // namespace marlin
