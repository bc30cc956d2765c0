#include "model/config.h"

#include <cmath>
#include <variant>

#include "core/error.h"
#include "formats/gguf.h"

namespace marlin {
namespace {

int require_int(const GgufFile& file, const std::string& key, int64_t low, int64_t high) {
  auto value = file.get_int(key);
  MARLIN_CHECK(value.has_value(), "model: metadata key '{}' is missing", key);
  MARLIN_CHECK(*value >= low && *value <= high, "model: '{}' = {} is outside [{}, {}]", key, *value, low,
               high);
  return int(*value);
}

int optional_int(const GgufFile& file, const std::string& key, int fallback, int64_t low, int64_t high) {
  if (!file.find(key)) return fallback;
  return require_int(file, key, low, high);
}

float optional_float(const GgufFile& file, const std::string& key, float fallback) {
  auto value = file.get_float(key);
  return value ? float(*value) : fallback;
}

// Gemma 3 as llama.cpp runs it: every sliding_window_pattern-th layer (default 6) attends to the
// whole context with the file's RoPE, the others to a window with theta 10000; embeddings are
// scaled by sqrt(d_model); query scale 1/sqrt(head_dim), except the 27B model (62 layers), which
// scales by 1/sqrt(d_model / n_heads) (its query_pre_attn_scalar, which GGUF does not store).
void read_gemma3(const GgufFile& file, const std::string& a, ModelConfig& c) {
  c.embedding_scale = std::sqrt(float(c.d_model));
  if (c.n_layers == 62) c.attention_scale = 1.0f / std::sqrt(float(c.d_model / c.n_heads));
  const int window = optional_int(file, a + "attention.sliding_window", 0, 0, 1 << 24);
  if (window == 0) return;
  const int pattern = optional_int(file, a + "attention.sliding_window_pattern", 6, 1, 4096);
  c.sliding_window.resize(size_t(c.n_layers));
  for (int i = 0; i < c.n_layers; ++i) c.sliding_window[size_t(i)] = (i + 1) % pattern != 0 ? window : 0;
  RopeConfig local;
  local.theta = optional_float(file, a + "rope.freq_base_swa", 10000.0f);
  MARLIN_CHECK(local.theta > 1.0f, "model: rope.freq_base_swa {} is out of range", local.theta);
  local.dim = c.rope.dim;
  local.pairing = c.rope.pairing;
  c.sliding_rope = local;
}

RopeScaling parse_scaling(const std::string& type) {
  if (type.empty() || type == "none") return RopeScaling::kNone;
  if (type == "linear") return RopeScaling::kLinear;
  if (type == "yarn") return RopeScaling::kYarn;
  fail("model: unsupported rope scaling type '{}'", type);
}

// --- DeepSeek-V2/V3 and GLM-4.7-Flash: llama.cpp's "deepseek2" files -------------------------

// Multi-head latent attention's sizes. llama.cpp's converter writes the heads as one MQA head
// over the compressed cache (head_count_kv 1, key_length kv_lora_rank + rope, value_length
// kv_lora_rank) and the per-head sizes as key_length_mla / value_length_mla; files written before
// those keys existed hold the per-head sizes in key_length / value_length.
void read_mla_dims(const GgufFile& file, const std::string& a, ModelConfig& c) {
  constexpr int64_t kMaxRank = 1 << 16;
  MlaConfig& m = c.mla;
  m.q_lora_rank = optional_int(file, a + "attention.q_lora_rank", 0, 0, kMaxRank);  // absent: plain q_proj
  m.kv_lora_rank = require_int(file, a + "attention.kv_lora_rank", 1, kMaxRank);
  m.qk_rope_head_dim = require_int(file, a + "rope.dimension_count", 2, 4096);
  MARLIN_CHECK(m.qk_rope_head_dim % 2 == 0, "model: rope.dimension_count {} is odd", m.qk_rope_head_dim);
  int key = 0;
  if (file.find(a + "attention.key_length_mla")) {
    key = require_int(file, a + "attention.key_length_mla", 1, 8192);
    m.v_head_dim = require_int(file, a + "attention.value_length_mla", 1, 8192);
    const int cache_key = optional_int(file, a + "attention.key_length", m.kv_lora_rank + m.qk_rope_head_dim, 1, 1 << 20);
    const int cache_value = optional_int(file, a + "attention.value_length", m.kv_lora_rank, 1, 1 << 20);
    MARLIN_CHECK(cache_key == m.kv_lora_rank + m.qk_rope_head_dim && cache_value == m.kv_lora_rank,
                 "model: MLA key_length {} / value_length {} are not kv_lora_rank + rope ({}) / kv_lora_rank ({})",
                 cache_key, cache_value, m.kv_lora_rank + m.qk_rope_head_dim, m.kv_lora_rank);
  } else {
    key = require_int(file, a + "attention.key_length", 1, 8192);
    m.v_head_dim = require_int(file, a + "attention.value_length", 1, 8192);
  }
  MARLIN_CHECK(key > m.qk_rope_head_dim, "model: MLA key length {} leaves no room beside {} rotated values", key,
               m.qk_rope_head_dim);
  m.qk_nope_head_dim = key - m.qk_rope_head_dim;
  c.head_dim = m.qk_rope_head_dim;  // as config.json's MLA families have it
  c.n_kv_heads = c.n_heads;         // every head reads the shared latent
}

// The vocabulary size of a file without <arch>.vocab_size: its token list's length (0: none).
int64_t token_count(const GgufFile& file) {
  const GgufValue* tokens = file.find("tokenizer.ggml.tokens");
  const auto* list = tokens ? std::get_if<GgufArray>(&tokens->value) : nullptr;
  return list ? int64_t(list->items.size()) : 0;
}

// GLM-4.7-Flash: GLM's tokenizer, or llama.cpp's test for files without one (47 layers and the MTP
// block, 154880 tokens).
bool is_glm(const GgufFile& file, const ModelConfig& c) {
  const int64_t vocab = c.vocab_size > 0 ? c.vocab_size : token_count(file);
  return file.get_string("tokenizer.ggml.pre").value_or("") == "glm4" ||
         ((c.n_layers == 47 || c.n_layers == 48) && vocab == 154880);
}

// The routed experts, as transformers routes DeepSeek-V2 (softmax; groups scored by their best
// expert) and V3 / GLM-4.7-Flash (sigmoid; groups by their two best, a score bias when the file
// has exp_probs_b tensors, which the source checks). The first leading_dense_block_count layers
// are dense; the shared experts form one MLP of n_shared · expert_feed_forward_length.
void read_mla_experts(const GgufFile& file, const std::string& a, ModelConfig& c) {
  MoeConfig& m = c.moe;
  m.n_experts = optional_int(file, a + "expert_count", 0, 0, 4096);
  if (m.n_experts == 0) return;
  MoeRouting& r = m.routing;
  r.top_k = require_int(file, a + "expert_used_count", 1, m.n_experts);
  m.d_expert_ffn = require_int(file, a + "expert_feed_forward_length", 1, 1 << 20);
  m.d_shared_ffn = optional_int(file, a + "expert_shared_count", 0, 0, 256) * m.d_expert_ffn;
  r.renormalize = file.get_bool(a + "expert_weights_norm").value_or(false);
  r.scale = optional_float(file, a + "expert_weights_scale", 1.0f);
  MARLIN_CHECK(std::isfinite(r.scale) && r.scale > 0 && r.scale <= 1e4f, "model: expert_weights_scale {} is out of range",
               r.scale);
  // 1 softmax, 2 sigmoid. Without the key (GLM-4.7-Flash's config.json names no scoring function,
  // so its files have none): sigmoid for GLM, whose router always is, else softmax (DeepSeek-V2).
  int gating = optional_int(file, a + "expert_gating_func", 0, 0, 3);
  MARLIN_CHECK(gating != 3, "model: expert_gating_func 3 (sqrt-softplus) is not supported");
  if (gating == 0) gating = is_glm(file, c) ? 2 : 1;
  r.scoring = gating == 2 ? RouterScoring::kSigmoid : RouterScoring::kSoftmax;
  r.group_score = gating == 2 ? GroupScore::kTopTwoSum : GroupScore::kMax;
  r.n_groups = optional_int(file, a + "expert_group_count", 1, 1, m.n_experts);
  r.top_groups = r.n_groups == 1 ? 1 : require_int(file, a + "expert_group_used_count", 1, r.n_groups);
  MARLIN_CHECK(m.n_experts % r.n_groups == 0, "model: expert_count {} does not split into expert_group_count {}",
               m.n_experts, r.n_groups);
  MARLIN_CHECK(r.top_k <= r.top_groups * (m.n_experts / r.n_groups),
               "model: expert_used_count {} exceeds the experts of {} groups of {}", r.top_k, r.top_groups,
               m.n_experts / r.n_groups);
  MARLIN_CHECK(r.group_score != GroupScore::kTopTwoSum || r.n_groups == 1 || m.n_experts / r.n_groups >= 2,
               "model: expert groups of one expert have no two best scores");
  const int dense = optional_int(file, a + "leading_dense_block_count", 0, 0, c.n_layers);
  m.sparse_layers.assign(size_t(c.n_layers), false);
  for (int i = dense; i < c.n_layers; ++i) m.sparse_layers[size_t(i)] = true;
}

// After the RoPE keys: llama.cpp rotates deepseek2 in adjacent pairs and its converter stores q/k
// rows as Hugging Face does, which is right for DeepSeek and GLM checkpoints with
// rope_interleave (the default; a checkpoint without it cannot be told apart in GGUF).
// With scaling, the softmax scale gains mscale(factor, mscale_all_dim)², where
// rope.scaling.yarn_log_multiplier = 0.1 · mscale_all_dim; YaRN's cos/sin factor is 1
// (DeepSeek's mscale = mscale_all_dim) unless the file names one.
void read_mla_rest(const GgufFile& file, const std::string& a, ModelConfig& c) {
  RopeConfig& r = c.rope;
  MlaConfig& m = c.mla;
  r.pairing = RopePairing::kAdjacent;
  double scale = 1.0 / std::sqrt(double(m.qk_nope_head_dim + m.qk_rope_head_dim));
  if (r.scaling != RopeScaling::kNone) {
    const float log_mul = optional_float(file, a + "rope.scaling.yarn_log_multiplier", 0.0f);
    MARLIN_CHECK(log_mul >= 0 && log_mul <= 10, "model: rope.scaling.yarn_log_multiplier {} is out of range", log_mul);
    const double mscale = 1.0 + double(log_mul) * std::log(double(r.factor));
    scale *= mscale * mscale;
  }
  if (r.scaling == RopeScaling::kYarn && !file.find(a + "rope.scaling.yarn_attn_factor")) r.yarn_attn_factor = 1.0f;
  m.softmax_scale = float(scale);
  read_mla_experts(file, a, c);
  // The family only names the model (every rule is in the config).
  if (is_glm(file, c))
    c.architecture = "glm4moelite";
  else if (c.moe.routing.scoring == RouterScoring::kSigmoid)
    c.architecture = "deepseek3";
}

}  // namespace

ModelConfig model_config_from_gguf(const GgufFile& file) {
  ModelConfig c;
  c.architecture = file.get_string("general.architecture").value_or("");
  MARLIN_CHECK(!c.architecture.empty(), "model: metadata key 'general.architecture' is missing");
  c.name = file.get_string("general.name").value_or(c.architecture);
  const std::string a = c.architecture + ".";

  constexpr int64_t kMaxDim = 1 << 20;
  c.n_layers = require_int(file, a + "block_count", 1, 4096);
  // GLM-4.7-Flash files append their multi-token-prediction block(s) to the decoder's blocks.
  const int nextn = optional_int(file, a + "nextn_predict_layers", 0, 0, c.n_layers - 1);
  c.n_layers -= nextn;
  c.d_model = require_int(file, a + "embedding_length", 1, kMaxDim);
  c.d_ffn = require_int(file, a + "feed_forward_length", 1, kMaxDim);
  c.n_heads = require_int(file, a + "attention.head_count", 1, 4096);
  c.n_kv_heads = optional_int(file, a + "attention.head_count_kv", c.n_heads, 1, 4096);
  MARLIN_CHECK(c.n_heads % c.n_kv_heads == 0, "model: head_count {} is not a multiple of head_count_kv {}",
               c.n_heads, c.n_kv_heads);
  const bool mla = c.architecture == "deepseek2";
  if (mla) {
    read_mla_dims(file, a, c);
  } else {
    MARLIN_CHECK(c.d_model % c.n_heads == 0 || file.find(a + "attention.key_length"),
                 "model: embedding_length {} is not a multiple of head_count {}", c.d_model, c.n_heads);
    c.head_dim = optional_int(file, a + "attention.key_length", c.d_model / c.n_heads, 1, 4096);
    const int value_dim = optional_int(file, a + "attention.value_length", c.head_dim, 1, 4096);
    MARLIN_CHECK(value_dim == c.head_dim, "model: value_length {} differs from key_length {} (unsupported)",
                 value_dim, c.head_dim);
  }
  c.context_length = optional_int(file, a + "context_length", 4096, 1, 1 << 24);
  c.rms_eps = optional_float(file, a + "attention.layer_norm_rms_epsilon", 1e-5f);
  MARLIN_CHECK(c.rms_eps > 0 && c.rms_eps < 1, "model: rms epsilon {} is out of range", c.rms_eps);
  c.vocab_size = optional_int(file, a + "vocab_size", 0, 0, 1 << 24);
  if (const GgufTensorInfo* t = file.find_tensor("token_embd.weight"); c.vocab_size == 0 && t && t->shape.size() == 2) {
    // Files without the key (Gemma 3): the embedding table's rows.
    MARLIN_CHECK(t->shape[1] >= 1 && t->shape[1] <= (1u << 24), "model: token_embd.weight has {} rows", t->shape[1]);
    c.vocab_size = int(t->shape[1]);
  }

  // Mixture of experts (llama.cpp's keys): Mixtral is a "llama" file with experts.
  MoeConfig& m = c.moe;
  m.n_experts = optional_int(file, a + "expert_count", 0, 0, 4096);
  if (m.n_experts > 0 && !mla) {
    m.routing.top_k = require_int(file, a + "expert_used_count", 1, m.n_experts);
    m.d_expert_ffn = optional_int(file, a + "expert_feed_forward_length", c.d_ffn, 1, kMaxDim);
    m.routing.renormalize = file.get_bool(a + "expert_weights_norm").value_or(true);
    const int gating = optional_int(file, a + "expert_gating_func", 1, 1, 2);  // 1 softmax, 2 sigmoid
    m.routing.scoring = gating == 2 ? RouterScoring::kSigmoid : RouterScoring::kSoftmax;
  }

  RopeConfig& r = c.rope;
  // llama.cpp's converter permutes Llama's Q/K rows so that RoPE pairs are adjacent; the other
  // families keep Hugging Face's order (llama.cpp's "NEOX" rotation).
  r.pairing = c.architecture == "llama" ? RopePairing::kAdjacent : RopePairing::kHalfSplit;
  r.theta = optional_float(file, a + "rope.freq_base", 10000.0f);
  MARLIN_CHECK(r.theta > 1.0f, "model: rope.freq_base {} is out of range", r.theta);
  r.dim = optional_int(file, a + "rope.dimension_count", c.head_dim, 2, c.head_dim);
  MARLIN_CHECK(r.dim % 2 == 0, "model: rope.dimension_count {} is odd", r.dim);
  r.scaling = parse_scaling(file.get_string(a + "rope.scaling.type").value_or(""));
  if (r.scaling != RopeScaling::kNone) {
    r.factor = optional_float(file, a + "rope.scaling.factor", 1.0f);
    MARLIN_CHECK(r.factor >= 1.0f && r.factor <= 1024.0f, "model: rope.scaling.factor {} is out of range",
                 r.factor);
  }
  if (r.scaling == RopeScaling::kYarn) {
    r.original_context = require_int(file, a + "rope.scaling.original_context_length", 1, 1 << 24);
    r.yarn_beta_fast = optional_float(file, a + "rope.scaling.yarn_beta_fast", 32.0f);
    r.yarn_beta_slow = optional_float(file, a + "rope.scaling.yarn_beta_slow", 1.0f);
    r.yarn_attn_factor = optional_float(file, a + "rope.scaling.yarn_attn_factor", 0.0f);
  }
  if (c.architecture == "gemma3") read_gemma3(file, a, c);
  if (mla) read_mla_rest(file, a, c);
  return c;
}

}  // namespace marlin
