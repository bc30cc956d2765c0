#include "formats/hf_source.h"

#include <filesystem>

#include "core/error.h"
#include "formats/gguf_text.h"
#include "formats/hf_config.h"
#include "formats/hf_json.h"
#include "tokenizer/tokenizer.h"

namespace marlin {
namespace {

namespace fs = std::filesystem;

bool ends_with(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

// The weights of the folder: an index when there is one, else its single .safetensors file.
std::string weights_path(const std::string& dir) {
  for (const char* name : {"model.safetensors.index.json", "model.safetensors"}) {
    if (fs::exists(fs::path(dir) / name)) return (fs::path(dir) / name).string();
  }
  std::vector<std::string> indexes, files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (ends_with(name, ".safetensors.index.json"))
      indexes.push_back(entry.path().string());
    else if (ends_with(name, ".safetensors"))
      files.push_back(entry.path().string());
  }
  if (indexes.size() == 1) return indexes.front();
  MARLIN_CHECK(indexes.empty(), "'{}' has {} safetensors index files; expected one", dir, indexes.size());
  MARLIN_CHECK(!files.empty(), "'{}' has no .safetensors weights", dir);
  MARLIN_CHECK(files.size() == 1, "'{}' has {} .safetensors files and no index naming the shards", dir, files.size());
  return files.front();
}

std::string optional_file(const std::string& dir, const char* name) {
  const fs::path path = fs::path(dir) / name;
  return fs::exists(path) ? read_side_file(path.string()) : std::string();
}

std::string template_of(const nlohmann::json& holder) {
  auto it = holder.find("chat_template");
  if (it == holder.end() || it->is_null()) return {};
  if (it->is_string()) return it->get<std::string>();
  // A list of named templates: the "default" one.
  if (it->is_array()) {
    for (const auto& t : *it) {
      if (t.is_object() && t.value("name", "") == "default" && t.contains("template") && t["template"].is_string())
        return t["template"].get<std::string>();
    }
  }
  return {};
}

}  // namespace

QuantTensor plain_tensor_view(const SafetensorsTensor& t, std::span<const uint8_t> data, std::string_view source) {
  QuantTensor q;
  switch (t.dtype) {
    case SafetensorsDtype::kF32:
      q.format.kind = FormatKind::kF32;
      break;
    case SafetensorsDtype::kF16:
      q.format.kind = FormatKind::kF16;
      break;
    case SafetensorsDtype::kBF16:
      q.format.kind = FormatKind::kBF16;
      break;
    default:
      fail("{}: tensor {} has dtype {}, which marlin cannot use as a weight (F32, F16 or BF16)", source,
           gguf_quote(t.name), safetensors_dtype_name(t.dtype));
  }
  q.cols = t.shape.empty() ? 1 : int64_t(t.shape.back());
  q.rows = 1;
  for (size_t i = 0; i + 1 < t.shape.size(); ++i) q.rows *= int64_t(t.shape[i]);
  q.codes = data.data();
  q.code_row_bytes = uint64_t(q.cols) * (t.dtype == SafetensorsDtype::kF32 ? 4 : 2);
  return q;
}

std::unique_ptr<HfSource> HfSource::open(const std::string& dir) {
  MARLIN_CHECK(fs::is_directory(dir), "'{}' is not a folder", dir);
  std::unique_ptr<HfSource> s(new HfSource());
  s->dir_ = dir;
  const std::string config_path = (fs::path(dir) / "config.json").string();
  MARLIN_CHECK(fs::exists(config_path), "'{}' has no config.json", dir);
  s->config_json_ = read_json_object(config_path);
  try {
    s->config_ = model_config_from_hf(s->config_json_);
  } catch (const Error& e) {
    fail("{}/{}", dir, e.what());
  }
  s->shards_ = SafetensorsShards::open(weights_path(dir));
  if (s->config_json_.value("architectures", nlohmann::json()) == nlohmann::json::array({"Gemma3ForConditionalGeneration"})) {
    for (const char* prefix : {"language_model.model.", "model.language_model."})
      if (s->text_prefix_.empty() && s->shards_->find(std::string(prefix) + "embed_tokens.weight")) s->text_prefix_ = prefix;
    MARLIN_CHECK(!s->text_prefix_.empty(), "{}: a Gemma3ForConditionalGeneration checkpoint without its language model's "
                 "embed_tokens.weight", dir);
  }
  s->detect_quantization();
  s->list_names();
  return s;
}

void HfSource::detect_quantization() {
  nlohmann::json qc;
  std::string source;
  if (auto it = config_json_.find("quantization_config"); it != config_json_.end() && !it->is_null()) {
    qc = *it;
    source = dir_ + "/config.json quantization_config";
  } else if (fs::exists(fs::path(dir_) / "quantize_config.json")) {
    source = dir_ + "/quantize_config.json";
    qc = read_json_object(source);
    if (!qc.contains("quant_method")) qc["quant_method"] = "gptq";  // AutoGPTQ's file
  } else if (fs::exists(fs::path(dir_) / "quant_config.json")) {
    source = dir_ + "/quant_config.json";
    qc = read_json_object(source);
    if (!qc.contains("quant_method")) qc["quant_method"] = "awq";  // AutoAWQ's file
  } else {
    return;
  }
  MARLIN_CHECK(qc.is_object(), "{}: not an object", source);
  const std::string method = json_string(qc, "quant_method", source).value_or("");
  if (method == "gptq") {
    quantization_ = Quantization::kGptq;
    gptq_ = gptq_config_from_json(qc, source);
  } else if (method == "awq") {
    quantization_ = Quantization::kAwq;
    awq_ = awq_config_from_json(qc, source);
  } else {
    fail("{}: quantization method {} is not supported (gptq, awq)", source, gguf_quote(method));
  }
}

std::string HfSource::stored_name(std::string_view name) const {
  if (text_prefix_.empty()) return std::string(name);
  if (name.starts_with("model.")) return text_prefix_ + std::string(name.substr(6));
  if (name == "lm_head.weight" && shards_->find("language_model.lm_head.weight")) return "language_model.lm_head.weight";
  return std::string(name);
}

void HfSource::list_names() {
  auto has_qweight = [&](std::string_view name, std::string_view suffix) {
    if (quantization_ == Quantization::kNone || !ends_with(name, suffix)) return false;
    const std::string prefix(name.substr(0, name.size() - suffix.size()));
    return shards_->find(prefix + ".qweight") != nullptr;
  };
  for (const auto& e : shards_->entries()) {
    const std::string& stored = e.tensor->name;
    std::string name = stored;
    if (!text_prefix_.empty()) {  // the language model's weights, by the names the model asks for
      if (name.starts_with(text_prefix_)) {
        name = "model." + name.substr(text_prefix_.size());
      } else if (name == "language_model.lm_head.weight" || name == "lm_head.weight") {
        name = "lm_head.weight";
      } else {
        continue;
      }
    }
    if (has_qweight(stored, ".qweight")) {
      const std::string weight = name.substr(0, name.size() - 8) + ".weight";
      MARLIN_CHECK(!shards_->find(stored_name(weight)), "{}: both {} and its quantized form are stored", dir_,
                   gguf_quote(weight));
      names_.push_back(weight);
    } else if (!has_qweight(stored, ".qzeros") && !has_qweight(stored, ".scales") && !has_qweight(stored, ".g_idx")) {
      names_.push_back(name);
    }
  }
}

std::string HfSource::quantized_prefix(std::string_view name) const {
  if (quantization_ == Quantization::kNone || !ends_with(name, ".weight")) return {};
  std::string prefix(name.substr(0, name.size() - 7));
  return shards_->find(prefix + ".qweight") ? prefix : std::string();
}

std::optional<QuantTensor> HfSource::tensor(std::string_view model_name) const {
  const std::string name = stored_name(model_name);
  if (const std::string prefix = quantized_prefix(name); !prefix.empty()) {
    std::lock_guard lock(converted_mutex_);
    auto it = converted_.find(name);
    if (it == converted_.end()) {
      auto buffers = std::make_unique<QuantBuffers>(quantization_ == Quantization::kGptq
                                                        ? import_gptq_linear(*shards_, prefix, gptq_, dir_)
                                                        : import_awq_linear(*shards_, prefix, awq_, dir_));
      it = converted_.emplace(std::string(name), std::move(buffers)).first;
    }
    return it->second->view();
  }
  const auto* entry = shards_->find(name);
  if (!entry) return std::nullopt;
  return plain_tensor_view(*entry->tensor, shards_->data(*entry), dir_);
}

std::string HfSource::tokenizer_json() const { return optional_file(dir_, "tokenizer.json"); }

std::string HfSource::tokenizer_config_json() const { return optional_file(dir_, "tokenizer_config.json"); }

std::unique_ptr<Tokenizer> HfSource::tokenizer() const {
  const std::string json = tokenizer_json();
  MARLIN_CHECK(!json.empty(), "'{}' has no tokenizer.json", dir_);
  return Tokenizer::from_hf_json_text(json, tokenizer_config_json(), dir_ + "/tokenizer.json");
}

// transformers' order: chat_template.jinja, then chat_template.json, then tokenizer_config.json.
std::string HfSource::chat_template() const {
  if (std::string jinja = optional_file(dir_, "chat_template.jinja"); !jinja.empty()) return jinja;
  if (std::string json = optional_file(dir_, "chat_template.json"); !json.empty()) {
    return template_of(parse_json_text(json, dir_ + "/chat_template.json"));
  }
  const std::string config = tokenizer_config_json();
  return config.empty() ? std::string() : template_of(parse_json_text(config, dir_ + "/tokenizer_config.json"));
}

std::string HfSource::description() const {
  switch (quantization_) {
    case Quantization::kGptq:
      return fmt::format("'{}' (Hugging Face checkpoint, GPTQ {}-bit)", dir_, gptq_.bits);
    case Quantization::kAwq:
      return fmt::format("'{}' (Hugging Face checkpoint, AWQ {}-bit)", dir_, awq_.bits);
    default:
      return fmt::format("'{}' (Hugging Face checkpoint)", dir_);
  }
}

std::unique_ptr<ModelSource> open_hf_source(const std::string& dir) { return HfSource::open(dir); }

}  // namespace marlin
