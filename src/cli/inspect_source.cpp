#include "cli/inspect_source.h"

#include <fmt/format.h>

#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "model/kv_cache.h"
#include "model/model_source.h"
#include "runtime/expert_bits_plan.h"

namespace marlin::cli {
namespace {

struct FormatStats {
  uint64_t tensors = 0, elements = 0, bytes = 0;
};

double bits_per_weight(uint64_t bytes, uint64_t elements) {
  return elements == 0 ? 0.0 : 8.0 * double(bytes) / double(elements);
}

}  // namespace

void inspect_model_source(const std::string& path, bool json, bool tensors) {
  const auto source = open_model_source(path);
  const ModelConfig& c = source->config();
  std::map<std::string, FormatStats> formats;
  uint64_t parameters = 0, bytes = 0;
  nlohmann::ordered_json tensor_list = nlohmann::ordered_json::array();
  for (const std::string& name : source->tensor_names()) {
    const QuantTensor t = *source->tensor(name);
    FormatStats& s = formats[t.format.name()];
    const auto elements = uint64_t(t.rows) * uint64_t(t.cols);
    ++s.tensors, s.elements += elements, s.bytes += t.stored_bytes();
    parameters += elements, bytes += t.stored_bytes();
    tensor_list.push_back({{"name", name}, {"format", t.format.name()}, {"rows", t.rows}, {"cols", t.cols},
                           {"bytes", t.stored_bytes()}});
  }
  nlohmann::ordered_json config = {{"architecture", c.architecture}, {"layers", c.n_layers},
                                         {"d_model", c.d_model},           {"heads", c.n_heads},
                                         {"kv_heads", c.n_kv_heads},       {"head_dim", c.head_dim},
                                         {"d_ffn", c.d_ffn},               {"vocab_size", c.vocab_size},
                                         {"context_length", c.context_length}, {"rope_theta", c.rope.theta}};
  if (c.moe.n_experts > 0) {
    config["experts"] = c.moe.n_experts;
    config["experts_used"] = c.moe.routing.top_k;
    config["expert_d_ffn"] = c.moe.d_expert_ffn;
  }
  // Per-expert widths chosen by marlin quantize --moe-bits, kept in the checkpoint's config.
  const nlohmann::json hf_config = source->hf_config();
  const nlohmann::json* expert_bits = nullptr;
  if (hf_config.is_object() && hf_config.contains(kExpertBitsConfigKey) && hf_config[kExpertBitsConfigKey].is_object())
    expert_bits = &hf_config[kExpertBitsConfigKey];
  // What the KV cache holds per token over every layer: fp16 on CUDA, fp32 on the CPU.
  const int64_t kv_values = kv_geometry(c).values_per_token();
  if (json) {
    nlohmann::ordered_json out = {{"source", source->description()}, {"name", c.name}, {"config", config},
                                  {"parameters", parameters}, {"tensor_bytes", bytes},
                                  {"bits_per_weight", bits_per_weight(bytes, parameters)},
                                  {"kv_bytes_per_token", {{"cuda_f16", 2 * kv_values}, {"cpu_f32", 4 * kv_values}}}};
    for (const auto& [name, s] : formats)
      out["formats"][name] = {{"tensors", s.tensors}, {"parameters", s.elements}, {"bytes", s.bytes}};
    if (expert_bits) out["expert_bits"] = *expert_bits;
    if (tensors) out["tensors"] = tensor_list;
    fmt::print("{}\n", out.dump(2));
  } else {
    fmt::print("{:<16}{}\n{:<16}{}\n", "source", source->description(), "name", c.name);
    for (const auto& [key, value] : config.items()) fmt::print("{:<16}{}\n", key, value.dump());
    fmt::print("{:<16}{:.2f} MiB in {} tensors, {} parameters, {:.3f} bits/weight\n", "tensor data",
               double(bytes) / (1 << 20), tensor_list.size(), parameters, bits_per_weight(bytes, parameters));
    fmt::print("{:<16}{} bytes/token fp16 (CUDA), {} fp32 (CPU)\n", "kv cache", 2 * kv_values, 4 * kv_values);
    fmt::print("\n{:<22}{:>8}{:>14}{:>14}{:>13}\n", "tensor formats", "tensors", "parameters", "bytes", "bits/weight");
    for (const auto& [name, s] : formats)
      fmt::print("  {:<20}{:>8}{:>14}{:>14}{:>13.3f}\n", name, s.tensors, s.elements, s.bytes,
                 bits_per_weight(s.bytes, s.elements));
    if (expert_bits) {
      try {
        fmt::print("\n{}", expert_bits_summary(*expert_bits));
      } catch (const nlohmann::json::exception& e) {
        fmt::print("\nexpert bits: unreadable summary in the config ({})\n", e.what());
      }
    }
    if (tensors) {
      fmt::print("\ntensors ({})\n", tensor_list.size());
      for (const auto& t : tensor_list)
        fmt::print("  {:<52} {:<16} {:<16} {:>12}\n", t["name"].get<std::string>(), t["format"].get<std::string>(),
                   fmt::format("[{}, {}]", t["rows"].get<int64_t>(), t["cols"].get<int64_t>()),
                   t["bytes"].get<uint64_t>());
    }
  }
  std::fflush(stdout);
}

}  // namespace marlin::cli
