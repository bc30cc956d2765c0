// Elementwise and attention helper ops against double-precision loops.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "backend/cpu/ops.h"

namespace marlin::cpu {
namespace {

std::vector<float> random_vector(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// fp32 sums of `dim` products of unit-scale values are within dim·2^-23 of the exact sum (relative
// to the sum of magnitudes); the bounds below use that.
TEST(CpuOps, DotRowsMatchesDouble) {
  for (int64_t dim : {1, 15, 16, 64, 100, 256}) {
    const int64_t n = 37;
    auto q = random_vector(size_t(dim), 1), rows = random_vector(size_t(n * dim), 2);
    std::vector<float> out(static_cast<size_t>(n));
    dot_rows(q.data(), rows.data(), n, dim, 0.5f, out.data());
    for (int64_t j = 0; j < n; ++j) {
      double exact = 0, magnitude = 0;
      for (int64_t d = 0; d < dim; ++d) {
        exact += double(q[size_t(d)]) * rows[size_t(j * dim + d)];
        magnitude += std::abs(double(q[size_t(d)]) * rows[size_t(j * dim + d)]);
      }
      EXPECT_NEAR(out[size_t(j)], 0.5 * exact, 0.5 * magnitude * double(dim) * 0x1p-23 + 1e-30) << dim << " " << j;
    }
  }
}

TEST(CpuOps, WeightedRowAccumulateMatchesDouble) {
  const int64_t n = 53, dim = 80;
  auto w = random_vector(size_t(n), 3), rows = random_vector(size_t(n * dim), 4);
  std::vector<float> out(static_cast<size_t>(dim), 0.5f);  // accumulated into
  weighted_row_accumulate(w.data(), rows.data(), n, dim, out.data());
  for (int64_t d = 0; d < dim; ++d) {
    double exact = 0.5, magnitude = 0.5;
    for (int64_t j = 0; j < n; ++j) {
      exact += double(w[size_t(j)]) * rows[size_t(j * dim + d)];
      magnitude += std::abs(double(w[size_t(j)]) * rows[size_t(j * dim + d)]);
    }
    EXPECT_NEAR(out[size_t(d)], exact, magnitude * double(n + 1) * 0x1p-23);
  }
}

TEST(CpuOps, WeightedRowAccumulateInRunsEqualsOneRun) {
  const int64_t n = 37, dim = 64;
  auto w = random_vector(size_t(n), 5), rows = random_vector(size_t(n * dim), 6);
  std::vector<float> whole(size_t(dim), 0.0f), runs(size_t(dim), 0.0f);
  weighted_row_accumulate(w.data(), rows.data(), n, dim, whole.data());
  for (int64_t first = 0; first < n; first += 16)  // blocks of 16 rows, as the paged cache reads them
    weighted_row_accumulate(w.data() + first, rows.data() + first * dim, std::min<int64_t>(16, n - first), dim,
                            runs.data());
  EXPECT_EQ(whole, runs);
}

TEST(CpuOps, SoftmaxSumsToOneAndIsStable) {
  std::vector<float> x = {1000.0f, 999.0f, -1000.0f};
  softmax(x.data(), 3);
  EXPECT_NEAR(x[0], 1.0 / (1.0 + std::exp(-1.0)), 1e-6);
  EXPECT_NEAR(x[0] + x[1] + x[2], 1.0, 1e-6);
  EXPECT_EQ(x[2], 0.0f);
}

TEST(CpuOps, RmsNormAndSiluMul) {
  auto x = random_vector(576, 5), w = random_vector(576, 6);
  std::vector<float> out(576);
  rms_norm(x.data(), w.data(), 1e-5f, 576, out.data());
  double ms = 0;
  for (float v : x) ms += double(v) * v;
  const double inv = 1.0 / std::sqrt(ms / 576 + 1e-5);
  for (size_t i = 0; i < 576; ++i) EXPECT_NEAR(out[i], x[i] * inv * w[i], 4e-7 * std::abs(x[i] * inv * w[i]) + 1e-7);

  std::vector<float> gate = {-2.0f, 0.0f, 3.0f}, up = {1.0f, 5.0f, 2.0f};
  silu_mul(gate.data(), up.data(), 3);
  EXPECT_NEAR(gate[0], -2.0 / (1.0 + std::exp(2.0)), 1e-6);
  EXPECT_EQ(gate[1], 0.0f);
  EXPECT_NEAR(gate[2], 2 * 3.0 / (1.0 + std::exp(-3.0)), 1e-5);
}

}  // namespace
}  // namespace marlin::cpu
