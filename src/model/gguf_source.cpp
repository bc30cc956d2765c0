#include "model/gguf_source.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <mutex>
#include <span>
#include <vector>
#include <utility>

#include <fmt/format.h>

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

// A sparse MLP's weights: GGUF stores the router as blk.N.ffn_gate_inp.weight and the experts of a
// layer as 3-D tensors blk.N.ffn_{gate,up,down}_exps.weight (one matrix per expert); Hugging Face
// names them per expert, Mixtral one way and Qwen-MoE another.
struct MoeNaming {
  std::string_view router, experts;
  std::array<std::string_view, 3> parts;  // gate, up, down
};
constexpr MoeNaming kMixtralNaming{"block_sparse_moe.gate.weight", "block_sparse_moe.experts.",
                                   {"w1.weight", "w3.weight", "w2.weight"}};
constexpr MoeNaming kQwenMoeNaming{"mlp.gate.weight", "mlp.experts.",
                                   {"gate_proj.weight", "up_proj.weight", "down_proj.weight"}};
constexpr std::string_view kRouterTensor = "ffn_gate_inp.weight";
constexpr std::array<std::string_view, 3> kExpertTensors = {"ffn_gate_exps.weight", "ffn_up_exps.weight",
                                                            "ffn_down_exps.weight"};

// "model.layers.N.<suffix>" -> N and suffix; false for anything else.
bool split_layer_name(std::string_view hf_name, unsigned& layer, std::string_view& suffix) {
  constexpr std::string_view kLayers = "model.layers.";
  if (hf_name.substr(0, kLayers.size()) != kLayers) return false;
  const std::string_view rest = hf_name.substr(kLayers.size());
  const size_t dot = rest.find('.');
  if (dot == std::string_view::npos || dot == 0) return false;
  const auto [end, ec] = std::from_chars(rest.data(), rest.data() + dot, layer);
  if (ec != std::errc() || end != rest.data() + dot) return false;
  suffix = rest.substr(dot + 1);
  return true;
}

class GgufSource final : public ModelSource {
 public:
  explicit GgufSource(const std::string& path)
      : file_(GgufFile::open(path)),
        config_(model_config_from_gguf(*file_)),
        moe_naming_(config_.architecture == "qwen3moe" ? kQwenMoeNaming : kMixtralNaming) {
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
    int expert = -1;
    std::string gguf_name = moe_tensor_name(name, expert);
    if (gguf_name.empty()) gguf_name = gguf_tensor_name(name, config_.architecture);
    const GgufTensorInfo* t = file_->find_tensor(gguf_name.empty() ? name : std::string_view(gguf_name));
    if (!t) return std::nullopt;
    if (expert >= 0) return expert_matrix(*t, uint64_t(expert));
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

  // A 3-D expert tensor of the model's expert count stands for one name per expert.
  std::vector<std::string> tensor_names() const override {
    std::vector<std::string> names;
    for (const auto& t : file_->tensors()) {
      const auto part = std::find(kExpertTensors.begin(), kExpertTensors.end(), layer_suffix(t.name));
      const bool experts = part != kExpertTensors.end() && t.shape.size() == 3 && config_.moe.n_experts > 0 &&
                           t.shape[2] == uint64_t(config_.moe.n_experts);
      if (!experts) {  // an expert tensor of another shape keeps its GGUF name
        names.push_back(part != kExpertTensors.end() ? t.name : hf_name(t.name));
        continue;
      }
      const std::string layer_prefix = hf_name(t.name);
      for (uint64_t e = 0; e < t.shape[2]; ++e)
        names.push_back(fmt::format("{}{}{}.{}", layer_prefix, moe_naming_.experts, e,
                                    moe_naming_.parts[size_t(part - kExpertTensors.begin())]));
    }
    return names;
  }

 private:
  // "blk.N.<suffix>" -> suffix (empty for other names).
  static std::string_view layer_suffix(std::string_view gguf_name) {
    if (gguf_name.substr(0, 4) != "blk.") return {};
    const size_t dot = gguf_name.find('.', 4);
    return dot == std::string_view::npos ? std::string_view() : gguf_name.substr(dot + 1);
  }

  // The Hugging Face name of a GGUF tensor; for a 3-D expert tensor, the layer's prefix
  // ("model.layers.N.") that its per-expert names extend.
  std::string hf_name(const std::string& gguf_name) const {
    for (const auto& [hf, gguf] : kGlobalNames)
      if (gguf == gguf_name) return std::string(hf);
    const std::string_view suffix = layer_suffix(gguf_name);
    if (suffix.empty()) return gguf_name;
    const std::string prefix = "model.layers." + gguf_name.substr(4, gguf_name.size() - suffix.size() - 5) + ".";
    for (const NamePairs table : layer_name_tables(config_.architecture))
      for (const auto& [hf, gguf] : table)
        if (gguf == suffix) return prefix + std::string(hf);
    if (suffix == kRouterTensor) return prefix + std::string(moe_naming_.router);
    if (std::find(kExpertTensors.begin(), kExpertTensors.end(), suffix) != kExpertTensors.end()) return prefix;
    return gguf_name;
  }

  // The GGUF tensor holding a sparse MLP weight: the router (expert = -1) or one expert's gate,
  // up or down (expert >= 0, a slice of a 3-D tensor); empty for other names.
  std::string moe_tensor_name(std::string_view hf, int& expert) const {
    expert = -1;
    unsigned layer = 0;
    std::string_view suffix;
    if (config_.moe.n_experts == 0 || !split_layer_name(hf, layer, suffix)) return {};
    const std::string blk = "blk." + std::to_string(layer) + ".";
    if (suffix == moe_naming_.router) return blk + std::string(kRouterTensor);
    if (!suffix.starts_with(moe_naming_.experts)) return {};
    suffix.remove_prefix(moe_naming_.experts.size());
    const size_t dot = suffix.find('.');
    unsigned e = 0;
    const auto [end, ec] = std::from_chars(suffix.data(), suffix.data() + std::min(dot, suffix.size()), e);
    if (dot == std::string_view::npos || dot == 0 || ec != std::errc() || end != suffix.data() + dot ||
        e >= unsigned(config_.moe.n_experts))
      return {};
    for (size_t i = 0; i < 3; ++i)
      if (suffix.substr(dot + 1) == moe_naming_.parts[i]) {
        expert = int(e);
        return blk + std::string(kExpertTensors[i]);
      }
    return {};
  }

  // Matrix `expert` of a 3-D expert tensor (GGUF shape: cols, rows, experts).
  std::optional<QuantTensor> expert_matrix(const GgufTensorInfo& t, uint64_t expert) const {
    MARLIN_CHECK(t.shape.size() == 3, "model: tensor '{}' has {} dimensions (3 expected: one matrix per expert)",
                 t.name, t.shape.size());
    if (expert >= t.shape[2]) return std::nullopt;
    const auto data = file_->tensor_data(t);
    const uint64_t rows = t.shape[1], experts = t.shape[2];
    MARLIN_CHECK(rows > 0 && data.size() % experts == 0 && data.size() / experts % rows == 0,
                 "model: tensor '{}' of {} bytes does not split into {} experts of {} rows", t.name, data.size(),
                 experts, rows);
    QuantTensor q;
    q.format = format_of_ggml(t.type);
    q.cols = int64_t(t.shape[0]);
    q.rows = int64_t(rows);
    q.code_row_bytes = data.size() / experts / rows;
    q.codes = data.data() + expert * (data.size() / experts);
    return q;
  }

  // Built once on first use: exporting a large vocabulary takes a while.
  const HfTokenizerFiles& tokenizer_files() const {
    std::call_once(tokenizer_once_, [this] { tokenizer_files_ = hf_tokenizer_files_from_gguf(*file_); });
    return tokenizer_files_;
  }

  std::unique_ptr<GgufFile> file_;
  ModelConfig config_;
  const MoeNaming& moe_naming_;
  mutable std::once_flag tokenizer_once_;
  mutable HfTokenizerFiles tokenizer_files_;
};

}  // namespace

std::string gguf_tensor_name(std::string_view hf_name, std::string_view architecture) {
  for (const auto& [hf, gguf] : kGlobalNames)
    if (hf == hf_name) return std::string(gguf);
  unsigned layer = 0;
  std::string_view suffix;
  if (!split_layer_name(hf_name, layer, suffix)) return {};
  for (const NamePairs table : layer_name_tables(architecture))
    for (const auto& [hf, gguf] : table)
      if (hf == suffix) return "blk." + std::to_string(layer) + "." + std::string(gguf);
  return {};
}

std::unique_ptr<ModelSource> open_gguf_source(const std::string& path) { return std::make_unique<GgufSource>(path); }

}  // namespace marlin
