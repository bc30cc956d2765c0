// OpenAI-shaped JSON responses and server-sent-event framing. Pure functions over plain structs;
// token ids become text through a TokenText function so this layer never needs the model.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/session.h"
#include "server/api_error.h"
#include "server/logprobs.h"
#include "server/request.h"

namespace marlin::server {

// The bytes a token stands for (may be part of a UTF-8 character).
using TokenText = std::function<std::string(int32_t)>;

struct ResponseMeta {
  std::string id;  // chatcmpl-... or cmpl-...
  int64_t created = 0;  // Unix seconds
  std::string model;
  Endpoint endpoint = Endpoint::kChat;
  bool logprobs = false;
};

struct ChoiceResult {
  int index = 0;
  std::string text;
  std::vector<TokenLogprob> logprobs;
  FinishReason finish = FinishReason::kLength;
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t cached_tokens = 0;  // prompt tokens reused from the cache
};

// "stop", "length", or "cancelled" (generation cut short by shutdown).
const char* api_finish_reason(FinishReason reason);

nlohmann::json usage_json(const Usage& usage);
nlohmann::json error_json(const ApiError& error);

// The whole answer of a request that did not stream.
nlohmann::json completion_json(const ResponseMeta& meta, const std::vector<ChoiceResult>& choices, const Usage& usage,
                               const TokenText& token_text);

// One streamed chunk for choice `index`: new text and its tokens' logprobs, the assistant role
// (chat's first chunk), or the finish reason. with_usage_field adds "usage": null (include_usage).
struct ChunkContent {
  int index = 0;
  std::string_view text{};
  std::span<const TokenLogprob> logprobs{};
  bool role = false;
  std::optional<FinishReason> finish{};
  size_t text_offset = 0;  // bytes of this choice's text already sent (legacy logprobs' text_offset)
};
nlohmann::json chunk_json(const ResponseMeta& meta, const ChunkContent& content, bool with_usage_field,
                          const TokenText& token_text);
// The last chunk when include_usage: no choices, the request's usage.
nlohmann::json usage_chunk_json(const ResponseMeta& meta, const Usage& usage);

nlohmann::json model_json(const std::string& id, int64_t created, int64_t context);
nlohmann::json model_list_json(const std::string& id, int64_t created, int64_t context);

// JSON text; invalid UTF-8 in strings (e.g. a token that is part of a character) becomes U+FFFD.
std::string dump(const nlohmann::json& value);
// One server-sent event carrying `value`.
std::string sse_event(const nlohmann::json& value);
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

}  // namespace marlin::server
