// ModelConfig from config.json against what transformers derives from the same file
// (tools/make_checkpoint_fixtures.py configs): dimensions, the context, and the RoPE frequencies
// and attention scaling marlin's Rope computes from the config versus transformers' rotary
// embedding, within a few fp32 ulps (both compute in fp32, with different pow implementations).
#include <gtest/gtest.h>

#include <cmath>

#include "formats/hf_config.h"
#include "formats/hf_json.h"
#include "model/rope.h"
#include "safetensors_test_util.h"

namespace marlin {
namespace {

using Json = nlohmann::json;

const std::string kConfigs = std::string(MARLIN_FIXTURES_DIR) + "/formats/hf/configs.json";

TEST(HfConfig, MatchesTransformers) {
  const auto cases = parse_json_text(read_side_file(kConfigs), kConfigs);
  ASSERT_GE(cases.size(), 10u);
  for (const auto& c : cases) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    const auto& want = c.at("expected");
    const ModelConfig got = model_config_from_hf(c.at("config"));
    EXPECT_EQ(got.architecture, want.at("family").get<std::string>());
    EXPECT_EQ(got.n_layers, want.at("n_layers").get<int>());
    EXPECT_EQ(got.d_model, want.at("d_model").get<int>());
    EXPECT_EQ(got.d_ffn, want.at("d_ffn").get<int>());
    EXPECT_EQ(got.n_heads, want.at("n_heads").get<int>());
    EXPECT_EQ(got.n_kv_heads, want.at("n_kv_heads").get<int>());
    EXPECT_EQ(got.head_dim, want.at("head_dim").get<int>());
    EXPECT_EQ(got.vocab_size, want.at("vocab_size").get<int>());
    EXPECT_EQ(got.context_length, want.at("context_length").get<int>());
    EXPECT_EQ(got.rms_eps, float(want.at("rms_eps").get<double>()));
    EXPECT_EQ(got.rope.pairing, RopePairing::kHalfSplit);

    const Rope rope(got.rope, got.head_dim);
    const auto inv_freq = want.at("inv_freq").get<std::vector<double>>();
    ASSERT_EQ(rope.inv_freq().size(), inv_freq.size());
    for (size_t i = 0; i < inv_freq.size(); ++i) {
      // 4 ulps of fp32: pow() and the scaling arithmetic round differently in torch and here.
      EXPECT_NEAR(rope.inv_freq()[i], inv_freq[i], 4 * std::ldexp(std::fabs(inv_freq[i]), -23)) << "frequency " << i;
    }
    EXPECT_FLOAT_EQ(rope.attention_scale(), float(want.at("attention_scaling").get<double>()));
  }
}

TEST(HfConfig, RoundTripsThroughTheInverse) {
  const auto cases = parse_json_text(read_side_file(kConfigs), kConfigs);
  for (const auto& c : cases) {
    const ModelConfig first = model_config_from_hf(c.at("config"));
    if (!first.rope.freq_factors.empty()) {
      EXPECT_THROW(hf_config_from_model_config(first), Error);
      continue;
    }
    const ModelConfig again = model_config_from_hf(hf_config_from_model_config(first));
    SCOPED_TRACE(c.at("name").get<std::string>());
    EXPECT_EQ(again.architecture, first.architecture);
    EXPECT_EQ(again.n_layers, first.n_layers);
    EXPECT_EQ(again.d_model, first.d_model);
    EXPECT_EQ(again.n_kv_heads, first.n_kv_heads);
    EXPECT_EQ(again.head_dim, first.head_dim);
    EXPECT_EQ(again.context_length, first.context_length);
    EXPECT_EQ(again.rms_eps, first.rms_eps);
    EXPECT_EQ(again.rope.dim, first.rope.dim);
    EXPECT_EQ(again.rope.theta, first.rope.theta);
    EXPECT_EQ(again.rope.scaling, first.rope.scaling);
    EXPECT_EQ(again.rope.factor, first.rope.factor);
    EXPECT_EQ(again.rope.original_context, first.rope.original_context);
    EXPECT_EQ(again.rope.yarn_attn_factor, first.rope.yarn_attn_factor);
  }
}

TEST(HfConfig, TieWordEmbeddings) {
  EXPECT_TRUE(hf_tie_word_embeddings(Json{{"tie_word_embeddings", true}}));
  EXPECT_FALSE(hf_tie_word_embeddings(Json::object()));
  EXPECT_THROW(hf_tie_word_embeddings(Json{{"tie_word_embeddings", "yes"}}), Error);
}

Json base_config() {
  return Json{{"architectures", {"LlamaForCausalLM"}},
              {"hidden_size", 64},
              {"intermediate_size", 96},
              {"num_hidden_layers", 2},
              {"num_attention_heads", 4},
              {"vocab_size", 128}};
}

std::string rejection(const Json& config) {
  return test::error_of([&] { model_config_from_hf(config); });
}

void expect_rejected(const Json& config, const std::string& fragment) {
  const std::string message = rejection(config);
  EXPECT_TRUE(message.starts_with("config.json: ")) << message;
  EXPECT_NE(message.find(fragment), std::string::npos) << "message: " << message << "\nwanted: " << fragment;
}

TEST(HfConfig, BadConfigs) {
  auto with = [](const char* key, Json value) {
    Json j = base_config();
    j[key] = std::move(value);
    return j;
  };
  auto without = [](const char* key) {
    Json j = base_config();
    j.erase(key);
    return j;
  };
  expect_rejected(Json::array(), "the JSON is array, not an object");
  expect_rejected(with("architectures", {"Gemma3ForCausalLM"}),
                  "architecture 'Gemma3ForCausalLM' is not supported (supported: LlamaForCausalLM");
  expect_rejected(Json{{"model_type", "gpt_oss"}}, "architecture 'gpt_oss' is not supported");
  expect_rejected(Json::object(), "neither 'architectures' nor 'model_type'");
  expect_rejected(with("architectures", "LlamaForCausalLM"), "'architectures' is not a list of class names");
  expect_rejected(without("hidden_size"), "'hidden_size' is missing");
  expect_rejected(with("hidden_size", "64"), "'hidden_size' is '\"64\"', not an integer");
  expect_rejected(with("hidden_size", 64.5), "not an integer");
  expect_rejected(with("num_hidden_layers", 0), "'num_hidden_layers' = 0 is outside [1, 4096]");
  expect_rejected(with("num_key_value_heads", 3), "num_attention_heads 4 is not a multiple of num_key_value_heads 3");
  expect_rejected(with("hidden_size", 66), "hidden_size 66 is not a multiple of num_attention_heads 4");
  expect_rejected(with("rms_norm_eps", -1), "rms_norm_eps -1 is out of range");
  expect_rejected(with("hidden_act", "gelu"), "hidden_act 'gelu' is not supported");
  expect_rejected(with("rope_theta", 0.5), "rope_theta 0.5 is out of range");
  expect_rejected(with("rope_scaling", {{"rope_type", "dynamic"}, {"factor", 2.0}}),
                  "rope type 'dynamic' is not supported (supported: default, linear, llama3, yarn)");
  expect_rejected(with("rope_scaling", {{"rope_type", "linear"}}), "rope 'factor' is missing");
  expect_rejected(with("rope_scaling", {{"rope_type", "linear"}, {"factor", -2}}),
                  "rope 'factor' = -2 is not a positive");
  expect_rejected(
      with("rope_scaling", {{"rope_type", "llama3"}, {"factor", 8}, {"low_freq_factor", 4}, {"high_freq_factor", 1}}),
      "high_freq_factor 1 is not above low_freq_factor 4");
  expect_rejected(with("rope_scaling", {{"rope_type", "yarn"}, {"factor", 2}, {"truncate", false}}),
                  "yarn with truncate=false is not supported");
  expect_rejected(with("rope_scaling", 3), "'rope_scaling' is number, not an object");
  expect_rejected(with("rope_parameters", {{"full_attention", {{"rope_type", "default"}}}}),
                  "per-layer-type RoPE parameters are not supported");
  expect_rejected(with("partial_rotary_factor", 1.5), "partial_rotary_factor 1.5 is outside (0, 1]");
  expect_rejected(with("partial_rotary_factor", 0.1), "rotary dimension 1 (head_dim 16 x 0.1) is not even");
}

TEST(HfConfig, ArchitectureFamilies) {
  Json j = base_config();
  j["architectures"] = {"Qwen2ForCausalLM"};
  EXPECT_EQ(model_config_from_hf(j).architecture, "qwen2");
  EXPECT_EQ(model_config_from_hf(j).context_length, 32768);  // transformers' Qwen2 default
  j["architectures"] = {"Qwen3ForCausalLM"};
  EXPECT_EQ(model_config_from_hf(j).architecture, "qwen3");
  const Json back = hf_config_from_model_config(model_config_from_hf(j));
  EXPECT_EQ(back["architectures"][0], "Qwen3ForCausalLM");
  EXPECT_EQ(back["model_type"], "qwen3");
  j["attention_bias"] = true;
  EXPECT_THROW(model_config_from_hf(j), Error);  // q/k/v/o biases are not loaded
  j.erase("attention_bias");
  j["architectures"] = {"MistralForCausalLM"};
  EXPECT_EQ(model_config_from_hf(j).architecture, "llama");
  EXPECT_EQ(hf_config_from_model_config(model_config_from_hf(j))["architectures"][0], "LlamaForCausalLM");
  EXPECT_EQ(model_config_from_hf(j).context_length, 4096);  // the default sliding window caps it
  j.erase("architectures");
  j["model_type"] = "llama";
  EXPECT_EQ(model_config_from_hf(j).architecture, "llama");
  EXPECT_EQ(model_config_from_hf(j).name, "LlamaForCausalLM");
}

}  // namespace
}  // namespace marlin
