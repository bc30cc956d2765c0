// The Hessian side of LDLQ (quant/ldl.h: Gershgorin test, regularization, block LDL) and LDLQ
// itself (quant/ldlq.h) against textbook double-precision transcriptions: the block LDL recurrence
// with explicit inverses, and the feedback loop written out element by element.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "quant/cholesky.h"
#include "quant/hadamard.h"
#include "quant/hessian.h"
#include "quant/ldl.h"
#include "quant/ldlq.h"

#include "synthetic_layer.h"

namespace marlin {
namespace {

constexpr double kEps = std::numeric_limits<double>::epsilon();
constexpr double kFloatEps = std::numeric_limits<float>::epsilon();

using Matrix = std::vector<double>;  // row-major, square unless said otherwise

std::vector<float> gaussian(int64_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, sigma);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = normal(rng);
  return v;
}

using testing::correlated_hessian;


Matrix plus_identity(Matrix h, int64_t n, double lambda) {
  for (int64_t i = 0; i < n; ++i) h[size_t(i * n + i)] += lambda;
  return h;
}

double frobenius(const Matrix& a) {
  double s = 0.0;
  for (double v : a) s += v * v;
  return std::sqrt(s);
}

// Gauss–Jordan inverse with partial pivoting of a b × b matrix.
Matrix inverse(Matrix a, int64_t b) {
  Matrix inv(size_t(b * b), 0.0);
  for (int64_t i = 0; i < b; ++i) inv[size_t(i * b + i)] = 1.0;
  for (int64_t c = 0; c < b; ++c) {
    int64_t p = c;
    for (int64_t r = c + 1; r < b; ++r)
      if (std::abs(a[size_t(r * b + c)]) > std::abs(a[size_t(p * b + c)])) p = r;
    for (int64_t j = 0; j < b; ++j) {
      std::swap(a[size_t(c * b + j)], a[size_t(p * b + j)]);
      std::swap(inv[size_t(c * b + j)], inv[size_t(p * b + j)]);
    }
    const double pivot = a[size_t(c * b + c)];
    for (int64_t j = 0; j < b; ++j) {
      a[size_t(c * b + j)] /= pivot;
      inv[size_t(c * b + j)] /= pivot;
    }
    for (int64_t r = 0; r < b; ++r) {
      if (r == c) continue;
      const double f = a[size_t(r * b + c)];
      for (int64_t j = 0; j < b; ++j) {
        a[size_t(r * b + j)] -= f * a[size_t(c * b + j)];
        inv[size_t(r * b + j)] -= f * inv[size_t(c * b + j)];
      }
    }
  }
  return inv;
}

// Textbook block LDL of A (n × n) in blocks of b:
//   D_k = A_kk − Σ_{m<k} L_km·D_m·L_kmᵀ,   L_ik = (A_ik − Σ_{m<k} L_im·D_m·L_kmᵀ)·D_k⁻¹ (i > k).
struct OracleLdl {
  Matrix l, d;  // d: n × n block diagonal
};
OracleLdl oracle_block_ldl(const Matrix& a, int64_t n, int64_t b) {
  OracleLdl o{Matrix(size_t(n * n), 0.0), Matrix(size_t(n * n), 0.0)};
  auto block_of = [&](const Matrix& m, int64_t bi, int64_t bj) {
    Matrix out(size_t(b * b));
    for (int64_t i = 0; i < b; ++i)
      for (int64_t j = 0; j < b; ++j) out[size_t(i * b + j)] = m[size_t((bi * b + i) * n + bj * b + j)];
    return out;
  };
  // Σ_{m<k} L_im·D_m·L_kmᵀ, one b × b block.
  auto update = [&](int64_t bi, int64_t bk) {
    Matrix s(size_t(b * b), 0.0);
    for (int64_t m = 0; m < bk; ++m) {
      const Matrix lim = block_of(o.l, bi, m), dm = block_of(o.d, m, m), lkm = block_of(o.l, bk, m);
      for (int64_t i = 0; i < b; ++i)
        for (int64_t j = 0; j < b; ++j)
          for (int64_t p = 0; p < b; ++p)
            for (int64_t q = 0; q < b; ++q)
              s[size_t(i * b + j)] += lim[size_t(i * b + p)] * dm[size_t(p * b + q)] * lkm[size_t(j * b + q)];
    }
    return s;
  };
  const int64_t blocks = n / b;
  for (int64_t k = 0; k < blocks; ++k) {
    const Matrix akk = block_of(a, k, k), s = update(k, k);
    Matrix dk(size_t(b * b));
    for (size_t i = 0; i < dk.size(); ++i) dk[i] = akk[i] - s[i];
    for (int64_t i = 0; i < b; ++i)
      for (int64_t j = 0; j < b; ++j) {
        o.d[size_t((k * b + i) * n + k * b + j)] = dk[size_t(i * b + j)];
        o.l[size_t((k * b + i) * n + k * b + j)] = i == j ? 1.0 : 0.0;
      }
    const Matrix dinv = inverse(dk, b);
    for (int64_t bi = k + 1; bi < blocks; ++bi) {
      const Matrix aik = block_of(a, bi, k), si = update(bi, k);
      for (int64_t i = 0; i < b; ++i)
        for (int64_t j = 0; j < b; ++j) {
          double v = 0.0;
          for (int64_t p = 0; p < b; ++p) v += (aik[size_t(i * b + p)] - si[size_t(i * b + p)]) * dinv[size_t(p * b + j)];
          o.l[size_t((bi * b + i) * n + k * b + j)] = v;
        }
    }
  }
  return o;
}

float round_to_grid(float t, double step) { return float(step * std::nearbyint(double(t) / step)); }

// Scalar round-to-nearest on a fixed grid, as a strip quantizer.
StripQuantizer grid_rtn(double step) {
  return [step](const float* target, int64_t rows, int64_t width, int64_t, float* out) {
    for (int64_t i = 0; i < rows * width; ++i) out[i] = round_to_grid(target[i], step);
  };
}

// A quantizer that works on whole 16 × 16 tiles: symmetric 4-bit with one absmax scale per tile.
StripQuantizer tile_absmax_int4() {
  return [](const float* target, int64_t rows, int64_t width, int64_t, float* out) {
    for (int64_t r0 = 0; r0 < rows; r0 += 16)
      for (int64_t c0 = 0; c0 < width; c0 += 16) {
        float amax = 0.0f;
        for (int64_t r = r0; r < r0 + 16; ++r)
          for (int64_t c = c0; c < c0 + 16; ++c) amax = std::max(amax, std::abs(target[r * width + c]));
        const float scale = amax > 0.0f ? amax / 7.0f : 1.0f;
        for (int64_t r = r0; r < r0 + 16; ++r)
          for (int64_t c = c0; c < c0 + 16; ++c)
            out[r * width + c] = scale * std::nearbyint(target[r * width + c] / scale);
      }
  };
}

// The same feedback written out element by element: strips from the last to the first,
// target = w + Σ over the columns of later strips of (w − q)·L, then the strip quantized.
std::vector<float> oracle_ldlq(const std::vector<float>& w, int64_t rows, int64_t n, const Matrix& l, int64_t b,
                               const StripQuantizer& quantize) {
  std::vector<float> q(w.size(), 0.0f), target(size_t(rows * b)), strip(size_t(rows * b));
  for (int64_t k = n / b - 1; k >= 0; --k) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < b; ++c) {
        const int64_t col = k * b + c;
        double t = w[size_t(r * n + col)];
        for (int64_t j = (k + 1) * b; j < n; ++j)
          t += (double(w[size_t(r * n + j)]) - double(q[size_t(r * n + j)])) * l[size_t(j * n + col)];
        target[size_t(r * b + c)] = float(t);
      }
    quantize(target.data(), rows, b, k, strip.data());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < b; ++c) q[size_t(r * n + k * b + c)] = strip[size_t(r * b + c)];
  }
  return q;
}

// tr(E·H·Eᵀ) straight from the definition, over the full matrix.
double oracle_loss(const std::vector<float>& w, const std::vector<float>& q, int64_t rows, int64_t n, const Matrix& h) {
  double total = 0.0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j)
        total += (double(w[size_t(r * n + i)]) - q[size_t(r * n + i)]) * h[size_t(i * n + j)] *
                 (double(w[size_t(r * n + j)]) - q[size_t(r * n + j)]);
  return total;
}

TEST(Gershgorin, DiagonallyDominantPassesIndefiniteFails) {
  const int64_t n = 32;
  const std::vector<float> off = gaussian(n * n, 1);
  Matrix h(size_t(n * n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j <= i; ++j) h[size_t(i * n + j)] = h[size_t(j * n + i)] = i == j ? 0.0 : off[size_t(i * n + j)];
  for (int64_t i = 0; i < n; ++i) {
    double radius = 0.0;
    for (int64_t j = 0; j < n; ++j) radius += j == i ? 0.0 : std::abs(h[size_t(i * n + j)]);
    h[size_t(i * n + i)] = radius + 0.125;
  }
  EXPECT_TRUE(gershgorin_psd(h, n));
  EXPECT_NEAR(gershgorin_lower_bound(h, n), 0.125, 64 * n * kEps);

  const Matrix indefinite{1, 2, 2, 1};  // eigenvalues −1 and 3
  EXPECT_FALSE(gershgorin_psd(indefinite, 2));
  EXPECT_EQ(gershgorin_lower_bound(indefinite, 2), -1.0);
  // Sufficient only: the all-ones matrix is PSD (eigenvalues 0, 0, 0, 4) but its discs reach −2.
  EXPECT_FALSE(gershgorin_psd(Matrix(16, 1.0), 4));
  EXPECT_THROW(gershgorin_lower_bound(indefinite, 3), Error);
}

// A rank-deficient Hessian shifted slightly negative: the second dampening (0.1·mean) is enough.
TEST(Ldl, DampeningMakesASlightlyIndefiniteHessianDefinite) {
  const int64_t n = 64;
  Matrix h = correlated_hessian(n, 24, 3);  // rank <= 24
  double mean = 0.0;
  for (int64_t i = 0; i < n; ++i) mean += h[size_t(i * n + i)];
  mean /= double(n);
  h = plus_identity(h, n, -0.05 * mean);
  mean *= 0.95;
  std::vector<double> raw = h;
  EXPECT_FALSE(cholesky_lower(raw, n));
  EXPECT_FALSE(gershgorin_psd(h, n));
  const BlockLdl ldl = block_ldl(h, n);
  EXPECT_FALSE(ldl.gershgorin_shift);
  EXPECT_NEAR(ldl.damping, 0.1 * mean, 1e-12 * mean);
  std::vector<double> fixed = plus_identity(h, n, ldl.damping);
  EXPECT_TRUE(cholesky_lower(fixed, n));
}

// Far from PSD (a random symmetric matrix, eigenvalues down to about −2√n): every dampening fails
// and the Gershgorin shift takes over.
TEST(Ldl, GershgorinShiftRescuesAStronglyIndefiniteHessian) {
  const int64_t n = 64;
  const std::vector<float> g = gaussian(n * n, 4);
  Matrix h(size_t(n * n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j <= i; ++j) h[size_t(i * n + j)] = h[size_t(j * n + i)] = i == j ? 1.0 : g[size_t(i * n + j)];
  const double bound = gershgorin_lower_bound(h, n);
  ASSERT_LT(bound, -10.0);
  std::vector<double> raw = plus_identity(h, n, 10.0);  // the largest dampening tried
  EXPECT_FALSE(cholesky_lower(raw, n));
  const BlockLdl ldl = block_ldl(h, n);
  EXPECT_TRUE(ldl.gershgorin_shift);
  EXPECT_DOUBLE_EQ(ldl.damping, 0.01 - bound);
  std::vector<double> fixed = plus_identity(h, n, ldl.damping);
  EXPECT_TRUE(cholesky_lower(fixed, n));
}

// L·D·Lᵀ = H + λI, the structure of L and D, and the textbook recurrence's L and D.
TEST(Ldl, ReconstructsTheHessianAndMatchesTheRecurrence) {
  const int64_t n = 128;
  const Matrix h = correlated_hessian(n, 512, 5);
  for (int64_t b : {int64_t(16), int64_t(1), int64_t(32)}) {
    LdlOptions options;
    options.block = b;
    const BlockLdl ldl = block_ldl(h, n, options);
    const Matrix a = plus_identity(h, n, ldl.damping);
    // Structure: identity diagonal blocks, zeros above them; symmetric D blocks.
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = i / b * b; j < n; ++j) ASSERT_EQ(ldl.l[size_t(i * n + j)], i == j ? 1.0 : 0.0) << i << ", " << j;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < b; ++j)
        ASSERT_EQ(ldl.d[size_t(i * b + j)], ldl.d[size_t((i / b * b + j) * b + i % b)]);
    // L·D·Lᵀ against A: the Cholesky factorization's backward error is within γ_{n+1}·‖A‖.
    Matrix ld(size_t(n * n), 0.0), rec(size_t(n * n), 0.0);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < n; ++k)
        for (int64_t p = k / b * b; p < k / b * b + b; ++p)
          ld[size_t(i * n + k)] += ldl.l[size_t(i * n + p)] * ldl.d[size_t(p * b + k % b)];
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j)
        for (int64_t k = 0; k < n; ++k) rec[size_t(i * n + j)] += ld[size_t(i * n + k)] * ldl.l[size_t(j * n + k)];
    Matrix diff(rec.size());
    for (size_t i = 0; i < rec.size(); ++i) diff[i] = rec[i] - a[i];
    EXPECT_LT(frobenius(diff), double(n + 1) * kEps * frobenius(a)) << "block " << b;

    // The recurrence forms the same unique factors; both are forward-stable up to cond(A)·eps.
    const OracleLdl o = oracle_block_ldl(a, n, b);
    double l_err = 0.0, d_err = 0.0, d_max = 0.0, l_max = 0.0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) {
        l_err = std::max(l_err, std::abs(ldl.l[size_t(i * n + j)] - o.l[size_t(i * n + j)]));
        l_max = std::max(l_max, std::abs(o.l[size_t(i * n + j)]));
        if (i / b == j / b) {
          d_err = std::max(d_err, std::abs(ldl.d[size_t(i * b + j % b)] - o.d[size_t(i * n + j)]));
          d_max = std::max(d_max, std::abs(o.d[size_t(i * n + j)]));
        }
      }
    EXPECT_LT(l_err, 1e-9 * l_max) << "block " << b;
    EXPECT_LT(d_err, 1e-9 * d_max) << "block " << b;
  }
}

TEST(Ldl, ResultsDoNotDependOnThreads) {
  const int64_t n = 320;
  const Matrix h = correlated_hessian(n, 1024, 6);
  ThreadPool pool(2);
  LdlOptions threaded;
  threaded.pool = &pool;
  const BlockLdl a = block_ldl(h, n), b = block_ldl(h, n, threaded);
  EXPECT_EQ(a.l, b.l);
  EXPECT_EQ(a.d, b.d);
}

// LDLQ with a scalar grid quantizer against the element-by-element oracle on the recurrence's L:
// scalar LDL (strips of 1, QuIP's LDLQ) and 16-column strips.
TEST(Ldlq, MatchesTheScalarOracle) {
  const int64_t rows = 32, n = 96;
  const Matrix h = correlated_hessian(n, 400, 7);
  const std::vector<float> w = gaussian(rows * n, 8);
  for (int64_t b : {int64_t(1), int64_t(16)}) {
    LdlqOptions options;
    options.ldl.block = b;
    const LdlqResult got = quantize_ldlq(w.data(), rows, n, h, grid_rtn(0.25), options);
    const OracleLdl o = oracle_block_ldl(plus_identity(h, n, got.damping), n, b);
    const std::vector<float> want = oracle_ldlq(w, rows, n, o.l, b, grid_rtn(0.25));
    EXPECT_EQ(got.weights, want) << "block " << b;
    const double loss = oracle_loss(w, want, rows, n, h);
    EXPECT_NEAR(got.proxy_loss, loss, 1e-12 * loss) << "block " << b;
  }
}

// The orientation claim of quant/ldlq.h: the target each strip's quantizer sees is (E·L)_k + Ŵ_k.
TEST(Ldlq, TargetsAreTheLdlFeedback) {
  const int64_t rows = 48, n = 80;
  const Matrix h = correlated_hessian(n, 300, 9);
  const std::vector<float> w = gaussian(rows * n, 10);
  const BlockLdl ldl = block_ldl(h, n);
  std::vector<float> targets(w.size());
  const StripQuantizer rtn = grid_rtn(0.5);
  auto recording = [&](const float* target, int64_t r, int64_t width, int64_t strip, float* out) {
    for (int64_t i = 0; i < r; ++i)
      for (int64_t c = 0; c < width; ++c) targets[size_t(i * n + strip * width + c)] = target[i * width + c];
    rtn(target, r, width, strip, out);
  };
  const std::vector<float> q = ldlq(w.data(), rows, n, ldl, recording);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < n; ++k) {
      double el = 0.0;  // (E·L)[r][k]
      for (int64_t j = k; j < n; ++j)
        el += (double(w[size_t(r * n + j)]) - q[size_t(r * n + j)]) * ldl.l[size_t(j * n + k)];
      const double want = el + q[size_t(r * n + k)];
      ASSERT_NEAR(targets[size_t(r * n + k)], want, kFloatEps * std::abs(want) + 1e-12) << r << ", " << k;
    }
}

// On correlated Hessians LDLQ beats plain rounding in proxy loss, seed by seed.
TEST(Ldlq, BeatsRoundToNearestOnCorrelatedHessians) {
  const int64_t rows = 64, n = 256;
  double ldlq_total = 0.0, rtn_total = 0.0;
  for (uint32_t seed = 0; seed < 5; ++seed) {
    const Matrix h = correlated_hessian(n, 1024, 100 + seed);
    const std::vector<float> w = gaussian(rows * n, 200 + seed);
    const StripQuantizer rtn = grid_rtn(0.5);
    const LdlqResult got = quantize_ldlq(w.data(), rows, n, h, rtn);
    std::vector<float> plain(w.size());
    for (size_t i = 0; i < w.size(); ++i) plain[i] = round_to_grid(w[i], 0.5);
    const double rtn_loss = proxy_loss(w.data(), plain.data(), rows, n, h);
    EXPECT_LE(got.proxy_loss, rtn_loss) << "seed " << seed;
    ldlq_total += got.proxy_loss;
    rtn_total += rtn_loss;
  }
  EXPECT_LT(ldlq_total, rtn_total);
  std::printf("LDLQ / RTN proxy loss over 5 seeds: %.3f\n", ldlq_total / rtn_total);
}

// With H = c·I there is no feedback: LDLQ is the tile quantizer applied to W's strips.
TEST(Ldlq, IdentityHessianIsPlainTileQuantization) {
  const int64_t rows = 64, n = 128;
  const std::vector<float> w = gaussian(rows * n, 11);
  Matrix h(size_t(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) h[size_t(i * n + i)] = 3.0;
  const StripQuantizer tiles = tile_absmax_int4();
  const LdlqResult got = quantize_ldlq(w.data(), rows, n, h, tiles);
  std::vector<float> strip(size_t(rows * 16)), out(size_t(rows * 16)), want(w.size());
  for (int64_t k = 0; k < n / 16; ++k) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < 16; ++c) strip[size_t(r * 16 + c)] = w[size_t(r * n + k * 16 + c)];
    tiles(strip.data(), rows, 16, k, out.data());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < 16; ++c) want[size_t(r * n + k * 16 + c)] = out[size_t(r * 16 + c)];
  }
  EXPECT_EQ(got.weights, want);
}

// The whole incoherent pipeline: LDLQ on (R_out·W·R_inᵀ, R_in·H·R_inᵀ), then the result rotated
// back, has the same proxy loss in the original basis as LDLQ reported in the rotated one.
TEST(Ldlq, IncoherentPipelineKeepsTheLoss) {
  const int64_t rows = 64, n = 256;
  const Matrix h = correlated_hessian(n, 1024, 17);
  std::vector<float> w = gaussian(rows * n, 18);
  w[5] = 12.0f;  // an outlier, what the rotation spreads out
  const Rotation in(n, 19), out(rows, 20);
  std::vector<float> wr = w;
  Matrix hr = h;
  rotate_weight(wr.data(), rows, n, &out, &in);
  rotate_hessian(hr.data(), n, in);
  const LdlqResult got = quantize_ldlq(wr.data(), rows, n, hr, grid_rtn(0.25));
  std::vector<float> back = got.weights;
  unrotate_weight(back.data(), rows, n, &out, &in);
  const double loss = oracle_loss(w, back, rows, n, h);
  // The float rotations move E by ΔE with ‖ΔE‖ <= δ = 2·(log2 128 + 2)·eps·(‖W‖ + ‖Ŵ‖) (two
  // transforms each way). By Cauchy–Schwarz in the H inner product the loss moves by at most
  // 2·√(ΔE·H·ΔEᵀ)·√loss + ΔE·H·ΔEᵀ, with ΔE·H·ΔEᵀ <= ‖H‖₂·δ² <= ‖H‖_F·δ².
  double w_norm = 0.0, q_norm = 0.0;
  for (size_t i = 0; i < w.size(); ++i) {
    w_norm += double(w[i]) * w[i];
    q_norm += double(back[i]) * back[i];
  }
  const double delta = 2 * (7 + 2) * kFloatEps * (std::sqrt(w_norm) + std::sqrt(q_norm));
  const double moved = frobenius(h) * delta * delta;
  EXPECT_NEAR(got.proxy_loss, loss, 2 * std::sqrt(moved * loss) + moved);
}

TEST(Ldlq, ResultsDoNotDependOnThreads) {
  const int64_t rows = 96, n = 160;
  const Matrix h = correlated_hessian(n, 512, 12);
  const std::vector<float> w = gaussian(rows * n, 13);
  ThreadPool pool(2);
  LdlqOptions threaded;
  threaded.pool = &pool;
  threaded.ldl.pool = &pool;
  const LdlqResult a = quantize_ldlq(w.data(), rows, n, h, grid_rtn(0.25));
  const LdlqResult b = quantize_ldlq(w.data(), rows, n, h, grid_rtn(0.25), threaded);
  EXPECT_EQ(a.weights, b.weights);
  EXPECT_EQ(a.proxy_loss, b.proxy_loss);
}

TEST(Ldlq, RejectsBadInput) {
  const int64_t rows = 32, n = 48;
  const Matrix h = correlated_hessian(n, 200, 14);
  const std::vector<float> w = gaussian(rows * n, 15);
  const StripQuantizer rtn = grid_rtn(0.25);
  // Non-square Hessian (wrong entry count).
  EXPECT_THROW(quantize_ldlq(w.data(), rows, n, std::span(h).first(h.size() - 1), rtn), Error);
  EXPECT_THROW(block_ldl(h, n - 1), Error);
  // Sizes that are not whole 16 × 16 tiles.
  EXPECT_THROW(quantize_ldlq(w.data(), 24, 64, Matrix(64 * 64, 1.0), rtn), Error);
  const Matrix h40 = correlated_hessian(40, 100, 16);
  EXPECT_THROW(quantize_ldlq(w.data(), rows, 40, h40, rtn), Error);
  LdlOptions wide;
  wide.block = 32;  // does not divide 48
  EXPECT_THROW(block_ldl(h, n, wide), Error);
  // Non-finite weights, Hessian entries or quantizer output.
  std::vector<float> bad_w = w;
  bad_w[77] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(quantize_ldlq(bad_w.data(), rows, n, h, rtn), Error);
  Matrix bad_h = h;
  bad_h[size_t(5 * n + 2)] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THROW(quantize_ldlq(w.data(), rows, n, bad_h, rtn), Error);
  bad_h[size_t(5 * n + 2)] = std::numeric_limits<double>::infinity();
  EXPECT_THROW(block_ldl(bad_h, n), Error);
  auto nan_out = [](const float*, int64_t r, int64_t width, int64_t, float* out) {
    for (int64_t i = 0; i < r * width; ++i) out[i] = std::numeric_limits<float>::quiet_NaN();
  };
  EXPECT_THROW(quantize_ldlq(w.data(), rows, n, h, nan_out), Error);
  // A Hessian whose diagonal is not positive on average.
  EXPECT_THROW(block_ldl(plus_identity(Matrix(size_t(n * n), 0.0), n, -1.0), n), Error);
  // An LDL of another size, and no quantizer.
  const BlockLdl ldl = block_ldl(h, n);
  EXPECT_THROW(ldlq(w.data(), rows * 3 / 2, 32, ldl, rtn), Error);
  EXPECT_THROW(ldlq(w.data(), rows, n, ldl, StripQuantizer()), Error);
}

}  // namespace
}  // namespace marlin
