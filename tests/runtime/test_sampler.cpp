#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <vector>

#include "backend/sampling.h"
#include "core/error.h"
#include "runtime/sampler.h"

namespace marlin {
namespace {

std::vector<float> log_probs(const std::vector<double>& probs) {
  std::vector<float> out;
  for (double p : probs) out.push_back(float(std::log(p)));
  return out;
}

std::vector<double> frequencies(SamplingParams params, const std::vector<double>& probs, int draws) {
  Sampler sampler(params, int(probs.size()));
  std::vector<double> freq(probs.size());
  for (int i = 0; i < draws; ++i) {
    auto logits = log_probs(probs);
    freq[size_t(sampler.sample(logits.data(), {}))] += 1.0 / draws;
  }
  return freq;
}

SamplingParams unfiltered(float temperature = 1.0f) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = 1234;
  return p;
}

TEST(Sampler, GreedyPicksArgmax) {
  SamplingParams p = unfiltered(0.0f);
  Sampler s(p, 5);
  std::vector<float> logits = {0.1f, 2.0f, -1.0f, 1.9f, 0.0f};
  EXPECT_EQ(s.sample(logits.data(), {}), 1);
}

TEST(Sampler, FollowsTheDistributionAtTemperatureOne) {
  // 20k draws: the standard error of each frequency is below 0.0036, so 0.015 is > 4 sigma.
  auto freq = frequencies(unfiltered(), {0.5, 0.3, 0.2}, 20000);
  EXPECT_NEAR(freq[0], 0.5, 0.015);
  EXPECT_NEAR(freq[1], 0.3, 0.015);
  EXPECT_NEAR(freq[2], 0.2, 0.015);
}

TEST(Sampler, TemperatureSharpens) {
  // At T = 0.5 probabilities become p² / Σp²: 0.25/0.38, 0.09/0.38, 0.04/0.38.
  auto freq = frequencies(unfiltered(0.5f), {0.5, 0.3, 0.2}, 20000);
  EXPECT_NEAR(freq[0], 0.25 / 0.38, 0.015);
  EXPECT_NEAR(freq[2], 0.04 / 0.38, 0.015);
}

TEST(Sampler, TopKKeepsOnlyTheBest) {
  SamplingParams p = unfiltered();
  p.top_k = 2;
  auto freq = frequencies(p, {0.4, 0.3, 0.2, 0.1}, 5000);
  EXPECT_EQ(freq[2] + freq[3], 0.0);
  EXPECT_NEAR(freq[0], 0.4 / 0.7, 0.03);
}

TEST(Sampler, TopPKeepsTheSmallestPrefixReachingP) {
  SamplingParams p = unfiltered();
  p.top_p = 0.75f;  // 0.4 + 0.3 = 0.7 < 0.75, so the third token is still in
  auto freq = frequencies(p, {0.4, 0.3, 0.2, 0.1}, 5000);
  EXPECT_GT(freq[2], 0.0);
  EXPECT_EQ(freq[3], 0.0);
}

TEST(Sampler, MinPDropsUnlikelyTokens) {
  SamplingParams p = unfiltered();
  p.min_p = 0.4f;  // threshold 0.4 * 0.5 = 0.2: keeps 0.5 and 0.3
  auto freq = frequencies(p, {0.5, 0.3, 0.15, 0.05}, 5000);
  EXPECT_EQ(freq[2] + freq[3], 0.0);
  EXPECT_GT(freq[1], 0.0);
}

TEST(Sampler, SameSeedSameSequence) {
  auto run = [](uint64_t seed) {
    SamplingParams p = unfiltered();
    p.seed = seed;
    Sampler s(p, 50);
    std::vector<int32_t> out;
    for (int i = 0; i < 64; ++i) {
      std::vector<float> logits(50, 0.0f);
      out.push_back(s.sample(logits.data(), {}));
    }
    return out;
  };
  EXPECT_EQ(run(7), run(7));
  EXPECT_NE(run(7), run(8));
}

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegative) {
  SamplingParams p = unfiltered(0.0f);
  p.repetition_penalty = 2.0f;
  Sampler s(p, 3);
  std::vector<float> logits = {3.0f, 2.0f, -1.0f};
  const std::vector<int32_t> history = {0, 0, 2};
  EXPECT_EQ(s.sample(logits.data(), history), 1);  // 3/2 = 1.5 < 2
  EXPECT_FLOAT_EQ(logits[0], 1.5f);
  EXPECT_FLOAT_EQ(logits[2], -2.0f);
}

TEST(Sampler, PresenceAndFrequencyPenalties) {
  SamplingParams p = unfiltered(0.0f);
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  Sampler s(p, 3);
  std::vector<float> logits = {1.0f, 1.0f, 1.0f};
  const std::vector<int32_t> history = {0, 0, 0, 1};
  s.sample(logits.data(), history);
  EXPECT_FLOAT_EQ(logits[0], 1.0f - 0.5f - 0.75f);
  EXPECT_FLOAT_EQ(logits[1], 1.0f - 0.5f - 0.25f);
  EXPECT_FLOAT_EQ(logits[2], 1.0f);
}

TEST(Sampler, PenaltyWindowLimitsHistory) {
  SamplingParams p = unfiltered(0.0f);
  p.presence_penalty = 1.0f;
  p.penalty_last_n = 1;
  Sampler s(p, 3);
  std::vector<float> logits = {1.0f, 1.0f, 1.0f};
  const std::vector<int32_t> history = {0, 1};
  s.sample(logits.data(), history);
  EXPECT_FLOAT_EQ(logits[0], 1.0f);
  EXPECT_FLOAT_EQ(logits[1], 0.0f);
}

TEST(Sampler, RejectsBadParameters) {
  SamplingParams p;
  p.temperature = -1;
  EXPECT_THROW(validate(p), Error);
  p = SamplingParams{};
  p.top_p = 0;
  EXPECT_THROW(validate(p), Error);
  p = SamplingParams{};
  p.min_p = 1.5f;
  EXPECT_THROW(validate(p), Error);
  p = SamplingParams{};
  p.top_k = -3;
  EXPECT_THROW(validate(p), Error);
}

// --- The sampling rule (backend/sampling.h) ----------------------------------------------

constexpr uint64_t kDraws = uint64_t(1) << 53;

TEST(SamplingRule, ExpIsAccurate) {
  // Degree-7 Taylor on |r| ≤ ln2/2 truncates at 0.35^8/8! ≈ 5e-9; each of the ~18 roundings adds
  // at most 2^-24 relative: 2e-6 bounds the total with room.
  EXPECT_EQ(sampling::sampling_exp(0.0f), 1.0f);
  EXPECT_EQ(sampling::sampling_exp(-80.5f), 0.0f);
  EXPECT_EQ(sampling::sampling_exp(-std::numeric_limits<float>::infinity()), 0.0f);
  double worst = 0;
  for (float x = -80.0f; x <= 0.0f; x += 0.000731f)
    worst = std::max(worst, std::abs(double(sampling::sampling_exp(x)) / std::exp(double(x)) - 1));
  EXPECT_LT(worst, 2e-6);
}

TEST(SamplingRule, OrderKeysFollowTheLogits) {
  const std::vector<float> v = {-std::numeric_limits<float>::infinity(), -1e30f, -2.5f, -1e-40f, 0.0f, 1e-40f, 3.0f,
                                std::numeric_limits<float>::infinity()};
  for (size_t i = 0; i + 1 < v.size(); ++i) {
    EXPECT_LT(sampling::order_key(v[i]), sampling::order_key(v[i + 1]));
    EXPECT_EQ(sampling::key_logit(sampling::order_key(v[i])), v[i]);
  }
  EXPECT_EQ(sampling::order_key(sampling::clean(-0.0f)), sampling::order_key(0.0f));
  EXPECT_EQ(sampling::clean(std::numeric_limits<float>::quiet_NaN()), -std::numeric_limits<float>::infinity());
}

TEST(SamplingRule, DrawTargetIsTheScaledFloor) {
  EXPECT_EQ(sampling::draw_target(1000, 0), 0u);
  EXPECT_EQ(sampling::draw_target(1000, kDraws - 1), 999u);
  EXPECT_EQ(sampling::draw_target(uint64_t(1) << 62, kDraws / 2), uint64_t(1) << 61);
}

SampleRow plain_row(float temperature, uint64_t draw) {
  SampleRow r;
  r.temperature = temperature;
  r.draw = draw;
  return r;
}

int32_t sample_once(std::vector<float> logits, const SampleRow& row, const std::vector<TokenCount>& penalties = {}) {
  SampleScratch scratch;
  return sample_row(logits.data(), int64_t(logits.size()), row, penalties, scratch);
}

// Token probabilities as sample_row defines them: every draw value maps to a token, ascending ids
// over ascending draws, so bisection finds each token's share of [0, 2^53) exactly.
std::map<int32_t, double> implied_distribution(const std::vector<float>& logits, SampleRow row) {
  std::map<int32_t, double> share;
  auto at = [&](uint64_t draw) {
    row.draw = draw;
    return sample_once(logits, row);
  };
  // [lo, hi] with f(lo) = a, f(hi) = b.
  std::vector<std::tuple<uint64_t, uint64_t, int32_t, int32_t>> todo = {{0, kDraws - 1, at(0), at(kDraws - 1)}};
  while (!todo.empty()) {
    auto [lo, hi, a, b] = todo.back();
    todo.pop_back();
    EXPECT_LE(a, b) << "draws map to tokens in ascending order";
    if (a == b) {
      share[a] += double(hi - lo + 1) / double(kDraws);
    } else if (hi == lo + 1) {
      share[a] += 1 / double(kDraws);
      share[b] += 1 / double(kDraws);
    } else {
      const uint64_t mid = lo + (hi - lo) / 2;
      const int32_t m = at(mid);
      todo.emplace_back(lo, mid, a, m);
      todo.emplace_back(mid + 1, hi, at(mid + 1), b);
    }
  }
  return share;
}

struct Reference {
  std::map<int32_t, double> probs;
  bool ambiguous = false;  // a cut lies within rounding of its threshold
};

// Hugging Face's order in double precision with a full sort (the sampler before the rule was
// shared with the GPU): penalties, temperature, top-k, then top-p and min-p on the sorted list.
Reference reference_distribution(std::vector<float> logits, const SampleRow& row, double tolerance) {
  const int n = int(logits.size());
  std::vector<std::pair<double, int>> c;
  for (int i = 0; i < n; ++i) c.emplace_back(logits[size_t(i)], i);
  std::sort(c.begin(), c.end(), [](auto& a, auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  if (row.top_k > 0 && row.top_k < n) c.resize(size_t(row.top_k));
  const double max = c.front().first;
  double total = 0;
  for (auto& [v, id] : c) total += (v = std::exp((v - max) / row.temperature));
  Reference ref;
  const double min_p = std::exp(double(row.log_min_p));
  double mass = 0;
  size_t cut = c.size();
  for (size_t i = 0; i < c.size(); ++i) {
    const double ratio = c[i].first;  // p_i / p_max
    if (std::abs(ratio - min_p) <= tolerance * min_p) ref.ambiguous = true;
    if (i > 0 && ratio < min_p) {
      cut = i;
      break;
    }
    mass += c[i].first / total;
    if (row.top_p < 1 && std::abs(mass - row.top_p) <= tolerance) ref.ambiguous = true;
    if (mass >= row.top_p) {
      cut = i + 1;
      break;
    }
  }
  c.resize(cut);
  double kept = 0;
  for (auto& e : c) kept += e.first;
  for (auto& [v, id] : c) ref.probs[id] = v / kept;
  return ref;
}

TEST(SamplingRule, DistributionMatchesAnIndependentReference) {
  // sample_row's weights are within ~2e-6 of e^x (ExpIsAccurate) and cut at 2^-40 of the maximum;
  // cuts whose threshold lies within 1e-5 of a prefix are ambiguous and skipped (counted).
  std::mt19937 rng(99);
  int checked = 0, ambiguous = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const int vocab = 2 + int(rng() % 60);
    std::normal_distribution<float> logit(0.0f, trial % 3 == 0 ? 1.0f : 4.0f);
    std::vector<float> logits(static_cast<size_t>(vocab));
    for (auto& l : logits) l = trial % 5 == 0 ? std::round(logit(rng)) : logit(rng);  // some with ties
    SampleRow row = plain_row(0.3f + float(rng() % 20) / 10, 0);
    row.top_k = rng() % 3 == 0 ? int32_t(1 + rng() % uint32_t(vocab)) : 0;
    row.top_p = rng() % 2 ? 1.0f : 0.3f + float(rng() % 70) / 100;
    row.log_min_p = rng() % 2 ? -INFINITY : std::log(0.01f + float(rng() % 50) / 100);
    const Reference ref = reference_distribution(logits, row, 1e-5);
    if (ref.ambiguous) {
      ++ambiguous;
      continue;
    }
    ++checked;
    const auto got = implied_distribution(logits, row);
    for (const auto& [id, p] : got) EXPECT_TRUE(ref.probs.count(id)) << "trial " << trial << " token " << id;
    for (const auto& [id, p] : ref.probs) {
      // Weights below 2^-40 of the maximum round to 0: such tokens may be missing.
      const double q = got.count(id) ? got.at(id) : 0.0;
      EXPECT_NEAR(q, p, 1e-5 * p + 0x1p-40) << "trial " << trial << " token " << id;
    }
  }
  EXPECT_LT(ambiguous, 10) << checked << " checked";
}

// The rule done the plain way (full sort, membership array, walk by id) for the fast paths of
// sample_row (no sort without top-p, an id-order scan for large kept sets).
int32_t plain_rule(const std::vector<float>& raw, const SampleRow& row) {
  using namespace sampling;
  const int n = int(raw.size());
  std::vector<float> l(raw.size());
  for (size_t i = 0; i < l.size(); ++i) l[i] = clean(raw[i]);
  std::vector<int> order(l.size());
  for (int i = 0; i < n; ++i) order[size_t(i)] = i;
  std::sort(order.begin(), order.end(), [&](int a, int b) { return l[size_t(a)] > l[size_t(b)] || (l[size_t(a)] == l[size_t(b)] && a < b); });
  const float max = l[size_t(order[0])];
  auto q = [&](int i) { return fixed_weight(scaled_logit(l[size_t(i)], max, row.temperature)); };
  const int top_k = row.top_k > 0 && row.top_k < n ? row.top_k : n;
  uint64_t top_k_mass = 0;
  for (int j = 0; j < top_k; ++j) top_k_mass += q(order[size_t(j)]);
  int min_p_count = 0;
  for (int i = 0; i < n; ++i) min_p_count += scaled_logit(l[size_t(i)], max, row.temperature) >= row.log_min_p;
  const double threshold = top_p_threshold(row.top_p, top_k_mass);
  std::vector<char> kept(l.size(), 0);
  uint64_t total = 0;
  for (int j = 0; j < std::min(top_k, min_p_count); ++j) {
    kept[size_t(order[size_t(j)])] = 1;
    total += q(order[size_t(j)]);
    if (reaches(total, threshold)) break;
  }
  const uint64_t target = draw_target(total, row.draw);
  uint64_t running = 0;
  for (int i = 0; i < n; ++i)
    if (kept[size_t(i)] && (running += q(i)) > target) return i;
  return -1;
}

TEST(SamplingRule, FastPathsMatchThePlainRule) {
  std::mt19937 rng(17);
  std::mt19937_64 draws(4);
  for (int trial = 0; trial < 40; ++trial) {
    std::normal_distribution<float> logit(0.0f, trial % 2 ? 1.0f : 3.0f);
    std::vector<float> logits(20000);
    for (auto& v : logits) v = trial % 4 == 3 ? std::round(logit(rng)) : logit(rng);
    SampleRow row = plain_row(1.0f, draws() >> 11);
    row.top_k = trial % 3 == 0 ? 9000 : 0;
    row.top_p = trial % 5 < 2 ? 1.0f : 0.995f;
    row.log_min_p = trial % 7 == 0 ? std::log(0.001f) : -INFINITY;
    EXPECT_EQ(sample_once(logits, row), plain_rule(logits, row)) << "trial " << trial;
  }
}

TEST(SamplingRule, DrawsWalkKeptTokensByAscendingId) {
  const std::vector<float> logits = {1.0f, 3.0f, 2.0f, 3.0f, -1.0f};
  SampleRow row = plain_row(1.0f, 0);
  row.top_k = 3;  // keeps 1, 3 (the tie at 3.0) and 2
  EXPECT_EQ(sample_once(logits, row), 1);
  row.draw = kDraws - 1;
  EXPECT_EQ(sample_once(logits, row), 3);
  row.top_k = 1;  // the tie goes to the lower id
  EXPECT_EQ(sample_once(logits, row), 1);
}

TEST(SamplingRule, EdgeCases) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  SampleRow row = plain_row(1.0f, kDraws - 1);
  // All equal: uniform; top-k 2 keeps the two lowest ids.
  EXPECT_EQ(sample_once(std::vector<float>(100, 0.5f), row), 99);
  row.top_k = 2;
  EXPECT_EQ(sample_once(std::vector<float>(100, 0.5f), row), 1);
  row.top_k = 0;
  // min-p 1 keeps exactly the maxima.
  row.log_min_p = 0.0f;
  EXPECT_EQ(sample_once({0.0f, 2.0f, 1.999f, 2.0f, 1.0f}, row), 3);
  row.log_min_p = -INFINITY;
  // A tiny top-p keeps the maximum only.
  row.top_p = 1e-6f;
  EXPECT_EQ(sample_once({0.0f, 2.0f, 1.999f, 2.0f, 1.0f}, row), 1);
  row.top_p = 1.0f;
  // NaN is never drawn; +inf takes everything; all -inf is uniform.
  EXPECT_EQ(sample_once({nan, 0.0f, nan}, row), 1);
  EXPECT_EQ(sample_once({1.0f, inf, 2.0f}, row), 1);
  EXPECT_EQ(sample_once({-inf, -inf, -inf}, row), 2);
  // Greedy: the first maximum, ignoring NaN.
  EXPECT_EQ(sample_once({nan, 1.0f, 5.0f, 5.0f}, plain_row(0.0f, 0)), 2);
  EXPECT_EQ(sample_once({-inf, -inf}, plain_row(0.0f, 0)), 0);
}

TEST(SamplingRule, RejectsBadRequests) {
  std::vector<SampleRow> rows(1);
  std::vector<TokenCount> pairs = {{3, 1}};
  rows[0].penalty_count = 1;
  EXPECT_NO_THROW(check_sample_batch(rows, pairs, 10));
  EXPECT_THROW(check_sample_batch(rows, pairs, 3), Error);  // token outside the vocabulary
  rows[0].penalty_count = 2;
  EXPECT_THROW(check_sample_batch(rows, pairs, 10), Error);  // past the list
  pairs.push_back({3, 2});
  EXPECT_THROW(check_sample_batch(rows, pairs, 10), Error);  // token 3 twice
  rows[0].penalty_count = 0;
  rows[0].draw = kDraws;
  EXPECT_THROW(check_sample_batch(rows, pairs, 10), Error);
  rows[0].draw = 0;
  rows[0].top_p = 0;
  EXPECT_THROW(check_sample_batch(rows, pairs, 10), Error);
}

TEST(Sampler, RowsCarryDistinctPenalizedTokens) {
  SamplingParams p = unfiltered();
  p.presence_penalty = 0.5f;
  p.penalty_last_n = 4;
  Sampler s(p, 10);
  SampleBatch batch;
  s.add_row(std::vector<int32_t>{9, 1, 2, 1, 5}, batch);  // window: 1, 2, 1, 5
  s.add_row(std::vector<int32_t>{7}, batch);
  ASSERT_EQ(batch.rows.size(), 2u);
  EXPECT_EQ(batch.rows[0].penalty_begin, 0);
  EXPECT_EQ(batch.rows[0].penalty_count, 3);
  EXPECT_EQ(batch.rows[1].penalty_begin, 3);
  EXPECT_EQ(batch.rows[1].penalty_count, 1);
  ASSERT_EQ(batch.penalties.size(), 4u);
  EXPECT_EQ(batch.penalties[0].token, 1);
  EXPECT_EQ(batch.penalties[0].count, 2);
  EXPECT_EQ(batch.penalties[1].token, 2);
  EXPECT_EQ(batch.penalties[2].token, 5);
  EXPECT_EQ(batch.penalties[3].token, 7);
  EXPECT_LT(batch.rows[0].draw, kDraws);
  EXPECT_NE(batch.rows[0].draw, batch.rows[1].draw);
}

}  // namespace
}  // namespace marlin
