// Requests of the OpenAI-compatible API as plain structs: parsing and validation of the JSON
// bodies (pure functions; every wrong type or out-of-range value is an ApiError naming the field).
// Unknown fields are ignored; a field set to null counts as absent.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/sampler.h"
#include "template/chat_template.h"

namespace marlin::server {

// What a request may ask for.
struct RequestLimits {
  int vocab_size = 0;              // token ids must be in [0, vocab_size)
  int max_n = 16;                  // choices per prompt
  int max_prompts = 64;            // prompts in one /v1/completions request
  int max_choices = 64;            // prompts × n in one request
  int max_messages = 4096;         // messages in one chat request
  int max_stop_strings = 4;        // as OpenAI
  size_t max_stop_bytes = 256;     // per stop string
  int max_tokens = 1 << 20;        // before the (tighter) context check
  int max_top_logprobs = 20;       // as OpenAI
  size_t max_logit_bias = 1024;    // entries
};

enum class Endpoint { kChat, kCompletions };

// One prompt of /v1/completions: text, or token ids.
struct PromptInput {
  std::string text;
  std::vector<int32_t> tokens;
  bool is_tokens = false;
};

struct CompletionRequest {
  Endpoint endpoint = Endpoint::kChat;
  std::string model;                  // empty when the request names none
  std::vector<ChatMessage> messages;  // chat
  std::vector<PromptInput> prompts;   // completions (one choice group per prompt)
  std::optional<int> max_tokens;      // max_tokens or max_completion_tokens
  SamplingParams sampling;            // OpenAI's defaults: temperature 1, top_p 1, top_k and min_p off
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  std::vector<std::pair<int32_t, float>> logit_bias;
  int n = 1;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool logprobs = false;
  int top_logprobs = 0;  // alternatives per token (chat: top_logprobs; completions: logprobs)
};

CompletionRequest parse_chat_request(const nlohmann::json& body, const RequestLimits& limits);
CompletionRequest parse_completion_request(const nlohmann::json& body, const RequestLimits& limits);

// POST /tokenize: {"prompt" (or "content"): text, "add_special_tokens": bool} or
// {"messages": [...], "add_generation_prompt": bool}.
struct TokenizeRequest {
  std::string text;
  std::vector<ChatMessage> messages;
  bool use_messages = false;
  bool add_special_tokens = true;
  bool add_generation_prompt = true;
};
TokenizeRequest parse_tokenize_request(const nlohmann::json& body, const RequestLimits& limits);

// POST /detokenize: {"tokens": [ids]}.
std::vector<int32_t> parse_detokenize_request(const nlohmann::json& body, const RequestLimits& limits);

// The request body as a JSON object; a 400 for malformed JSON (including invalid UTF-8) or any
// other JSON value.
nlohmann::json parse_json_object(std::string_view body);

// How many tokens to generate after a prompt of `prompt_tokens`: the requested maximum, else
// `default_max` (0: the rest of the context). A 400 with code context_length_exceeded naming
// both counts when they do not fit in `context` (its param is max_tokens, or `prompt_field` when
// the prompt alone is too long).
int plan_max_tokens(int64_t prompt_tokens, std::optional<int> requested, int default_max, int64_t context,
                    const char* prompt_field);

}  // namespace marlin::server
