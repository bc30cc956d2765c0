#include "backend/cpu/moe.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "backend/cpu/matmul.h"
#include "backend/cpu/ops.h"
#include "core/error.h"

namespace marlin::cpu {

void check_routing(const MoeRouting& routing, int n_experts) {
  MARLIN_CHECK(routing.top_k >= 1 && routing.top_k <= n_experts, "moe: {} experts per token out of {}", routing.top_k,
               n_experts);
  MARLIN_CHECK(routing.n_groups >= 1 && n_experts % routing.n_groups == 0 && routing.top_groups >= 1 &&
                   routing.top_groups <= routing.n_groups,
               "moe: {} of {} expert groups do not fit {} experts", routing.top_groups, routing.n_groups, n_experts);
  MARLIN_CHECK(routing.n_groups == 1 || routing.top_k <= routing.top_groups * (n_experts / routing.n_groups),
               "moe: {} experts per token out of {} groups of {}", routing.top_k, routing.top_groups,
               n_experts / routing.n_groups);
  MARLIN_CHECK(routing.group_score != GroupScore::kTopTwoSum || routing.n_groups == 1 || n_experts / routing.n_groups >= 2,
               "moe: groups of one expert have no two best scores");
}

void route_token(const float* logits, const float* score_bias, int n_experts, const MoeRouting& routing,
                 ExpertChoice* out) {
  check_routing(routing, n_experts);
  const int k = routing.top_k;
  // Scores in double, rounded once to fp32 (transformers computes router probabilities in fp32).
  thread_local std::vector<float> scores, choice;
  thread_local std::vector<int> order;
  scores.resize(size_t(n_experts));
  choice.resize(size_t(n_experts));
  if (routing.scoring == RouterScoring::kSoftmax) {
    const float top = *std::max_element(logits, logits + n_experts);
    double sum = 0;
    for (int e = 0; e < n_experts; ++e) sum += std::exp(double(logits[e]) - double(top));
    for (int e = 0; e < n_experts; ++e) scores[size_t(e)] = float(std::exp(double(logits[e]) - double(top)) / sum);
  } else {
    for (int e = 0; e < n_experts; ++e) scores[size_t(e)] = float(1.0 / (1.0 + std::exp(-double(logits[e]))));
  }
  for (int e = 0; e < n_experts; ++e) choice[size_t(e)] = scores[size_t(e)] + (score_bias ? score_bias[e] : 0.0f);
  const auto better = [&](int a, int b) {
    return choice[size_t(a)] != choice[size_t(b)] ? choice[size_t(a)] > choice[size_t(b)] : a < b;
  };
  order.resize(size_t(n_experts));
  std::iota(order.begin(), order.end(), 0);
  if (routing.n_groups > 1) {
    // Score each group, keep the top_groups best, and rule out the others' experts.
    const int size = n_experts / routing.n_groups;
    thread_local std::vector<float> group_score;
    thread_local std::vector<int> groups;
    group_score.resize(size_t(routing.n_groups));
    for (int g = 0; g < routing.n_groups; ++g) {
      int* first = order.data() + g * size;
      std::partial_sort(first, first + std::min(size, 2), first + size, better);
      const float best = choice[size_t(first[0])];
      group_score[size_t(g)] =
          routing.group_score == GroupScore::kMax ? best : best + choice[size_t(first[1])];
    }
    groups.resize(size_t(routing.n_groups));
    std::iota(groups.begin(), groups.end(), 0);
    std::partial_sort(groups.begin(), groups.begin() + routing.top_groups, groups.end(), [&](int a, int b) {
      return group_score[size_t(a)] != group_score[size_t(b)] ? group_score[size_t(a)] > group_score[size_t(b)] : a < b;
    });
    order.clear();
    std::sort(groups.begin(), groups.begin() + routing.top_groups);
    for (int i = 0; i < routing.top_groups; ++i)
      for (int e = groups[size_t(i)] * size; e < (groups[size_t(i)] + 1) * size; ++e) order.push_back(e);
  }
  std::partial_sort(order.begin(), order.begin() + k, order.end(), better);
  double chosen = 0;
  for (int i = 0; i < k; ++i) chosen += scores[size_t(order[size_t(i)])];
  for (int i = 0; i < k; ++i) {
    const int e = order[size_t(i)];
    const float w = routing.renormalize ? float(double(scores[size_t(e)]) / chosen) : scores[size_t(e)];
    out[i] = {e, w * routing.scale};
  }
}

void moe_forward(std::span<const ExpertWeights> experts, std::span<const float> score_bias, const float* h,
                 int64_t rows, int64_t d_model, const float* router_logits, const MoeRouting& routing, float* out,
                 ThreadPool& pool, MoeScratch& s, const ExpertInputObserver* observer) {
  const int n_experts = int(experts.size());
  const int routed = n_experts - routing.n_shared;
  MARLIN_CHECK(routing.n_shared >= 0 && routed >= 1, "moe: {} shared experts of {}", routing.n_shared, n_experts);
  const int k = routing.top_k;
  const int per_token = k + routing.n_shared;
  s.choices.resize(size_t(rows * per_token));
  for (int64_t t = 0; t < rows; ++t) {
    ExpertChoice* c = &s.choices[size_t(t * per_token)];
    route_token(router_logits + t * routed, score_bias.empty() ? nullptr : score_bias.data(), routed, routing, c);
    for (int j = 0; j < routing.n_shared; ++j) c[k + j] = {routed + j, 1.0f};
  }
  s.tokens.resize(size_t(n_experts));
  s.weights.resize(size_t(n_experts));
  for (int e = 0; e < n_experts; ++e) {
    s.tokens[size_t(e)].clear();
    s.weights[size_t(e)].clear();
  }
  for (int64_t t = 0; t < rows; ++t)
    for (int i = 0; i < per_token; ++i) {
      const ExpertChoice& c = s.choices[size_t(t * per_token + i)];
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
