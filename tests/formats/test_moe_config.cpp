// Mixture-of-experts fields of config.json (MixtralForCausalLM, Qwen3MoeForCausalLM,
// DeepseekV2/V3ForCausalLM, Glm4MoeLiteForCausalLM), read as transformers reads them (its
// defaults, and each family's rule for which layers are sparse and how tokens are routed).
#include <gtest/gtest.h>

#include "core/error.h"
#include "formats/hf_config.h"

namespace marlin {
namespace {

using Json = nlohmann::json;

Json base(const char* hf_class, const char* model_type) {
  return {{"architectures", {hf_class}}, {"model_type", model_type}, {"hidden_size", 64},
          {"intermediate_size", 96},      {"num_hidden_layers", 4},    {"num_attention_heads", 4},
          {"vocab_size", 128}};
}

TEST(MoeConfig, MixtralDefaults) {
  const ModelConfig c = model_config_from_hf(base("MixtralForCausalLM", "mixtral"));
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.moe.n_experts, 8);
  EXPECT_EQ(c.moe.routing.top_k, 2);
  EXPECT_TRUE(c.moe.routing.renormalize);
  EXPECT_EQ(c.moe.routing.scoring, RouterScoring::kSoftmax);
  EXPECT_EQ(c.moe.d_expert_ffn, 96);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(c.moe.sparse(i));
  EXPECT_EQ(c.context_length, 4096 * 32);  // no sliding window unless one is given

  Json j = base("MixtralForCausalLM", "mixtral");
  j["num_local_experts"] = 4;
  j["num_experts_per_tok"] = 3;
  j["sliding_window"] = 1024;
  const ModelConfig d = model_config_from_hf(j);
  EXPECT_EQ(d.moe.n_experts, 4);
  EXPECT_EQ(d.moe.routing.top_k, 3);
  EXPECT_EQ(d.context_length, 1024);
  // Written back (a GGUF Mixtral exported as a checkpoint), it reads the same.
  const ModelConfig back = model_config_from_hf(hf_config_from_model_config(d));
  EXPECT_EQ(back.moe.n_experts, 4);
  EXPECT_EQ(back.moe.routing.top_k, 3);
  EXPECT_TRUE(back.moe.routing.renormalize);
  EXPECT_EQ(back.moe.d_expert_ffn, 96);
}

TEST(MoeConfig, Qwen3MoeSparseLayers) {
  Json j = base("Qwen3MoeForCausalLM", "qwen3_moe");
  j["num_experts"] = 16;
  j["num_experts_per_tok"] = 4;
  j["moe_intermediate_size"] = 32;
  j["norm_topk_prob"] = true;
  j["decoder_sparse_step"] = 2;
  j["mlp_only_layers"] = Json::array({3});
  const ModelConfig c = model_config_from_hf(j);
  EXPECT_EQ(c.architecture, "qwen3moe");
  EXPECT_EQ(c.moe.n_experts, 16);
  EXPECT_EQ(c.moe.routing.top_k, 4);
  EXPECT_TRUE(c.moe.routing.renormalize);
  EXPECT_EQ(c.moe.d_expert_ffn, 32);
  EXPECT_EQ(c.d_ffn, 96);
  // Layer i is sparse when (i + 1) % step == 0 and i is not in mlp_only_layers.
  EXPECT_EQ(c.moe.sparse_layers, (std::vector<bool>{false, true, false, false}));

  Json defaults = base("Qwen3MoeForCausalLM", "qwen3_moe");
  defaults["num_local_experts"] = 8;  // transformers 5 writes this name
  const ModelConfig d = model_config_from_hf(defaults);
  EXPECT_EQ(d.moe.n_experts, 8);
  EXPECT_EQ(d.moe.routing.top_k, 8);
  EXPECT_FALSE(d.moe.routing.renormalize);
  EXPECT_EQ(d.moe.d_expert_ffn, 768);
  EXPECT_EQ(d.moe.sparse_layers, (std::vector<bool>(4, true)));

  // Written back (a GGUF Qwen3-MoE exported as a checkpoint), it reads the same.
  const ModelConfig back = model_config_from_hf(hf_config_from_model_config(c));
  EXPECT_EQ(back.architecture, "qwen3moe");
  EXPECT_EQ(back.moe.n_experts, 16);
  EXPECT_EQ(back.moe.routing.top_k, 4);
  EXPECT_TRUE(back.moe.routing.renormalize);
  EXPECT_EQ(back.moe.d_expert_ffn, 32);
  EXPECT_EQ(back.moe.sparse_layers, c.moe.sparse_layers);
  // Routing the Qwen3-MoE form cannot say is refused.
  ModelConfig sigmoid = c;
  sigmoid.moe.routing.scoring = RouterScoring::kSigmoid;
  EXPECT_THROW(hf_config_from_model_config(sigmoid), Error);
}

TEST(MoeConfig, RejectsBadFields) {
  auto with = [](const char* key, Json value) {
    Json j = base("Qwen3MoeForCausalLM", "qwen3_moe");
    j["num_experts"] = 8;
    j[key] = std::move(value);
    return j;
  };
  EXPECT_THROW(model_config_from_hf(with("mlp_only_layers", Json::array({4}))), Error);
  EXPECT_THROW(model_config_from_hf(with("mlp_only_layers", Json::array({-1}))), Error);
  EXPECT_THROW(model_config_from_hf(with("mlp_only_layers", "1")), Error);
  EXPECT_THROW(model_config_from_hf(with("num_experts_per_tok", 9)), Error);
  EXPECT_THROW(model_config_from_hf(with("decoder_sparse_step", 0)), Error);
  EXPECT_THROW(model_config_from_hf(with("attention_bias", true)), Error);
  Json m = base("MixtralForCausalLM", "mixtral");
  m["num_local_experts"] = 0;
  EXPECT_THROW(model_config_from_hf(m), Error);
}

// An MLA model (DeepSeek-V2/V3, GLM-4.7-Flash) of 4 layers with the given class.
Json mla(const char* hf_class, const char* model_type) {
  Json j = base(hf_class, model_type);
  j.update({{"kv_lora_rank", 32}, {"qk_nope_head_dim", 16}, {"qk_rope_head_dim", 8}, {"v_head_dim", 16}});
  return j;
}

TEST(MoeConfig, DeepseekV3AndGlmDefaults) {
  // transformers' DeepseekV3Config defaults: 256 experts in 8 groups (4 kept), 8 per token,
  // first_k_dense_replace 3, one shared expert, scale 2.5.
  const ModelConfig v3 = model_config_from_hf(mla("DeepseekV3ForCausalLM", "deepseek_v3"));
  EXPECT_EQ(v3.moe.sparse_layers, (std::vector<bool>{false, false, false, true}));
  EXPECT_EQ(v3.moe.n_experts, 256);
  EXPECT_EQ(v3.moe.d_expert_ffn, 2048);
  EXPECT_EQ(v3.moe.d_shared_ffn, 2048);
  EXPECT_TRUE(v3.moe.score_bias);
  EXPECT_EQ(v3.moe.routing.top_k, 8);
  EXPECT_EQ(v3.moe.routing.n_groups, 8);
  EXPECT_EQ(v3.moe.routing.top_groups, 4);
  EXPECT_EQ(v3.moe.routing.group_score, GroupScore::kTopTwoSum);
  EXPECT_EQ(v3.moe.routing.scoring, RouterScoring::kSigmoid);
  EXPECT_TRUE(v3.moe.routing.renormalize);
  EXPECT_FLOAT_EQ(v3.moe.routing.scale, 2.5f);
  // GLM-4.7-Flash: 64 experts, 4 per token, no groups, scale 1.8, the first layer dense.
  Json g = mla("Glm4MoeLiteForCausalLM", "glm4_moe_lite");
  g["num_local_experts"] = 16;  // transformers' alias of n_routed_experts
  const ModelConfig glm = model_config_from_hf(g);
  EXPECT_EQ(glm.moe.sparse_layers, (std::vector<bool>{false, true, true, true}));
  EXPECT_EQ(glm.moe.n_experts, 16);
  EXPECT_EQ(glm.moe.d_expert_ffn, 1536);
  EXPECT_EQ(glm.moe.routing.top_k, 4);
  EXPECT_EQ(glm.moe.routing.n_groups, 1);
  EXPECT_FLOAT_EQ(glm.moe.routing.scale, 1.8f);
  // Shared experts: null means none; more than one widens the shared MLP.
  g["n_shared_experts"] = nullptr;
  EXPECT_EQ(model_config_from_hf(g).moe.d_shared_ffn, 0);
  g["n_shared_experts"] = 3;
  g["moe_intermediate_size"] = 32;
  EXPECT_EQ(model_config_from_hf(g).moe.d_shared_ffn, 96);
  // No sparse layer: a dense model.
  g["mlp_layer_types"] = {"dense", "dense", "dense", "dense"};
  EXPECT_EQ(model_config_from_hf(g).moe.n_experts, 0);
}

TEST(MoeConfig, DeepseekV2Routing) {
  Json j = mla("DeepseekV2ForCausalLM", "deepseek_v2");
  j["num_experts_per_tok"] = 6;
  j["first_k_dense_replace"] = 1;
  const ModelConfig greedy = model_config_from_hf(j);
  EXPECT_EQ(greedy.moe.sparse_layers, (std::vector<bool>{false, true, true, true}));
  EXPECT_EQ(greedy.moe.n_experts, 64);
  EXPECT_EQ(greedy.moe.d_expert_ffn, 1407);
  EXPECT_EQ(greedy.moe.d_shared_ffn, 2 * 1407);
  EXPECT_FALSE(greedy.moe.score_bias);
  EXPECT_EQ(greedy.moe.routing.scoring, RouterScoring::kSoftmax);
  EXPECT_FALSE(greedy.moe.routing.renormalize);
  EXPECT_EQ(greedy.moe.routing.n_groups, 1);
  EXPECT_FLOAT_EQ(greedy.moe.routing.scale, 1.0f);
  j.update({{"topk_method", "group_limited_greedy"}, {"n_group", 8}, {"topk_group", 3},
            {"routed_scaling_factor", 16.0}});
  const ModelConfig grouped = model_config_from_hf(j);
  EXPECT_EQ(grouped.moe.routing.n_groups, 8);
  EXPECT_EQ(grouped.moe.routing.top_groups, 3);
  EXPECT_EQ(grouped.moe.routing.group_score, GroupScore::kMax);
  EXPECT_FLOAT_EQ(grouped.moe.routing.scale, 16.0f);
}

TEST(MoeConfig, DeepseekAndGlmErrorsNameTheField) {
  const auto error_of = [](Json j) -> std::string {
    try {
      model_config_from_hf(j);
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  Json v3 = mla("DeepseekV3ForCausalLM", "deepseek_v3");
  v3.update({{"n_routed_experts", 16}, {"n_group", 4}, {"topk_group", 2}, {"num_experts_per_tok", 4}});
  const auto v3_with = [&](const char* key, Json value) {
    Json j = v3;
    j[key] = std::move(value);
    return error_of(j);
  };
  EXPECT_EQ(v3_with("n_group", 3), "config.json: 16 routed experts do not split into n_group 3 groups");
  EXPECT_EQ(v3_with("topk_group", 5), "config.json: 'topk_group' = 5 is outside [1, 4]");
  EXPECT_EQ(v3_with("num_experts_per_tok", 9), "config.json: num_experts_per_tok 9 exceeds the 8 experts of topk_group 2 groups");
  EXPECT_EQ(v3_with("num_experts_per_tok", 17), "config.json: 'num_experts_per_tok' = 17 is outside [1, 16]");
  EXPECT_EQ(v3_with("n_group", 16), "config.json: groups of 1 expert cannot be scored by their two best");
  EXPECT_EQ(v3_with("routed_scaling_factor", -1.0), "config.json: routed_scaling_factor -1 is out of range");
  EXPECT_EQ(v3_with("n_routed_experts", 0), "config.json: 'n_routed_experts' = 0 is outside [1, 4096]");
  EXPECT_EQ(v3_with("n_shared_experts", -1), "config.json: 'n_shared_experts' = -1 is outside [0, 64]");
  EXPECT_EQ(v3_with("topk_method", "greedy"),
            "config.json: topk_method 'greedy' is not supported for deepseek3 (supported: noaux_tc)");
  EXPECT_EQ(v3_with("scoring_func", "softmax"),
            "config.json: scoring_func 'softmax' is not supported for deepseek3 (supported: sigmoid)");
  EXPECT_EQ(v3_with("moe_layer_freq", 2), "config.json: moe_layer_freq other than 1 is not supported");

  Json v2 = mla("DeepseekV2ForCausalLM", "deepseek_v2");
  const auto v2_with = [&](const char* key, Json value) {
    Json j = v2;
    j["num_experts_per_tok"] = 2;
    j[key] = std::move(value);
    return error_of(j);
  };
  EXPECT_EQ(error_of(v2), "config.json: 'num_experts_per_tok' is missing");  // transformers' default: None
  EXPECT_EQ(v2_with("topk_method", "noaux_tc"),
            "config.json: topk_method 'noaux_tc' is not supported for deepseek2 (supported: greedy, group_limited_greedy)");
  EXPECT_EQ(v2_with("topk_method", "group_limited_greedy"), "config.json: 'n_group' is missing");
  EXPECT_EQ(v2_with("norm_topk_prob", true), "config.json: deepseek2 with norm_topk_prob is not supported");
  EXPECT_EQ(v2_with("scoring_func", "sigmoid"),
            "config.json: scoring_func 'sigmoid' is not supported for deepseek2 (supported: softmax)");
}

}  // namespace
}  // namespace marlin
