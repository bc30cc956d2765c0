// DeepSeek/GLM routing in cpu::route_token and cpu::moe_forward — expert groups, the score bias,
// routed_scaling_factor and shared experts — against an oracle written from transformers'
// description (mask the experts of the groups not kept, take the top k of what is left by the
// biased scores, weigh them by the unbiased ones), in double.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <set>

#include <fmt/format.h>

#include "backend/cpu/moe.h"
#include "core/error.h"

namespace marlin {
namespace {

struct Routed {
  std::vector<int> experts;  // best first
  std::vector<double> weights;
};

// Index of the largest value (the first of equal ones), as a stable descending sort would put it.
int argmax(const std::vector<double>& v) { return int(std::max_element(v.begin(), v.end()) - v.begin()); }

Routed oracle(const std::vector<float>& logits, const std::vector<float>& bias, const MoeRouting& r) {
  const int n = int(logits.size());
  std::vector<double> score(static_cast<size_t>(n));
  if (r.scoring == RouterScoring::kSoftmax) {
    double sum = 0;
    for (float l : logits) sum += std::exp(double(l));
    for (int e = 0; e < n; ++e) score[size_t(e)] = std::exp(double(logits[size_t(e)])) / sum;
  } else {
    for (int e = 0; e < n; ++e) score[size_t(e)] = 1 / (1 + std::exp(-double(logits[size_t(e)])));
  }
  std::vector<double> choice(static_cast<size_t>(n));
  for (int e = 0; e < n; ++e) choice[size_t(e)] = double(float(score[size_t(e)])) + (bias.empty() ? 0 : bias[size_t(e)]);
  const double masked = -std::numeric_limits<double>::infinity();
  if (r.n_groups > 1) {
    const int size = n / r.n_groups;
    std::vector<double> group(static_cast<size_t>(r.n_groups));
    for (int g = 0; g < r.n_groups; ++g) {
      std::vector<double> members(choice.begin() + g * size, choice.begin() + (g + 1) * size);
      std::sort(members.rbegin(), members.rend());
      group[size_t(g)] = r.group_score == GroupScore::kMax ? members[0] : members[0] + members[1];
    }
    std::vector<bool> kept(static_cast<size_t>(r.n_groups), false);
    for (int i = 0; i < r.top_groups; ++i) {
      const int g = argmax(group);
      kept[size_t(g)] = true;
      group[size_t(g)] = masked;
    }
    for (int e = 0; e < n; ++e)
      if (!kept[size_t(e / size)]) choice[size_t(e)] = masked;
  }
  Routed out;
  double sum = 0;
  for (int i = 0; i < r.top_k; ++i) {
    const int e = argmax(choice);
    choice[size_t(e)] = masked;
    out.experts.push_back(e);
    sum += score[size_t(e)];
  }
  for (int e : out.experts) out.weights.push_back((r.renormalize ? score[size_t(e)] / sum : score[size_t(e)]) * r.scale);
  return out;
}

void expect_routing(const std::vector<float>& logits, const std::vector<float>& bias, const MoeRouting& r,
                    const std::string& what) {
  std::vector<cpu::ExpertChoice> got(size_t(r.top_k));
  cpu::route_token(logits.data(), bias.empty() ? nullptr : bias.data(), int(logits.size()), r, got.data());
  const Routed want = oracle(logits, bias, r);
  for (int i = 0; i < r.top_k; ++i) {
    ASSERT_EQ(got[size_t(i)].expert, want.experts[size_t(i)]) << what << " choice " << i;
    EXPECT_NEAR(got[size_t(i)].weight, want.weights[size_t(i)], 2e-6 * want.weights[size_t(i)]) << what << " choice " << i;
  }
}

MoeRouting deepseek_v3(int top_k, int n_groups, int top_groups) {
  MoeRouting r{top_k, true, RouterScoring::kSigmoid};
  r.n_groups = n_groups;
  r.top_groups = top_groups;
  r.group_score = GroupScore::kTopTwoSum;
  r.scale = 2.5f;
  return r;
}

TEST(MoeGroupRouting, MatchesTheOracleOnRandomLogits) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.5f), small(0.0f, 0.2f);
  int trials = 0;
  for (int n : {8, 16, 64})
    for (int n_groups : {1, 2, 4, 8})
      for (GroupScore group_score : {GroupScore::kMax, GroupScore::kTopTwoSum})
        for (RouterScoring scoring : {RouterScoring::kSoftmax, RouterScoring::kSigmoid})
          for (int trial = 0; trial < 6; ++trial) {
            const int size = n / n_groups;
            if (group_score == GroupScore::kTopTwoSum && size < 2) continue;
            MoeRouting r{1, trial % 2 == 0, scoring};
            r.n_groups = n_groups;
            r.top_groups = 1 + trial % n_groups;
            r.top_k = 1 + (trial * 5) % (r.top_groups * size);
            r.group_score = group_score;
            r.scale = trial % 3 == 0 ? 1.0f : 1.8f;
            std::vector<float> logits(static_cast<size_t>(n)), bias;
            for (float& l : logits) l = normal(rng);
            if (trial % 2 == 1)
              for (int e = 0; e < n; ++e) bias.push_back(small(rng));
            expect_routing(logits, bias, r, fmt::format("n {} groups {}/{} k {}", n, r.top_groups, n_groups, r.top_k));
            ++trials;
          }
  EXPECT_EQ(trials, 276);  // every combination but groups of one scored by their two best
}

// Scores (sigmoid of the logits) chosen by hand: a logit for each wanted score.
std::vector<float> logits_of(const std::vector<double>& scores) {
  std::vector<float> logits;
  for (double s : scores) logits.push_back(float(std::log(s / (1 - s))));
  return logits;
}

TEST(MoeGroupRouting, TheGroupLimitDecides) {
  // Groups of two: {0.9, 0.05}, {0.6, 0.6}, {0.5, 0.5}, {0.1, 0.1}. By their best score group 0
  // wins, by the sum of their two best group 1.
  const auto logits = logits_of({0.9, 0.05, 0.6, 0.6, 0.5, 0.5, 0.1, 0.1});
  std::vector<cpu::ExpertChoice> got(2);
  MoeRouting r = deepseek_v3(2, 4, 1);
  cpu::route_token(logits.data(), nullptr, 8, r, got.data());
  EXPECT_EQ(std::set<int>({got[0].expert, got[1].expert}), std::set<int>({2, 3}));
  EXPECT_NEAR(got[0].weight, 0.5 * 2.5, 1e-6);  // renormalized over the two, then scaled
  r.group_score = GroupScore::kMax;
  cpu::route_token(logits.data(), nullptr, 8, r, got.data());
  EXPECT_EQ(got[0].expert, 0);
  EXPECT_EQ(got[1].expert, 1);
  r.n_groups = 1;  // without groups: the two best overall
  cpu::route_token(logits.data(), nullptr, 8, r, got.data());
  EXPECT_EQ(got[0].expert, 0);
  EXPECT_EQ(got[1].expert, 2);  // tied with expert 3: the lower index
  expect_routing(logits, {}, deepseek_v3(3, 4, 2), "two groups");
}

TEST(MoeGroupRouting, TheBiasChoosesAndTheScoresWeigh) {
  const auto logits = logits_of({0.8, 0.7, 0.6, 0.5});
  const std::vector<float> bias = {0.0f, 0.0f, 0.3f, 0.0f};
  std::vector<cpu::ExpertChoice> got(2);
  MoeRouting r = deepseek_v3(2, 1, 1);
  cpu::route_token(logits.data(), bias.data(), 4, r, got.data());
  EXPECT_EQ(got[0].expert, 2);  // 0.6 + 0.3
  EXPECT_EQ(got[1].expert, 0);
  EXPECT_NEAR(got[0].weight, 0.6 / 1.4 * 2.5, 1e-6);
  EXPECT_NEAR(got[1].weight, 0.8 / 1.4 * 2.5, 1e-6);
  r.renormalize = false;
  r.scale = 1.5f;
  cpu::route_token(logits.data(), bias.data(), 4, r, got.data());
  EXPECT_NEAR(got[0].weight, 0.6 * 1.5, 1e-6);
  cpu::route_token(logits.data(), nullptr, 4, r, got.data());
  EXPECT_EQ(got[0].expert, 0);
  EXPECT_EQ(got[1].expert, 1);
}

TEST(MoeGroupRouting, RefusesGroupsThatDoNotFit) {
  const std::vector<float> logits(8, 0.0f);
  std::vector<cpu::ExpertChoice> got(8);
  const auto fails = [&](MoeRouting r) {
    EXPECT_THROW(cpu::route_token(logits.data(), nullptr, 8, r, got.data()), Error);
  };
  fails(deepseek_v3(2, 3, 1));  // 8 experts in 3 groups
  fails(deepseek_v3(2, 4, 5));  // more groups kept than there are
  fails(deepseek_v3(5, 4, 2));  // 5 experts from 2 groups of 2
  fails(deepseek_v3(1, 8, 2));  // groups of one have no two best
  fails(deepseek_v3(2, 4, 0));
}

QuantTensor f32_matrix(std::vector<std::vector<float>>& store, std::mt19937& rng, int64_t rows, int64_t cols) {
  std::normal_distribution<float> normal(0.0f, 0.3f);
  store.emplace_back(size_t(rows * cols));
  for (float& v : store.back()) v = normal(rng);
  QuantTensor t;
  t.format.kind = FormatKind::kF32;
  t.rows = rows;
  t.cols = cols;
  t.codes = reinterpret_cast<const uint8_t*>(store.back().data());
  t.code_row_bytes = uint64_t(cols) * 4;
  return t;
}

// f(x) = down(silu(gate x) ⊙ up x) of one expert, in double.
std::vector<double> expert_output(const ExpertWeights& e, const float* x) {
  const auto at = [](const QuantTensor& t, int64_t r, int64_t c) {
    return double(reinterpret_cast<const float*>(t.codes)[r * t.cols + c]);
  };
  std::vector<double> hidden(size_t(e.gate.rows)), y(size_t(e.down.rows), 0.0);
  for (int64_t j = 0; j < e.gate.rows; ++j) {
    double g = 0, u = 0;
    for (int64_t k = 0; k < e.gate.cols; ++k) {
      g += at(e.gate, j, k) * x[k];
      u += at(e.up, j, k) * x[k];
    }
    hidden[size_t(j)] = g / (1 + std::exp(-g)) * u;
  }
  for (int64_t i = 0; i < e.down.rows; ++i)
    for (int64_t j = 0; j < e.down.cols; ++j) y[size_t(i)] += at(e.down, i, j) * hidden[size_t(j)];
  return y;
}

// A shared expert held after the routed ones runs on every row with weight 1, beside the routed
// experts chosen with the bias and the groups.
TEST(MoeGroupRouting, SharedExpertsRunForEveryToken) {
  const int routed = 8, d = 32, f = 16;
  const int64_t rows = 7;
  std::mt19937 rng(5);
  std::vector<std::vector<float>> store;
  store.reserve(3 * (routed + 1));
  std::vector<ExpertWeights> w;
  for (int e = 0; e <= routed; ++e)
    w.push_back({f32_matrix(store, rng, f, d), f32_matrix(store, rng, f, d), f32_matrix(store, rng, d, f)});
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> h(size_t(rows * d)), logits(size_t(rows * routed)), out(size_t(rows * d));
  std::vector<float> bias(static_cast<size_t>(routed));
  for (float& v : h) v = normal(rng);
  for (float& v : logits) v = 2 * normal(rng);
  for (float& v : bias) v = 0.2f * normal(rng);
  MoeRouting r = deepseek_v3(3, 4, 2);
  r.n_shared = 1;
  ThreadPool pool(2);
  cpu::MoeScratch scratch;
  std::vector<int64_t> rows_seen(size_t(routed + 1), 0);
  const ExpertInputObserver observer = [&](int expert, bool down, const float*, int64_t n, int64_t cols) {
    EXPECT_EQ(cols, down ? f : d);
    if (!down) rows_seen[size_t(expert)] += n;
  };
  cpu::moe_forward(w, bias, h.data(), rows, d, logits.data(), r, out.data(), pool, scratch, &observer);
  EXPECT_EQ(rows_seen[size_t(routed)], rows);
  EXPECT_EQ(std::accumulate(rows_seen.begin(), rows_seen.end() - 1, int64_t(0)), rows * r.top_k);
  for (int64_t t = 0; t < rows; ++t) {
    const Routed chosen =
        oracle(std::vector<float>(&logits[size_t(t * routed)], &logits[size_t((t + 1) * routed)]), bias, r);
    std::vector<double> want = expert_output(w[size_t(routed)], &h[size_t(t * d)]);
    for (int i = 0; i < r.top_k; ++i) {
      const auto y = expert_output(w[size_t(chosen.experts[size_t(i)])], &h[size_t(t * d)]);
      for (int j = 0; j < d; ++j) want[size_t(j)] += chosen.weights[size_t(i)] * y[size_t(j)];
    }
    for (int j = 0; j < d; ++j) ASSERT_NEAR(out[size_t(t * d + j)], want[size_t(j)], 1e-5) << t << "," << j;
  }
}

}  // namespace
}  // namespace marlin
