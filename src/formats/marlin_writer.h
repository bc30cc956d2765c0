// Writes a .marlin checkpoint (marlin_checkpoint.h) one tensor at a time: each add() streams the
// tensor's parts to disk, so memory stays bounded by what the caller holds.
//
//   MarlinCheckpointInfo info{config_json, tokenizer_json, tokenizer_config_json, chat_template};
//   MarlinWriter w("model.marlin", std::move(info), {.max_shard_bytes = 4ull << 30});
//   for (const auto& name : source.tensor_names()) w.add(name, quantized(name));
//   w.finish();
//
// Files appear under their final names only when finish() succeeds; a writer destroyed before
// that removes what it wrote.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_set>
#include <vector>

#include "formats/safetensors_writer.h"
#include "model/config.h"
#include "quant/format.h"

namespace marlin {

struct MarlinCheckpointInfo {
  nlohmann::json config;  // the Hugging Face config.json object (hf_config_from_model_config for others)
  std::string tokenizer_json;
  std::string tokenizer_config_json;
  std::string chat_template;
  // How the stored Q/K rows pair RoPE dimensions (GGUF-derived weights: kAdjacent), and Llama-3
  // frequency factors when config.json cannot express them; both override what `config` implies.
  RopePairing rope_pairing = RopePairing::kHalfSplit;
  std::vector<float> rope_freq_factors;
};

struct MarlinWriterOptions {
  uint64_t max_shard_bytes = 0;  // 0: one file; else start a new shard before passing this size
  size_t expected_tensors = 0;   // sizes the header reservation (avoids moving data at the end)
};

class MarlinWriter {
 public:
  MarlinWriter(std::string path, MarlinCheckpointInfo info, MarlinWriterOptions options = {});
  ~MarlinWriter();
  MarlinWriter(const MarlinWriter&) = delete;
  MarlinWriter& operator=(const MarlinWriter&) = delete;

  // Writes tensor NAME (a Hugging Face name); `shape` is its logical shape (default [rows, cols]).
  // The tensor must pass QuantTensor::validate(); rows are compacted to the minimal stride.
  void add(const std::string& name, const QuantTensor& tensor, std::vector<uint64_t> shape = {});

  // Writes the headers and moves the files into place; returns their paths, first shard first.
  std::vector<std::string> finish();

 private:
  struct Shard {
    std::string final_path;
    std::unique_ptr<SafetensorsWriter> writer;
  };

  SafetensorsWriter& shard_for(uint64_t bytes);
  void open_shard();

  std::string path_;
  MarlinCheckpointInfo info_;
  MarlinWriterOptions options_;
  std::string id_;
  std::vector<Shard> shards_;
  nlohmann::ordered_json tensors_ = nlohmann::ordered_json::object();
  std::unordered_set<std::string> names_;
  bool finished_ = false;
};

}  // namespace marlin
