// The layer trellis quantizer (quant/trellis_quantize.h): its codes against the layout decoder,
// LDLQ feedback against per-tile encoding and against GPTQ at the same width, determinism, bad
// input, and a real layer slice; and the bit allocation (quant/bit_allocation.h) against brute force.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "quant/bit_allocation.h"
#include "quant/dequant.h"
#include "quant/gptq.h"
#include "quant/hessian.h"
#include "quant/ldlq.h"
#include "quant/trellis_quantize.h"

#include "synthetic_layer.h"

namespace marlin {
namespace {

using testing::correlated_hessian;
using testing::layer_weights;


struct Case {
  int64_t rows, cols;
};
constexpr Case kCases[] = {{64, 128}, {48, 96}};  // 96: Hadamard blocks of 32

// GPTQ's proxy loss, its Ŵ in the original column order (act-order undone).
double gptq_loss(const std::vector<float>& w, int64_t rows, int64_t cols, const std::vector<double>& h,
                 const std::string& format) {
  const GptqResult g = quantize_gptq(w.data(), rows, cols, TensorFormat::parse(format), h);
  std::vector<float> q(w.size()), row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    dequantize_row(g.weights.view(), r, row.data());
    for (int64_t c = 0; c < cols; ++c) q[size_t(r * cols + (g.weights.perm.empty() ? c : g.weights.perm[size_t(c)]))] = row[size_t(c)];
  }
  return proxy_loss(w.data(), q.data(), rows, cols, h);
}

template <typename T>
std::vector<T> read_fixture(const std::string& name, size_t count) {
  const std::string path = std::string(MARLIN_FIXTURES_DIR) + "/quant/" + name;
  std::vector<T> v(count);
  std::FILE* f = std::fopen(path.c_str(), "rb");
  EXPECT_NE(f, nullptr) << path;
  if (!f) return {};
  const size_t got = std::fread(v.data(), sizeof(T), count, f);
  std::fclose(f);
  EXPECT_EQ(got, count) << path;
  return v;
}

TEST(TrellisQuantize, CodesDecodeToTheReportedLoss) {
  for (const Case& c : kCases)
    for (int k : {2, 3, 4}) {
      const auto w = layer_weights(c.rows, c.cols, 11);
      const auto h = correlated_hessian(c.cols, 4 * c.cols, 12);
      const TrellisLayer layer = quantize_trellis_layer(w.data(), c.rows, c.cols, h, k, 77);
      ASSERT_EQ(int64_t(layer.codes.size()), c.rows * c.cols * k / 16);
      ASSERT_EQ(int64_t(layer.row_scales.size()), c.rows);
      const auto decoded = decode_trellis_layer(layer.codes, layer.row_scales, c.rows, c.cols, k, 77);
      // The same floats, so the same loss up to the order of the sums (identical here).
      EXPECT_NEAR(proxy_loss(w.data(), decoded.data(), c.rows, c.cols, h), layer.proxy_loss, 1e-12 * layer.proxy_loss);
      // The rotated loss differs only by the fp32 rounding of W' (relative ~1e-7 of W, of E ≥ 1e-2 of W).
      EXPECT_NEAR(layer.rotated_proxy_loss, layer.proxy_loss, 1e-4 * layer.proxy_loss);
      EXPECT_GT(layer.damping, 0.0);
      EXPECT_GT(layer.relative_loss, 0.0);
      EXPECT_LT(layer.relative_loss, 1.0);

      TrellisQuantOptions unordered;
      unordered.order_strips = false;
      const TrellisLayer right_to_left = quantize_trellis_layer(w.data(), c.rows, c.cols, h, k, 77, unordered);
      const auto rtl_decoded = decode_trellis_layer(right_to_left.codes, right_to_left.row_scales, c.rows, c.cols, k, 77);
      EXPECT_NEAR(proxy_loss(w.data(), rtl_decoded.data(), c.rows, c.cols, h), right_to_left.proxy_loss,
                  1e-12 * right_to_left.proxy_loss);

      const TrellisLayer plain = quantize_trellis_layer(w.data(), c.rows, c.cols, {}, k, 77);
      const auto plain_decoded = decode_trellis_layer(plain.codes, plain.row_scales, c.rows, c.cols, k, 77);
      double sq = 0.0;
      for (size_t i = 0; i < w.size(); ++i) sq += (double(w[i]) - plain_decoded[i]) * (double(w[i]) - plain_decoded[i]);
      EXPECT_NEAR(sq, plain.proxy_loss, 1e-12 * sq);
      EXPECT_EQ(plain.damping, 0.0);
    }
}

// LDLQ's feedback must beat encoding every tile on its own, on the loss that matters (with H), on
// every instance. Against GPTQ int-K at group 128 (K + 0.125 bits with its fp16 scales; one group
// of 96 at 96 columns) and per channel, on the same H: these synthetic Hessians (8 directions
// holding ~98% of the energy) are hard for 16-column strips, whose last strip has no later one to
// absorb its error, and single instances can lose (48 × 96 with seeds 21/22 loses at K = 3 and 4,
// trellis/GPTQ 1.5 and 1.8), so the claim tested is on the geometric mean of GPTQ/trellis over 4
// instances per shape and K (GPTQ's outliers, up to 20× on seeds 23/24, would swamp a plain sum).
TEST(TrellisQuantize, LdlqBeatsPlainTilesAndGptqOnSyntheticLayers) {
  for (const Case& c : kCases)
    for (int k : {2, 3, 4}) {
      double log_g128 = 0.0, log_pc = 0.0;  // Σ log(GPTQ / trellis)
      for (uint32_t seed = 21; seed < 29; seed += 2) {
        const auto w = layer_weights(c.rows, c.cols, seed);
        const auto h = correlated_hessian(c.cols, 4 * c.cols, seed + 1);
        const TrellisLayer layer = quantize_trellis_layer(w.data(), c.rows, c.cols, h, k, 5);
        const TrellisLayer plain = quantize_trellis_layer(w.data(), c.rows, c.cols, {}, k, 5);
        const auto plain_decoded = decode_trellis_layer(plain.codes, plain.row_scales, c.rows, c.cols, k, 5);
        const double plain_loss = proxy_loss(w.data(), plain_decoded.data(), c.rows, c.cols, h);
        const double one_g128 = gptq_loss(w, c.rows, c.cols, h, fmt::format("int{}-g128", k));
        const double one_pc = gptq_loss(w, c.rows, c.cols, h, fmt::format("int{}-pc", k));
        std::printf("%lld x %lld K=%d seeds %u/%u: trellis+LDLQ %.4g, plain tiles %.2fx, GPTQ g128 %.2fx, pc %.2fx\n",
                    (long long)c.rows, (long long)c.cols, k, seed, seed + 1, layer.proxy_loss,
                    plain_loss / layer.proxy_loss, one_g128 / layer.proxy_loss, one_pc / layer.proxy_loss);
        EXPECT_LT(layer.proxy_loss, plain_loss);
        log_g128 += std::log(one_g128 / layer.proxy_loss);
        log_pc += std::log(one_pc / layer.proxy_loss);
      }
      EXPECT_GT(log_g128, 0.0) << c.rows << " x " << c.cols << " K=" << k;
      EXPECT_GT(log_pc, 0.0) << c.rows << " x " << c.cols << " K=" << k;
    }
}

// A slice of a real layer (tools/make_trellis_layer_fixture.py: SmolLM2 layer-0 q_proj, 64 × 128,
// with the Hessian of its real normalized-embedding inputs): trellis at K bits against GPTQ int-K
// at group 128 and per channel, with and without act-order, every K.
TEST(TrellisQuantize, BeatsGptqOnARealLayer) {
  const int64_t rows = 64, cols = 128;
  const auto w = read_fixture<float>("trellis_layer0_w.f32", size_t(rows * cols));
  const auto h = read_fixture<double>("trellis_layer0_h.f64", size_t(cols * cols));
  ASSERT_FALSE(w.empty() || h.empty());
  for (int k : {2, 3, 4}) {
    const TrellisLayer layer = quantize_trellis_layer(w.data(), rows, cols, h, k, 3);
    for (const char* variant : {"g128", "pc", "g128-act", "pc-act"}) {
      const double gptq = gptq_loss(w, rows, cols, h, fmt::format("int{}-{}", k, variant));
      std::printf("real 64 x 128 K=%d: trellis+LDLQ %.4g, GPTQ %s %.2fx\n", k, layer.proxy_loss, variant,
                  gptq / layer.proxy_loss);
      EXPECT_LT(layer.proxy_loss, gptq) << "K=" << k << " " << variant;
    }
  }
}

TEST(TrellisQuantize, DeterministicWhateverTheThreads) {
  const auto w = layer_weights(48, 96, 31);
  const auto h = correlated_hessian(96, 384, 32);
  ThreadPool one(1), two(2);
  TrellisQuantOptions a, b;
  a.pool = &one;
  b.pool = &two;
  const TrellisLayer x = quantize_trellis_layer(w.data(), 48, 96, h, 3, 9, a);
  const TrellisLayer y = quantize_trellis_layer(w.data(), 48, 96, h, 3, 9, b);
  const TrellisLayer z = quantize_trellis_layer(w.data(), 48, 96, h, 3, 9);
  EXPECT_EQ(x.codes, y.codes);
  EXPECT_EQ(x.codes, z.codes);
  EXPECT_EQ(x.row_scales, y.row_scales);
  EXPECT_EQ(x.proxy_loss, y.proxy_loss);
  EXPECT_EQ(x.rotated_proxy_loss, z.rotated_proxy_loss);
  // Another seed is another rotation, so other codes.
  EXPECT_NE(quantize_trellis_layer(w.data(), 48, 96, h, 3, 10, a).codes, x.codes);
}

// A stack (q, k, v: one input, one seed) gives each matrix what it gets alone, bit for bit, with a
// Hessian and without; rows of different counts, so the stack's tiles are not one matrix's multiple.
TEST(TrellisQuantize, StackMatchesEachMatrixAlone) {
  const int64_t cols = 96;
  const auto q = layer_weights(48, cols, 41), k = layer_weights(16, cols, 42), v = layer_weights(32, cols, 43);
  const auto h = correlated_hessian(cols, 384, 44);
  ThreadPool pool(2);
  TrellisQuantOptions options;
  options.pool = &pool;
  const TrellisMatrix stack[] = {{q.data(), 48}, {k.data(), 16}, {v.data(), 32}};
  for (const bool with_hessian : {true, false}) {
    SCOPED_TRACE(with_hessian ? "with a Hessian" : "without");
    const std::span<const double> hs = with_hessian ? std::span<const double>(h) : std::span<const double>();
    const std::vector<TrellisLayer> together = quantize_trellis_stack(stack, cols, hs, 3, 9, options);
    ASSERT_EQ(together.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
      const TrellisLayer alone = quantize_trellis_layer(stack[i].w, stack[i].rows, cols, hs, 3, 9, options);
      EXPECT_EQ(together[i].rows, stack[i].rows);
      EXPECT_EQ(together[i].codes, alone.codes) << "matrix " << i;
      EXPECT_EQ(together[i].row_scales, alone.row_scales);
      EXPECT_EQ(together[i].proxy_loss, alone.proxy_loss);
      EXPECT_EQ(together[i].rotated_proxy_loss, alone.rotated_proxy_loss);
      EXPECT_EQ(together[i].damping, alone.damping);
    }
  }
  const TrellisMatrix bad[] = {{q.data(), 48}, {k.data(), 8}};
  EXPECT_THROW(quantize_trellis_stack(bad, cols, h, 3, 9), Error);
  EXPECT_THROW(quantize_trellis_stack({}, cols, h, 3, 9), Error);
}

// Rows of zeros get fp16's smallest normal scale 2^-14, so every Ŵ' value is below 2^-14 times the
// codebook's largest magnitude (< 4 · kTrellisScale) and the loss within tr(H)·‖E‖² of that.
TEST(TrellisQuantize, AllZeroWeightsStayTiny) {
  const std::vector<float> w(size_t(32 * 32), 0.0f);
  const auto h = correlated_hessian(32, 128, 3);
  const TrellisLayer layer = quantize_trellis_layer(w.data(), 32, 32, h, 2, 1);
  for (uint16_t s : layer.row_scales) EXPECT_EQ(s, 0x0400);
  double trace = 0.0;
  for (int64_t i = 0; i < 32; ++i) trace += h[size_t(i * 32 + i)];
  const double largest = std::ldexp(4.0 * 0.8046254, -14);
  EXPECT_LE(layer.proxy_loss, trace * 32 * 32 * largest * largest);
  EXPECT_EQ(layer.relative_loss, 0.0);
}

TEST(TrellisQuantize, RejectsBadInput) {
  const auto w = layer_weights(32, 64, 41);
  const auto h = correlated_hessian(64, 256, 42);
  EXPECT_THROW(quantize_trellis_layer(w.data(), 40, 48, {}, 2, 0), Error);   // rows not whole tiles
  EXPECT_THROW(quantize_trellis_layer(w.data(), 32, 56, {}, 2, 0), Error);   // cols not whole tiles
  EXPECT_THROW(quantize_trellis_layer(w.data(), 32, 64, h, 0, 0), Error);
  EXPECT_THROW(quantize_trellis_layer(w.data(), 32, 64, h, 9, 0), Error);
  EXPECT_THROW(quantize_trellis_layer(w.data(), 32, 64, std::span<const double>(h).first(100), 2, 0), Error);
  EXPECT_THROW(quantize_trellis_layer(nullptr, 32, 64, h, 2, 0), Error);
  auto bad_w = w;
  bad_w[77] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(quantize_trellis_layer(bad_w.data(), 32, 64, h, 2, 0), Error);
  EXPECT_THROW(quantize_trellis_layer(bad_w.data(), 32, 64, {}, 2, 0), Error);
  auto bad_h = h;
  bad_h[5 * 64 + 3] = std::numeric_limits<double>::infinity();
  EXPECT_THROW(quantize_trellis_layer(w.data(), 32, 64, bad_h, 2, 0), Error);
  auto huge = w;
  huge[0] = 1e7f;  // spread over 32 × 64 entries by the rotations, still past fp16's 65504
  EXPECT_THROW(quantize_trellis_layer(huge.data(), 32, 64, {}, 2, 0), Error);
  const std::vector<uint16_t> codes(size_t(32 * 64 * 2 / 16)), scales(32);
  EXPECT_NO_THROW(decode_trellis_layer(codes, scales, 32, 64, 2, 0));
  EXPECT_THROW(decode_trellis_layer(codes, scales, 32, 64, 3, 0), Error);
  EXPECT_THROW(decode_trellis_layer(codes, std::span<const uint16_t>(scales).first(31), 32, 64, 2, 0), Error);
}

// ---- bit allocation ----

double total_loss(const std::vector<LayerCost>& layers, const std::vector<int>& bits) {
  double s = 0.0;
  for (size_t i = 0; i < layers.size(); ++i) s += layers[i].loss[size_t(bits[i])];
  return s;
}

bool within_budget(const std::vector<LayerCost>& layers, const std::vector<int>& bits, double target) {
  double used = 0.0, total = 0.0;
  for (size_t i = 0; i < layers.size(); ++i) {
    used += double(layers[i].weights) * bits[i];
    total += double(layers[i].weights);
  }
  return used <= target * total;
}

// Every allocation in [lo, hi]^n: the least loss within the budget.
double brute_force(const std::vector<LayerCost>& layers, double target, int lo, int hi) {
  const size_t n = layers.size();
  std::vector<int> bits(n, lo);
  double best = std::numeric_limits<double>::infinity();
  for (;;) {
    if (within_budget(layers, bits, target)) best = std::min(best, total_loss(layers, bits));
    size_t i = 0;
    while (i < n && bits[i] == hi) bits[i++] = lo;
    if (i == n) return best;
    ++bits[i];
  }
}

TEST(BitAllocation, ExactAgainstBruteForce) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  for (int trial = 0; trial < 40; ++trial) {
    const int lo = 1 + trial % 2, hi = lo + 3;
    std::vector<LayerCost> layers(5);
    for (auto& l : layers) {
      l.weights = 256 * (1 + int64_t(rng() % 12));
      l.loss.assign(size_t(hi + 1), 0.0);
      // Decreasing, not necessarily convex: the DP must not rely on convexity.
      double v = 1.0 + uniform(rng);
      for (int k = 0; k <= hi; ++k) l.loss[size_t(k)] = v, v *= 0.1 + 0.8 * uniform(rng);
    }
    for (double target = lo; target <= hi + 0.25; target += 0.25) {
      const auto bits = allocate_trellis_bits(layers, target, lo, hi);
      ASSERT_TRUE(within_budget(layers, bits, target)) << "trial " << trial << " target " << target;
      for (int b : bits) ASSERT_TRUE(b >= lo && b <= hi);
      EXPECT_DOUBLE_EQ(total_loss(layers, bits), brute_force(layers, target, lo, hi)) << "trial " << trial << " target " << target;
    }
  }
}

TEST(BitAllocation, RateDistortionSplit) {
  const auto loss = rate_distortion_losses(1.0, 3, 8);
  ASSERT_EQ(loss.size(), 9u);
  EXPECT_EQ(loss[3], 1.0);
  EXPECT_EQ(loss[5], 1.0 / 16);
  EXPECT_EQ(loss[0], 64.0);
  // Two equal layers, one 16× as sensitive (two bits' worth): at 2.5 bits on average it gets 3.
  std::vector<LayerCost> layers{{1000, rate_distortion_losses(1.0, 2, 8)}, {1000, rate_distortion_losses(16.0, 2, 8)}};
  EXPECT_EQ(allocate_trellis_bits(layers, 2.5, 2, 8), (std::vector<int>{2, 3}));
  EXPECT_EQ(allocate_trellis_bits(layers, 3.0, 2, 8), (std::vector<int>{2, 4}));
  EXPECT_EQ(allocate_trellis_bits(layers, 8.0, 2, 8), (std::vector<int>{8, 8}));
  EXPECT_EQ(allocate_trellis_bits(layers, 2.0, 2, 8), (std::vector<int>{2, 2}));
}

// Large coprime weight counts make the exact table too big: the unit is coarsened.
TEST(BitAllocation, CoarseUnitsStayWithinBudgetAndMonotone) {
  std::mt19937 rng(8);
  std::vector<LayerCost> layers;
  for (int i = 0; i < 100; ++i)
    layers.push_back({1000003 + 2 * int64_t(rng() % 100000), rate_distortion_losses(1.0 + (rng() % 1000) / 100.0, 2, 6)});
  double previous = std::numeric_limits<double>::infinity();
  for (double target = 2.0; target <= 6.0; target += 0.4) {
    const auto bits = allocate_trellis_bits(layers, target, 2, 6);
    ASSERT_TRUE(within_budget(layers, bits, target)) << target;
    const double loss = total_loss(layers, bits);
    EXPECT_LE(loss, previous) << target;
    previous = loss;
  }
}

// Near the 2^48 limit (sizes with gcd 1): no overflow, the budget held.
TEST(BitAllocation, HugeLayers) {
  std::vector<LayerCost> layers{{(int64_t(1) << 46) + 1, rate_distortion_losses(1.0, 2, 8)},
                                {(int64_t(1) << 46) + 2, rate_distortion_losses(8.0, 2, 8)},
                                {(int64_t(1) << 45) + 3, rate_distortion_losses(2.0, 2, 8)}};
  for (double target : {2.0, 3.5, 5.0, 7.9}) {
    const auto bits = allocate_trellis_bits(layers, target, 2, 8);
    EXPECT_TRUE(within_budget(layers, bits, target)) << target;
    EXPECT_GE(bits[1], bits[0]);  // the more sensitive of two near-equal layers
  }
}

// Thousands of layers: greedy. With equal weights and convex losses the optimum takes the largest
// marginal gains over all layers, which the greedy pass must match.
TEST(BitAllocation, GreedyForManyLayersIsOptimalOnConvexLosses) {
  std::mt19937 rng(9);
  std::vector<LayerCost> layers;
  for (int i = 0; i < 2000; ++i) layers.push_back({4096, rate_distortion_losses(std::exp((rng() % 1000) / 200.0), 2, 8)});
  for (double target : {2.0, 2.5, 3.0, 4.25}) {
    const auto bits = allocate_trellis_bits(layers, target, 2, 8);
    ASSERT_TRUE(within_budget(layers, bits, target));
    std::vector<double> gains;
    double base = 0.0;
    for (const auto& l : layers) {
      base += l.loss[2];
      for (int k = 2; k < 8; ++k) gains.push_back(l.loss[size_t(k)] - l.loss[size_t(k + 1)]);
    }
    std::sort(gains.rbegin(), gains.rend());
    const size_t extra = size_t((target - 2.0) * double(layers.size()));
    double optimum = base;
    for (size_t i = 0; i < extra; ++i) optimum -= gains[i];
    EXPECT_NEAR(total_loss(layers, bits), optimum, 1e-9 * base) << target;
  }
}

TEST(BitAllocation, RejectsBadInput) {
  const std::vector<LayerCost> ok{{100, rate_distortion_losses(1.0, 2, 8)}};
  EXPECT_THROW(allocate_trellis_bits({}, 3.0, 2, 8), Error);
  EXPECT_THROW(allocate_trellis_bits(ok, 1.5, 2, 8), Error);  // below min_bits
  EXPECT_THROW(allocate_trellis_bits(ok, 3.0, 5, 4), Error);
  EXPECT_THROW(allocate_trellis_bits(ok, 3.0, 0, 8), Error);
  EXPECT_THROW(allocate_trellis_bits(ok, 3.0, 2, 9), Error);  // losses only up to 8
  EXPECT_THROW(allocate_trellis_bits(ok, std::nan(""), 2, 8), Error);
  std::vector<LayerCost> bad = ok;
  bad[0].weights = 0;
  EXPECT_THROW(allocate_trellis_bits(bad, 3.0, 2, 8), Error);
  bad = ok;
  bad[0].loss[4] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THROW(allocate_trellis_bits(bad, 3.0, 2, 8), Error);
}

}  // namespace
}  // namespace marlin
