// Everything needed to run one model: its source (a mapped file), the network, its tokenizer and
// chat template, and the threads that run it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "model/model.h"
#include "template/chat_template.h"

namespace marlin {

class ModelSource;
class Tokenizer;

struct EngineOptions {
  std::string model_path;  // a .gguf file (see open_model_source)
  int threads = 0;  // 0: one per core
  DeviceKind device = DeviceKind::kCpu;
};

class Engine {
 public:
  explicit Engine(const EngineOptions& options);
  ~Engine();

  Model& model() { return *model_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const ModelSource& source() const { return *source_; }
  ThreadPool& pool() { return *pool_; }

  // The prompt tokens for a conversation, formatted by the model's chat template (when the file
  // has none: Gemma's turn format for Gemma 3, else ChatML), ending with the assistant's turn header when add_generation_prompt.
  std::vector<int32_t> chat_prompt(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  // Tokens of plain text, with BOS when the model's tokenizer asks for it.
  std::vector<int32_t> raw_prompt(const std::string& text) const;
  bool has_own_chat_template() const { return has_own_template_; }

  // Runs a 16-token prompt and one decode step on a cache of their own and returns the seconds
  // taken. On a GPU the first use of each kernel (loaded lazily) and of cuBLAS costs up to a few
  // hundred milliseconds, which would otherwise fall on the first request (marlin serve).
  double warm_up();

 private:
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<ModelSource> source_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<ChatTemplate> template_;
  bool has_own_template_ = false;
};

}  // namespace marlin
