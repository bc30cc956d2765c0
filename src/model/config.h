// Hyper-parameters of a Llama-family decoder and its variations (Gemma 3); sources fill them from
// GGUF metadata or config.json.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace marlin {

class GgufFile;

enum class RopeScaling { kNone, kLinear, kYarn };

// Which elements RoPE rotates together: GGUF Llama files store Q/K permuted so that pairs are
// adjacent (2i, 2i+1); Hugging Face and NeoX-style models pair i with i + dim/2.
enum class RopePairing { kAdjacent, kHalfSplit };

struct RopeConfig {
  float theta = 10000.0f;
  int dim = 0;  // rotated dimensions per head (<= head_dim)
  RopePairing pairing = RopePairing::kAdjacent;
  RopeScaling scaling = RopeScaling::kNone;
  float factor = 1.0f;                // linear / YaRN scaling factor
  int original_context = 0;           // YaRN: context the model was trained with
  float yarn_beta_fast = 32.0f;
  float yarn_beta_slow = 1.0f;
  float yarn_attn_factor = 0.0f;      // 0: the default 0.1·ln(factor) + 1
  std::vector<float> freq_factors;    // Llama-3 style per-frequency divisors (rope_freqs.weight)
};

// How a sparse MLP picks its experts for a token from the router's logits (one per expert).
enum class RouterScoring {
  kSoftmax,  // probabilities = softmax(logits) over all experts (Mixtral, Qwen-MoE, DeepSeek-V2)
  kSigmoid,  // scores = sigmoid(logits), each on its own (DeepSeek-V3, GLM-4.7-Flash)
};

// How a group of experts is scored when routing is limited to the best groups.
enum class GroupScore {
  kMax,        // the group's highest choice score (DeepSeek-V2 group_limited_greedy)
  kTopTwoSum,  // the sum of its two highest choice scores (DeepSeek-V3, GLM)
};

// The full rule is Backend::moe's. Defaults describe Mixtral.
struct MoeRouting {
  int top_k = 0;             // experts per token
  bool renormalize = false;  // divide the chosen experts' weights by their sum
  RouterScoring scoring = RouterScoring::kSoftmax;
  // Group-limited routing: the routed experts split into n_groups equal consecutive groups and
  // only the top_groups best groups (by group_score) may be chosen. n_groups = 1: no limit.
  int n_groups = 1;
  int top_groups = 1;
  GroupScore group_score = GroupScore::kMax;
  float scale = 1.0f;  // routed_scaling_factor: the chosen weights are multiplied by it last
  // Shared experts held with the routed ones (the last n_shared of a layer's experts): run for
  // every token with weight 1. Set by the architecture when its shared MLP has the experts'
  // width (DeepSeek-V3, GLM); a wider one runs as a dense MLP beside the sparse one.
  int n_shared = 0;
};

// Mixture-of-experts hyper-parameters; n_experts = 0 for a dense model.
struct MoeConfig {
  int n_experts = 0;  // routed experts (the router's outputs); shared ones are routing.n_shared
  int d_expert_ffn = 0;  // hidden width of each expert's SwiGLU MLP
  MoeRouting routing;
  // Per layer: true where the MLP is sparse (the others are dense MLPs of width d_ffn). Empty
  // means every layer is sparse.
  std::vector<bool> sparse_layers;
  // Each router has an e_score_correction_bias (added to the scores for choosing only).
  bool score_bias = false;
  // Width of each sparse layer's shared-experts SwiGLU MLP (n_shared_experts · d_expert_ffn);
  // 0: none.
  int d_shared_ffn = 0;

  bool sparse(int layer) const {
    return n_experts > 0 && (sparse_layers.empty() || sparse_layers[size_t(layer)]);
  }
};

// Multi-head latent attention (DeepSeek-V2/V3, GLM-4.7-Flash): keys and values of every head come
// from a per-token latent of kv_lora_rank values (kv_b_proj's up-projection), plus one RoPE key of
// qk_rope_head_dim values shared by the heads; the cache holds only those two.
struct MlaConfig {
  int q_lora_rank = 0;       // 0: q_proj straight from the hidden state; else q_a_proj → norm → q_b_proj
  int kv_lora_rank = 0;      // 0: not MLA
  int qk_nope_head_dim = 0;  // per head: query/key values without position
  int qk_rope_head_dim = 0;  // per head: rotated values (ModelConfig::head_dim and rope.dim)
  int v_head_dim = 0;
  float softmax_scale = 0;   // (qk_nope + qk_rope)^-1/2, times YaRN's mscale(factor, mscale_all_dim)²
  bool enabled() const { return kv_lora_rank > 0; }
};

struct ModelConfig {
  std::string architecture;
  std::string name;
  int n_layers = 0;
  int d_model = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int d_ffn = 0;
  int vocab_size = 0;
  int context_length = 0;
  float rms_eps = 1e-5f;
  RopeConfig rope;
  MoeConfig moe;
  MlaConfig mla;

  // Variations of the Llama block (Gemma and others); the defaults describe Llama.
  float attention_scale = 0.0f;     // of query·key scores; 0: 1/sqrt(head_dim)
  float embedding_scale = 1.0f;     // token embeddings are multiplied by this
  // Added to every RMSNorm weight on loading: Gemma checkpoints store w and compute x·(1 + w),
  // GGUF files store 1 + w already.
  float norm_weight_offset = 0.0f;
  // Per layer: a query at position p attends to keys (p - window, p] (0: every earlier key).
  // Empty: every layer attends to the whole context.
  std::vector<int> sliding_window;
  // RoPE of the layers with a sliding window, when it differs from `rope` (Gemma 3: a lower
  // theta, no scaling); same rotary dimension and pairing.
  std::optional<RopeConfig> sliding_rope;

  int window(int layer) const { return sliding_window.empty() ? 0 : sliding_window[size_t(layer)]; }
  const RopeConfig& rope_of(int layer) const { return sliding_rope && window(layer) > 0 ? *sliding_rope : rope; }
  float query_scale() const { return attention_scale > 0 ? attention_scale : 1.0f / std::sqrt(float(head_dim)); }
};

// From GGUF metadata (the `<arch>.*` keys); throws marlin::Error naming a missing or
// inconsistent key. GGUF Llama files store Q/K rows for adjacent-pair RoPE, other families
// (qwen2, qwen3, gemma3, ...) for half-split pairs.
ModelConfig model_config_from_gguf(const GgufFile& file);

}  // namespace marlin
