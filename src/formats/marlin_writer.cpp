#include "formats/marlin_writer.h"

#include <bit>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>

#include "core/checked_math.h"
#include "core/error.h"
#include "formats/gguf_text.h"
#include "formats/marlin_checkpoint.h"
#include "tokenizer/utf8.h"

namespace marlin {
namespace {

static_assert(std::endian::native == std::endian::little, "stored integers are little-endian");

std::string random_id() {
  std::random_device device;
  std::mt19937_64 rng((uint64_t(device()) << 32) ^ uint64_t(device()) ^
                      uint64_t(std::chrono::steady_clock::now().time_since_epoch().count()));
  return fmt::format("{:016x}", rng());
}

std::string temp_path(const std::string& path, size_t index) { return fmt::format("{}.shard-{}", path, index); }

std::span<const uint8_t> bytes_of(const void* data, uint64_t size) {
  return {static_cast<const uint8_t*>(data), size_t(size)};
}

}  // namespace

MarlinWriter::MarlinWriter(std::string path, MarlinCheckpointInfo info, MarlinWriterOptions options)
    : path_(std::move(path)), info_(std::move(info)), options_(options), id_(random_id()) {
  MARLIN_CHECK(info_.config.is_object(), "marlin writer: the config is {}, not a config.json object",
               info_.config.type_name());
  MARLIN_CHECK(tok::utf8_is_valid(info_.chat_template), "marlin writer: the chat template is not valid UTF-8");
  open_shard();
  SafetensorsWriter& first = *shards_.front().writer;
  if (!info_.tokenizer_json.empty()) {
    first.add(std::string(kMarlinTokenizerTensor), SafetensorsDtype::kU8, {info_.tokenizer_json.size()},
              bytes_of(info_.tokenizer_json.data(), info_.tokenizer_json.size()));
  }
  if (!info_.tokenizer_config_json.empty()) {
    first.add(std::string(kMarlinTokenizerConfigTensor), SafetensorsDtype::kU8, {info_.tokenizer_config_json.size()},
              bytes_of(info_.tokenizer_config_json.data(), info_.tokenizer_config_json.size()));
  }
}

MarlinWriter::~MarlinWriter() {
  if (finished_) return;
  for (size_t i = 0; i < shards_.size(); ++i) {
    shards_[i].writer.reset();  // removes its .partial file
    std::remove(temp_path(path_, i).c_str());
  }
}

void MarlinWriter::open_shard() {
  // The header holds every tensor's entry twice (safetensors and marlin JSON, escaped again as a
  // metadata string): reserve for that so the data need not move when the header is written.
  const uint64_t text = info_.config.dump().size() + info_.chat_template.size();
  const uint64_t reserve = *checked_align_up(64 * 1024 + 3 * text + options_.expected_tensors * 1536, 8);
  const size_t index = shards_.size();
  shards_.push_back(
      {"", std::make_unique<SafetensorsWriter>(
               temp_path(path_, index), SafetensorsWriter::Options{.header_reserve = reserve, .align_tensors = true})});
}

SafetensorsWriter& MarlinWriter::shard_for(uint64_t bytes) {
  SafetensorsWriter& current = *shards_.back().writer;
  if (options_.max_shard_bytes > 0 && current.data_bytes() > 0 &&
      current.data_bytes() + bytes > options_.max_shard_bytes) {
    open_shard();
  }
  return *shards_.back().writer;
}

void MarlinWriter::add(const std::string& name, const QuantTensor& t, std::vector<uint64_t> shape) {
  MARLIN_CHECK(!finished_, "marlin writer: '{}' is already finished", path_);
  MARLIN_CHECK(!name.empty() && !name.starts_with("__") && tok::utf8_is_valid(name),
               "marlin writer: {} is not a usable tensor name", gguf_quote(name));
  MARLIN_CHECK(!names_.contains(name), "marlin writer: tensor {} is added twice", gguf_quote(name));
  try {
    t.validate();
  } catch (const Error& e) {
    fail("marlin writer: tensor {}: {}", gguf_quote(name), e.what());
  }
  if (shape.empty()) shape = {uint64_t(t.rows), uint64_t(t.cols)};
  uint64_t leading = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) leading *= shape[i];
  MARLIN_CHECK(shape.back() == uint64_t(t.cols) && leading == uint64_t(t.rows),
               "marlin writer: tensor {}: shape {} does not match {} rows × {} columns", gguf_quote(name),
               safetensors_shape_text(shape), t.rows, t.cols);

  const auto parts = marlin_parts(t.format, t.rows, t.cols, shape);
  uint64_t total = 0;
  for (const auto& p : parts) total += p.bytes() + 8;  // + the most padding a part may need
  SafetensorsWriter& writer = shard_for(total);
  nlohmann::ordered_json part_names = nlohmann::ordered_json::object();
  for (const auto& p : parts) {
    const std::string stored = name + std::string(p.suffix);
    if (p.role == "codes") {
      const uint64_t row_bytes = p.bytes() / uint64_t(t.rows);
      writer.begin(stored, p.dtype, p.shape);
      if (row_bytes == t.code_row_bytes) {
        writer.write(bytes_of(t.codes, p.bytes()));
      } else {
        for (int64_t r = 0; r < t.rows; ++r)
          writer.write(bytes_of(t.codes + uint64_t(r) * t.code_row_bytes, row_bytes));
      }
      writer.end();
    } else {
      const void* data = p.role == "scales"  ? static_cast<const void*>(t.scales)
                         : p.role == "zeros" ? static_cast<const void*>(t.zeros)
                         : p.role == "perm"  ? static_cast<const void*>(t.perm)
                                             : static_cast<const void*>(t.sparse_meta);
      writer.add(stored, p.dtype, p.shape, bytes_of(data, p.bytes()));
    }
    part_names[std::string(p.role)] = stored;
  }
  nlohmann::ordered_json entry = {{"format", t.format.name()}, {"shape", shape}, {"parts", part_names}};
  if (t.format.kind == FormatKind::kNvFp4 || t.tensor_scale != 1.0f) entry["tensor_scale"] = double(t.tensor_scale);
  if (t.format.kind == FormatKind::kTrellis) entry["rotation_seed"] = marlin_seed_text(t.rotation_seed);
  tensors_[name] = std::move(entry);
  names_.insert(name);
}

std::vector<std::string> MarlinWriter::finish() {
  MARLIN_CHECK(!finished_, "marlin writer: '{}' is already finished", path_);
  const int count = int(shards_.size());
  for (int i = 0; i < count; ++i)
    shards_[size_t(i)].final_path = count == 1 ? path_ : marlin_shard_name(path_, i, count);

  nlohmann::ordered_json doc;
  doc["format_version"] = kMarlinFormatVersion;
  doc["id"] = id_;
  const auto& archs = info_.config.value("architectures", nlohmann::json::array());
  doc["architecture"] = !archs.empty() && archs[0].is_string() ? archs[0].get<std::string>()
                                                               : info_.config.value("model_type", std::string());
  doc["config"] = info_.config;
  doc["chat_template"] = info_.chat_template;
  doc["rope"] = {{"pairing", info_.rope_pairing == RopePairing::kAdjacent ? "adjacent" : "half_split"}};
  if (!info_.rope_freq_factors.empty()) doc["rope"]["freq_factors"] = info_.rope_freq_factors;
  if (count > 1) {
    auto& names = doc["shards"] = nlohmann::ordered_json::array();
    for (const auto& s : shards_) names.push_back(std::filesystem::path(s.final_path).filename().string());
  }
  doc["tensors"] = tensors_;

  shards_[0].writer->set_metadata(std::string(kMarlinMetadataKey), doc.dump());
  for (int i = 1; i < count; ++i) {
    const nlohmann::ordered_json shard = {{"id", id_}, {"index", i}, {"count", count}};
    shards_[size_t(i)].writer->set_metadata(std::string(kMarlinShardKey), shard.dump());
  }
  std::vector<std::string> paths;
  for (int i = 0; i < count; ++i) {
    auto& s = shards_[size_t(i)];
    s.writer->finish();
    paths.push_back(s.final_path);
  }
  for (int i = 0; i < count; ++i) {
    if (std::rename(temp_path(path_, size_t(i)).c_str(), paths[size_t(i)].c_str()) != 0) {
      fail("marlin writer: cannot rename '{}' to '{}'", temp_path(path_, size_t(i)), paths[size_t(i)]);
    }
  }
  finished_ = true;
  return paths;
}

}  // namespace marlin
