// Several safetensors files read as one set of tensors: a sharded Hugging Face checkpoint
// (model.safetensors.index.json with its "weight_map"), or any list of files (.marlin shards).
//
// Every shard is opened once; a shard that is missing or malformed, an index entry naming a
// tensor its shard lacks, or a tensor name found in two shards raises a one-line marlin::Error.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "formats/safetensors.h"

namespace marlin {

class SafetensorsShards {
 public:
  struct Entry {
    const SafetensorsFile* file;
    const SafetensorsTensor* tensor;
  };

  // PATH is one .safetensors file or a *.safetensors.index.json naming shards in its folder.
  static std::unique_ptr<SafetensorsShards> open(const std::string& path);
  // The given files, in this order.
  static std::unique_ptr<SafetensorsShards> from_files(std::vector<std::unique_ptr<SafetensorsFile>> files,
                                                       const std::string& description);

  const Entry* find(std::string_view name) const;
  std::span<const uint8_t> data(const Entry& entry) const { return entry.file->data(*entry.tensor); }
  // Every tensor: shards in order, each in storage order.
  const std::vector<Entry>& entries() const { return entries_; }
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

 private:
  SafetensorsShards() = default;
  void index(const std::string& description);

  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::vector<Entry> entries_;
  std::unordered_map<std::string_view, size_t> by_name_;
};

}  // namespace marlin
