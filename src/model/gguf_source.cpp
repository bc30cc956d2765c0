#include "model/gguf_source.h"

#include <array>
#include <charconv>
#include <mutex>
#include <span>
#include <vector>
#include <utility>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/hf_config.h"
#include "quant/ggml_dequant.h"
#include "tokenizer/export_hf_json.h"
#include "tokenizer/tokenizer.h"

namespace marlin {
namespace {

// Whole-model tensors, then per-layer suffixes ("model.layers.N." + HF suffix <-> "blk.N." + GGUF suffix).
constexpr std::array<std::pair<std::string_view, std::string_view>, 3> kGlobalNames = {{
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
}};
constexpr std::array<std::pair<std::string_view, std::string_view>, 11> kLayerNames = {{
    {"input_layernorm.weight", "attn_norm.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.q_norm.weight", "attn_q_norm.weight"},
    {"self_attn.k_norm.weight", "attn_k_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
}};
// Gemma 3 norms around both halves of the block; looked up before kLayerNames (whose
// post_attention_layernorm is Llama's FFN input norm).
constexpr std::array<std::pair<std::string_view, std::string_view>, 3> kGemma3LayerNames = {{
    {"post_attention_layernorm.weight", "post_attention_norm.weight"},
    {"pre_feedforward_layernorm.weight", "ffn_norm.weight"},
    {"post_feedforward_layernorm.weight", "post_ffw_norm.weight"},
}};

using NamePairs = std::span<const std::pair<std::string_view, std::string_view>>;

// The per-layer name tables of an architecture, most specific first.
std::vector<NamePairs> layer_name_tables(std::string_view architecture) {
  if (architecture == "gemma3") return {NamePairs(kGemma3LayerNames), NamePairs(kLayerNames)};
  return {NamePairs(kLayerNames)};
}

class GgufSource final : public ModelSource {
 public:
  explicit GgufSource(const std::string& path) : file_(GgufFile::open(path)), config_(model_config_from_gguf(*file_)) {
    if (const auto* freqs = file_->find_tensor("rope_freqs.weight")) {
      MARLIN_CHECK(int64_t(freqs->elements) == config_.rope.dim / 2,
                   "model: rope_freqs.weight has {} values for {} frequencies", freqs->elements, config_.rope.dim / 2);
      config_.rope.freq_factors.resize(size_t(freqs->elements));
      dequantize_row(freqs->type, file_->tensor_data(*freqs).data(), config_.rope.freq_factors.data(),
                     int64_t(freqs->elements));
    }
  }

  const ModelConfig& config() const override { return config_; }
  std::unique_ptr<Tokenizer> tokenizer() const override { return Tokenizer::from_gguf(*file_); }
  std::string chat_template() const override { return file_->get_string("tokenizer.chat_template").value_or(""); }
  std::string description() const override { return file_->path() + " (GGUF)"; }

  std::optional<QuantTensor> tensor(std::string_view name) const override {
    const std::string gguf_name = gguf_tensor_name(name, config_.architecture);
    const GgufTensorInfo* t = file_->find_tensor(gguf_name.empty() ? name : std::string_view(gguf_name));
    if (!t) return std::nullopt;
    MARLIN_CHECK(t->shape.size() <= 2, "model: tensor '{}' has {} dimensions (at most 2 expected)", t->name,
                 t->shape.size());
    QuantTensor q;
    q.format = format_of_ggml(t->type);
    q.cols = int64_t(t->shape[0]);
    q.rows = t->shape.size() == 2 ? int64_t(t->shape[1]) : 1;
    auto data = file_->tensor_data(*t);
    q.codes = data.data();
    q.code_row_bytes = data.size() / uint64_t(q.rows);
    return q;
  }

  nlohmann::json hf_config() const override {
    ModelConfig c = config_;
    c.rope.freq_factors.clear();  // config.json has no form for them (see ModelSource)
    nlohmann::json j = hf_config_from_model_config(c);
    j["tie_word_embeddings"] = file_->find_tensor("output.weight") == nullptr;
    return j;
  }
  std::string tokenizer_json() const override { return tokenizer_files().tokenizer_json; }
  std::string tokenizer_config_json() const override { return tokenizer_files().tokenizer_config_json; }

  std::vector<std::string> tensor_names() const override {
    std::vector<std::string> names;
    for (const auto& t : file_->tensors()) names.push_back(hf_name(t.name));
    return names;
  }

 private:
  std::string hf_name(const std::string& gguf_name) const {
    for (const auto& [hf, gguf] : kGlobalNames)
      if (gguf == gguf_name) return std::string(hf);
    if (gguf_name.rfind("blk.", 0) == 0) {
      const size_t dot = gguf_name.find('.', 4);
      if (dot != std::string::npos) {
        const std::string_view suffix = std::string_view(gguf_name).substr(dot + 1);
        for (const NamePairs table : layer_name_tables(config_.architecture))
          for (const auto& [hf, gguf] : table)
            if (gguf == suffix) return "model.layers." + gguf_name.substr(4, dot - 4) + "." + std::string(hf);
      }
    }
    return gguf_name;
  }

  // Built once on first use: exporting a large vocabulary takes a while.
  const HfTokenizerFiles& tokenizer_files() const {
    std::call_once(tokenizer_once_, [this] { tokenizer_files_ = hf_tokenizer_files_from_gguf(*file_); });
    return tokenizer_files_;
  }

  std::unique_ptr<GgufFile> file_;
  ModelConfig config_;
  mutable std::once_flag tokenizer_once_;
  mutable HfTokenizerFiles tokenizer_files_;
};

}  // namespace

std::string gguf_tensor_name(std::string_view hf_name, std::string_view architecture) {
  for (const auto& [hf, gguf] : kGlobalNames)
    if (hf == hf_name) return std::string(gguf);
  constexpr std::string_view kLayers = "model.layers.";
  if (hf_name.substr(0, kLayers.size()) != kLayers) return {};
  const std::string_view rest = hf_name.substr(kLayers.size());
  const size_t dot = rest.find('.');
  if (dot == std::string_view::npos || dot == 0) return {};
  unsigned layer = 0;
  const auto [end, ec] = std::from_chars(rest.data(), rest.data() + dot, layer);
  if (ec != std::errc() || end != rest.data() + dot) return {};
  const std::string_view suffix = rest.substr(dot + 1);
  for (const NamePairs table : layer_name_tables(architecture))
    for (const auto& [hf, gguf] : table)
      if (hf == suffix) return "blk." + std::to_string(layer) + "." + std::string(gguf);
  return {};
}

std::unique_ptr<ModelSource> open_gguf_source(const std::string& path) { return std::make_unique<GgufSource>(path); }

}  // namespace marlin
