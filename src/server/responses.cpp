#include "server/responses.h"

namespace marlin::server {
namespace {

using nlohmann::json;

const char* object_name(Endpoint endpoint, bool chunk) {
  if (endpoint == Endpoint::kChat) return chunk ? "chat.completion.chunk" : "chat.completion";
  return "text_completion";
}

json byte_list(const std::string& bytes) {
  json list = json::array();
  for (unsigned char c : bytes) list.push_back(int(c));
  return list;
}

// Chat's {"content": [{"token", "logprob", "bytes", "top_logprobs"}]}.
json chat_logprobs(std::span<const TokenLogprob> tokens, const TokenText& token_text) {
  json content = json::array();
  for (const auto& t : tokens) {
    const std::string text = token_text(t.token);
    json top = json::array();
    for (const auto& [id, lp] : t.top) {
      const std::string alt = token_text(id);
      top.push_back({{"token", alt}, {"logprob", lp}, {"bytes", byte_list(alt)}});
    }
    content.push_back({{"token", text}, {"logprob", t.logprob}, {"bytes", byte_list(text)}, {"top_logprobs", top}});
  }
  return {{"content", content}};
}

// The legacy API's parallel lists; text_offset counts bytes from `offset` (the choice's text so far).
json completion_logprobs(std::span<const TokenLogprob> tokens, const TokenText& token_text, size_t offset) {
  json texts = json::array(), logprobs = json::array(), tops = json::array(), offsets = json::array();
  for (const auto& t : tokens) {
    const std::string text = token_text(t.token);
    texts.push_back(text);
    logprobs.push_back(t.logprob);
    json top = json::object();
    for (const auto& [id, lp] : t.top) top[token_text(id)] = lp;
    tops.push_back(top);
    offsets.push_back(offset);
    offset += text.size();
  }
  return {{"tokens", texts}, {"token_logprobs", logprobs}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

json logprobs_json(const ResponseMeta& meta, std::span<const TokenLogprob> tokens, const TokenText& token_text) {
  if (!meta.logprobs) return nullptr;
  return meta.endpoint == Endpoint::kChat ? chat_logprobs(tokens, token_text) : completion_logprobs(tokens, token_text, 0);
}

json envelope(const ResponseMeta& meta, bool chunk) {
  return {{"id", meta.id}, {"object", object_name(meta.endpoint, chunk)}, {"created", meta.created}, {"model", meta.model}};
}

}  // namespace

const char* api_finish_reason(FinishReason reason) { return finish_reason_name(reason); }

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

json error_json(const ApiError& e) {
  auto or_null = [](const std::string& s) { return s.empty() ? json(nullptr) : json(s); };
  return {{"error", {{"message", e.what()}, {"type", e.type}, {"param", or_null(e.param)}, {"code", or_null(e.code)}}}};
}

json completion_json(const ResponseMeta& meta, const std::vector<ChoiceResult>& choices, const Usage& usage,
                     const TokenText& token_text) {
  json out = envelope(meta, false);
  json list = json::array();
  for (const auto& c : choices) {
    json choice = {{"index", c.index}};
    if (meta.endpoint == Endpoint::kChat)
      choice["message"] = {{"role", "assistant"}, {"content", c.text}};
    else
      choice["text"] = c.text;
    choice["logprobs"] = logprobs_json(meta, c.logprobs, token_text);
    choice["finish_reason"] = api_finish_reason(c.finish);
    list.push_back(std::move(choice));
  }
  out["choices"] = std::move(list);
  out["usage"] = usage_json(usage);
  return out;
}

json chunk_json(const ResponseMeta& meta, const ChunkContent& c, bool with_usage_field, const TokenText& token_text) {
  json out = envelope(meta, true);
  json choice = {{"index", c.index}};
  if (meta.endpoint == Endpoint::kChat) {
    json delta = json::object();
    if (c.role) delta["role"] = "assistant";
    if (c.role || !c.text.empty()) delta["content"] = c.text;
    choice["delta"] = std::move(delta);
  } else {
    choice["text"] = c.text;
  }
  if (!meta.logprobs || c.logprobs.empty())
    choice["logprobs"] = nullptr;
  else if (meta.endpoint == Endpoint::kChat)
    choice["logprobs"] = chat_logprobs(c.logprobs, token_text);
  else
    choice["logprobs"] = completion_logprobs(c.logprobs, token_text, c.text_offset);
  choice["finish_reason"] = c.finish ? json(api_finish_reason(*c.finish)) : json(nullptr);
  out["choices"] = json::array({std::move(choice)});
  if (with_usage_field) out["usage"] = nullptr;
  return out;
}

json usage_chunk_json(const ResponseMeta& meta, const Usage& usage) {
  json out = envelope(meta, true);
  out["choices"] = json::array();
  out["usage"] = usage_json(usage);
  return out;
}

json model_json(const std::string& id, int64_t created, int64_t context) {
  return {{"id", id}, {"object", "model"}, {"created", created}, {"owned_by", "marlin"}, {"max_model_len", context}};
}

json model_list_json(const std::string& id, int64_t created, int64_t context) {
  return {{"object", "list"}, {"data", json::array({model_json(id, created, context)})}};
}

std::string dump(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string sse_event(const json& value) { return "data: " + dump(value) + "\n\n"; }

}  // namespace marlin::server
