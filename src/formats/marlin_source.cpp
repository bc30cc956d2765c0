#include "formats/marlin_source.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <unordered_set>

#include "core/error.h"
#include "formats/gguf_text.h"
#include "formats/hf_config.h"
#include "formats/hf_json.h"
#include "formats/marlin_checkpoint.h"
#include "quant/dequant.h"
#include "tokenizer/tokenizer.h"

namespace marlin {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// Rank and dimension limits for entries (no weight has more; keeps products far from overflow).
constexpr size_t kMaxRank = 8;
constexpr uint64_t kMaxDim = uint64_t(1) << 40;

std::vector<uint64_t> read_shape(const Json& shape, const std::string& where) {
  MARLIN_CHECK(shape.is_array() && !shape.empty() && shape.size() <= kMaxRank,
               "{}: 'shape' is not a list of 1 to {} dimensions", where, kMaxRank);
  std::vector<uint64_t> out;
  for (const auto& d : shape) {
    MARLIN_CHECK(d.is_number_unsigned() && d.get<uint64_t>() >= 1 && d.get<uint64_t>() < kMaxDim,
                 "{}: shape dimension {} is not a positive integer", where, gguf_quote(d.dump(), 40));
    out.push_back(d.get<uint64_t>());
  }
  return out;
}

uint64_t alignment_of(SafetensorsDtype dtype) { return uint64_t(std::max(1, safetensors_dtype_bits(dtype) / 8)); }

}  // namespace

std::unique_ptr<MarlinSource> MarlinSource::open(const std::string& requested) {
  std::string path = requested;
  if (auto first = marlin_first_shard(requested); first && fs::exists(*first)) path = *first;
  std::unique_ptr<MarlinSource> s(new MarlinSource());
  s->path_ = path;
  s->prefix_ = fmt::format("marlin: '{}': ", path);
  auto file = SafetensorsFile::open(path);
  const auto text = file->metadata(kMarlinMetadataKey);
  if (!text) {
    MARLIN_CHECK(!file->metadata(kMarlinShardKey), "{}this is a later shard and the first shard was not found",
                 s->prefix_);
    fail("{}not a marlin checkpoint (its safetensors metadata has no '{}' entry)", s->prefix_, kMarlinMetadataKey);
  }
  const Json doc = parse_json_text(*text, s->prefix_ + "metadata");
  MARLIN_CHECK(doc.is_object(), "{}the metadata document is {}, not an object", s->prefix_, doc.type_name());
  const auto version = json_int(doc, "format_version", s->prefix_ + "metadata");
  MARLIN_CHECK(version == kMarlinFormatVersion, "{}format_version {} is not supported (this build reads {})",
               s->prefix_, version ? std::to_string(*version) : "(missing)", kMarlinFormatVersion);

  auto config = doc.find("config");
  MARLIN_CHECK(config != doc.end() && config->is_object(), "{}'config' is missing or not an object", s->prefix_);
  s->config_json_ = *config;
  try {
    s->config_ = model_config_from_hf(s->config_json_);
  } catch (const Error& e) {
    fail("{}{}", s->prefix_, e.what());
  }
  s->chat_template_ = json_string(doc, "chat_template", s->prefix_ + "metadata").value_or("");
  if (auto rope = doc.find("rope"); rope != doc.end()) {
    MARLIN_CHECK(rope->is_object(), "{}'rope' is not an object", s->prefix_);
    const std::string pairing = json_string(*rope, "pairing", s->prefix_ + "rope").value_or("half_split");
    MARLIN_CHECK(pairing == "half_split" || pairing == "adjacent",
                 "{}rope pairing {} is not 'half_split' or 'adjacent'", s->prefix_, gguf_quote(pairing));
    s->config_.rope.pairing = pairing == "adjacent" ? RopePairing::kAdjacent : RopePairing::kHalfSplit;
    if (auto factors = rope->find("freq_factors"); factors != rope->end()) {
      MARLIN_CHECK(factors->is_array() && factors->size() == size_t(s->config_.rope.dim / 2),
                   "{}rope freq_factors is not a list of {} numbers", s->prefix_, s->config_.rope.dim / 2);
      s->config_.rope.freq_factors.clear();
      for (const auto& f : *factors) {
        MARLIN_CHECK(f.is_number() && std::isfinite(f.get<double>()) && f.get<double>() > 0,
                     "{}rope freq_factors holds {}, not a positive number", s->prefix_, gguf_quote(f.dump(), 40));
        s->config_.rope.freq_factors.push_back(f.get<float>());
      }
    }
  }
  s->open_shards(doc, std::move(file));
  auto tensors = doc.find("tensors");
  MARLIN_CHECK(tensors != doc.end() && tensors->is_object(), "{}'tensors' is missing or not an object", s->prefix_);
  s->read_tensors(*tensors);
  return s;
}

void MarlinSource::open_shards(const Json& doc, std::unique_ptr<SafetensorsFile> first) {
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  files.push_back(std::move(first));
  shard_paths_ = {path_};
  auto shards = doc.find("shards");
  if (shards != doc.end() && !shards->is_null()) {
    MARLIN_CHECK(shards->is_array() && !shards->empty() && shards->size() <= 100000,
                 "{}'shards' is not a list of file names", prefix_);
    const std::string id = json_string(doc, "id", prefix_ + "metadata").value_or("");
    const int count = int(shards->size());
    for (int i = 1; i < count; ++i) {
      const Json& name = (*shards)[size_t(i)];
      MARLIN_CHECK(name.is_string() && !name.get<std::string>().empty() &&
                       fs::path(name.get<std::string>()).filename() == fs::path(name.get<std::string>()),
                   "{}shard {} is {}, not a file name", prefix_, i, gguf_quote(name.dump(), 60));
      const std::string shard_path = (fs::path(path_).parent_path() / name.get<std::string>()).string();
      MARLIN_CHECK(fs::exists(shard_path), "{}shard {} of {} ('{}') does not exist", prefix_, i + 1, count, shard_path);
      auto file = SafetensorsFile::open(shard_path);
      const auto tag = file->metadata(kMarlinShardKey);
      MARLIN_CHECK(tag.has_value(), "{}'{}' is not a marlin shard (no '{}' metadata)", prefix_, shard_path,
                   kMarlinShardKey);
      const Json t = parse_json_text(*tag, shard_path);
      MARLIN_CHECK(t.is_object() && t.value("id", Json()) == id && t.value("index", Json()) == i &&
                       t.value("count", Json()) == count,
                   "{}'{}' is not shard {} of {} of this checkpoint (its tag: {})", prefix_, shard_path, i + 1, count,
                   gguf_quote(*tag, 100));
      shard_paths_.push_back(shard_path);
      files.push_back(std::move(file));
    }
  }
  shards_ = SafetensorsShards::from_files(std::move(files), "marlin: '" + path_ + "'");
}

void MarlinSource::read_tensors(const Json& tensors) {
  std::unordered_set<const SafetensorsTensor*> used;
  std::map<const SafetensorsFile*, size_t> file_index;
  for (size_t i = 0; i < shards_->files().size(); ++i) file_index[shards_->files()[i].get()] = i;
  std::vector<std::tuple<size_t, uint64_t, std::string>> order;  // (shard, offset of codes, name)

  for (const auto& [name, entry] : tensors.items()) {
    const std::string where = prefix_ + "tensor " + gguf_quote(name);
    MARLIN_CHECK(entry.is_object(), "{}: the entry is not an object", where);
    const auto format_name = json_string(entry, "format", where);
    MARLIN_CHECK(format_name.has_value(), "{}: 'format' is missing", where);
    auto shape_it = entry.find("shape");
    MARLIN_CHECK(shape_it != entry.end(), "{}: 'shape' is missing", where);
    const auto shape = read_shape(*shape_it, where);
    uint64_t rows = 1;
    for (size_t i = 0; i + 1 < shape.size(); ++i) {
      rows *= shape[i];
      MARLIN_CHECK(rows < kMaxDim, "{}: shape {} is too large", where, safetensors_shape_text(shape));
    }
    QuantTensor t;
    t.rows = int64_t(rows);
    t.cols = int64_t(shape.back());
    std::vector<MarlinPart> expected;
    try {
      t.format = TensorFormat::parse(*format_name);
      expected = marlin_parts(t.format, t.rows, t.cols, shape);
    } catch (const Error& e) {
      fail("{}: {}", where, e.what());
    }

    auto parts = entry.find("parts");
    MARLIN_CHECK(parts != entry.end() && parts->is_object(), "{}: 'parts' is missing or not an object", where);
    for (const auto& [role, stored] : parts->items()) {
      const bool known =
          std::any_of(expected.begin(), expected.end(), [&](const MarlinPart& p) { return p.role == role; });
      MARLIN_CHECK(known, "{}: format {} has no part {}", where, *format_name, gguf_quote(role));
    }
    for (const auto& p : expected) {
      auto it = parts->find(p.role);
      MARLIN_CHECK(it != parts->end() && it->is_string(), "{}: part '{}' is missing", where, p.role);
      const auto* e = shards_->find(it->get<std::string>());
      MARLIN_CHECK(e != nullptr, "{}: part '{}' names tensor {}, which is not stored", where, p.role,
                   gguf_quote(it->get<std::string>()));
      const SafetensorsTensor& s = *e->tensor;
      MARLIN_CHECK(s.dtype == p.dtype && s.shape == p.shape, "{}: part '{}' ({}) is {} {}, format {} needs {} {}",
                   where, p.role, gguf_quote(s.name), safetensors_dtype_name(s.dtype), safetensors_shape_text(s.shape),
                   *format_name, safetensors_dtype_name(p.dtype), safetensors_shape_text(p.shape));
      MARLIN_CHECK(s.offset % alignment_of(s.dtype) == 0, "{}: part '{}' starts at offset {}, not {}-byte aligned",
                   where, p.role, s.offset, alignment_of(s.dtype));
      MARLIN_CHECK(used.insert(&s).second, "{}: tensor {} is a part of two weights", where, gguf_quote(s.name));
      const uint8_t* data = shards_->data(*e).data();
      if (p.role == "codes") {
        t.codes = data;
        t.code_row_bytes = p.bytes() / rows;
        order.emplace_back(file_index[e->file], s.offset, name);
      } else if (p.role == "scales") {
        t.scales = data;
      } else if (p.role == "zeros") {
        t.zeros = data;
      } else if (p.role == "perm") {
        t.perm = reinterpret_cast<const int32_t*>(data);
      } else {
        t.sparse_meta = data;
      }
    }
    const double scale = json_number(entry, "tensor_scale", where).value_or(1.0);
    MARLIN_CHECK(std::isfinite(scale) && (t.format.kind != FormatKind::kNvFp4 || scale > 0),
                 "{}: tensor_scale {} is not usable", where, scale);
    t.tensor_scale = float(scale);
    const auto seed = entry.find("rotation_seed");
    if (t.format.kind == FormatKind::kTrellis) {
      MARLIN_CHECK(seed != entry.end(), "{}: 'rotation_seed' is missing (format {} needs it)", where, *format_name);
      const auto value = seed->is_string() ? parse_marlin_seed(seed->get<std::string>()) : std::nullopt;
      MARLIN_CHECK(value.has_value(), "{}: rotation_seed {} is not a string of 0x and 16 hex digits", where,
                   gguf_quote(seed->dump(), 40));
      t.rotation_seed = *value;
    } else {
      MARLIN_CHECK(seed == entry.end(), "{}: 'rotation_seed' given for format {}, which has no rotations", where,
                   *format_name);
    }
    try {
      if (t.perm) check_permutation(t.perm, t.cols);
      t.validate();
    } catch (const Error& e) {
      fail("{}: {}", where, e.what());
    }
    tensors_.emplace(name, t);
  }

  for (const auto& e : shards_->entries()) {
    const std::string& n = e.tensor->name;
    if (n == kMarlinTokenizerTensor || n == kMarlinTokenizerConfigTensor) {
      MARLIN_CHECK(e.tensor->dtype == SafetensorsDtype::kU8 && e.tensor->shape.size() == 1, "{}{} is not a U8 vector",
                   prefix_, n);
      continue;
    }
    MARLIN_CHECK(used.contains(e.tensor) || n.starts_with("__padding_"), "{}stored tensor {} belongs to no weight",
                 prefix_, gguf_quote(n));
  }
  std::sort(order.begin(), order.end());
  for (auto& [shard, offset, name] : order) names_.push_back(std::move(name));
}

std::optional<QuantTensor> MarlinSource::tensor(std::string_view name) const {
  auto it = tensors_.find(std::string(name));
  if (it == tensors_.end()) return std::nullopt;
  return it->second;
}

std::string MarlinSource::special_text(std::string_view tensor) const {
  const auto* e = shards_->find(tensor);
  if (!e) return {};
  const auto bytes = shards_->data(*e);
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

std::string MarlinSource::tokenizer_json() const { return special_text(kMarlinTokenizerTensor); }

std::string MarlinSource::tokenizer_config_json() const { return special_text(kMarlinTokenizerConfigTensor); }

std::unique_ptr<Tokenizer> MarlinSource::tokenizer() const {
  const std::string json = tokenizer_json();
  MARLIN_CHECK(!json.empty(), "{}the checkpoint stores no tokenizer", prefix_);
  return Tokenizer::from_hf_json_text(json, tokenizer_config_json(), path_);
}

std::string MarlinSource::description() const {
  return fmt::format("'{}' (marlin checkpoint, {} tensors{})", path_, names_.size(),
                     shard_paths_.size() > 1 ? fmt::format(", {} shards", shard_paths_.size()) : "");
}

std::unique_ptr<ModelSource> open_marlin_source(const std::string& path) { return MarlinSource::open(path); }

}  // namespace marlin
