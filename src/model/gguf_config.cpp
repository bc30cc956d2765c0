#include "model/config.h"

#include <cmath>

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

}  // namespace

ModelConfig model_config_from_gguf(const GgufFile& file) {
  ModelConfig c;
  c.architecture = file.get_string("general.architecture").value_or("");
  MARLIN_CHECK(!c.architecture.empty(), "model: metadata key 'general.architecture' is missing");
  c.name = file.get_string("general.name").value_or(c.architecture);
  const std::string a = c.architecture + ".";

  constexpr int64_t kMaxDim = 1 << 20;
  c.n_layers = require_int(file, a + "block_count", 1, 4096);
  c.d_model = require_int(file, a + "embedding_length", 1, kMaxDim);
  c.d_ffn = require_int(file, a + "feed_forward_length", 1, kMaxDim);
  c.n_heads = require_int(file, a + "attention.head_count", 1, 4096);
  c.n_kv_heads = optional_int(file, a + "attention.head_count_kv", c.n_heads, 1, 4096);
  MARLIN_CHECK(c.n_heads % c.n_kv_heads == 0, "model: head_count {} is not a multiple of head_count_kv {}",
               c.n_heads, c.n_kv_heads);
  MARLIN_CHECK(c.d_model % c.n_heads == 0 || file.find(a + "attention.key_length"),
               "model: embedding_length {} is not a multiple of head_count {}", c.d_model, c.n_heads);
  c.head_dim = optional_int(file, a + "attention.key_length", c.d_model / c.n_heads, 1, 4096);
  const int value_dim = optional_int(file, a + "attention.value_length", c.head_dim, 1, 4096);
  MARLIN_CHECK(value_dim == c.head_dim, "model: value_length {} differs from key_length {} (unsupported)",
               value_dim, c.head_dim);
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
  if (m.n_experts > 0) {
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
  return c;
}

}  // namespace marlin
