#include "model/gguf_source.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <map>
#include <mutex>
#include <span>
#include <vector>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>

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

// Multi-head latent attention and DeepSeek's MoE extras (llama.cpp's "deepseek2" files: DeepSeek-V2/V3,
// GLM-4.7-Flash). kv_b_proj is attn_kv_b only in files written before llama.cpp split it into
// attn_k_b / attn_v_b (see GgufSource::assembled_kv_b).
constexpr std::array<std::pair<std::string_view, std::string_view>, 10> kMlaLayerNames = {{
    {"self_attn.q_a_proj.weight", "attn_q_a.weight"},
    {"self_attn.q_a_layernorm.weight", "attn_q_a_norm.weight"},
    {"self_attn.q_b_proj.weight", "attn_q_b.weight"},
    {"self_attn.kv_a_proj_with_mqa.weight", "attn_kv_a_mqa.weight"},
    {"self_attn.kv_a_layernorm.weight", "attn_kv_a_norm.weight"},
    {"self_attn.kv_b_proj.weight", "attn_kv_b.weight"},
    {"mlp.gate.e_score_correction_bias", "exp_probs_b.bias"},
    {"mlp.shared_experts.gate_proj.weight", "ffn_gate_shexp.weight"},
    {"mlp.shared_experts.up_proj.weight", "ffn_up_shexp.weight"},
    {"mlp.shared_experts.down_proj.weight", "ffn_down_shexp.weight"},
}};
constexpr std::string_view kKvBSuffix = "self_attn.kv_b_proj.weight";
constexpr std::string_view kKBTensor = "attn_k_b.weight", kVBTensor = "attn_v_b.weight";

using NamePairs = std::span<const std::pair<std::string_view, std::string_view>>;

bool is_mla_family(std::string_view architecture) {
  return architecture == "deepseek2" || architecture == "deepseek3" || architecture == "glm4moelite";
}

// The per-layer name tables of an architecture, most specific first.
std::vector<NamePairs> layer_name_tables(std::string_view architecture) {
  if (architecture == "gemma3") return {NamePairs(kGemma3LayerNames), NamePairs(kLayerNames)};
  if (is_mla_family(architecture)) return {NamePairs(kMlaLayerNames), NamePairs(kLayerNames)};
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
        moe_naming_(config_.architecture == "qwen3moe" || config_.mla.enabled() ? kQwenMoeNaming : kMixtralNaming) {
    if (const auto* freqs = file_->find_tensor("rope_freqs.weight")) {
      MARLIN_CHECK(int64_t(freqs->elements) == config_.rope.dim / 2,
                   "model: rope_freqs.weight has {} values for {} frequencies", freqs->elements, config_.rope.dim / 2);
      config_.rope.freq_factors.resize(size_t(freqs->elements));
      dequantize_row(freqs->type, file_->tensor_data(*freqs).data(), config_.rope.freq_factors.data(),
                     int64_t(freqs->elements));
    }
    // DeepSeek-V3 / GLM routers carry a score bias (exp_probs_b); llama.cpp keeps it optional.
    const auto& sparse = config_.moe.sparse_layers;
    const auto first_sparse = std::find(sparse.begin(), sparse.end(), true);
    if (config_.mla.enabled() && first_sparse != sparse.end())
      config_.moe.score_bias =
          file_->find_tensor(fmt::format("blk.{}.exp_probs_b.bias", first_sparse - sparse.begin())) != nullptr;
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
    if (!t) return config_.mla.enabled() ? assembled_kv_b(name) : std::nullopt;
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
      const std::string_view suffix = layer_suffix(t.name);
      if (suffix == kKBTensor || suffix == kVBTensor) {  // one kv_b_proj for the split pair
        const std::string blk = t.name.substr(0, t.name.size() - suffix.size());
        const bool pair = file_->find_tensor(blk + std::string(kKBTensor)) && file_->find_tensor(blk + std::string(kVBTensor));
        if (pair && suffix == kKBTensor) names.push_back(hf_name(blk + "attn_kv_b.weight"));
        if (!pair) names.push_back(t.name);
        continue;
      }
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
  // kv_b_proj (heads·(qk_nope + v_head) × kv_lora_rank, per head its nope-key rows then its value
  // rows) from llama.cpp's split attn_k_b (GGUF shape qk_nope, kv_lora_rank, heads: each head's
  // key rows transposed) and attn_v_b (kv_lora_rank, v_head, heads), dequantized to fp32 and
  // kept for the source's life; nullopt for other names or when the layer has no split pair.
  std::optional<QuantTensor> assembled_kv_b(std::string_view name) const {
    unsigned layer = 0;
    std::string_view suffix;
    if (!split_layer_name(name, layer, suffix) || suffix != kKvBSuffix) return std::nullopt;
    const std::string blk = "blk." + std::to_string(layer) + ".";
    const GgufTensorInfo* k_b = file_->find_tensor(blk + std::string(kKBTensor));
    const GgufTensorInfo* v_b = file_->find_tensor(blk + std::string(kVBTensor));
    if (!k_b || !v_b) return std::nullopt;
    const MlaConfig& m = config_.mla;
    const uint64_t heads = uint64_t(config_.n_heads), nope = uint64_t(m.qk_nope_head_dim),
                   v_dim = uint64_t(m.v_head_dim), rank = uint64_t(m.kv_lora_rank);
    MARLIN_CHECK(k_b->shape == std::vector<uint64_t>({nope, rank, heads}),
                 "model: tensor '{}' has shape [{}], not [{}, {}, {}] (qk_nope, kv_lora_rank, heads)", k_b->name,
                 fmt::join(k_b->shape, ", "), nope, rank, heads);
    MARLIN_CHECK(v_b->shape == std::vector<uint64_t>({rank, v_dim, heads}),
                 "model: tensor '{}' has shape [{}], not [{}, {}, {}] (kv_lora_rank, v_head, heads)", v_b->name,
                 fmt::join(v_b->shape, ", "), rank, v_dim, heads);
    std::lock_guard lock(kv_b_mutex_);
    std::vector<float>& w = assembled_kv_b_[layer];
    if (w.empty()) {
      const uint64_t per_head = nope + v_dim;
      w.resize(heads * per_head * rank);
      std::vector<float> k_rows(rank * nope);  // one head's attn_k_b: rank rows of nope values
      const auto k_data = file_->tensor_data(*k_b), v_data = file_->tensor_data(*v_b);
      const uint64_t k_row_bytes = ggml_row_bytes(k_b->type, nope).value_or(0);
      const uint64_t v_row_bytes = ggml_row_bytes(v_b->type, rank).value_or(0);
      MARLIN_CHECK(k_row_bytes > 0 && k_data.size() == k_row_bytes * rank * heads && v_row_bytes > 0 &&
                       v_data.size() == v_row_bytes * v_dim * heads,
                   "model: tensors '{}' / '{}' are not rows of their ggml types", k_b->name, v_b->name);
      for (uint64_t h = 0; h < heads; ++h) {
        for (uint64_t r = 0; r < rank; ++r)
          dequantize_row(k_b->type, k_data.data() + (h * rank + r) * k_row_bytes, &k_rows[r * nope], int64_t(nope));
        float* head = &w[h * per_head * rank];
        for (uint64_t j = 0; j < nope; ++j)
          for (uint64_t r = 0; r < rank; ++r) head[j * rank + r] = k_rows[r * nope + j];
        for (uint64_t i = 0; i < v_dim; ++i)
          dequantize_row(v_b->type, v_data.data() + (h * v_dim + i) * v_row_bytes, &head[(nope + i) * rank],
                         int64_t(rank));
      }
    }
    QuantTensor q;
    q.format = format_of_ggml(GgmlType::F32);
    q.rows = int64_t(w.size() / rank);
    q.cols = int64_t(rank);
    q.codes = reinterpret_cast<const uint8_t*>(w.data());
    q.code_row_bytes = rank * sizeof(float);
    return q;
  }

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
  mutable std::mutex kv_b_mutex_;
  mutable std::map<unsigned, std::vector<float>> assembled_kv_b_;  // by layer; values never move once filled
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
