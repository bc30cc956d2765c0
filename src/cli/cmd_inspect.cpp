// `marlin inspect [PATH] [--json] [--tensors] [--metadata]`: what a GGUF file holds — architecture,
// hyper-parameters, tokenizer, parameter count, size and bits/weight, a tensor-type histogram, and
// optionally every tensor and every metadata entry. Long arrays and strings are summarized.
// Other sources (.marlin, Hugging Face folders) are shown by inspect_source.h.
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <cstdio>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/inspect_source.h"
#include "formats/gguf.h"
#include "formats/gguf_text.h"
#include "model/kv_cache.h"

namespace marlin::cli {
namespace {

using Json = nlohmann::ordered_json;

struct InspectOptions {
  std::string path;
  bool json = false;
  bool tensors = false;
  bool metadata = false;
};

// Arrays up to this many items are shown whole in JSON; longer ones by length and first items.
constexpr size_t kJsonArrayItems = 8;
constexpr size_t kJsonArrayPreview = 4;
// Strings longer than this are shown in JSON by size and prefix.
constexpr size_t kJsonStringBytes = 64 * 1024;
constexpr size_t kJsonStringPreview = 256;

struct TypeStats {
  uint64_t tensors = 0, elements = 0, bytes = 0;
};

// Everything both renderers show, gathered once.
struct Report {
  const GgufFile* file = nullptr;
  std::string architecture, name;
  std::vector<std::pair<std::string, const GgufValue*>> hyperparameters;  // "<arch>." stripped
  std::vector<std::pair<std::string, const GgufValue*>> tokenizer;        // "tokenizer." stripped
  std::optional<uint64_t> vocab_size;
  std::optional<int64_t> kv_values_per_token;  // what the KV cache holds per token, every layer
  uint64_t parameters = 0, tensor_bytes = 0;
  std::vector<std::pair<GgmlType, TypeStats>> types;  // most bytes first
};

double bits_per_weight(uint64_t bytes, uint64_t elements) {
  return elements == 0 ? 0.0 : 8.0 * double(bytes) / double(elements);
}

std::optional<uint64_t> array_length(const GgufFile& file, std::string_view key) {
  const GgufValue* v = file.find(key);
  if (!v || v->type != GgufType::ARRAY) return std::nullopt;
  return std::get<GgufArray>(v->value).items.size();
}

Report make_report(const GgufFile& file) {
  Report r;
  r.file = &file;
  r.architecture = file.get_string("general.architecture").value_or("");
  r.name = file.get_string("general.name").value_or("");
  const std::string arch_prefix = r.architecture + ".";
  for (const auto& [key, value] : file.metadata()) {
    if (!r.architecture.empty() && key.starts_with(arch_prefix))
      r.hyperparameters.emplace_back(key.substr(arch_prefix.size()), &value);
    else if (key.starts_with("tokenizer."))
      r.tokenizer.emplace_back(key.substr(std::string_view("tokenizer.").size()), &value);
  }
  if (!r.architecture.empty()) r.vocab_size = file.get_uint(arch_prefix + "vocab_size");
  if (!r.vocab_size) r.vocab_size = array_length(file, "tokenizer.ggml.tokens");
  try {  // inspect shows any GGUF file; the KV cache only for architectures marlin reads
    r.kv_values_per_token = kv_geometry(model_config_from_gguf(file)).values_per_token();
  } catch (const Error&) {
  }

  std::map<GgmlType, TypeStats> by_type;
  for (const auto& t : file.tensors()) {
    auto& stats = by_type[t.type];
    ++stats.tensors;
    stats.elements += t.elements;
    stats.bytes += t.bytes;
    r.parameters += t.elements;
    r.tensor_bytes += t.bytes;
  }
  r.types.assign(by_type.begin(), by_type.end());
  std::stable_sort(r.types.begin(), r.types.end(),
                   [](const auto& a, const auto& b) { return a.second.bytes > b.second.bytes; });
  return r;
}

// --- JSON -------------------------------------------------------------------------------------

Json json_value(const GgufValue& value) {
  return std::visit(
      [](const auto& v) -> Json {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, GgufArray>) {
          Json items = Json::array();
          const size_t shown = v.items.size() <= kJsonArrayItems ? v.items.size() : kJsonArrayPreview;
          for (size_t i = 0; i < shown; ++i) items.push_back(json_value(v.items[i]));
          if (shown == v.items.size()) return items;
          return Json{{"element_type", std::string(gguf_type_name(v.element_type))}, {"length", v.items.size()}, {"first", items}};
        } else if constexpr (std::is_same_v<T, std::string>) {
          if (v.size() <= kJsonStringBytes) return v;
          return Json{{"bytes", v.size()}, {"prefix", v.substr(0, kJsonStringPreview)}};
        } else {
          return v;
        }
      },
      value.value);
}

Json json_entries(const std::vector<std::pair<std::string, const GgufValue*>>& entries) {
  Json out = Json::object();
  for (const auto& [key, value] : entries) out[key] = json_value(*value);
  return out;
}

Json json_report(const Report& r, const InspectOptions& options) {
  const GgufFile& file = *r.file;
  Json out;
  out["path"] = file.path();
  out["file_size"] = file.file_size();
  out["gguf_version"] = file.version();
  out["alignment"] = file.alignment();
  out["data_offset"] = file.data_offset();
  out["architecture"] = r.architecture;
  out["name"] = r.name;
  out["parameters"] = r.parameters;
  out["tensor_bytes"] = r.tensor_bytes;
  out["bits_per_weight"] = bits_per_weight(r.tensor_bytes, r.parameters);
  out["vocab_size"] = r.vocab_size ? Json(*r.vocab_size) : Json(nullptr);
  out["kv_bytes_per_token"] = r.kv_values_per_token ? Json{{"cuda_f16", 2 * *r.kv_values_per_token},
                                                           {"cpu_f32", 4 * *r.kv_values_per_token}}
                                                     : Json(nullptr);
  out["hyperparameters"] = json_entries(r.hyperparameters);
  out["tokenizer"] = json_entries(r.tokenizer);
  out["tensor_count"] = file.tensors().size();
  Json types = Json::array();
  for (const auto& [type, stats] : r.types)
    types.push_back({{"type", std::string(ggml_type_info(type).name)},
                     {"tensors", stats.tensors},
                     {"parameters", stats.elements},
                     {"bytes", stats.bytes},
                     {"bits_per_weight", bits_per_weight(stats.bytes, stats.elements)}});
  out["tensor_types"] = types;
  out["metadata_count"] = file.metadata().size();
  if (options.metadata) {
    Json metadata = Json::object();
    for (const auto& [key, value] : file.metadata())
      metadata[key] = {{"type", std::string(gguf_type_name(value.type))}, {"value", json_value(value)}};
    out["metadata"] = metadata;
  }
  if (options.tensors) {
    Json tensors = Json::array();
    for (const auto& t : file.tensors())
      tensors.push_back({{"name", t.name},
                         {"type", std::string(ggml_type_info(t.type).name)},
                         {"shape", t.shape},
                         {"elements", t.elements},
                         {"bytes", t.bytes},
                         {"offset", t.offset}});
    out["tensors"] = tensors;
  }
  return out;
}

// --- text -------------------------------------------------------------------------------------

std::string human_bytes(uint64_t bytes) {
  if (bytes < 1024) return fmt::format("{} B", bytes);
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double value = double(bytes) / 1024;
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(units)) value /= 1024, ++unit;
  return fmt::format("{:.2f} {}", value, units[unit]);
}

std::string human_count(uint64_t n) {
  if (n < 1000) return fmt::format("{}", n);
  const char* units[] = {"K", "M", "B", "T"};
  double value = double(n) / 1000;
  size_t unit = 0;
  while (value >= 1000 && unit + 1 < std::size(units)) value /= 1000, ++unit;
  return fmt::format("{:.2f}{}", value, units[unit]);
}

void print_entries(const std::string& title, const std::vector<std::pair<std::string, const GgufValue*>>& entries) {
  if (entries.empty()) return;
  fmt::print("\n{}\n", title);
  for (const auto& [key, value] : entries) fmt::print("  {:<36} {}\n", gguf_escape(key), gguf_value_summary(*value));
}

void print_text(const Report& r, const InspectOptions& options) {
  const GgufFile& file = *r.file;
  fmt::print("{:<16}{}\n", "file", file.path());
  fmt::print("{:<16}{}, GGUF v{}, alignment {}, data at offset {}\n", "", human_bytes(file.file_size()),
             file.version(), file.alignment(), file.data_offset());
  fmt::print("{:<16}{}\n", "architecture", r.architecture.empty() ? "(none)" : gguf_escape(r.architecture));
  if (!r.name.empty()) fmt::print("{:<16}{}\n", "name", gguf_escape(r.name));
  fmt::print("{:<16}{} ({})\n", "parameters", human_count(r.parameters), r.parameters);
  fmt::print("{:<16}{} in {} tensors, {:.3f} bits/weight\n", "tensor data", human_bytes(r.tensor_bytes),
             file.tensors().size(), bits_per_weight(r.tensor_bytes, r.parameters));
  if (r.vocab_size) fmt::print("{:<16}{}\n", "vocab size", *r.vocab_size);
  if (r.kv_values_per_token)
    fmt::print("{:<16}{} bytes/token fp16 (CUDA), {} fp32 (CPU)\n", "kv cache", 2 * *r.kv_values_per_token,
               4 * *r.kv_values_per_token);

  print_entries(fmt::format("hyper-parameters ({}.*)", gguf_escape(r.architecture)), r.hyperparameters);
  print_entries("tokenizer (tokenizer.*)", r.tokenizer);

  fmt::print("\n{:<18}{:>8}{:>14}{:>13}{:>13}\n", "tensor types", "tensors", "parameters", "bytes", "bits/weight");
  for (const auto& [type, stats] : r.types)
    fmt::print("  {:<16}{:>8}{:>14}{:>13}{:>13.3f}\n", ggml_type_info(type).name, stats.tensors,
               human_count(stats.elements), human_bytes(stats.bytes), bits_per_weight(stats.bytes, stats.elements));

  if (options.metadata) {
    fmt::print("\nmetadata ({} keys)\n", file.metadata().size());
    for (const auto& [key, value] : file.metadata())
      fmt::print("  {:<44} {:<8} {}\n", gguf_escape(key), gguf_type_name(value.type), gguf_value_summary(value));
  }
  if (options.tensors) {
    fmt::print("\ntensors ({})\n", file.tensors().size());
    fmt::print("  {:<40} {:<6} {:<22} {:>12} {:>12}\n", "name", "type", "shape", "bytes", "offset");
    for (const auto& t : file.tensors())
      fmt::print("  {:<40} {:<6} {:<22} {:>12} {:>12}\n", gguf_escape(t.name), ggml_type_info(t.type).name,
                 gguf_shape_text(t.shape), t.bytes, t.offset);
  }
}

void run_inspect(const InspectOptions& options) {
  const std::string path = resolve_model_path(options.path);
  if (std::filesystem::is_directory(path) || !path.ends_with(".gguf"))
    return inspect_model_source(path, options.json, options.tensors);
  const auto file = GgufFile::open(path);
  const Report report = make_report(*file);
  if (options.json) {
    fmt::print("{}\n", json_report(report, options).dump(2, ' ', false, Json::error_handler_t::replace));
  } else {
    print_text(report, options);
  }
  std::fflush(stdout);
}

}  // namespace

void register_inspect(CLI::App& app) {
  auto options = std::make_shared<InspectOptions>();
  auto* cmd = app.add_subcommand("inspect", "Show what a model holds (GGUF file, .marlin checkpoint or Hugging Face folder)");
  cmd->add_option("path", options->path,
                  "GGUF file, .marlin checkpoint or Hugging Face folder (default: the default model)")
      ->check(CLI::ExistingPath);
  cmd->add_flag("--json", options->json, "Print one JSON object instead of text");
  cmd->add_flag("--tensors", options->tensors, "Also list every tensor: name, type/format, shape, bytes");
  cmd->add_flag("--metadata", options->metadata,
                "Also list every metadata entry (long strings and arrays are summarized)");
  cmd->callback([options] { run_inspect(*options); });
}

}  // namespace marlin::cli
