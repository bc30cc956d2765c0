#include "formats/hf_config.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <numbers>
#include <optional>

#include "core/error.h"
#include "core/half.h"
#include "formats/gguf_text.h"
#include "formats/hf_json.h"

namespace marlin {
namespace {

using Json = nlohmann::json;
constexpr std::string_view kSource = "config.json";

struct Architecture {
  std::string_view hf_class;
  std::string_view model_type;
  std::string_view family;  // ModelConfig::architecture, GGUF's name
  int default_context;      // transformers' default max_position_embeddings
};

constexpr Architecture kArchitectures[] = {
    {"LlamaForCausalLM", "llama", "llama", 2048},
    {"MistralForCausalLM", "mistral", "llama", 4096 * 32},
    {"Qwen2ForCausalLM", "qwen2", "qwen2", 32768},
    {"Qwen3ForCausalLM", "qwen3", "qwen3", 32768},
    {"MixtralForCausalLM", "mixtral", "llama", 4096 * 32},
    {"Qwen3MoeForCausalLM", "qwen3_moe", "qwen3moe", 32768},
    {"DeepseekV2ForCausalLM", "deepseek_v2", "deepseek2", 2048},
    {"DeepseekV3ForCausalLM", "deepseek_v3", "deepseek3", 4096},
    {"Glm4MoeLiteForCausalLM", "glm4_moe_lite", "glm4moelite", 202752},
    {"Gemma3ForCausalLM", "gemma3_text", "gemma3", 131072},
};

// Families with multi-head latent attention (MlaConfig).
bool is_mla_family(std::string_view family) {
  return family == "deepseek2" || family == "deepseek3" || family == "glm4moelite";
}

const Architecture& find_architecture(const Json& j) {
  std::optional<std::string> hf_class;
  if (auto it = j.find("architectures"); it != j.end() && !it->is_null()) {
    MARLIN_CHECK(it->is_array() && !it->empty() && (*it)[0].is_string(),
                 "config.json: 'architectures' is not a list of class names");
    hf_class = (*it)[0].get<std::string>();
  }
  const auto model_type = json_string(j, "model_type", kSource);
  for (const auto& a : kArchitectures) {
    if (hf_class ? *hf_class == a.hf_class : model_type == a.model_type) return a;
  }
  MARLIN_CHECK(hf_class || model_type, "config.json: neither 'architectures' nor 'model_type' names the model");
  fail(
      "config.json: architecture {} is not supported (supported: LlamaForCausalLM, MistralForCausalLM, "
      "Qwen2ForCausalLM, Qwen3ForCausalLM, MixtralForCausalLM, Qwen3MoeForCausalLM, DeepseekV2ForCausalLM, "
      "DeepseekV3ForCausalLM, Glm4MoeLiteForCausalLM, Gemma3ForCausalLM, Gemma3ForConditionalGeneration)",
      gguf_quote(hf_class ? *hf_class : *model_type));
}

int required_int(const Json& j, std::string_view key, int64_t low, int64_t high) {
  auto value = json_int(j, key, kSource);
  MARLIN_CHECK(value.has_value(), "config.json: '{}' is missing", key);
  MARLIN_CHECK(*value >= low && *value <= high, "config.json: '{}' = {} is outside [{}, {}]", key, *value, low, high);
  return int(*value);
}

int optional_int(const Json& j, std::string_view key, int fallback, int64_t low, int64_t high) {
  if (!json_int(j, key, kSource)) return fallback;
  return required_int(j, key, low, high);
}

// A RoPE setting looked up in the rope dict first, then beside it in the config (transformers'
// order of precedence for rope_theta and partial_rotary_factor).
std::optional<double> rope_number(const Json& rope, const Json& config, std::string_view key) {
  if (auto v = json_number(rope, key, "config.json rope parameters")) return v;
  return json_number(config, key, kSource);
}

double positive(std::optional<double> value, std::string_view what) {
  MARLIN_CHECK(value.has_value(), "config.json: rope '{}' is missing", what);
  MARLIN_CHECK(std::isfinite(*value) && *value > 0, "config.json: rope '{}' = {} is not a positive number", what,
               *value);
  return *value;
}

// transformers' Llama-3 frequency scaling, as per-frequency divisors of the frequencies marlin's
// Rope computes (so Rope's division gives back the frequencies transformers uses). Like
// transformers it works in fp32 on the fp32 unscaled frequencies.
std::vector<float> llama3_freq_factors(const RopeConfig& r, const Json& rope, int original_context) {
  const float factor = float(positive(json_number(rope, "factor", kSource), "factor"));
  const float low = float(positive(json_number(rope, "low_freq_factor", kSource), "low_freq_factor"));
  const float high = float(positive(json_number(rope, "high_freq_factor", kSource), "high_freq_factor"));
  MARLIN_CHECK(high > low, "config.json: rope high_freq_factor {} is not above low_freq_factor {}", high, low);
  const float low_wavelen = float(original_context) / low;
  const float high_wavelen = float(original_context) / high;
  std::vector<float> factors;
  for (int i = 0; i < r.dim / 2; ++i) {
    const float base = float(1.0 / std::pow(double(r.theta), 2.0 * i / r.dim));  // as Rope computes it
    const float inv_freq = 1.0f / std::pow(r.theta, float(2 * i) / float(r.dim));
    const float wavelen = float(2 * std::numbers::pi) / inv_freq;
    float scaled = inv_freq;
    if (wavelen > low_wavelen) {
      scaled = inv_freq / factor;
    } else if (!(wavelen < high_wavelen)) {
      const float smooth = (float(original_context) / wavelen - low) / (high - low);
      scaled = (1 - smooth) * inv_freq / factor + smooth * inv_freq;
    }
    factors.push_back(float(double(base) / double(scaled)));
  }
  return factors;
}

double yarn_mscale(double scale, double mscale) { return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0; }

// The RoPE settings: `rope_scaling` (transformers 4.x) or `rope_parameters` (5.x); empty when neither.
Json rope_dict(const Json& j) {
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) continue;
    MARLIN_CHECK(it->is_object(), "config.json: '{}' is {}, not an object", key, it->type_name());
    if (!it->empty()) return *it;
  }
  return Json::object();
}

// `rope`: the RoPE dict, whose missing rope_theta and partial_rotary_factor come from `j`.
void read_rope(RopeConfig& r, const ModelConfig& c, const Json& rope, const Json& j) {
  r.pairing = RopePairing::kHalfSplit;
  r.theta = float(rope_number(rope, j, "rope_theta").value_or(10000.0));
  MARLIN_CHECK(std::isfinite(r.theta) && r.theta > 1.0f, "config.json: rope_theta {} is out of range", r.theta);
  const double partial = rope_number(rope, j, "partial_rotary_factor").value_or(1.0);
  MARLIN_CHECK(partial > 0 && partial <= 1, "config.json: partial_rotary_factor {} is outside (0, 1]", partial);
  r.dim = int(c.head_dim * partial);
  MARLIN_CHECK(r.dim >= 2 && r.dim % 2 == 0, "config.json: rotary dimension {} (head_dim {} x {}) is not even", r.dim,
               c.head_dim, partial);

  std::string type = "default";
  if (auto t = json_string(rope, "rope_type", kSource))
    type = *t;
  else if (auto t2 = json_string(rope, "type", kSource))
    type = *t2;
  // Phi-3 style configs keep the pretraining length beside the rope dict; it wins there.
  auto original = json_int(j, "original_max_position_embeddings", kSource);
  if (!original) original = json_int(rope, "original_max_position_embeddings", kSource);
  const int original_context = original ? int(*original) : c.context_length;
  MARLIN_CHECK(original_context >= 1 && original_context <= (1 << 24),
               "config.json: original_max_position_embeddings {} is out of range", original_context);

  if (type == "default") return;
  if (type == "linear") {
    r.scaling = RopeScaling::kLinear;
    r.factor = float(positive(json_number(rope, "factor", kSource), "factor"));
  } else if (type == "llama3") {
    r.freq_factors = llama3_freq_factors(r, rope, original_context);
  } else if (type == "yarn") {
    r.scaling = RopeScaling::kYarn;
    r.original_context = original_context;
    auto factor = json_number(rope, "factor", kSource);
    if (!factor) factor = double(c.context_length) / original_context;
    r.factor = float(positive(factor, "factor"));
    // transformers: `beta_fast or 32`, `beta_slow or 1`.
    const double fast = json_number(rope, "beta_fast", kSource).value_or(0);
    const double slow = json_number(rope, "beta_slow", kSource).value_or(0);
    r.yarn_beta_fast = float(fast != 0 ? fast : 32.0);
    r.yarn_beta_slow = float(slow != 0 ? slow : 1.0);
    MARLIN_CHECK(json_bool(rope, "truncate", kSource).value_or(true),
                 "config.json: yarn with truncate=false is not supported");
    double attention = 0;
    if (auto a = json_number(rope, "attention_factor", kSource)) {
      attention = positive(a, "attention_factor");
    } else {
      const double mscale = json_number(rope, "mscale", kSource).value_or(0);
      const double mscale_all = json_number(rope, "mscale_all_dim", kSource).value_or(0);
      attention = mscale != 0 && mscale_all != 0 ? yarn_mscale(*factor, mscale) / yarn_mscale(*factor, mscale_all)
                                                 : yarn_mscale(*factor, 1.0);
    }
    r.yarn_attn_factor = float(attention);
  } else {
    fail("config.json: rope type {} is not supported (supported: default, linear, llama3, yarn)", gguf_quote(type));
  }
}

// sqrt(hidden_size) in the weights' dtype, as transformers casts it before scaling the embeddings.
float gemma_embedding_scale(const Json& j, int d_model) {
  const float scale = std::sqrt(float(d_model));
  std::string dtype = json_string(j, "dtype", kSource).value_or("");
  if (dtype.empty()) dtype = json_string(j, "torch_dtype", kSource).value_or("");
  if (dtype == "bfloat16") return bf16_to_fp32(fp32_to_bf16(scale));
  if (dtype == "float16") return fp16_to_fp32(fp32_to_fp16(scale));
  return scale;
}

// Gemma 3 text models (Gemma3ForCausalLM), as transformers' modeling_gemma3 computes them.
// Layer types come from `layer_types`, else every sliding_window_pattern-th layer (default 6) is
// global. Global layers use the "full_attention" RoPE parameters (or rope_theta and rope_scaling),
// sliding ones "sliding_attention" (or rope_local_base_freq, default 10000, unscaled).
void read_gemma3(ModelConfig& c, const Json& j, const Json& rope) {
  const std::string act = json_string(j, "hidden_activation", kSource)
                              .value_or(json_string(j, "hidden_act", kSource).value_or("gelu_pytorch_tanh"));
  MARLIN_CHECK(act == "gelu_pytorch_tanh", "config.json: hidden_activation {} is not supported (expected {})",
               gguf_quote(act), gguf_quote("gelu_pytorch_tanh"));
  for (const char* key : {"final_logit_softcapping", "attn_logit_softcapping"}) {
    auto it = j.find(key);
    MARLIN_CHECK(it == j.end() || it->is_null(), "config.json: '{}' is not supported", key);
  }
  MARLIN_CHECK(!json_bool(j, "use_bidirectional_attention", kSource).value_or(false),
               "config.json: use_bidirectional_attention is not supported");

  const double scalar = json_number(j, "query_pre_attn_scalar", kSource).value_or(256.0);
  MARLIN_CHECK(std::isfinite(scalar) && scalar > 0, "config.json: query_pre_attn_scalar {} is not positive", scalar);
  c.attention_scale = float(1.0 / std::sqrt(scalar));
  c.embedding_scale = gemma_embedding_scale(j, c.d_model);
  c.norm_weight_offset = 1.0f;
  // marlin's own checkpoints (write_gemma3) say what their tensors need.
  if (j.contains("marlin_norm_weight_offset"))
    c.norm_weight_offset = float(json_number(j, "marlin_norm_weight_offset", kSource).value_or(1.0));
  if (j.contains("marlin_embedding_scale"))
    c.embedding_scale = positive(json_number(j, "marlin_embedding_scale", kSource), "marlin_embedding_scale");

  const int window = optional_int(j, "sliding_window", 4096, 1, 1 << 24);
  c.sliding_window.assign(size_t(c.n_layers), 0);
  if (auto it = j.find("layer_types"); it != j.end() && !it->is_null()) {
    MARLIN_CHECK(it->is_array() && int(it->size()) == c.n_layers, "config.json: 'layer_types' is not a list of {} types",
                 c.n_layers);
    for (int i = 0; i < c.n_layers; ++i) {
      const Json& t = (*it)[size_t(i)];
      MARLIN_CHECK(t == "sliding_attention" || t == "full_attention",
                   "config.json: layer type {} is not supported (sliding_attention, full_attention)", t.dump());
      if (t == "sliding_attention") c.sliding_window[size_t(i)] = window;
    }
  } else {
    const int pattern = optional_int(j, "sliding_window_pattern", 6, 1, 4096);
    for (int i = 0; i < c.n_layers; ++i)
      if ((i + 1) % pattern != 0) c.sliding_window[size_t(i)] = window;
  }

  const bool per_type = rope.contains("full_attention") || rope.contains("sliding_attention");
  auto type_dict = [&](const char* type) {
    const Json d = rope.value(type, Json::object());
    MARLIN_CHECK(d.is_object(), "config.json: rope parameters of '{}' are not an object", type);
    return d;
  };
  Json global_config = j;  // transformers' default global theta for Gemma 3 is 10^6
  if (!j.contains("rope_theta")) global_config["rope_theta"] = 1000000.0;
  read_rope(c.rope, c, per_type ? type_dict("full_attention") : rope, global_config);
  Json local_config = j;  // where the sliding layers' rope_theta comes from when their dict lacks it
  local_config["rope_theta"] = json_number(j, "rope_local_base_freq", kSource).value_or(10000.0);
  RopeConfig local;
  read_rope(local, c, per_type ? type_dict("sliding_attention") : Json::object(), local_config);
  MARLIN_CHECK(local.dim == c.rope.dim, "config.json: sliding layers rotate {} dimensions, global ones {}", local.dim,
               c.rope.dim);
  c.sliding_rope = local;
}

// Mixture-of-experts settings as transformers reads them: Mixtral (num_local_experts, every layer
// sparse, top-k weights renormalized, experts intermediate_size wide) and Qwen3-MoE (num_experts,
// moe_intermediate_size, norm_topk_prob; layer i is sparse unless listed in mlp_only_layers or
// (i + 1) is not a multiple of decoder_sparse_step).
void read_moe(ModelConfig& c, const Json& j, std::string_view model_type) {
  MoeConfig& m = c.moe;
  m.routing.scoring = RouterScoring::kSoftmax;
  if (model_type == "mixtral") {
    m.n_experts = optional_int(j, "num_local_experts", 8, 1, 4096);
    m.d_expert_ffn = c.d_ffn;
    m.routing.renormalize = true;
  } else {
    const std::string_view experts_key = j.contains("num_experts") ? "num_experts" : "num_local_experts";
    m.n_experts = optional_int(j, experts_key, 128, 0, 4096);
    m.d_expert_ffn = optional_int(j, "moe_intermediate_size", 768, 1, 1 << 20);
    m.routing.renormalize = json_bool(j, "norm_topk_prob", kSource).value_or(false);
    const int step = optional_int(j, "decoder_sparse_step", 1, 1, 4096);
    m.sparse_layers.assign(size_t(c.n_layers), m.n_experts > 0);
    for (int i = 0; i < c.n_layers; ++i)
      if ((i + 1) % step != 0) m.sparse_layers[size_t(i)] = false;
    if (auto it = j.find("mlp_only_layers"); it != j.end() && !it->is_null()) {
      MARLIN_CHECK(it->is_array(), "config.json: 'mlp_only_layers' is not a list");
      for (const Json& layer : *it) {
        MARLIN_CHECK(layer.is_number_integer() && layer.get<int64_t>() >= 0 && layer.get<int64_t>() < c.n_layers,
                     "config.json: mlp_only_layers entry {} is not a layer index below {}", layer.dump(), c.n_layers);
        m.sparse_layers[size_t(layer.get<int64_t>())] = false;
      }
    }
    MARLIN_CHECK(!json_bool(j, "attention_bias", kSource).value_or(false),
                 "config.json: Qwen3-MoE with attention_bias is not supported");
  }
  if (m.n_experts == 0) return;
  m.routing.top_k = optional_int(j, "num_experts_per_tok", model_type == "mixtral" ? 2 : 8, 1, m.n_experts);
}

// Which layers of an MLA model have a mixture-of-experts MLP: GLM's mlp_layer_types (default:
// the first dense, the others sparse), else layers from first_k_dense_replace on.
std::vector<bool> mla_sparse_layers(const ModelConfig& c, const Json& j, std::string_view family) {
  std::vector<bool> sparse(size_t(c.n_layers), false);
  if (family == "glm4moelite") {
    if (auto it = j.find("mlp_layer_types"); it != j.end() && !it->is_null()) {
      MARLIN_CHECK(it->is_array() && it->size() == size_t(c.n_layers),
                   "config.json: mlp_layer_types is not a list of {} layer types", c.n_layers);
      for (size_t i = 0; i < it->size(); ++i) {
        const Json& t = (*it)[i];
        MARLIN_CHECK(t == "dense" || t == "sparse", "config.json: mlp_layer_types[{}] is neither dense nor sparse", i);
        sparse[i] = t == "sparse";
      }
    } else {
      for (size_t i = 1; i < sparse.size(); ++i) sparse[i] = true;  // transformers' default
    }
    return sparse;
  }
  const int dense = optional_int(j, "first_k_dense_replace", family == "deepseek2" ? 0 : 3, 0, 1 << 16);
  // DeepSeek's own code also skips layers by moe_layer_freq; transformers ignores it.
  MARLIN_CHECK(optional_int(j, "moe_layer_freq", 1, 1, 1 << 16) == 1,
               "config.json: moe_layer_freq other than 1 is not supported");
  for (int i = dense; i < c.n_layers; ++i) sparse[size_t(i)] = true;
  return sparse;
}

// A string setting that must be one of `allowed` when present.
std::string one_of(const Json& j, std::string_view key, std::string_view fallback, std::string_view family,
                   std::initializer_list<std::string_view> allowed) {
  const std::string value = json_string(j, key, kSource).value_or(std::string(fallback));
  std::string names;
  for (const std::string_view a : allowed) {
    if (value == a) return value;
    names += (names.empty() ? "" : ", ") + std::string(a);
  }
  fail("config.json: {} {} is not supported for {} (supported: {})", key, gguf_quote(value), family, names);
}

// The mixture-of-experts layers of DeepSeek-V2/V3 and GLM-4.7-Flash, with transformers' defaults
// and routing: V2 softmax scores, topk_method greedy or group_limited_greedy (groups by their best
// score), no renormalization; V3 and GLM sigmoid scores chosen with e_score_correction_bias, groups
// by the sum of their two best (noaux_tc), norm_topk_prob. Routed weights are multiplied by
// routed_scaling_factor; n_shared_experts shared experts form one MLP n_shared_experts times the
// experts' width (moe.d_shared_ffn).
void read_mla_moe(ModelConfig& c, const Json& j, std::string_view family) {
  MoeConfig& m = c.moe;
  m.sparse_layers = mla_sparse_layers(c, j, family);
  if (std::none_of(m.sparse_layers.begin(), m.sparse_layers.end(), [](bool sparse) { return sparse; })) return;
  const bool v2 = family == "deepseek2", v3 = family == "deepseek3";
  // transformers' attribute_map: V2 also reads num_experts, V3 and GLM num_local_experts.
  const std::string_view alias = v2 ? "num_experts" : "num_local_experts";
  const std::string_view experts_key = !j.contains("n_routed_experts") && j.contains(alias) ? alias : "n_routed_experts";
  m.n_experts = optional_int(j, experts_key, v3 ? 256 : 64, 1, 4096);
  m.d_expert_ffn = optional_int(j, "moe_intermediate_size", v2 ? 1407 : v3 ? 2048 : 1536, 1, 1 << 20);
  MoeRouting& r = m.routing;
  r.top_k = v2 ? required_int(j, "num_experts_per_tok", 1, m.n_experts)
               : optional_int(j, "num_experts_per_tok", v3 ? 8 : 4, 1, m.n_experts);
  const double scale = json_number(j, "routed_scaling_factor", kSource).value_or(v2 ? 1.0 : v3 ? 2.5 : 1.8);
  MARLIN_CHECK(std::isfinite(scale) && scale > 0 && scale <= 1e6, "config.json: routed_scaling_factor {} is out of range",
               scale);
  r.scale = float(scale);
  // null: no shared experts (DeepSeek's code); transformers' default otherwise.
  const bool no_shared = j.contains("n_shared_experts") && j["n_shared_experts"].is_null();
  const int shared = no_shared ? 0 : optional_int(j, "n_shared_experts", v2 ? 2 : 1, 0, 64);
  m.d_shared_ffn = shared * m.d_expert_ffn;
  bool grouped = true;
  if (v2) {
    one_of(j, "scoring_func", "softmax", family, {"softmax"});
    grouped = one_of(j, "topk_method", "greedy", family, {"greedy", "group_limited_greedy"}) != "greedy";
    // transformers' DeepSeek-V2 never renormalizes; DeepSeek's own code does when this is set.
    MARLIN_CHECK(!json_bool(j, "norm_topk_prob", kSource).value_or(false),
                 "config.json: deepseek2 with norm_topk_prob is not supported");
    r.scoring = RouterScoring::kSoftmax;
    r.group_score = GroupScore::kMax;
    r.renormalize = false;
  } else {
    one_of(j, "scoring_func", "sigmoid", family, {"sigmoid"});
    one_of(j, "topk_method", "noaux_tc", family, {"noaux_tc"});
    r.scoring = RouterScoring::kSigmoid;
    r.group_score = GroupScore::kTopTwoSum;
    r.renormalize = json_bool(j, "norm_topk_prob", kSource).value_or(true);
    m.score_bias = true;
  }
  if (grouped) {
    r.n_groups = v2 ? required_int(j, "n_group", 1, m.n_experts) : optional_int(j, "n_group", v3 ? 8 : 1, 1, m.n_experts);
    r.top_groups = v2 ? required_int(j, "topk_group", 1, r.n_groups)
                      : optional_int(j, "topk_group", v3 ? 4 : 1, 1, r.n_groups);
    const int size = m.n_experts / r.n_groups;
    MARLIN_CHECK(m.n_experts % r.n_groups == 0, "config.json: {} routed experts do not split into n_group {} groups",
                 m.n_experts, r.n_groups);
    MARLIN_CHECK(r.group_score != GroupScore::kTopTwoSum || size >= 2,
                 "config.json: groups of {} expert cannot be scored by their two best", size);
    MARLIN_CHECK(r.top_k <= r.top_groups * size,
                 "config.json: num_experts_per_tok {} exceeds the {} experts of topk_group {} groups", r.top_k,
                 r.top_groups * size, r.top_groups);
  }
}

// MLA settings of DeepSeek-V2/V3 and GLM-4.7-Flash, after read_rope (head_dim is
// qk_rope_head_dim there), as transformers reads them.
void read_mla(ModelConfig& c, const Json& j, std::string_view family) {
  constexpr int64_t kMaxRank = 1 << 16;
  MlaConfig& m = c.mla;
  m.q_lora_rank = optional_int(j, "q_lora_rank", 0, 0, kMaxRank);  // null: no q compression
  m.kv_lora_rank = required_int(j, "kv_lora_rank", 1, kMaxRank);
  m.qk_nope_head_dim = required_int(j, "qk_nope_head_dim", 1, 4096);
  m.qk_rope_head_dim = c.head_dim;
  m.v_head_dim = required_int(j, "v_head_dim", 1, 4096);
  MARLIN_CHECK(!json_bool(j, "attention_bias", kSource).value_or(false),
               "config.json: {} with attention_bias is not supported", family);
  MARLIN_CHECK(c.rope.dim == c.head_dim, "config.json: MLA rotates all {} qk_rope_head_dim values, not {}", c.head_dim,
               c.rope.dim);
  // DeepSeek-V2 always pairs adjacent values (complex RoPE); V3 and GLM unless rope_interleave is false.
  const bool interleave = family == "deepseek2" || json_bool(j, "rope_interleave", kSource).value_or(true);
  c.rope.pairing = interleave ? RopePairing::kAdjacent : RopePairing::kHalfSplit;
  // Softmax scale: YaRN's mscale_all_dim correction applies to any non-default rope type.
  double scale = 1.0 / std::sqrt(double(m.qk_nope_head_dim + m.qk_rope_head_dim));
  const Json rope = rope_dict(j);
  const std::string type =
      json_string(rope, "rope_type", kSource).value_or(json_string(rope, "type", kSource).value_or("default"));
  const double mscale_all = json_number(rope, "mscale_all_dim", kSource).value_or(0);
  if (type != "default" && mscale_all != 0) {
    const double mscale = yarn_mscale(positive(json_number(rope, "factor", kSource), "factor"), mscale_all);
    scale *= mscale * mscale;
  }
  m.softmax_scale = float(scale);
  read_mla_moe(c, j, family);
}

// Gemma 3's text settings as transformers reads them: Gemma3ForConditionalGeneration's
// text_config (the top level's dtype when it has none) and Gemma3TextConfig's defaults for what a
// config leaves out (multimodal configs leave out most). nullopt when `j` needs no change.
std::optional<Json> gemma3_text_config(const Json& j) {
  static const Json kDefaults = {
      {"vocab_size", 262208},       {"hidden_size", 2304},          {"intermediate_size", 9216},
      {"num_hidden_layers", 26},    {"num_attention_heads", 8},     {"num_key_value_heads", 4},
      {"head_dim", 256},            {"max_position_embeddings", 131072}, {"rms_norm_eps", 1e-6}};
  Json text;
  if (json_string(j, "model_type", kSource) == "gemma3" ||
      (j.contains("architectures") && j["architectures"] == Json::array({"Gemma3ForConditionalGeneration"}))) {
    text = j.value("text_config", Json::object());
    MARLIN_CHECK(text.is_object(), "config.json: 'text_config' is not an object");
    text["architectures"] = Json::array({"Gemma3ForCausalLM"});
    text["model_type"] = "gemma3_text";
    for (const char* key : {"dtype", "torch_dtype", "_name_or_path"})
      if (!text.contains(key) && j.contains(key)) text[key] = j[key];
  } else if (json_string(j, "model_type", kSource) == "gemma3_text") {
    text = j;
  } else {
    return std::nullopt;
  }
  bool changed = text != j;
  for (const auto& [key, value] : kDefaults.items())
    if (!text.contains(key) || text[key].is_null()) text[key] = value, changed = true;
  if (!changed) return std::nullopt;
  return text;
}

}  // namespace

ModelConfig model_config_from_hf(const Json& j) {
  MARLIN_CHECK(j.is_object(), "config.json: the JSON is {}, not an object", j.type_name());
  if (const std::optional<Json> text = gemma3_text_config(j)) return model_config_from_hf(*text);
  const Architecture& arch = find_architecture(j);
  ModelConfig c;
  c.architecture = std::string(arch.family);
  c.name = json_string(j, "_name_or_path", kSource).value_or("");
  if (c.name.empty()) c.name = std::string(arch.hf_class);

  const bool gemma3 = arch.family == "gemma3";
  if (!gemma3) {
    const std::string act = json_string(j, "hidden_act", kSource).value_or("silu");
    MARLIN_CHECK(arch.model_type != "qwen3" || !json_bool(j, "attention_bias", kSource).value_or(false),
                 "config.json: Qwen3 with attention_bias is not supported");
    MARLIN_CHECK(act == "silu" || act == "swish", "config.json: hidden_act {} is not supported (expected silu)",
                 gguf_quote(act));
  }

  constexpr int64_t kMaxDim = 1 << 20;
  c.n_layers = required_int(j, "num_hidden_layers", 1, 4096);
  c.d_model = required_int(j, "hidden_size", 1, kMaxDim);
  c.d_ffn = required_int(j, "intermediate_size", 1, kMaxDim);
  c.n_heads = required_int(j, "num_attention_heads", 1, 4096);
  c.n_kv_heads = optional_int(j, "num_key_value_heads", c.n_heads, 1, 4096);
  MARLIN_CHECK(c.n_heads % c.n_kv_heads == 0,
               "config.json: num_attention_heads {} is not a multiple of num_key_value_heads {}", c.n_heads,
               c.n_kv_heads);
  if (is_mla_family(arch.family)) {
    c.head_dim = required_int(j, "qk_rope_head_dim", 2, 4096);  // the rotated part, as transformers has it
  } else if (json_int(j, "head_dim", kSource)) {
    c.head_dim = required_int(j, "head_dim", 1, 4096);
  } else {
    MARLIN_CHECK(c.d_model % c.n_heads == 0, "config.json: hidden_size {} is not a multiple of num_attention_heads {}",
                 c.d_model, c.n_heads);
    c.head_dim = c.d_model / c.n_heads;
  }
  c.vocab_size = required_int(j, "vocab_size", 1, 1 << 24);
  c.context_length = optional_int(j, "max_position_embeddings", arch.default_context, 1, 1 << 24);
  c.rms_eps = float(json_number(j, "rms_norm_eps", kSource).value_or(1e-6));
  MARLIN_CHECK(c.rms_eps > 0 && c.rms_eps < 1, "config.json: rms_norm_eps {} is out of range", c.rms_eps);

  const Json rope = rope_dict(j);
  if (gemma3) {
    read_gemma3(c, j, rope);
    return c;
  }
  for (const char* nested : {"full_attention", "sliding_attention"}) {
    MARLIN_CHECK(!rope.contains(nested), "config.json: per-layer-type RoPE parameters are not supported");
  }
  read_rope(c.rope, c, rope, j);
  if (arch.model_type == "mixtral" || arch.model_type == "qwen3_moe") read_moe(c, j, arch.model_type);
  if (is_mla_family(arch.family)) read_mla(c, j, arch.family);

  // Within the window, sliding-window attention is full attention: cap the context there.
  std::optional<int64_t> window;
  if (arch.model_type == "mistral") {
    window = j.contains("sliding_window") ? json_int(j, "sliding_window", kSource) : std::optional<int64_t>(4096);
  } else if (arch.model_type == "mixtral" && j.contains("sliding_window") && !j["sliding_window"].is_null()) {
    window = json_int(j, "sliding_window", kSource);
  } else if ((arch.model_type == "qwen2" || arch.model_type == "qwen3" || arch.model_type == "qwen3_moe") &&
             json_bool(j, "use_sliding_window", kSource).value_or(false)) {
    window = j.contains("sliding_window") ? json_int(j, "sliding_window", kSource) : std::optional<int64_t>(4096);
  }
  if (window) {
    MARLIN_CHECK(*window >= 1, "config.json: sliding_window {} is not positive", *window);
    if (*window < c.context_length) c.context_length = int(*window);
  }
  return c;
}

bool hf_tie_word_embeddings(const Json& j) { return json_bool(j, "tie_word_embeddings", kSource).value_or(false); }

namespace {

// Gemma 3's fields (config read back by read_gemma3). The norm weight offset and the embedding
// scale go in marlin's own keys: a GGUF source stores norms as 1 + w (offset 0), which Gemma's
// config.json form would read as 2 + w.
void write_gemma3(const ModelConfig& c, Json& j) {
  j.erase("hidden_act");
  j["hidden_activation"] = "gelu_pytorch_tanh";
  j["query_pre_attn_scalar"] = 1.0 / (double(c.query_scale()) * double(c.query_scale()));
  int window = 0;
  Json types = Json::array();
  for (int i = 0; i < c.n_layers; ++i) {
    const int w = c.window(i);
    MARLIN_CHECK(w == 0 || window == 0 || w == window, "config.json: Gemma 3 layers with windows {} and {}", window, w);
    if (w > 0) window = w;
    types.push_back(w > 0 ? "sliding_attention" : "full_attention");
  }
  j["layer_types"] = types;
  if (window > 0) j["sliding_window"] = window;
  const RopeConfig& local = c.sliding_rope ? *c.sliding_rope : c.rope;
  MARLIN_CHECK(local.scaling == RopeScaling::kNone && local.dim == c.rope.dim && local.pairing == c.rope.pairing,
               "config.json: Gemma 3's sliding layers differ from its global ones beyond rope theta");
  j["rope_local_base_freq"] = double(local.theta);
  j["marlin_norm_weight_offset"] = double(c.norm_weight_offset);
  j["marlin_embedding_scale"] = double(c.embedding_scale);
}

}  // namespace

Json hf_config_from_model_config(const ModelConfig& c) {
  const Architecture* arch = nullptr;
  for (const auto& a : kArchitectures)
    if (!arch && a.family == c.architecture) arch = &a;
  MARLIN_CHECK(arch != nullptr && !is_mla_family(arch->family),
               "config.json: architecture '{}' has no Hugging Face form here", c.architecture);
  MARLIN_CHECK(c.rope.freq_factors.empty(),
               "config.json: RoPE frequency factors cannot be written as config.json fields");
  const MoeRouting& r = c.moe.routing;
  const bool plain_routing = r.scoring == RouterScoring::kSoftmax && r.n_groups == 1 && r.scale == 1.0f &&
                             r.n_shared == 0 && !c.moe.score_bias && c.moe.d_shared_ffn == 0;
  const bool mixtral = c.architecture == "llama" && c.moe.n_experts > 0;
  const bool qwen3_moe = c.architecture == "qwen3moe";
  MARLIN_CHECK(c.moe.n_experts == 0 || (mixtral && plain_routing && c.moe.sparse_layers.empty() && r.renormalize &&
                                        c.moe.d_expert_ffn == c.d_ffn) ||
                   (qwen3_moe && plain_routing),
               "config.json: this mixture-of-experts model has no Hugging Face form here yet");
  Json j = {
      {"architectures", {arch->hf_class}},
      {"model_type", arch->model_type},
      {"_name_or_path", c.name},
      {"hidden_act", "silu"},
      {"hidden_size", c.d_model},
      {"intermediate_size", c.d_ffn},
      {"num_hidden_layers", c.n_layers},
      {"num_attention_heads", c.n_heads},
      {"num_key_value_heads", c.n_kv_heads},
      {"head_dim", c.head_dim},
      {"vocab_size", c.vocab_size},
      {"max_position_embeddings", c.context_length},
      {"rms_norm_eps", double(c.rms_eps)},
      {"rope_theta", double(c.rope.theta)},
  };
  if (mixtral) {
    j["architectures"] = {"MixtralForCausalLM"};
    j["model_type"] = "mixtral";
    j["num_local_experts"] = c.moe.n_experts;
    j["num_experts_per_tok"] = c.moe.routing.top_k;
  }
  if (qwen3_moe) {
    j["num_experts"] = c.moe.n_experts;
    j["num_experts_per_tok"] = r.top_k;
    j["moe_intermediate_size"] = c.moe.d_expert_ffn;
    j["norm_topk_prob"] = r.renormalize;
    j["decoder_sparse_step"] = 1;
    Json dense = Json::array();
    for (int i = 0; i < c.n_layers; ++i)
      if (!c.moe.sparse(i)) dense.push_back(i);
    j["mlp_only_layers"] = dense;
  }
  if (c.architecture == "gemma3") write_gemma3(c, j);
  if (c.rope.dim != c.head_dim) {
    // Readers truncate head_dim × factor; keep the product from landing just below dim.
    double partial = double(c.rope.dim) / c.head_dim;
    if (int(c.head_dim * partial) != c.rope.dim) partial = (c.rope.dim + 0.5) / c.head_dim;
    j["partial_rotary_factor"] = partial;
  }
  if (c.rope.scaling == RopeScaling::kLinear) {
    j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", double(c.rope.factor)}};
  } else if (c.rope.scaling == RopeScaling::kYarn) {
    j["rope_scaling"] = {{"rope_type", "yarn"},
                         {"factor", double(c.rope.factor)},
                         {"original_max_position_embeddings", c.rope.original_context},
                         {"beta_fast", double(c.rope.yarn_beta_fast)},
                         {"beta_slow", double(c.rope.yarn_beta_slow)}};
    if (c.rope.yarn_attn_factor > 0) j["rope_scaling"]["attention_factor"] = double(c.rope.yarn_attn_factor);
  }
  return j;
}

}  // namespace marlin
