// Top-k routing of the CPU's sparse MLP (cpu::route_token) against a scalar oracle, and the
// whole moe op against a per-token loop over the chosen experts.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "backend/cpu/matmul.h"
#include "backend/cpu/moe.h"
#include "quant/dequant.h"

namespace marlin {
namespace {

// The oracle: probabilities in double, experts ranked by (probability desc, index asc).
std::vector<cpu::ExpertChoice> oracle(const std::vector<float>& logits, const MoeRouting& r) {
  const int n = int(logits.size());
  std::vector<double> p(static_cast<size_t>(n));
  if (r.scoring == RouterScoring::kSoftmax) {
    double sum = 0;
    for (int e = 0; e < n; ++e) sum += std::exp(double(logits[size_t(e)]));
    for (int e = 0; e < n; ++e) p[size_t(e)] = std::exp(double(logits[size_t(e)])) / sum;
  } else {
    for (int e = 0; e < n; ++e) p[size_t(e)] = 1 / (1 + std::exp(-double(logits[size_t(e)])));
  }
  std::vector<int> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[size_t(a)] > p[size_t(b)]; });
  double chosen = 0;
  for (int i = 0; i < r.top_k; ++i) chosen += p[size_t(order[size_t(i)])];
  std::vector<cpu::ExpertChoice> out;
  for (int i = 0; i < r.top_k; ++i) {
    const int e = order[size_t(i)];
    out.push_back({e, float(r.renormalize ? p[size_t(e)] / chosen : p[size_t(e)])});
  }
  return out;
}

void expect_routing(const std::vector<float>& logits, const MoeRouting& r) {
  std::vector<cpu::ExpertChoice> got(size_t(r.top_k));
  cpu::route_token(logits.data(), nullptr, int(logits.size()), r, got.data());
  const auto want = oracle(logits, r);
  for (int i = 0; i < r.top_k; ++i) {
    EXPECT_EQ(got[size_t(i)].expert, want[size_t(i)].expert) << "choice " << i;
    EXPECT_NEAR(got[size_t(i)].weight, want[size_t(i)].weight, 1e-6 * std::abs(want[size_t(i)].weight)) << "choice " << i;
  }
}

TEST(MoeRouter, MatchesTheOracleOnRandomLogits) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (int trial = 0; trial < 200; ++trial) {
    const int n = 2 + trial % 15;
    std::vector<float> logits(static_cast<size_t>(n));
    for (float& l : logits) l = normal(rng);
    for (bool renormalize : {false, true})
      for (RouterScoring scoring : {RouterScoring::kSoftmax, RouterScoring::kSigmoid})
        expect_routing(logits, {1 + trial % n, renormalize, scoring});
  }
}

TEST(MoeRouter, TiesGoToTheLowerExpert) {
  const std::vector<float> logits = {0.5f, 2.0f, 1.0f, 2.0f, 1.0f, 2.0f};
  std::vector<cpu::ExpertChoice> got(4);
  cpu::route_token(logits.data(), nullptr, 6, {4, false, RouterScoring::kSoftmax}, got.data());
  EXPECT_EQ(got[0].expert, 1);
  EXPECT_EQ(got[1].expert, 3);
  EXPECT_EQ(got[2].expert, 5);
  EXPECT_EQ(got[3].expert, 2);
  EXPECT_EQ(got[0].weight, got[2].weight);
  expect_routing(logits, {4, true, RouterScoring::kSoftmax});
  const std::vector<float> equal(8, 0.25f);
  cpu::route_token(equal.data(), nullptr, 8, {2, true, RouterScoring::kSoftmax}, got.data());
  EXPECT_EQ(got[0].expert, 0);
  EXPECT_EQ(got[1].expert, 1);
  EXPECT_FLOAT_EQ(got[0].weight, 0.5f);
}

TEST(MoeRouter, RenormalizedWeightsSumToOne) {
  const std::vector<float> logits = {0.1f, -3.0f, 2.5f, 0.7f, 1.9f};
  for (int k = 1; k <= 5; ++k) {
    std::vector<cpu::ExpertChoice> got(static_cast<size_t>(k)), raw(static_cast<size_t>(k));
    cpu::route_token(logits.data(), nullptr, 5, {k, true, RouterScoring::kSoftmax}, got.data());
    cpu::route_token(logits.data(), nullptr, 5, {k, false, RouterScoring::kSoftmax}, raw.data());
    double sum = 0, raw_sum = 0;
    for (int i = 0; i < k; ++i) {
      sum += got[size_t(i)].weight;
      raw_sum += raw[size_t(i)].weight;
      EXPECT_EQ(got[size_t(i)].expert, raw[size_t(i)].expert);
    }
    EXPECT_NEAR(sum, 1.0, 1e-6) << "k " << k;
    if (k < 5) {
      EXPECT_LT(raw_sum, 1.0 - 1e-3) << "k " << k;  // without renormalization the top k do not sum to 1
    }
  }
}

TEST(MoeRouter, RejectsTopKOutsideTheExperts) {
  const std::vector<float> logits(4, 0.0f);
  std::vector<cpu::ExpertChoice> got(5);
  EXPECT_THROW(cpu::route_token(logits.data(), nullptr, 4, {5, false, RouterScoring::kSoftmax}, got.data()), Error);
  EXPECT_THROW(cpu::route_token(logits.data(), nullptr, 4, {0, false, RouterScoring::kSoftmax}, got.data()), Error);
}

// moe_forward (tokens grouped per expert, one matmul per expert) against a loop over tokens that
// applies each chosen expert to its token alone, in double.
TEST(MoeForward, MatchesAPerTokenLoop) {
  const int experts = 5, d = 32, f = 24;
  const int64_t rows = 9;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  std::vector<std::vector<float>> store;
  auto matrix = [&](int64_t r, int64_t c) {
    store.emplace_back(size_t(r * c));
    for (float& v : store.back()) v = normal(rng);
    QuantTensor t;
    t.format.kind = FormatKind::kF32;
    t.rows = r;
    t.cols = c;
    t.codes = reinterpret_cast<const uint8_t*>(store.back().data());
    t.code_row_bytes = uint64_t(c) * 4;
    return t;
  };
  store.reserve(3 * experts);
  std::vector<ExpertWeights> w;
  for (int e = 0; e < experts; ++e) w.push_back({matrix(f, d), matrix(f, d), matrix(d, f)});
  std::vector<float> h(size_t(rows * d)), logits(size_t(rows * experts)), out(size_t(rows * d));
  for (float& v : h) v = normal(rng);
  for (float& v : logits) v = 4 * normal(rng);
  const MoeRouting routing{2, false, RouterScoring::kSoftmax};
  ThreadPool pool(2);
  cpu::MoeScratch scratch;
  int observed = 0;
  const ExpertInputObserver observer = [&](int, bool, const float*, int64_t r, int64_t) { observed += int(r); };
  cpu::moe_forward(w, {}, h.data(), rows, d, logits.data(), routing, out.data(), pool, scratch, &observer);
  EXPECT_EQ(observed, 2 * rows * routing.top_k);  // gate/up inputs and down inputs

  auto value = [](const QuantTensor& t, int64_t r, int64_t c) {
    return double(reinterpret_cast<const float*>(t.codes)[r * t.cols + c]);
  };
  for (int64_t t = 0; t < rows; ++t) {
    const auto chosen = oracle(std::vector<float>(&logits[size_t(t * experts)], &logits[size_t((t + 1) * experts)]),
                               routing);
    std::vector<double> want(static_cast<size_t>(d), 0.0);
    for (const auto& c : chosen) {
      const ExpertWeights& e = w[size_t(c.expert)];
      std::vector<double> hidden(static_cast<size_t>(f));
      for (int64_t j = 0; j < f; ++j) {
        double g = 0, u = 0;
        for (int64_t k = 0; k < d; ++k) {
          g += value(e.gate, j, k) * h[size_t(t * d + k)];
          u += value(e.up, j, k) * h[size_t(t * d + k)];
        }
        hidden[size_t(j)] = g / (1 + std::exp(-g)) * u;
      }
      for (int64_t i = 0; i < d; ++i) {
        double y = 0;
        for (int64_t j = 0; j < f; ++j) y += value(e.down, i, j) * hidden[size_t(j)];
        want[size_t(i)] += c.weight * y;
      }
    }
    for (int64_t i = 0; i < d; ++i) ASSERT_NEAR(out[size_t(t * d + i)], want[size_t(i)], 1e-5) << t << "," << i;
  }
}

}  // namespace
}  // namespace marlin
