#include <gtest/gtest.h>

#include <cmath>
#include <vector>

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

}  // namespace
}  // namespace marlin
