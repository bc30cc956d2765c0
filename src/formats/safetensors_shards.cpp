#include "formats/safetensors_shards.h"

#include <filesystem>
#include <map>

#include "core/error.h"
#include "formats/gguf_text.h"
#include "formats/hf_json.h"

namespace marlin {
namespace {

bool ends_with(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

// Shard names come from the index file: plain relative paths inside its folder.
void check_shard_name(const std::string& shard, const std::string& index_path) {
  const std::filesystem::path p(shard);
  bool escapes = shard.empty() || p.is_absolute();
  for (const auto& part : p) escapes = escapes || part == "..";
  MARLIN_CHECK(!escapes, "{}: shard name {} is not a file name inside the checkpoint folder", index_path,
               gguf_quote(shard));
}

}  // namespace

std::unique_ptr<SafetensorsShards> SafetensorsShards::open(const std::string& path) {
  if (!ends_with(path, ".index.json")) {
    std::vector<std::unique_ptr<SafetensorsFile>> files;
    files.push_back(SafetensorsFile::open(path));
    return from_files(std::move(files), path);
  }
  const auto index = read_json_object(path);
  auto map_it = index.find("weight_map");
  MARLIN_CHECK(map_it != index.end() && map_it->is_object(), "{}: 'weight_map' is missing or not an object", path);

  // Shard file -> the tensors the index places there; shards in file-name order.
  std::map<std::string, std::vector<std::string>> wanted;
  for (const auto& [name, shard] : map_it->items()) {
    MARLIN_CHECK(shard.is_string(), "{}: weight_map entry {} is {}, not a file name", path, gguf_quote(name),
                 shard.type_name());
    const auto& file = shard.get_ref<const std::string&>();
    check_shard_name(file, path);
    wanted[file].push_back(name);
  }
  MARLIN_CHECK(!wanted.empty(), "{}: 'weight_map' names no tensors", path);

  const auto folder = std::filesystem::path(path).parent_path();
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  for (const auto& [shard, names] : wanted) {
    const std::string shard_path = (folder / shard).string();
    MARLIN_CHECK(std::filesystem::exists(shard_path), "{}: shard {} (holding {}) does not exist", path,
                 gguf_quote(shard), gguf_quote(names.front()));
    files.push_back(SafetensorsFile::open(shard_path));
    for (const auto& name : names) {
      MARLIN_CHECK(files.back()->find(name), "{}: tensor {} is not in its shard {}", path, gguf_quote(name),
                   gguf_quote(shard));
    }
  }
  return from_files(std::move(files), path);
}

std::unique_ptr<SafetensorsShards> SafetensorsShards::from_files(std::vector<std::unique_ptr<SafetensorsFile>> files,
                                                                 const std::string& description) {
  std::unique_ptr<SafetensorsShards> shards(new SafetensorsShards());
  shards->files_ = std::move(files);
  shards->index(description);
  return shards;
}

void SafetensorsShards::index(const std::string& description) {
  for (const auto& file : files_) {
    for (const auto& tensor : file->tensors()) {
      // Alignment filler (SafetensorsWriter's __padding_N__) is numbered per file and never read.
      if (tensor.name.starts_with("__padding_")) continue;
      auto [it, inserted] = by_name_.emplace(tensor.name, entries_.size());
      MARLIN_CHECK(inserted, "{}: tensor {} is in both '{}' and '{}'", description, gguf_quote(tensor.name),
                   entries_[it->second].file->path(), file->path());
      entries_.push_back({file.get(), &tensor});
    }
  }
}

const SafetensorsShards::Entry* SafetensorsShards::find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &entries_[it->second];
}

}  // namespace marlin
