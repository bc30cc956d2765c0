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
      for (auto it = j.begin(); it != j.end(); ++it) d.set(Value::string(it.key()), convert(it.value(), depth + 1));
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

// transformers' _normalize_chat_messages and _alias_reasoning_fields.
nlohmann::ordered_json normalize_messages(const nlohmann::ordered_json& messages) {
  MARLIN_CHECK(messages.is_array(), "chat messages must be a JSON array");
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const auto& message : messages) {
    MARLIN_CHECK(message.is_object(), "chat messages must be objects, got {}", message.dump());
    nlohmann::ordered_json kept = nlohmann::ordered_json::object();
    for (auto it = message.begin(); it != message.end(); ++it) {
      if (!it.value().is_null()) kept[it.key()] = it.value();
    }
    const nlohmann::ordered_json* reasoning = nullptr;
    for (const char* field : {"reasoning_content", "thinking", "reasoning"}) {
      if (kept.contains(field)) {
        reasoning = &kept[field];
        break;
      }
    }
    if (reasoning) {
      const nlohmann::ordered_json value = *reasoning;
      nlohmann::ordered_json aliased = nlohmann::ordered_json::object();
      aliased["thinking"] = value;
      for (auto it = kept.begin(); it != kept.end(); ++it) aliased[it.key()] = it.value();
      aliased["reasoning_content"] = value;
      kept = std::move(aliased);
    }
    out.push_back(std::move(kept));
  }
  return out;
}

}  // namespace

ChatTemplate::ChatTemplate(std::string source, ChatTemplateConfig config)
    : source_(std::move(source)), config_(std::move(config)) {
  parsed_ = std::make_shared<const tmpl::ParsedTemplate>(tmpl::parse_template(source_, config_.limits.parse));
}

std::string ChatTemplate::render_value(const tmpl::Value& context) const {
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
  // transformers renders with the special tokens and extra variables first, then messages, tools,
  // documents and add_generation_prompt (the explicit arguments win).
  nlohmann::ordered_json context = inputs.variables;
  context["messages"] = normalize_messages(inputs.messages);
  context["tools"] = inputs.tools;
  context["documents"] = inputs.documents;
  context["add_generation_prompt"] = inputs.add_generation_prompt;
  return render(context);
}

}  // namespace marlin
