// One conversation with a model: its KV cache, the tokens in it, and generation on top.
//
// generate() reuses the longest common prefix of the new prompt and the cached tokens, so a chat
// turn only pays for the tokens it adds.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
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

class Session {
 public:
  Session(Model& model, const Tokenizer& tokenizer, int64_t context_size);

  GenerationResult generate(const std::vector<int32_t>& prompt, const GenerationParams& params,
                            const TextCallback& on_text = {});

  // Forgets the conversation.
  void reset();
  int64_t context_size() const { return cache_->capacity(); }
  const std::vector<int32_t>& tokens() const { return tokens_; }

 private:
  // Feeds prompt tokens not already in the cache and samples the first answer token into `next`;
  // returns how many prompt tokens were reused.
  int64_t prefill(const std::vector<int32_t>& prompt, Sampler& sampler, int32_t& next);

  Model& model_;
  const Tokenizer& tokenizer_;
  std::unique_ptr<KvCache> cache_;
  std::vector<int32_t> tokens_;  // what the cache holds
  SampleBatch request_;          // the step's sampling request (sampled where the model runs)
};

}  // namespace marlin
