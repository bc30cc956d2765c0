#include "backend/cpu/moe.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "backend/cpu/matmul.h"
#include "backend/cpu/ops.h"
#include "core/error.h"

namespace marlin::cpu {

void route_token(const float* logits, int n_experts, const MoeRouting& routing, ExpertChoice* out) {
  const int k = routing.top_k;
  MARLIN_CHECK(k >= 1 && k <= n_experts, "moe: {} experts per token out of {}", k, n_experts);
  // Scores in double, rounded once to fp32 (transformers computes router probabilities in fp32).
  thread_local std::vector<float> scores;
  thread_local std::vector<int> order;
  scores.resize(size_t(n_experts));
  if (routing.scoring == RouterScoring::kSoftmax) {
    const float top = *std::max_element(logits, logits + n_experts);
    double sum = 0;
    for (int e = 0; e < n_experts; ++e) sum += std::exp(double(logits[e]) - double(top));
    for (int e = 0; e < n_experts; ++e) scores[size_t(e)] = float(std::exp(double(logits[e]) - double(top)) / sum);
  } else {
    for (int e = 0; e < n_experts; ++e) scores[size_t(e)] = float(1.0 / (1.0 + std::exp(-double(logits[e]))));
  }
  order.resize(size_t(n_experts));
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int a, int b) {
    return scores[size_t(a)] != scores[size_t(b)] ? scores[size_t(a)] > scores[size_t(b)] : a < b;
  });
  double chosen = 0;
  for (int i = 0; i < k; ++i) chosen += scores[size_t(order[size_t(i)])];
  for (int i = 0; i < k; ++i) {
    const int e = order[size_t(i)];
    out[i] = {e, routing.renormalize ? float(double(scores[size_t(e)]) / chosen) : scores[size_t(e)]};
  }
}

void moe_forward(std::span<const ExpertWeights> experts, const float* h, int64_t rows, int64_t d_model,
                 const float* router_logits, const MoeRouting& routing, float* out, ThreadPool& pool,
                 MoeScratch& s, const ExpertInputObserver* observer) {
  const int n_experts = int(experts.size());
  const int k = routing.top_k;
  s.choices.resize(size_t(rows * k));
  for (int64_t t = 0; t < rows; ++t) route_token(router_logits + t * n_experts, n_experts, routing, &s.choices[size_t(t * k)]);
  s.tokens.resize(size_t(n_experts));
  s.weights.resize(size_t(n_experts));
  for (int e = 0; e < n_experts; ++e) {
    s.tokens[size_t(e)].clear();
    s.weights[size_t(e)].clear();
  }
  for (int64_t t = 0; t < rows; ++t)
    for (int i = 0; i < k; ++i) {
      const ExpertChoice& c = s.choices[size_t(t * k + i)];
      s.tokens[size_t(c.expert)].push_back(t);
      s.weights[size_t(c.expert)].push_back(c.weight);
    }

  std::fill_n(out, rows * d_model, 0.0f);
  for (int e = 0; e < n_experts; ++e) {
    const auto& tokens = s.tokens[size_t(e)];
    const int64_t n = int64_t(tokens.size());
    if (n == 0) continue;
    const ExpertWeights& w = experts[size_t(e)];
    const int64_t f = w.gate.rows;
    s.x.resize(size_t(n * d_model));
    for (int64_t i = 0; i < n; ++i) std::copy_n(h + tokens[size_t(i)] * d_model, d_model, &s.x[size_t(i * d_model)]);
    if (observer) (*observer)(e, false, s.x.data(), n, d_model);
    s.gate.resize(size_t(n * f));
    s.up.resize(size_t(n * f));
    matmul(w.gate, s.x.data(), n, s.gate.data(), pool);
    matmul(w.up, s.x.data(), n, s.up.data(), pool);
    silu_mul(s.gate.data(), s.up.data(), n * f);
    if (observer) (*observer)(e, true, s.gate.data(), n, f);
    s.y.resize(size_t(n * d_model));
    matmul(w.down, s.gate.data(), n, s.y.data(), pool);
    for (int64_t i = 0; i < n; ++i) {
      float* row = out + tokens[size_t(i)] * d_model;
      const float weight = s.weights[size_t(e)][size_t(i)];
      const float* y = &s.y[size_t(i * d_model)];
      for (int64_t j = 0; j < d_model; ++j) row[j] += weight * y[j];
    }
  }
}

}  // namespace marlin::cpu
