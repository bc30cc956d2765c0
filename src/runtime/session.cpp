#include "runtime/session.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "runtime/stop_matcher.h"
#include "tokenizer/tokenizer.h"

namespace marlin {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kEndOfTurn: return "stop";
    case FinishReason::kStopString: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kContextFull: return "length";
    case FinishReason::kCancelled: return "cancelled";
  }
  return "unknown";
}

Session::Session(Model& model, const Tokenizer& tokenizer, int64_t context_size)
    : model_(model),
      tokenizer_(tokenizer),
      cache_(model.new_cache(context_size)) {}

void Session::reset() {
  cache_->clear();
  tokens_.clear();
}

int64_t Session::prefill(const std::vector<int32_t>& prompt, const StepSampler& next_token) {
  MARLIN_CHECK(!prompt.empty(), "the prompt is empty");
  MARLIN_CHECK(int64_t(prompt.size()) < cache_->capacity(),
               "the prompt has {} tokens but the context holds {}", prompt.size(), cache_->capacity());
  // Reuse the common prefix, but always feed at least the last prompt token to get its logits.
  size_t common = 0;
  const size_t limit = std::min(tokens_.size(), prompt.size() - 1);
  while (common < limit && tokens_[common] == prompt[common]) ++common;
  cache_->truncate(int64_t(common));
  tokens_.resize(common);
  std::span<const int32_t> fresh(prompt.data() + common, prompt.size() - common);
  tokens_.insert(tokens_.end(), fresh.begin(), fresh.end());
  next_token(fresh);
  return int64_t(common);
}

GenerationResult Session::generate(const std::vector<int32_t>& prompt, const GenerationParams& params,
                                   const TextCallback& on_text, const TokenCallback& on_token) {
  MARLIN_CHECK(params.max_tokens >= 0, "max tokens must be >= 0, got {}", params.max_tokens);
  const int vocab = model_.config().vocab_size;
  for (const auto& [token, bias] : params.logit_bias)
    MARLIN_CHECK(token >= 0 && token < vocab, "logit bias for token {} outside the vocabulary ({})", token, vocab);
  Sampler sampler(params.sampling, vocab);
  GenerationResult result;
  result.prompt_tokens = int(prompt.size());

  // Feeds `fresh` (already appended to tokens_) and picks the next token: where the model runs,
  // unless the logits are wanted here (for on_token, or to add a logit bias first).
  const bool host_logits = params.token_logits || !params.logit_bias.empty();
  if (host_logits) logits_.resize(size_t(vocab));
  int32_t token = 0;
  const StepSampler next_token = [&](std::span<const int32_t> fresh) {
    if (!host_logits) {
      request_.rows.clear();
      request_.penalties.clear();
      sampler.add_row(tokens_, request_);
      token = model_.forward_sample(fresh, *cache_, request_);
      return;
    }
    model_.forward(fresh, *cache_, logits_.data(), false);
    sampled_logits_.assign(logits_.begin(), logits_.end());  // the sampler modifies its copy
    for (const auto& [id, bias] : params.logit_bias) sampled_logits_[size_t(id)] += bias;
    token = sampler.sample(sampled_logits_.data(), tokens_);
  };

  auto start = std::chrono::steady_clock::now();
  result.cached_prompt_tokens = int(prefill(prompt, next_token));
  result.prefill_seconds = seconds_since(start);

  start = std::chrono::steady_clock::now();
  TokenStream stream(tokenizer_, /*skip_special=*/true);
  StopMatcher stops(params.stop);
  auto emit = [&](const std::string& text) {
    if (text.empty()) return true;
    result.text += text;
    return !on_text || on_text(text);
  };
  result.finish = FinishReason::kLength;
  for (int i = 0; i < params.max_tokens; ++i) {
    result.tokens.push_back(token);
    if (on_token && !on_token(token, host_logits ? std::span<const float>(logits_) : std::span<const float>())) {
      result.finish = FinishReason::kCancelled;
      break;
    }
    if (params.stop_at_end_of_turn && tokenizer_.is_end_of_turn(token)) {
      result.finish = FinishReason::kEndOfTurn;
      break;
    }
    if (!emit(stops.push(stream.push(token)))) {
      result.finish = FinishReason::kCancelled;
      break;
    }
    if (stops.stopped()) {
      result.finish = FinishReason::kStopString;
      break;
    }
    if (i + 1 == params.max_tokens) break;
    if (cache_->length() + 1 > cache_->capacity()) {
      result.finish = FinishReason::kContextFull;
      break;
    }
    const int32_t step[1] = {token};
    tokens_.push_back(token);
    next_token(step);
  }
  if (result.finish != FinishReason::kStopString && result.finish != FinishReason::kCancelled)
    emit(stops.push(stream.flush()) + stops.flush());
  result.decode_seconds = seconds_since(start);
  return result;
}

}  // namespace marlin
