// The randomized block Hadamard rotation (quant/hadamard.h) against an explicit Sylvester
// construction and the published SplitMix64 outputs, and the invariants the runtime and the
// quantizer rely on: R is orthogonal, (W·R_inᵀ)·(R_in·x) = W·x, and the rotated Hessian gives the
// rotated error the same proxy loss.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "quant/hadamard.h"
#include "quant/ldlq.h"

namespace marlin {
namespace {

constexpr double kFloatEps = std::numeric_limits<float>::epsilon();
constexpr double kDoubleEps = std::numeric_limits<double>::epsilon();

// The orthonormal Sylvester matrix of size b by doubling: S_2m = [[S_m, S_m], [S_m, −S_m]] / √2.
std::vector<double> sylvester(int64_t b) {
  std::vector<double> s{1.0};
  for (int64_t m = 1; m < b; m *= 2) {
    std::vector<double> t(size_t(4 * m * m));
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < m; ++j) {
        const double v = s[size_t(i * m + j)] / std::sqrt(2.0);
        t[size_t(i * 2 * m + j)] = v;
        t[size_t(i * 2 * m + j + m)] = v;
        t[size_t((i + m) * 2 * m + j)] = v;
        t[size_t((i + m) * 2 * m + j + m)] = -v;
      }
    s.swap(t);
  }
  return s;
}

// R = H_b·diag(s) as an explicit d × d matrix, from the Sylvester matrix and the sign bits.
std::vector<double> explicit_rotation(const Rotation& r) {
  const int64_t d = r.dim(), b = r.block();
  const std::vector<double> s = sylvester(b);
  std::vector<double> m(size_t(d * d), 0.0);
  for (int64_t base = 0; base < d; base += b)
    for (int64_t i = 0; i < b; ++i)
      for (int64_t j = 0; j < b; ++j) m[size_t((base + i) * d + base + j)] = s[size_t(i * b + j)] * r.sign(base + j);
  return m;
}

std::vector<float> gaussian(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = normal(rng);
  return v;
}

double norm(const std::vector<double>& v) {
  double s = 0.0;
  for (double x : v) s += x * x;
  return std::sqrt(s);
}

TEST(Hadamard, BlockSizeFollowsTheDimension) {
  EXPECT_EQ(hadamard_block(1536), 128);
  EXPECT_EQ(hadamard_block(576), 64);  // SmolLM2-135M's hidden size, 9 · 64
  EXPECT_EQ(hadamard_block(640), 128);
  EXPECT_EQ(hadamard_block(96), 32);
  EXPECT_EQ(hadamard_block(48), 16);
  EXPECT_THROW(hadamard_block(100), Error);
  EXPECT_THROW(hadamard_block(0), Error);
  EXPECT_THROW(Rotation(40, 1), Error);
  std::vector<float> x(96);
  EXPECT_THROW(block_hadamard(x.data(), 96, 64), Error);  // 96 is not whole blocks of 64
  EXPECT_THROW(block_hadamard(x.data(), 96, 3), Error);
}

// Every block size against the Sylvester construction, column by column (unit vectors in).
TEST(Hadamard, MatchesSylvesterConstruction) {
  for (int64_t b = 1; b <= 128; b *= 2) {
    const std::vector<double> s = sylvester(b);
    for (int64_t j = 0; j < b; ++j) {
      std::vector<float> xf(size_t(2 * b), 0.0f);
      std::vector<double> xd(size_t(2 * b), 0.0);
      xf[size_t(b + j)] = 1.0f;  // second block: blocks are independent
      xd[size_t(b + j)] = 1.0;
      block_hadamard(xf.data(), 2 * b, b);
      block_hadamard(xd.data(), 2 * b, b);
      for (int64_t i = 0; i < b; ++i) {
        ASSERT_EQ(xf[size_t(i)], 0.0f);
        const double want = s[size_t(i * b + j)];
        // The sums of ±1 are exact; only the final scaling by 1/√b rounds.
        ASSERT_NEAR(xd[size_t(b + i)], want, 2 * kDoubleEps) << "b=" << b << " (" << i << ", " << j << ")";
        ASSERT_NEAR(xf[size_t(b + i)], want, 2 * kFloatEps) << "b=" << b << " (" << i << ", " << j << ")";
      }
    }
  }
}

// Published SplitMix64 outputs for seed 0 (Vigna's reference: 0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4).
TEST(Hadamard, SignBitsAreSplitMix64) {
  const std::vector<uint64_t> bits = rotation_sign_bits(0, 128);
  ASSERT_EQ(bits.size(), 2u);
  EXPECT_EQ(bits[0], 0xe220a8397b1dcdafull);
  EXPECT_EQ(bits[1], 0x6e789e6aa1b965f4ull);
  const std::vector<uint64_t> partial = rotation_sign_bits(0, 80);  // bits past d are zero
  EXPECT_EQ(partial[1], 0x6e789e6aa1b965f4ull & 0xffff);
  const Rotation r(128, 0);
  EXPECT_EQ(r.sign(0), -1.0);  // bit 0 of 0x…af is set
  EXPECT_EQ(r.sign(4), 1.0);   // bit 4 of 0x…af is clear
  EXPECT_NE(rotation_sign_bits(1, 128), bits);
}

// apply() against the explicit H_b·S, and R·Rᵀ = I, for a dimension in three blocks of 128.
TEST(Hadamard, RotationIsOrthonormalAndMatchesExplicitMatrix) {
  for (int64_t d : {int64_t(384), int64_t(192)}) {
    const Rotation r(d, 42);
    const std::vector<double> m = explicit_rotation(r);
    std::vector<double> cols(size_t(d * d), 0.0);  // row k: R·e_k, i.e. column k of R
    for (int64_t k = 0; k < d; ++k) cols[size_t(k * d + k)] = 1.0;
    r.apply(cols.data(), d);
    for (int64_t i = 0; i < d; ++i)
      for (int64_t k = 0; k < d; ++k)
        ASSERT_NEAR(cols[size_t(k * d + i)], m[size_t(i * d + k)], 2 * kDoubleEps) << d << ": (" << i << ", " << k << ")";
    // R·Rᵀ = I: rows of R are columns of Rᵀ; dot products of b terms of size 1/b.
    for (int64_t i = 0; i < d; ++i)
      for (int64_t j = 0; j < d; ++j) {
        double s = 0.0;
        for (int64_t k = 0; k < d; ++k) s += m[size_t(i * d + k)] * m[size_t(j * d + k)];
        ASSERT_NEAR(s, i == j ? 1.0 : 0.0, 4 * double(r.block()) * kDoubleEps) << "(" << i << ", " << j << ")";
      }
  }
}

TEST(Hadamard, RotateThenUnrotateIsIdentity) {
  const int64_t rows = 1536, cols = 576;
  const std::vector<float> w = gaussian(rows * cols, 7);
  const Rotation in(cols, 11), out(rows, 12);
  std::vector<float> v = w;
  rotate_weight(v.data(), rows, cols, &out, &in);
  double moved = 0.0;
  for (size_t i = 0; i < v.size(); ++i) moved = std::max(moved, double(std::abs(v[i] - w[i])));
  EXPECT_GT(moved, 0.1);
  unrotate_weight(v.data(), rows, cols, &out, &in);
  // Four transforms of log2(b) + 1 rounding steps each, on values of size ~1 (up to ~5).
  const double tol = 4 * (7 + 1) * kFloatEps * 5;
  for (size_t i = 0; i < v.size(); ++i) ASSERT_NEAR(v[i], w[i], tol) << i;

  std::vector<float> x = gaussian(3 * cols, 8), x0 = x;
  in.apply(x.data(), 3);
  in.apply_transpose(x.data(), 3);
  for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(x[i], x0[i], 2 * (7 + 1) * kFloatEps * 5) << i;
}

// What the runtime relies on: with W' = R_out·W·R_inᵀ, y = R_outᵀ·(W'·(R_in·x)) equals W·x.
TEST(Hadamard, RotatedLayerComputesTheSameOutput) {
  const int64_t rows = 256, cols = 576, batch = 4;
  const std::vector<float> w = gaussian(rows * cols, 21), x = gaussian(batch * cols, 22);
  for (bool rotate_out : {false, true}) {
    const Rotation in(cols, 5), out(rows, 6);
    const Rotation* out_side = rotate_out ? &out : nullptr;
    std::vector<float> wr = w, xr = x;
    rotate_weight(wr.data(), rows, cols, out_side, &in);
    in.apply(xr.data(), batch);
    std::vector<float> y(size_t(batch * rows));
    for (int64_t t = 0; t < batch; ++t)
      for (int64_t r = 0; r < rows; ++r) {
        double s = 0.0;
        for (int64_t k = 0; k < cols; ++k) s += double(wr[size_t(r * cols + k)]) * xr[size_t(t * cols + k)];
        y[size_t(t * rows + r)] = float(s);
      }
    if (out_side) out.apply_transpose(y.data(), batch);
    for (int64_t t = 0; t < batch; ++t) {
      std::vector<double> err(static_cast<size_t>(rows)), xt(static_cast<size_t>(cols));
      for (int64_t k = 0; k < cols; ++k) xt[size_t(k)] = x[size_t(t * cols + k)];
      double w_norm = 0.0;
      for (float v : w) w_norm += double(v) * v;
      for (int64_t r = 0; r < rows; ++r) {
        double s = 0.0;
        for (int64_t k = 0; k < cols; ++k) s += double(w[size_t(r * cols + k)]) * xt[size_t(k)];
        err[size_t(r)] = y[size_t(t * rows + r)] - s;
      }
      // Each float transform (log2 b + 1 roundings; four of them, plus the output's rounding)
      // perturbs by ~eps relative to ‖W‖_F·‖x‖.
      const double bound = 4 * (7 + 2) * kFloatEps * std::sqrt(w_norm) * norm(xt);
      EXPECT_LT(norm(err), bound) << "rotate_out=" << rotate_out << " batch " << t;
    }
  }
}

// H' = R·H·Rᵀ against the explicit product, and tr(E'·H'·E'ᵀ) = tr(E·H·Eᵀ) for E' = R_out·E·R_inᵀ.
TEST(Hadamard, RotatedHessianKeepsTheProxyLoss) {
  const int64_t n = 192, rows = 64, samples = 400;
  const std::vector<float> x = gaussian(samples * n, 31);
  std::vector<double> h(size_t(n * n), 0.0);
  for (int64_t t = 0; t < samples; ++t)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j)
        h[size_t(i * n + j)] += 2.0 * x[size_t(t * n + i)] * x[size_t(t * n + j)] / double(samples);
  const Rotation in(n, 3), out(rows, 4);
  std::vector<double> hr = h;
  rotate_hessian(hr.data(), n, in);
  const std::vector<double> m = explicit_rotation(in);
  double h_max = 0.0;
  for (double v : h) h_max = std::max(h_max, std::abs(v));
  std::vector<double> mh(size_t(n * n), 0.0);  // R·H
  for (int64_t i = 0; i < n; ++i)
    for (int64_t a = 0; a < n; ++a)
      for (int64_t c = 0; c < n; ++c) mh[size_t(i * n + c)] += m[size_t(i * n + a)] * h[size_t(a * n + c)];
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0.0;
      for (int64_t c = 0; c < n; ++c) s += mh[size_t(i * n + c)] * m[size_t(j * n + c)];
      // Two transforms of b-term sums: rounding ~ b·eps relative to the largest entry.
      ASSERT_NEAR(hr[size_t(i * n + j)], s, 4 * double(in.block()) * kDoubleEps * h_max) << i << ", " << j;
    }

  const std::vector<float> e = gaussian(rows * n, 32);
  std::vector<float> er = e;
  rotate_weight(er.data(), rows, n, &out, &in);
  const std::vector<float> zero(e.size(), 0.0f);
  const double loss = proxy_loss(e.data(), zero.data(), rows, n, h);
  const double rotated = proxy_loss(er.data(), zero.data(), rows, n, hr);
  // E' is rounded to float: a relative change ~ (log2 b + 1)·eps_float in E, times 2 for the quadratic form,
  // times cond(H) ≈ (1 + √(n/samples))² / (1 − √(n/samples))² ≈ 11 for these Gaussian samples.
  EXPECT_NEAR(rotated, loss, 2 * 11 * (7 + 1) * kFloatEps * loss);
}

TEST(Hadamard, ResultsDoNotDependOnThreads) {
  const int64_t rows = 512, cols = 384;
  const std::vector<float> w = gaussian(rows * cols, 41);
  const Rotation in(cols, 1), out(rows, 2);
  std::vector<float> a = w, b = w;
  ThreadPool pool(2);
  rotate_weight(a.data(), rows, cols, &out, &in);
  rotate_weight(b.data(), rows, cols, &out, &in, &pool);
  EXPECT_EQ(a, b);
  EXPECT_THROW(rotate_weight(a.data(), rows, cols, &in, &out), Error);  // sides swapped: dimensions differ
  std::vector<double> h(size_t(cols * cols));
  EXPECT_THROW(rotate_hessian(h.data(), cols, out), Error);
}

}  // namespace
}  // namespace marlin
