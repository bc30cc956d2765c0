// Log-probabilities of sampled tokens, for the API's logprobs option.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace marlin::server {

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;  // the most likely tokens, most likely first
};

// log softmax(logits)[token], and the `top_n` most likely tokens with theirs (ties: lower id first).
TokenLogprob token_logprob(std::span<const float> logits, int32_t token, int top_n);

}  // namespace marlin::server
