#include "runtime/engine.h"

#include <chrono>

#include "backend/sampling.h"
#include "model/model_source.h"
#include "tokenizer/tokenizer.h"

namespace marlin {
namespace {

// Used when a model file carries no template of its own (as llama.cpp does).
constexpr const char* kChatMlTemplate =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

// Gemma's turn format, for Gemma files without a template (as Gemma's own template writes it): a
// system message opens the first user turn, assistant turns are "model" turns.
constexpr const char* kGemmaTemplate =
    "{{ bos_token }}"
    "{% if messages and messages[0]['role'] == 'system' %}{% set prefix = messages[0]['content'] + '\n\n' %}"
    "{% set turns = messages[1:] %}{% else %}{% set prefix = '' %}{% set turns = messages %}{% endif %}"
    "{% for message in turns %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + (prefix if loop.first else '') + (message['content'] | trim) + "
    "'<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}";

// The template of a model file without one: its family's turn format, else ChatML.
const char* builtin_template(const std::string& architecture) {
  return architecture == "gemma3" ? kGemmaTemplate : kChatMlTemplate;
}

}  // namespace

Engine::Engine(const EngineOptions& options)
    : pool_(std::make_unique<ThreadPool>(options.threads)),
      source_(open_model_source(options.model_path)),
      tokenizer_(source_->tokenizer()),
      model_(load_model(*source_, *pool_, options.device)) {
  const std::string own = source_->chat_template();
  has_own_template_ = !own.empty();
  template_ = std::make_unique<ChatTemplate>(has_own_template_ ? own
                                                               : std::string(builtin_template(source_->config().architecture)));
}

Engine::~Engine() = default;

std::vector<int32_t> Engine::chat_prompt(const std::vector<ChatMessage>& messages,
                                         bool add_generation_prompt) const {
  auto piece_or_empty = [&](std::optional<int32_t> id) { return id ? tokenizer_->piece(*id) : std::string(); };
  const std::string text = template_->apply(messages, add_generation_prompt, piece_or_empty(tokenizer_->bos_id()),
                                            piece_or_empty(tokenizer_->eos_id()));
  // The template writes any BOS itself, so no special tokens are added here.
  return tokenizer_->encode(text, /*add_special=*/false, /*parse_special=*/true);
}

std::vector<int32_t> Engine::raw_prompt(const std::string& text) const {
  return tokenizer_->encode(text, /*add_special=*/true, /*parse_special=*/true);
}

double Engine::warm_up() {
  const auto start = std::chrono::steady_clock::now();
  const int64_t vocab = model_->config().vocab_size;
  std::vector<int32_t> prompt(16);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = int32_t(int64_t(i) % vocab);
  auto cache = model_->new_cache(int64_t(prompt.size()) + 1);
  std::vector<float> logits(static_cast<size_t>(vocab));
  model_->forward(prompt, *cache, logits.data(), false);
  SampleBatch greedy;
  greedy.rows.resize(1);
  model_->forward_sample(std::span<const int32_t>(prompt.data(), 1), *cache, greedy);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace marlin
