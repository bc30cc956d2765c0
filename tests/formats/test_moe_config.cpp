// Mixture-of-experts fields of config.json (MixtralForCausalLM, Qwen3MoeForCausalLM), read as
// transformers reads them (its defaults, and Qwen3-MoE's rule for which layers are sparse).
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

}  // namespace
}  // namespace marlin
