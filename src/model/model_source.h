// Where a model comes from: a GGUF file, a .marlin checkpoint, or a Hugging Face directory
// (config.json + *.safetensors + tokenizer.json). Every source answers the same questions, with
// weights named as Hugging Face names them ("model.layers.0.self_attn.q_proj.weight").
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/config.h"
#include "quant/format.h"

namespace marlin {

class Tokenizer;

class ModelSource {
 public:
  virtual ~ModelSource() = default;

  // Hyper-parameters, including the RoPE pairing the stored Q/K rows expect.
  virtual const ModelConfig& config() const = 0;
  virtual std::unique_ptr<Tokenizer> tokenizer() const = 0;
  // The model's own chat template; empty when it has none.
  virtual std::string chat_template() const = 0;

  // The tensor with this Hugging Face name, as stored (views stay valid while the source
  // lives); nullopt when absent. Vectors (norm weights) come back with rows = 1.
  virtual std::optional<QuantTensor> tensor(std::string_view name) const = 0;
  // Every tensor name, in storage order (for inspect, quantize and import).
  virtual std::vector<std::string> tensor_names() const = 0;
  // A short description for messages: the path and its kind.
  virtual std::string description() const = 0;

  // The Hugging Face files a checkpoint written from this source carries — config.json,
  // tokenizer.json, tokenizer_config.json — converted by sources that store something else.
  // config.json cannot express Llama-3 frequency factors: those stay in config().rope.
  virtual nlohmann::json hf_config() const = 0;
  virtual std::string tokenizer_json() const = 0;
  virtual std::string tokenizer_config_json() const = 0;
};

// Opens PATH by what it is: a .gguf file, a .marlin checkpoint (or its first shard), or a
// directory with config.json. marlin::Error names the path and the problem.
std::unique_ptr<ModelSource> open_model_source(const std::string& path);

}  // namespace marlin
