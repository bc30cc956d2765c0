// A .marlin checkpoint (marlin_checkpoint.h) as a ModelSource: everything is checked on open —
// the metadata document, every shard (same checkpoint id, index and count), and every tensor's
// parts (the dtype and shape its format prescribes, alignment, act-order permutations) — so
// tensor() only hands out views into the mappings.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>

#include "formats/safetensors_shards.h"
#include "model/model_source.h"

namespace marlin {

class MarlinSource final : public ModelSource {
 public:
  // PATH: the checkpoint file or any of its shards. marlin::Error naming the file and problem.
  static std::unique_ptr<MarlinSource> open(const std::string& path);

  const ModelConfig& config() const override { return config_; }
  std::unique_ptr<Tokenizer> tokenizer() const override;
  std::string chat_template() const override { return chat_template_; }
  std::optional<QuantTensor> tensor(std::string_view name) const override;
  std::vector<std::string> tensor_names() const override { return names_; }
  std::string description() const override;

  // The stored config.json and tokenizer files ("" when absent).
  nlohmann::json hf_config() const override { return config_json_; }
  std::string tokenizer_json() const override;
  std::string tokenizer_config_json() const override;
  const std::vector<std::string>& shard_paths() const { return shard_paths_; }

 private:
  MarlinSource() = default;
  void read_document(const std::string& text);
  void open_shards(const nlohmann::json& doc, std::unique_ptr<SafetensorsFile> first);
  void read_tensors(const nlohmann::json& tensors);
  std::string special_text(std::string_view tensor) const;

  std::string path_;
  std::string prefix_;  // "marlin: <path>: " for messages
  nlohmann::json config_json_;
  ModelConfig config_;
  std::string chat_template_;
  std::vector<std::string> shard_paths_;
  std::unique_ptr<SafetensorsShards> shards_;
  std::unordered_map<std::string, QuantTensor> tensors_;
  std::vector<std::string> names_;
};

std::unique_ptr<ModelSource> open_marlin_source(const std::string& path);

}  // namespace marlin
