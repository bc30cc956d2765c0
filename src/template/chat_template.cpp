#include "template/chat_template.h"

#include "core/error.h"

namespace marlin {
namespace tmpl {
namespace {

template <typename Json>
Value convert(const Json& j, uint32_t depth) {
  MARLIN_CHECK(depth < kMaxValueNesting, "template value nesting limit exceeded ({} levels)", kMaxValueNesting);
  switch (j.type()) {
    case nlohmann::json::value_t::null: return Value::none();
    case nlohmann::json::value_t::boolean: return Value::boolean(j.template get<bool>());
    case nlohmann::json::value_t::number_integer: return Value::integer(j.template get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      const auto u = j.template get<uint64_t>();
      if (u <= static_cast<uint64_t>(INT64_MAX)) return Value::integer(static_cast<int64_t>(u));
      return Value::number(static_cast<double>(u));
    }
    case nlohmann::json::value_t::number_float: return Value::number(j.template get<double>());
    case nlohmann::json::value_t::string: return Value::string(j.template get<std::string>());
    case nlohmann::json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& item : j) items.push_back(convert(item, depth + 1));
      return Value::list(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      Dict d;
      for (auto it = j.begin(); it != j.end(); ++it) {
        d.insert_new(Value::string(it.key()), convert(it.value(), depth + 1));  // JSON keys are unique
      }
      return Value::dict(std::move(d));
    }
    default: fail("unsupported JSON value in template context (binary data)");
  }
}

}  // namespace

Value value_from_json(const nlohmann::ordered_json& j) { return convert(j, 0); }
Value value_from_json(const nlohmann::json& j) { return convert(j, 0); }

}  // namespace tmpl

namespace {

using tmpl::Dict;
using tmpl::Value;

// One message as transformers passes it to templates (_normalize_chat_messages and
// _alias_reasoning_fields): keys whose value is null are dropped, and reasoning given under
// "reasoning_content", "thinking" or "reasoning" is also set as "thinking" (first) and
// "reasoning_content" (last).
Value normalize_message(const nlohmann::ordered_json& message) {
  MARLIN_CHECK(message.is_object(), "chat messages must be objects, got {}", message.dump());
  const nlohmann::ordered_json* reasoning = nullptr;
  for (const char* field : {"reasoning_content", "thinking", "reasoning"}) {
    const auto it = message.find(field);
    if (it != message.end() && !it->is_null()) {
      reasoning = &*it;
      break;
    }
  }
  Dict d;
  const Value reasoning_value = reasoning ? tmpl::value_from_json(*reasoning) : Value();
  if (reasoning) d.insert_new(Value::string("thinking"), reasoning_value);
  for (auto it = message.begin(); it != message.end(); ++it) {
    if (it.value().is_null()) continue;
    d.set(Value::string(it.key()), tmpl::value_from_json(it.value()));
  }
  if (reasoning) d.set(Value::string("reasoning_content"), reasoning_value);
  return Value::dict(std::move(d));
}

}  // namespace

ChatTemplate::ChatTemplate(std::string source, ChatTemplateConfig config)
    : source_(std::move(source)), config_(std::move(config)) {
  parsed_ = std::make_shared<const tmpl::ParsedTemplate>(tmpl::parse_template(source_, config_.limits.parse));
}

std::string ChatTemplate::render_value(const Value& context) const {
  tmpl::Interpreter interpreter(*parsed_, config_.limits.render, config_.clock);
  return interpreter.render(context);
}

std::string ChatTemplate::render(const nlohmann::json& context) const {
  MARLIN_CHECK(context.is_object(), "template context must be a JSON object");
  return render_value(tmpl::value_from_json(context));
}

std::string ChatTemplate::render(const nlohmann::ordered_json& context) const {
  MARLIN_CHECK(context.is_object(), "template context must be a JSON object");
  return render_value(tmpl::value_from_json(context));
}

std::string ChatTemplate::apply(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                const std::string& bos_token, const std::string& eos_token) const {
  ChatTemplateInputs inputs;
  for (const ChatMessage& m : messages) {
    inputs.messages.push_back({{"role", m.role}, {"content", m.content}});
  }
  inputs.add_generation_prompt = add_generation_prompt;
  inputs.variables["bos_token"] = bos_token;
  inputs.variables["eos_token"] = eos_token;
  return apply(inputs);
}

std::string ChatTemplate::apply(const ChatTemplateInputs& inputs) const {
  MARLIN_CHECK(inputs.variables.is_object(), "template variables must be a JSON object");
  MARLIN_CHECK(inputs.messages.is_array(), "chat messages must be a JSON array");
  // transformers renders with the special tokens and extra variables first, then messages, tools,
  // documents and add_generation_prompt (the explicit arguments win).
  Dict context;
  for (auto it = inputs.variables.begin(); it != inputs.variables.end(); ++it) {
    context.insert_new(Value::string(it.key()), tmpl::value_from_json(it.value()));
  }
  std::vector<Value> messages;
  messages.reserve(inputs.messages.size());
  for (const auto& message : inputs.messages) messages.push_back(normalize_message(message));
  context.set(Value::string("messages"), Value::list(std::move(messages)));
  context.set(Value::string("tools"), tmpl::value_from_json(inputs.tools));
  context.set(Value::string("documents"), tmpl::value_from_json(inputs.documents));
  context.set(Value::string("add_generation_prompt"), Value::boolean(inputs.add_generation_prompt));
  return render_value(Value::dict(std::move(context)));
}

}  // namespace marlin
