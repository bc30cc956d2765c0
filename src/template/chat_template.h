// Chat templates: renders a model's own Jinja chat template (tokenizer.chat_template in GGUF,
// chat_template in tokenizer_config.json) byte-for-byte as transformers' apply_chat_template does
// (jinja2 ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, raise_exception, strftime_now,
// namespace, and transformers' tojson).
//
// The template is parsed once; render()/apply() are const and thread-safe. Rendering is sandboxed:
// templates see only the variables given, and steps, loop iterations, output size and nesting are
// bounded (see TemplateLimits); any breach, syntax error or template error is a marlin::Error.
// raise_exception(msg) inside a template throws marlin::tmpl::TemplateRaisedError carrying msg.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

#include "template/interpreter.h"
#include "template/parser.h"

namespace marlin {

struct ChatMessage {
  std::string role;
  std::string content;
};

struct TemplateLimits {
  tmpl::ParseLimits parse;
  tmpl::RenderLimits render;
};

struct ChatTemplateConfig {
  TemplateLimits limits;
  // Local time for strftime_now(); defaults to the system clock. Inject a fixed time to make
  // date-dependent templates (Llama 3.x) reproducible.
  tmpl::Clock clock;
};

// Everything transformers' apply_chat_template passes to a template.
struct ChatTemplateInputs {
  // OpenAI-style messages: role, content (string or list of parts), tool_calls, reasoning_content...
  // As in transformers, keys whose value is null are dropped and reasoning is aliased under
  // "reasoning_content" and "thinking".
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  nlohmann::ordered_json tools = nullptr;      // list of tool schemas, or null
  nlohmann::ordered_json documents = nullptr;  // list of documents, or null
  bool add_generation_prompt = false;
  // Further template variables: bos_token, eos_token, enable_thinking, date_string, ...
  nlohmann::ordered_json variables = nlohmann::ordered_json::object();
};

class ChatTemplate {
 public:
  explicit ChatTemplate(std::string source, ChatTemplateConfig config = {});

  // Renders with `context` (a JSON object) as the template's variables. nlohmann::json keeps
  // object keys sorted; use the ordered_json overload where key order matters (tojson output).
  std::string render(const nlohmann::json& context) const;
  std::string render(const nlohmann::ordered_json& context) const;

  std::string apply(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                    const std::string& bos_token, const std::string& eos_token) const;
  std::string apply(const ChatTemplateInputs& inputs) const;

  const std::string& source() const { return source_; }

 private:
  std::string render_value(const tmpl::Value& context) const;

  std::string source_;
  ChatTemplateConfig config_;
  std::shared_ptr<const tmpl::ParsedTemplate> parsed_;
};

namespace tmpl {
// JSON to template values (objects keep their key order). Nesting deeper than kMaxValueNesting is
// an error.
Value value_from_json(const nlohmann::ordered_json& j);
Value value_from_json(const nlohmann::json& j);
}  // namespace tmpl

}  // namespace marlin
