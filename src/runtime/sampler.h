// Next-token sampling: penalties, then (as Hugging Face orders its processors) temperature,
// top-k, top-p and min-p, then a draw from a seeded generator. Temperature 0 is greedy.
//
// The rule itself is a backend op (backend/sampling.h): a Sampler turns a sequence's parameters,
// history and generator into one SampleRow per step, which any backend samples (the CUDA one on
// the GPU, returning only the token id). Both backends pick the same token from the same row.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "backend/sampling.h"

namespace marlin {

struct SamplingParams {
  float temperature = 0.8f;
  int top_k = 40;                    // 0: off
  float top_p = 0.95f;               // 1: off
  float min_p = 0.05f;               // 0: off
  float repetition_penalty = 1.0f;   // CTRL-style divisor for seen tokens; 1: off
  float presence_penalty = 0.0f;     // OpenAI-style, subtracted once per seen token
  float frequency_penalty = 0.0f;    // OpenAI-style, subtracted per occurrence
  int penalty_last_n = 64;           // how far back penalties look; -1: the whole history
  uint64_t seed = 0;
};

// Throws marlin::Error naming the first out-of-range parameter.
void validate(const SamplingParams& params);

class Sampler {
 public:
  Sampler(const SamplingParams& params, int vocab_size);

  // Appends the next step's row to `batch`: the parameters, the penalized tokens of `history`
  // (the sequence so far: prompt and generated tokens) and the next number of the generator.
  void add_row(std::span<const int32_t> history, SampleBatch& batch);

  // Picks the next token on the CPU (add_row, then sample_row). `logits` (vocab_size values) is
  // modified in place.
  int32_t sample(float* logits, std::span<const int32_t> history);

 private:
  SamplingParams params_;
  int vocab_size_;
  std::mt19937_64 rng_;
  std::vector<int32_t> counts_;
  SampleBatch one_;
  SampleScratch scratch_;
};

}  // namespace marlin
