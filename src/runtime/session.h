// One conversation with a model: its KV cache, the tokens in it, and generation on top.
//
// generate() reuses the longest common prefix of the new prompt and the cached tokens, so a chat
// turn only pays for the tokens it adds.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <utility>
#include <string>
#include <string_view>
#include <vector>

#include "model/model.h"
#include "runtime/sampler.h"

namespace marlin {

class Tokenizer;

struct GenerationParams {
  SamplingParams sampling;
  int max_tokens = 512;
  std::vector<std::string> stop;  // stop strings (not included in the output)
  bool stop_at_end_of_turn = true;
  // Added to the logits of these tokens before sampling (OpenAI's logit_bias).
  std::vector<std::pair<int32_t, float>> logit_bias;
  // The TokenCallback receives the model's logits (for logprobs); then, as with a logit bias,
  // each step's logits come to the host and are sampled there. Otherwise sampling runs where the
  // model runs and the callback gets an empty span.
  bool token_logits = false;
};

enum class FinishReason { kEndOfTurn, kStopString, kLength, kContextFull, kCancelled };
const char* finish_reason_name(FinishReason reason);

struct GenerationResult {
  std::string text;
  std::vector<int32_t> tokens;  // generated tokens, including a final end-of-turn token
  FinishReason finish = FinishReason::kLength;
  int prompt_tokens = 0;
  int cached_prompt_tokens = 0;  // reused from the previous call
  double prefill_seconds = 0;
  double decode_seconds = 0;
};

// Receives text as it becomes final (whole UTF-8 characters, stop strings removed); returning
// false cancels generation.
using TextCallback = std::function<bool(std::string_view)>;
// Receives every sampled token with the model's logits it was drawn from (before bias, penalties
// and temperature; only with GenerationParams::token_logits, else empty), before its text reaches
// the TextCallback; returning false cancels generation.
using TokenCallback = std::function<bool(int32_t token, std::span<const float> logits)>;

class Session {
 public:
  Session(Model& model, const Tokenizer& tokenizer, int64_t context_size);

  GenerationResult generate(const std::vector<int32_t>& prompt, const GenerationParams& params,
                            const TextCallback& on_text = {}, const TokenCallback& on_token = {});

  // Forgets the conversation.
  void reset();
  int64_t context_size() const { return cache_->capacity(); }
  const std::vector<int32_t>& tokens() const { return tokens_; }

 private:
  // Feeds tokens (already appended to tokens_) and samples the next one.
  using StepSampler = std::function<void(std::span<const int32_t> fresh)>;
  // Feeds the prompt tokens not already in the cache through `next_token`; returns how many
  // prompt tokens were reused.
  int64_t prefill(const std::vector<int32_t>& prompt, const StepSampler& next_token);

  Model& model_;
  const Tokenizer& tokenizer_;
  std::unique_ptr<KvCache> cache_;
  std::vector<int32_t> tokens_;  // what the cache holds
  std::vector<float> logits_;          // the model's logits, when sampled on the host
  std::vector<float> sampled_logits_;  // what the host sampler modifies
  SampleBatch request_;                // the step's sampling request (sampled where the model runs)
};

}  // namespace marlin
