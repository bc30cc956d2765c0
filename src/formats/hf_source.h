// A Hugging Face checkpoint folder as a ModelSource: config.json, the weights (model.safetensors,
// a *.safetensors.index.json with its shards, or a single *.safetensors), tokenizer.json, and
// tokenizer_config.json / chat_template.jinja for the chat template and BOS handling.
//
// f32/f16/bf16 tensors come back as they are stored (kinds kF32/kF16/kBF16, views into the
// mapping; safetensors does not promise alignment, so read them as bytes: files written by the
// reference package keep them aligned to their element size).
//
// GPTQ and AWQ checkpoints (config.json "quantization_config", or quantize_config.json /
// quant_config.json beside it) hide each linear's qweight/qzeros/scales/g_idx behind one
// PREFIX.weight that comes back as a planar int2/3/4/8 tensor, converted on first use and kept
// while the source lives.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "formats/awq_import.h"
#include "formats/gptq_import.h"
#include "formats/safetensors_shards.h"
#include "model/model_source.h"
#include "quant/quant_buffers.h"

namespace marlin {

class HfSource final : public ModelSource {
 public:
  // marlin::Error naming the folder and the problem (missing config.json or weights, an
  // unsupported architecture or quantization, a malformed file).
  static std::unique_ptr<HfSource> open(const std::string& dir);

  const ModelConfig& config() const override { return config_; }
  std::unique_ptr<Tokenizer> tokenizer() const override;
  std::string chat_template() const override;
  std::optional<QuantTensor> tensor(std::string_view name) const override;
  std::vector<std::string> tensor_names() const override { return names_; }
  std::string description() const override;

  // The checkpoint's own files ("" when the folder has none).
  nlohmann::json hf_config() const override { return config_json_; }
  std::string tokenizer_json() const override;
  std::string tokenizer_config_json() const override;
  const SafetensorsShards& shards() const { return *shards_; }

 private:
  enum class Quantization { kNone, kGptq, kAwq };

  HfSource() = default;
  void detect_quantization();
  void list_names();
  // PREFIX when `name` is PREFIX.weight of a quantized linear, else "".
  std::string quantized_prefix(std::string_view name) const;
  // Where the weight the model calls `name` is stored (multimodal checkpoints keep the language
  // model under a prefix).
  std::string stored_name(std::string_view name) const;

  std::string dir_;
  nlohmann::json config_json_;
  ModelConfig config_;
  std::unique_ptr<SafetensorsShards> shards_;
  std::vector<std::string> names_;
  // Gemma3ForConditionalGeneration: the stored prefix of the language model's "model." weights
  // (the vision tower's are not listed); empty for text-only checkpoints.
  std::string text_prefix_;
  Quantization quantization_ = Quantization::kNone;
  GptqConfig gptq_;
  AwqConfig awq_;

  mutable std::mutex converted_mutex_;
  mutable std::map<std::string, std::unique_ptr<QuantBuffers>, std::less<>> converted_;
};

// The factory open_model_source() calls for a folder.
std::unique_ptr<ModelSource> open_hf_source(const std::string& dir);

// A plain (f32/f16/bf16) safetensors tensor as a QuantTensor view: rows = product of all
// dimensions but the last (1 for vectors), cols = the last. marlin::Error for other dtypes.
QuantTensor plain_tensor_view(const SafetensorsTensor& tensor, std::span<const uint8_t> data, std::string_view source);

}  // namespace marlin
