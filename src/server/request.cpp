#include "server/request.h"

#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "server/api_error.h"

namespace marlin::server {
namespace {

using nlohmann::json;

// The field's value, or nullptr when absent or null.
const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

[[noreturn]] void wrong_type(const char* name, const char* expected) {
  throw invalid_request(fmt::format("'{}' must be {}", name, expected), name);
}

std::optional<bool> get_bool(const json& body, const char* name) {
  const json* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) wrong_type(name, "a boolean");
  return v->get<bool>();
}

// An integer in [lo, hi]; floats (even integral ones) are rejected as OpenAI does.
std::optional<int64_t> get_int(const json& body, const char* name, int64_t lo, int64_t hi) {
  const json* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_number_integer()) wrong_type(name, "an integer");
  if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
    throw invalid_request(fmt::format("'{}' must be in [{}, {}]", name, lo, hi), name);
  const int64_t value = v->get<int64_t>();
  if (value < lo || value > hi) throw invalid_request(fmt::format("'{}' must be in [{}, {}], got {}", name, lo, hi, value), name);
  return value;
}

std::optional<double> get_number(const json& body, const char* name, double lo, double hi) {
  const json* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_number()) wrong_type(name, "a number");
  const double value = v->get<double>();
  if (!(value >= lo && value <= hi)) throw invalid_request(fmt::format("'{}' must be in [{}, {}], got {}", name, lo, hi, value), name);
  return value;
}

std::optional<std::string> get_string(const json& body, const char* name) {
  const json* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_string()) wrong_type(name, "a string");
  return v->get<std::string>();
}

int32_t token_id(const json& v, const char* name, const RequestLimits& limits) {
  if (!v.is_number_integer()) wrong_type(name, "a list of integer token ids");
  const bool in_range = v.is_number_unsigned() ? v.get<uint64_t>() < uint64_t(limits.vocab_size)
                                               : v.get<int64_t>() >= 0 && v.get<int64_t>() < limits.vocab_size;
  if (!in_range)
    throw invalid_request(fmt::format("token id {} in '{}' is outside the vocabulary [0, {})", v.dump(), name, limits.vocab_size), name);
  return int32_t(v.get<int64_t>());
}

std::vector<int32_t> token_list(const json& v, const char* name, const RequestLimits& limits) {
  std::vector<int32_t> ids;
  ids.reserve(v.size());
  for (const json& item : v) ids.push_back(token_id(item, name, limits));
  return ids;
}

// Message content: a string, or a list of {"type": "text", "text": ...} parts (joined).
std::string message_content(const json& content) {
  if (content.is_null()) return {};
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) wrong_type("messages", "a list of messages whose content is a string or a list of parts");
  std::string text;
  for (const json& part : content) {
    if (!part.is_object()) wrong_type("messages", "a list of messages whose content parts are objects");
    const json* type = field(part, "type");
    if (!type || !type->is_string()) wrong_type("messages", "a list of messages whose content parts have a string 'type'");
    if (*type != "text")
      throw invalid_request(fmt::format("content parts of type {} are not supported (only text)", type->dump()), "messages");
    const json* part_text = field(part, "text");
    if (!part_text || !part_text->is_string()) wrong_type("messages", "a list of messages whose text parts have a string 'text'");
    text += part_text->get<std::string>();
  }
  return text;
}

std::vector<ChatMessage> parse_messages(const json& body, const RequestLimits& limits) {
  const json* list = field(body, "messages");
  if (!list) throw invalid_request("'messages' is required", "messages");
  if (!list->is_array()) wrong_type("messages", "a list of messages");
  if (list->empty()) throw invalid_request("'messages' must not be empty", "messages");
  if (list->size() > size_t(limits.max_messages))
    throw invalid_request(fmt::format("'messages' has {} entries; at most {} are allowed", list->size(), limits.max_messages), "messages");
  std::vector<ChatMessage> messages;
  for (const json& m : *list) {
    if (!m.is_object()) wrong_type("messages", "a list of message objects");
    const json* role = field(m, "role");
    if (!role || !role->is_string()) wrong_type("messages", "a list of messages with a string 'role'");
    std::string name = role->get<std::string>();
    if (name == "developer") name = "system";  // OpenAI's newer name for the system role
    messages.push_back({std::move(name), message_content(m.contains("content") ? m["content"] : json())});
  }
  return messages;
}

std::vector<PromptInput> parse_prompts(const json& body, const RequestLimits& limits) {
  const json* p = field(body, "prompt");
  if (!p) throw invalid_request("'prompt' is required", "prompt");
  auto empty = [] { return invalid_request("the prompt is empty", "prompt"); };
  std::vector<PromptInput> prompts;
  if (p->is_string()) {
    if (p->get_ref<const std::string&>().empty()) throw empty();
    prompts.push_back({p->get<std::string>(), {}, false});
    return prompts;
  }
  if (!p->is_array()) wrong_type("prompt", "a string, a list of strings, or a list of token ids");
  if (p->empty()) throw empty();
  if ((*p)[0].is_number()) {
    prompts.push_back({{}, token_list(*p, "prompt", limits), true});
    return prompts;
  }
  if (p->size() > size_t(limits.max_prompts))
    throw invalid_request(fmt::format("'prompt' has {} prompts; at most {} are allowed", p->size(), limits.max_prompts), "prompt");
  for (const json& item : *p) {
    if (item.is_string()) {
      if (item.get_ref<const std::string&>().empty()) throw empty();
      prompts.push_back({item.get<std::string>(), {}, false});
    } else if (item.is_array()) {
      if (item.empty()) throw empty();
      prompts.push_back({{}, token_list(item, "prompt", limits), true});
    } else {
      wrong_type("prompt", "a string, a list of strings, or a list of token ids");
    }
  }
  return prompts;
}

std::vector<std::string> parse_stop(const json& body, const RequestLimits& limits) {
  const json* v = field(body, "stop");
  if (!v) return {};
  std::vector<std::string> stops;
  if (v->is_string()) {
    stops.push_back(v->get<std::string>());
  } else if (v->is_array()) {
    if (v->size() > size_t(limits.max_stop_strings))
      throw invalid_request(fmt::format("'stop' has {} strings; at most {} are allowed", v->size(), limits.max_stop_strings), "stop");
    for (const json& s : *v) {
      if (!s.is_string()) wrong_type("stop", "a string or a list of strings");
      stops.push_back(s.get<std::string>());
    }
  } else {
    wrong_type("stop", "a string or a list of strings");
  }
  for (const auto& s : stops) {
    if (s.empty()) throw invalid_request("stop strings must not be empty", "stop");
    if (s.size() > limits.max_stop_bytes)
      throw invalid_request(fmt::format("a stop string has {} bytes; at most {} are allowed", s.size(), limits.max_stop_bytes), "stop");
  }
  return stops;
}

std::vector<std::pair<int32_t, float>> parse_logit_bias(const json& body, const RequestLimits& limits) {
  const json* v = field(body, "logit_bias");
  if (!v) return {};
  if (!v->is_object()) wrong_type("logit_bias", "an object mapping token ids to numbers");
  if (v->size() > limits.max_logit_bias)
    throw invalid_request(fmt::format("'logit_bias' has {} entries; at most {} are allowed", v->size(), limits.max_logit_bias), "logit_bias");
  std::vector<std::pair<int32_t, float>> bias;
  for (const auto& [key, value] : v->items()) {
    int64_t id = -1;
    const bool numeric = !key.empty() && key.size() <= 10 && key.find_first_not_of("0123456789") == std::string::npos;
    if (numeric) id = std::stoll(key);
    if (!numeric || id >= limits.vocab_size)
      throw invalid_request(fmt::format("logit_bias key '{}' is not a token id in [0, {})", key, limits.vocab_size), "logit_bias");
    if (!value.is_number()) wrong_type("logit_bias", "an object mapping token ids to numbers");
    const double b = value.get<double>();
    if (!(b >= -100 && b <= 100)) throw invalid_request(fmt::format("logit_bias values must be in [-100, 100], got {}", b), "logit_bias");
    bias.emplace_back(int32_t(id), float(b));
  }
  return bias;
}

// Fields both endpoints share.
void parse_common(const json& body, const RequestLimits& limits, CompletionRequest& r) {
  if (auto model = get_string(body, "model")) r.model = *model;
  auto max_tokens = get_int(body, "max_completion_tokens", 1, limits.max_tokens);
  if (!max_tokens) max_tokens = get_int(body, "max_tokens", 1, limits.max_tokens);
  if (max_tokens) r.max_tokens = int(*max_tokens);

  SamplingParams& s = r.sampling;
  s.temperature = float(get_number(body, "temperature", 0, 2).value_or(1.0));
  s.top_p = float(get_number(body, "top_p", 0, 1).value_or(1.0));
  if (s.top_p == 0) throw invalid_request("'top_p' must be greater than 0", "top_p");
  s.top_k = int(get_int(body, "top_k", 0, limits.vocab_size).value_or(0));
  s.min_p = float(get_number(body, "min_p", 0, 1).value_or(0.0));
  s.presence_penalty = float(get_number(body, "presence_penalty", -2, 2).value_or(0.0));
  s.frequency_penalty = float(get_number(body, "frequency_penalty", -2, 2).value_or(0.0));
  s.repetition_penalty = float(get_number(body, "repetition_penalty", 0.01, 100).value_or(1.0));
  if (auto seed = get_int(body, "seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()))
    r.seed = uint64_t(*seed);

  r.stop = parse_stop(body, limits);
  r.logit_bias = parse_logit_bias(body, limits);
  r.n = int(get_int(body, "n", 1, limits.max_n).value_or(1));
  r.stream = get_bool(body, "stream").value_or(false);
  if (const json* options = field(body, "stream_options")) {
    if (!options->is_object()) wrong_type("stream_options", "an object");
    if (!r.stream) throw invalid_request("'stream_options' is only allowed with 'stream': true", "stream_options");
    r.include_usage = get_bool(*options, "include_usage").value_or(false);
  }
  get_string(body, "user");  // accepted for its type, otherwise ignored
}

}  // namespace

CompletionRequest parse_chat_request(const json& body, const RequestLimits& limits) {
  CompletionRequest r;
  r.endpoint = Endpoint::kChat;
  r.messages = parse_messages(body, limits);
  parse_common(body, limits, r);
  r.logprobs = get_bool(body, "logprobs").value_or(false);
  if (auto top = get_int(body, "top_logprobs", 0, limits.max_top_logprobs)) {
    if (!r.logprobs) throw invalid_request("'top_logprobs' requires 'logprobs': true", "top_logprobs");
    r.top_logprobs = int(*top);
  }
  return r;
}

CompletionRequest parse_completion_request(const json& body, const RequestLimits& limits) {
  CompletionRequest r;
  r.endpoint = Endpoint::kCompletions;
  r.prompts = parse_prompts(body, limits);
  parse_common(body, limits, r);
  // The legacy API's logprobs is the number of alternatives (0-5) rather than a flag.
  if (auto top = get_int(body, "logprobs", 0, 5)) {
    r.logprobs = true;
    r.top_logprobs = int(*top);
  }
  if (r.prompts.size() * size_t(r.n) > size_t(limits.max_choices))
    throw invalid_request(fmt::format("{} prompts with n = {} ask for {} choices; at most {} are allowed", r.prompts.size(), r.n,
                                      r.prompts.size() * size_t(r.n), limits.max_choices),
                          "n");
  if (get_bool(body, "echo").value_or(false)) throw invalid_request("'echo' is not supported", "echo");
  if (auto best_of = get_int(body, "best_of", 1, limits.max_n); best_of && *best_of != r.n)
    throw invalid_request("'best_of' other than 'n' is not supported", "best_of");
  if (auto suffix = get_string(body, "suffix"); suffix && !suffix->empty())
    throw invalid_request("'suffix' is not supported", "suffix");
  return r;
}

TokenizeRequest parse_tokenize_request(const json& body, const RequestLimits& limits) {
  TokenizeRequest r;
  if (field(body, "messages")) {
    r.use_messages = true;
    r.messages = parse_messages(body, limits);
    r.add_generation_prompt = get_bool(body, "add_generation_prompt").value_or(true);
    return r;
  }
  auto text = get_string(body, "prompt");
  if (!text) text = get_string(body, "content");
  if (!text) throw invalid_request("'prompt' (a string) or 'messages' is required", "prompt");
  r.text = *text;
  r.add_special_tokens = get_bool(body, "add_special_tokens").value_or(true);
  return r;
}

std::vector<int32_t> parse_detokenize_request(const json& body, const RequestLimits& limits) {
  const json* tokens = field(body, "tokens");
  if (!tokens) throw invalid_request("'tokens' is required", "tokens");
  if (!tokens->is_array()) wrong_type("tokens", "a list of integer token ids");
  return token_list(*tokens, "tokens", limits);
}

json parse_json_object(std::string_view body) {
  json value = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded())
    throw invalid_request("the request body is not valid JSON (or not valid UTF-8)");
  if (!value.is_object()) throw invalid_request("the request body must be a JSON object");
  return value;
}

int plan_max_tokens(int64_t prompt_tokens, std::optional<int> requested, int default_max, int64_t context,
                    const char* prompt_field) {
  const int64_t room = context - prompt_tokens;
  if (requested ? *requested > room : room < 1) {
    const std::string asked = requested ? fmt::format("{} tokens of prompt and {} to generate", prompt_tokens, *requested)
                                        : fmt::format("{} tokens of prompt", prompt_tokens);
    throw invalid_request(fmt::format("this model's context holds {} tokens, but the request asks for {} ({} in all)",
                                      context, asked, prompt_tokens + (requested ? *requested : 1)),
                          requested ? "max_tokens" : prompt_field, "context_length_exceeded");
  }
  if (requested) return *requested;
  return int(default_max > 0 ? std::min<int64_t>(default_max, room) : room);
}

}  // namespace marlin::server
