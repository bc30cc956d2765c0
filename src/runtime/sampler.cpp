#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace marlin {

void validate(const SamplingParams& p) {
  MARLIN_CHECK(std::isfinite(p.temperature) && p.temperature >= 0 && p.temperature <= 100,
               "temperature must be in [0, 100], got {}", p.temperature);
  MARLIN_CHECK(p.top_k >= 0, "top-k must be >= 0, got {}", p.top_k);
  MARLIN_CHECK(p.top_p > 0 && p.top_p <= 1, "top-p must be in (0, 1], got {}", p.top_p);
  MARLIN_CHECK(p.min_p >= 0 && p.min_p <= 1, "min-p must be in [0, 1], got {}", p.min_p);
  MARLIN_CHECK(std::isfinite(p.repetition_penalty) && p.repetition_penalty > 0,
               "repetition penalty must be > 0, got {}", p.repetition_penalty);
  MARLIN_CHECK(std::isfinite(p.presence_penalty) && std::abs(p.presence_penalty) <= 2,
               "presence penalty must be in [-2, 2], got {}", p.presence_penalty);
  MARLIN_CHECK(std::isfinite(p.frequency_penalty) && std::abs(p.frequency_penalty) <= 2,
               "frequency penalty must be in [-2, 2], got {}", p.frequency_penalty);
  MARLIN_CHECK(p.penalty_last_n >= -1, "penalty window must be >= -1, got {}", p.penalty_last_n);
}

Sampler::Sampler(const SamplingParams& params, int vocab_size)
    : params_(params), vocab_size_(vocab_size), rng_(params.seed), counts_(size_t(vocab_size), 0) {
  validate(params);
}

void Sampler::apply_penalties(float* logits, std::span<const int32_t> history) {
  const SamplingParams& p = params_;
  if (p.repetition_penalty == 1.0f && p.presence_penalty == 0.0f && p.frequency_penalty == 0.0f) return;
  if (p.penalty_last_n >= 0 && history.size() > size_t(p.penalty_last_n))
    history = history.subspan(history.size() - size_t(p.penalty_last_n));
  for (int32_t t : history)
    if (t >= 0 && t < vocab_size_) counts_[size_t(t)]++;
  for (int32_t t : history) {
    if (t < 0 || t >= vocab_size_ || counts_[size_t(t)] == 0) continue;
    float& l = logits[t];
    if (p.repetition_penalty != 1.0f) l = l > 0 ? l / p.repetition_penalty : l * p.repetition_penalty;
    l -= p.presence_penalty + p.frequency_penalty * float(counts_[size_t(t)]);
    counts_[size_t(t)] = 0;  // each distinct token is penalized once; this also resets counts_
  }
}

int32_t Sampler::sample(float* logits, std::span<const int32_t> history) {
  apply_penalties(logits, history);
  const int n = vocab_size_;
  if (params_.temperature == 0.0f) return int32_t(std::max_element(logits, logits + n) - logits);

  // Candidates sorted by logit, cut to top-k (when set).
  candidates_.resize(size_t(n));
  for (int i = 0; i < n; ++i) candidates_[size_t(i)] = {logits[i], i};
  const size_t keep = params_.top_k > 0 ? std::min(size_t(params_.top_k), size_t(n)) : size_t(n);
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  if (keep < size_t(n)) {
    std::partial_sort(candidates_.begin(), candidates_.begin() + ptrdiff_t(keep), candidates_.end(), by_logit);
    candidates_.resize(keep);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), by_logit);
  }

  // Probabilities at temperature T over the remaining candidates.
  const float max_logit = candidates_.front().first;
  double total = 0;
  for (auto& [value, id] : candidates_) {
    value = float(std::exp(double(value - max_logit) / params_.temperature));
    total += value;
  }
  // top-p keeps the shortest prefix whose mass reaches p; min-p drops tokens below min_p·p_max.
  size_t cut = candidates_.size();
  double mass = 0;
  const double min_prob = double(params_.min_p) * candidates_.front().first / total;
  for (size_t i = 0; i < candidates_.size(); ++i) {
    const double prob = candidates_[i].first / total;
    if (i > 0 && prob < min_prob) {
      cut = i;
      break;
    }
    mass += prob;
    if (mass >= params_.top_p) {
      cut = i + 1;
      break;
    }
  }
  candidates_.resize(cut);

  double kept = 0;
  for (const auto& c : candidates_) kept += c.first;
  double r = std::uniform_real_distribution<double>(0.0, kept)(rng_);
  for (const auto& c : candidates_) {
    r -= c.first;
    if (r < 0) return c.second;
  }
  return candidates_.back().second;
}

}  // namespace marlin
