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

void Sampler::add_row(std::span<const int32_t> history, SampleBatch& batch) {
  const SamplingParams& p = params_;
  SampleRow row;
  row.temperature = p.temperature;
  row.top_k = p.top_k;
  row.top_p = p.top_p;
  row.log_min_p = p.min_p > 0 ? std::log(p.min_p) : -INFINITY;
  row.repetition_penalty = p.repetition_penalty;
  row.presence_penalty = p.presence_penalty;
  row.frequency_penalty = p.frequency_penalty;
  row.penalty_begin = int32_t(batch.penalties.size());
  row.draw = rng_() >> 11;  // 53 random bits
  if (p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    if (p.penalty_last_n >= 0 && history.size() > size_t(p.penalty_last_n))
      history = history.subspan(history.size() - size_t(p.penalty_last_n));
    for (int32_t t : history)
      if (t >= 0 && t < vocab_size_) counts_[size_t(t)]++;
    for (int32_t t : history) {  // each distinct token once, in order of appearance; resets counts_
      if (t < 0 || t >= vocab_size_ || counts_[size_t(t)] == 0) continue;
      batch.penalties.push_back({t, counts_[size_t(t)]});
      counts_[size_t(t)] = 0;
    }
  }
  row.penalty_count = int32_t(batch.penalties.size()) - row.penalty_begin;
  batch.rows.push_back(row);
}

int32_t Sampler::sample(float* logits, std::span<const int32_t> history) {
  one_.rows.clear();
  one_.penalties.clear();
  add_row(history, one_);
  return sample_row(logits, vocab_size_, one_.rows[0], one_.penalties, scratch_);
}

}  // namespace marlin
