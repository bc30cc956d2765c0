// ModelConfig from a Hugging Face config.json, for the Llama family: LlamaForCausalLM,
// MistralForCausalLM and Qwen2ForCausalLM ("llama", "mistral", "qwen2" model types), and
// Gemma3ForCausalLM ("gemma3_text": per-layer sliding windows and RoPE, query_pre_attn_scalar,
// embeddings scaled by sqrt(hidden_size) in the weights' dtype, norm weights applied as 1 + w).
//
// Fields read as transformers reads them: head_dim (or hidden_size / num_attention_heads),
// num_key_value_heads (default: num_attention_heads), partial_rotary_factor, and RoPE settings
// from `rope_scaling` (transformers 4.x) or `rope_parameters` (5.x) with `rope_theta` inside or
// beside it: "default", "linear", "llama3" (frequency factors computed as transformers computes
// the scaled frequencies) and "yarn" (factor, original_max_position_embeddings, beta_fast/slow,
// attention_factor or mscale/mscale_all_dim). A sliding window smaller than the context (Mistral
// v0.1, Qwen2 with use_sliding_window) caps context_length at the window, where full attention
// and windowed attention agree. Hugging Face Q/K rows pair i with i + dim/2 (kHalfSplit).
//
// Multi-head latent attention models — DeepseekV2ForCausalLM, DeepseekV3ForCausalLM and
// Glm4MoeLiteForCausalLM (GLM-4.7-Flash) — fill ModelConfig::mla (head_dim is qk_rope_head_dim,
// RoPE pairs adjacent values unless rope_interleave is false; the softmax scale takes YaRN's
// mscale_all_dim correction) and ModelConfig::moe: sparse layers (first_k_dense_replace, GLM's
// mlp_layer_types), experts, and routing — V2 softmax with topk_method greedy or
// group_limited_greedy, V3/GLM sigmoid with e_score_correction_bias and groups by their two best
// (noaux_tc), routed_scaling_factor, norm_topk_prob (V3/GLM), n_shared_experts as d_shared_ffn —
// with transformers' defaults, refusing what transformers would not compute the same way. Their
// families are "deepseek2", "deepseek3" and "glm4moelite", and they have no config.json form from
// hf_config_from_model_config.
//
// The architecture comes out in GGUF's naming: "llama" for Llama and Mistral, "qwen2" for Qwen2
// (q/k/v biases), "gemma3" for Gemma 3. Anything else is a marlin::Error naming the architecture.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "model/config.h"

namespace marlin {

ModelConfig model_config_from_hf(const nlohmann::json& config_json);

// A config.json object describing `config` (for checkpoints made from sources without one, such
// as GGUF files): model_config_from_hf of the result gives back the same hyper-parameters, RoPE
// pairing excepted (a .marlin checkpoint records that separately). Llama-3 frequency factors
// have no config.json form and are rejected, as are Gemma 3 models (not written yet).
nlohmann::json hf_config_from_model_config(const ModelConfig& config);

// tie_word_embeddings as the config states it (default false for these architectures).
bool hf_tie_word_embeddings(const nlohmann::json& config_json);

}  // namespace marlin
