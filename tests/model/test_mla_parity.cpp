// Multi-head latent attention (DeepSeek-V2/V3, GLM-4.7-Flash) against transformers: tiny random
// checkpoints from tools/make_mla_fixtures.py (a dense layer, then a mixture-of-experts layer with
// DeepSeek/GLM routing and shared experts), run with the absorbed up-projections over the
// compressed cache (latent + shared RoPE key per token and layer).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>

#include <fmt/format.h>
#include <unistd.h>

#include "backend/cpu/matmul.h"
#include "backend/cpu/ops.h"
#include "formats/hf_config.h"
#include "model/model.h"
#include "model/model_source.h"
#include "model/synthetic_source.h"
#include "model/weights.h"
#include "quant/format.h"
#include "reference.h"
#include "tokenizer/tokenizer.h"

namespace marlin {
namespace {

namespace fs = std::filesystem;
const std::string kDir = std::string(MARLIN_FIXTURES_DIR) + "/model";

double max_abs_diff(const float* ours, const double* ref, int n) {
  double worst = 0;
  for (int i = 0; i < n; ++i) worst = std::max(worst, std::abs(double(ours[i]) - ref[i]));
  return worst;
}

// Logits of every position of the reference tokens, in one forward pass.
std::vector<float> all_logits(const ModelSource& source, const testing::ReferenceLogits& ref, int threads) {
  ThreadPool pool(threads);
  auto model = load_model(source, pool);
  auto cache = model->new_cache(int64_t(ref.tokens.size()));
  std::vector<float> logits(size_t(ref.positions) * size_t(ref.vocab));
  model->forward(ref.tokens, *cache, logits.data(), true);
  return logits;
}

// A copy of fixture `name` whose config.json is changed by `edit`, removed with the object.
class EditedCheckpoint {
 public:
  EditedCheckpoint(const std::string& name, const std::function<void(nlohmann::json&)>& edit)
      : dir_(fs::temp_directory_path() / ("marlin_mla_" + name + "_" + std::to_string(::getpid()) + "_" +
                                          std::to_string(counter_++))) {
    fs::create_directories(dir_);
    fs::copy_file(kDir + "/" + name + "/model.safetensors", dir_ / "model.safetensors");
    std::ifstream in(kDir + "/" + name + "/config.json");
    nlohmann::json config = nlohmann::json::parse(in);
    edit(config);
    std::ofstream(dir_ / "config.json") << config.dump(1);
  }
  ~EditedCheckpoint() { fs::remove_all(dir_); }
  std::string path() const { return dir_.string(); }

 private:
  static inline int counter_ = 0;
  fs::path dir_;
};

class MlaParity : public ::testing::TestWithParam<std::string> {};

// Our fp32 arithmetic differs from transformers' fp32 run in summation order (and in computing
// attention against the latent instead of expanded keys and values, the same sums regrouped), so
// its distance from the float64 reference must be of the same size: at most twice that of the
// fp32 transformers run.
TEST_P(MlaParity, EveryPositionInOneBatch) {
  const auto ref = testing::load_reference(kDir, GetParam());
  ASSERT_FALSE(ref.logits.empty());
  auto source = open_model_source(kDir + "/" + GetParam());
  for (int threads : {1, 3}) {
    const auto logits = all_logits(*source, ref, threads);
    EXPECT_LE(max_abs_diff(logits.data(), ref.logits.data(), int(logits.size())), 2 * ref.fp32_error)
        << "threads " << threads;
  }
}

TEST_P(MlaParity, PrefillThenTokenByToken) {
  const auto ref = testing::load_reference(kDir, GetParam());
  auto source = open_model_source(kDir + "/" + GetParam());
  ThreadPool pool(2);
  auto model = load_model(*source, pool);
  auto cache = model->new_cache(int64_t(ref.tokens.size()));
  std::vector<float> logits(size_t(ref.vocab));
  const size_t prefill = 37;
  model->forward(std::span(ref.tokens).first(prefill), *cache, logits.data(), false);
  EXPECT_LE(max_abs_diff(logits.data(), ref.row(int(prefill) - 1), ref.vocab), 2 * ref.fp32_error);
  for (size_t i = prefill; i < ref.tokens.size(); ++i) {
    model->forward(std::span(ref.tokens).subspan(i, 1), *cache, logits.data(), false);
    ASSERT_LE(max_abs_diff(logits.data(), ref.row(int(i)), ref.vocab), 2 * ref.fp32_error) << "position " << i;
  }
  EXPECT_EQ(cache->length(), int64_t(ref.tokens.size()));
}

// Three sequences of one cache at different lengths (prefixes of the reference tokens) decode
// together, in a shuffled order; every row must be the reference's row at its position.
TEST_P(MlaParity, BatchedDecodeOfSeveralSequences) {
  const auto ref = testing::load_reference(kDir, GetParam());
  auto source = open_model_source(kDir + "/" + GetParam());
  ThreadPool pool(2);
  auto model = load_model(*source, pool);
  auto cache = model->new_cache(int64_t(ref.tokens.size()), 3, {.block_size = 8});
  const std::vector<int64_t> prefill = {20, 33, 47};
  std::vector<float> logits(3 * size_t(ref.vocab));
  for (int s = 0; s < 3; ++s)
    model->forward_sequence(s, std::span(ref.tokens).first(size_t(prefill[size_t(s)])), *cache, logits.data(), false);
  const std::vector<int32_t> seqs = {2, 0, 1};
  for (int step = 0; step < 12; ++step) {
    std::vector<int32_t> tokens;
    for (const int32_t s : seqs) tokens.push_back(ref.tokens[size_t(prefill[size_t(s)] + step)]);
    model->decode_sequences(seqs, tokens, *cache, logits.data());
    for (size_t i = 0; i < seqs.size(); ++i) {
      const int64_t pos = prefill[size_t(seqs[i])] + step;
      ASSERT_LE(max_abs_diff(&logits[i * size_t(ref.vocab)], ref.row(int(pos)), ref.vocab), 2 * ref.fp32_error)
          << "sequence " << seqs[i] << " position " << pos;
    }
  }
}

// A sequence that starts from another's prefix (a block shared mid-way, copied on write) and the
// original both go on correctly.
TEST_P(MlaParity, SharedPrefixIsCopiedOnWrite) {
  const auto ref = testing::load_reference(kDir, GetParam());
  auto source = open_model_source(kDir + "/" + GetParam());
  ThreadPool pool(2);
  auto model = load_model(*source, pool);
  auto cache = model->new_cache(int64_t(ref.tokens.size()), 2, {.block_size = 16});
  std::vector<float> logits(size_t(ref.vocab));
  const auto tokens = std::span(ref.tokens);
  model->forward_sequence(0, tokens.first(50), *cache, logits.data(), false);
  cache->share_prefix(1, 0, 30);
  model->forward_sequence(1, tokens.subspan(30, 10), *cache, logits.data(), false);
  EXPECT_LE(max_abs_diff(logits.data(), ref.row(39), ref.vocab), 2 * ref.fp32_error);
  model->forward_sequence(0, tokens.subspan(50, 10), *cache, logits.data(), false);
  EXPECT_LE(max_abs_diff(logits.data(), ref.row(59), ref.vocab), 2 * ref.fp32_error);
}

// Layer by layer (marlin quantize's calibration path) computes what forward computes, reporting
// each linear group's input in the order of linear_groups(): every row for the attention, dense
// MLP, router and shared-expert groups; for each routed expert only the rows routed to it.
TEST_P(MlaParity, LayerByLayerReportsEveryLinearInput) {
  const auto ref = testing::load_reference(kDir, GetParam());
  auto source = open_model_source(kDir + "/" + GetParam());
  ThreadPool pool(2);
  auto model = load_model(*source, pool);
  const ModelConfig& c = model->config();
  const MlaConfig& m = c.mla;
  const MoeConfig& moe = c.moe;
  const int64_t n = 20;
  std::vector<float> x(size_t(n * c.d_model));
  model->embed(std::span(ref.tokens).first(n), x.data());
  auto cache = model->new_cache(n);
  std::vector<int64_t> attention_cols = {c.d_model, c.d_model};  // q_a_proj or q_proj, kv_a_proj_with_mqa
  if (m.q_lora_rank > 0) attention_cols.push_back(m.q_lora_rank);  // q_b_proj
  attention_cols.push_back(int64_t(c.n_heads) * m.v_head_dim);       // o_proj
  for (int layer = 0; layer < c.n_layers; ++layer) {
    // Per group: its input width, and whether it sees only routed rows.
    std::vector<std::pair<int64_t, bool>> expected;
    for (int64_t cols : attention_cols) expected.push_back({cols, false});
    if (!moe.sparse(layer)) {
      expected.insert(expected.end(), {{c.d_model, false}, {c.d_ffn, false}});
    } else {
      expected.push_back({c.d_model, false});  // router
      for (int e = 0; e < moe.n_experts + moe.routing.n_shared; ++e) {
        const bool routed = e < moe.n_experts;
        expected.insert(expected.end(), {{c.d_model, routed}, {moe.d_expert_ffn, routed}});
      }
      if (moe.routing.n_shared == 0 && moe.d_shared_ffn > 0)
        expected.insert(expected.end(), {{c.d_model, false}, {moe.d_shared_ffn, false}});
    }
    const auto groups = model->linear_groups(layer);
    ASSERT_EQ(groups.size(), expected.size()) << "layer " << layer;
    EXPECT_EQ(groups[1].weights[0], "model.layers." + std::to_string(layer) + ".self_attn.kv_a_proj_with_mqa.weight");
    std::vector<int64_t> rows_seen(expected.size(), 0);
    int last = -1;
    cache->clear();
    model->run_layer(layer, x.data(), n, *cache, [&](int group, const float*, int64_t rows, int64_t cols) {
      ASSERT_GE(group, 0);
      ASSERT_LT(size_t(group), expected.size());
      EXPECT_GE(group, last);  // in the order of linear_groups
      last = group;
      EXPECT_EQ(cols, expected[size_t(group)].first) << "group " << group;
      rows_seen[size_t(group)] += rows;
    });
    int64_t routed_rows = 0;
    for (size_t g = 0; g < expected.size(); ++g) {
      if (expected[g].second) {
        routed_rows += rows_seen[g];
      } else {
        EXPECT_EQ(rows_seen[g], n) << "layer " << layer << " group " << g;
      }
    }
    if (moe.sparse(layer)) EXPECT_EQ(routed_rows, 2 * n * moe.routing.top_k) << "layer " << layer;
  }
  const auto norm = require_vector(*source, "model.norm.weight", c.d_model);
  const auto lm_head = require_matrix(*source, "lm_head.weight", c.vocab_size, c.d_model);
  std::vector<float> h(x.size()), logits(size_t(n) * size_t(ref.vocab));
  for (int64_t t = 0; t < n; ++t)
    cpu::rms_norm(&x[size_t(t * c.d_model)], norm.data(), c.rms_eps, c.d_model, &h[size_t(t * c.d_model)]);
  cpu::matmul(lm_head, h.data(), n, logits.data(), pool);
  EXPECT_LE(max_abs_diff(logits.data(), ref.logits.data(), int(logits.size())), 2 * ref.fp32_error);
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, MlaParity,
                         ::testing::Values("tiny_deepseek_v3", "tiny_deepseek_v2", "tiny_glm4_moe_lite"));

TEST(Mla, ConfigIsReadAsTransformersReadsIt) {
  const auto v3 = open_model_source(kDir + "/tiny_deepseek_v3")->config();
  EXPECT_EQ(v3.architecture, "deepseek3");
  EXPECT_EQ(v3.mla.q_lora_rank, 48);
  EXPECT_EQ(v3.mla.kv_lora_rank, 32);
  EXPECT_EQ(v3.mla.qk_nope_head_dim, 16);
  EXPECT_EQ(v3.mla.qk_rope_head_dim, 8);
  EXPECT_EQ(v3.mla.v_head_dim, 24);
  EXPECT_EQ(v3.head_dim, 8);
  EXPECT_EQ(v3.rope.pairing, RopePairing::kAdjacent);
  const double mscale = 0.1 * 0.7 * std::log(4.0) + 1.0;  // yarn_get_mscale(factor 4, mscale_all_dim 0.7)
  EXPECT_FLOAT_EQ(v3.mla.softmax_scale, float(mscale * mscale / std::sqrt(24.0)));
  const auto v2 = open_model_source(kDir + "/tiny_deepseek_v2")->config();
  EXPECT_EQ(v2.mla.q_lora_rank, 0);  // null in config.json
  EXPECT_EQ(v2.rope.pairing, RopePairing::kAdjacent);
  EXPECT_FLOAT_EQ(v2.mla.softmax_scale, float(1.0 / std::sqrt(24.0)));
  const auto glm = open_model_source(kDir + "/tiny_glm4_moe_lite")->config();
  EXPECT_EQ(glm.architecture, "glm4moelite");
  EXPECT_EQ(glm.rope.pairing, RopePairing::kHalfSplit);  // rope_interleave false

  // The mixture-of-experts layers.
  EXPECT_EQ(v3.moe.sparse_layers, (std::vector<bool>{false, true}));  // first_k_dense_replace 1
  EXPECT_EQ(v3.moe.n_experts, 8);
  EXPECT_EQ(v3.moe.d_expert_ffn, 32);
  EXPECT_EQ(v3.moe.d_shared_ffn, 32);
  EXPECT_TRUE(v3.moe.score_bias);
  const MoeRouting& r3 = v3.moe.routing;
  EXPECT_EQ(r3.top_k, 3);
  EXPECT_EQ(r3.scoring, RouterScoring::kSigmoid);
  EXPECT_TRUE(r3.renormalize);
  EXPECT_EQ(r3.n_groups, 4);
  EXPECT_EQ(r3.top_groups, 2);
  EXPECT_EQ(r3.group_score, GroupScore::kTopTwoSum);
  EXPECT_FLOAT_EQ(r3.scale, 2.5f);
  EXPECT_EQ(r3.n_shared, 0);  // the architecture places the shared expert
  const MoeRouting& r2 = v2.moe.routing;
  EXPECT_EQ(v2.moe.d_shared_ffn, 64);  // n_shared_experts 2
  EXPECT_FALSE(v2.moe.score_bias);
  EXPECT_EQ(r2.scoring, RouterScoring::kSoftmax);
  EXPECT_FALSE(r2.renormalize);
  EXPECT_EQ(r2.n_groups, 4);
  EXPECT_EQ(r2.group_score, GroupScore::kMax);
  EXPECT_FLOAT_EQ(r2.scale, 1.5f);
  EXPECT_EQ(glm.moe.sparse_layers, (std::vector<bool>{false, true}));  // mlp_layer_types
  EXPECT_EQ(glm.moe.routing.n_groups, 1);
  EXPECT_EQ(glm.moe.routing.top_k, 2);
  EXPECT_FLOAT_EQ(glm.moe.routing.scale, 1.8f);
  EXPECT_TRUE(glm.moe.score_bias);
}

TEST(Mla, ConfigErrorsNameTheKey) {
  std::ifstream in(kDir + "/tiny_glm4_moe_lite/config.json");
  const nlohmann::json glm = nlohmann::json::parse(in);
  const auto error_of = [&](const std::function<void(nlohmann::json&)>& edit) -> std::string {
    nlohmann::json j = glm;
    edit(j);
    try {
      model_config_from_hf(j);
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_EQ(error_of([](nlohmann::json& j) { j.erase("kv_lora_rank"); }), "config.json: 'kv_lora_rank' is missing");
  EXPECT_EQ(error_of([](nlohmann::json& j) { j["attention_bias"] = true; }),
            "config.json: glm4moelite with attention_bias is not supported");
  EXPECT_EQ(error_of([](nlohmann::json& j) { j["mlp_layer_types"] = {"dense"}; }),
            "config.json: mlp_layer_types is not a list of 2 layer types");
  EXPECT_EQ(error_of([](nlohmann::json& j) { j["mlp_layer_types"] = {"dense", "moe"}; }),
            "config.json: mlp_layer_types[1] is neither dense nor sparse");
  EXPECT_EQ(error_of([](nlohmann::json& j) { j["q_lora_rank"] = -1; }),
            "config.json: 'q_lora_rank' = -1 is outside [0, 65536]");
}

// Per token and layer the cache holds kv_lora_rank + qk_rope_head_dim fp32 values, where a
// Llama-style cache holds keys and values of every KV head.
TEST(Mla, CacheHoldsTheLatentAndTheSharedRopeKeyOnly) {
  auto source = open_model_source(kDir + "/tiny_deepseek_v3");
  const ModelConfig& c = source->config();
  const KvGeometry g = kv_geometry(c);
  EXPECT_EQ(g.heads, 1);
  EXPECT_EQ(g.key_width, 32 + 8);
  EXPECT_EQ(g.value_width, 0);
  ThreadPool pool(1);
  auto model = load_model(*source, pool);
  EXPECT_EQ(model->new_cache(64)->bytes_per_token(), int64_t(c.n_layers) * (32 + 8) * 4);

  auto qwen = open_model_source(kDir + "/tiny_qwen3");
  const ModelConfig& q = qwen->config();
  auto llama = load_model(*qwen, pool);
  EXPECT_EQ(llama->new_cache(64)->bytes_per_token(), 2 * int64_t(q.n_layers) * q.n_kv_heads * q.head_dim * 4);
}

// The checks can fail: the same weights read with half-split RoPE pairs or without the YaRN
// softmax correction are far outside the tolerance.
TEST(Mla, BrokenVariantsFail) {
  const auto ref = testing::load_reference(kDir, "tiny_deepseek_v3");
  const EditedCheckpoint half_split("tiny_deepseek_v3", [](nlohmann::json& j) { j["rope_interleave"] = false; });
  const EditedCheckpoint no_mscale("tiny_deepseek_v3",
                                   [](nlohmann::json& j) { j["rope_parameters"].erase("mscale_all_dim"); });
  for (const auto* broken : {&half_split, &no_mscale}) {
    const auto logits = all_logits(*open_model_source(broken->path()), ref, 2);
    EXPECT_GT(max_abs_diff(logits.data(), ref.logits.data(), int(logits.size())), 20 * ref.fp32_error)
        << broken->path();
  }
  const auto glm_ref = testing::load_reference(kDir, "tiny_glm4_moe_lite");
  const EditedCheckpoint interleaved("tiny_glm4_moe_lite", [](nlohmann::json& j) { j["rope_interleave"] = true; });
  const auto logits = all_logits(*open_model_source(interleaved.path()), glm_ref, 2);
  EXPECT_GT(max_abs_diff(logits.data(), glm_ref.logits.data(), int(logits.size())), 20 * glm_ref.fp32_error);
}

// The synthetic GLM-4.7-Flash layout (marlin bench --synthetic): the published shapes, and the
// tiny variant runs with int4 weights, prefill agreeing with token-by-token decoding.
TEST(Mla, SyntheticGlmLoadsAndRuns) {
  const ModelConfig glm = make_synthetic_source("glm-4.7-flash", TensorFormat::parse("int4-g128"))->config();
  EXPECT_EQ(glm.n_layers, 47);
  EXPECT_EQ(glm.mla.kv_lora_rank + glm.mla.qk_rope_head_dim, 576);
  EXPECT_EQ(glm.moe.n_experts, 64);
  EXPECT_EQ(glm.moe.sparse_layers, [] {
    std::vector<bool> sparse(47, true);
    sparse[0] = false;
    return sparse;
  }());
  auto source = make_synthetic_source("tiny-glm", TensorFormat::parse("int4-g128"));
  ThreadPool pool(2);
  auto model = load_model(*source, pool);
  const int vocab = model->config().vocab_size;
  EXPECT_EQ(model->linear_groups(1).size(), 4u + 1 + 2 * (8 + 1));  // attention, router, 8 experts + shared
  const std::vector<int32_t> tokens = {5, 9, 100, 7, 3, 400, 2, 60};
  std::vector<float> prefill(tokens.size() * size_t(vocab)), one(static_cast<size_t>(vocab));
  auto cache = model->new_cache(16);
  model->forward(tokens, *cache, prefill.data(), true);
  auto step_cache = model->new_cache(16);
  double worst = 0;
  for (size_t t = 0; t < tokens.size(); ++t) {
    model->forward(std::span(tokens).subspan(t, 1), *step_cache, one.data(), false);
    for (int v = 0; v < vocab; ++v) {
      ASSERT_TRUE(std::isfinite(one[size_t(v)]));
      worst = std::max(worst, double(std::abs(one[size_t(v)] - prefill[t * size_t(vocab) + size_t(v)])));
    }
  }
  // 0 on the machine that wrote this (each row computed alone); kernels that block rows differently
  // may round differently, far below this.
  EXPECT_LT(worst, 1e-4);
}

// The fixture with every router's e_score_correction_bias read as zeros.
class ZeroBiasSource final : public ModelSource {
 public:
  explicit ZeroBiasSource(std::unique_ptr<ModelSource> inner) : inner_(std::move(inner)) {}
  const ModelConfig& config() const override { return inner_->config(); }
  std::unique_ptr<Tokenizer> tokenizer() const override { return inner_->tokenizer(); }
  std::string chat_template() const override { return inner_->chat_template(); }
  std::optional<QuantTensor> tensor(std::string_view name) const override {
    auto t = inner_->tensor(name);
    if (!t || !name.ends_with(".e_score_correction_bias")) return t;
    zeros_.assign(size_t(t->cols), 0.0f);
    QuantTensor z;
    z.format.kind = FormatKind::kF32;
    z.rows = 1;
    z.cols = t->cols;
    z.codes = reinterpret_cast<const uint8_t*>(zeros_.data());
    z.code_row_bytes = uint64_t(t->cols) * 4;
    return z;
  }
  std::vector<std::string> tensor_names() const override { return inner_->tensor_names(); }
  std::string description() const override { return inner_->description() + " (zero score bias)"; }
  nlohmann::json hf_config() const override { return inner_->hf_config(); }
  std::string tokenizer_json() const override { return inner_->tokenizer_json(); }
  std::string tokenizer_config_json() const override { return inner_->tokenizer_config_json(); }

 private:
  std::unique_ptr<ModelSource> inner_;
  mutable std::vector<float> zeros_;  // read as each bias is loaded (the model copies it)
};

// The routing checks can fail: the same weights routed without the score bias, without the group
// limit, with another routed_scaling_factor or without renormalization are far outside the
// tolerance.
TEST(Mla, BrokenRoutingFails) {
  const auto far_off = [](const ModelSource& source, const std::string& name) {
    const auto ref = testing::load_reference(kDir, name);
    const auto logits = all_logits(source, ref, 2);
    EXPECT_GT(max_abs_diff(logits.data(), ref.logits.data(), int(logits.size())), 20 * ref.fp32_error)
        << source.description();
  };
  for (const char* name : {"tiny_deepseek_v3", "tiny_glm4_moe_lite"})
    far_off(ZeroBiasSource(open_model_source(kDir + "/" + name)), name);
  const std::vector<std::pair<std::string, std::function<void(nlohmann::json&)>>> edits = {
      {"tiny_deepseek_v3", [](nlohmann::json& j) { j["topk_group"] = 4; }},
      {"tiny_deepseek_v3", [](nlohmann::json& j) { j["routed_scaling_factor"] = 1.0; }},
      {"tiny_deepseek_v3", [](nlohmann::json& j) { j["norm_topk_prob"] = false; }},
      {"tiny_deepseek_v2", [](nlohmann::json& j) { j["topk_method"] = "greedy"; }},
      {"tiny_deepseek_v2", [](nlohmann::json& j) { j["routed_scaling_factor"] = 1.0; }},
      {"tiny_glm4_moe_lite", [](nlohmann::json& j) { j["routed_scaling_factor"] = 1.0; }},
  };
  for (const auto& [name, edit] : edits) {
    const EditedCheckpoint broken(name, edit);
    far_off(*open_model_source(broken.path()), name);
  }
}

// A wrong checkpoint is refused by name: a missing bias, expert or shared expert.
TEST(Mla, MissingMoeWeightsAreNamed) {
  ThreadPool pool(1);
  const auto error_of = [&](const ModelSource& source) -> std::string {
    try {
      load_model(source, pool);
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  // DeepSeek-V2 has no score bias: a config that asks for one (V3) finds none.
  const EditedCheckpoint v2_as_v3("tiny_deepseek_v2", [](nlohmann::json& j) {
    j["architectures"] = {"DeepseekV3ForCausalLM"};
    j["model_type"] = "deepseek_v3";
    j.erase("topk_method");
  });
  EXPECT_NE(error_of(*open_model_source(v2_as_v3.path())).find("model.layers.1.mlp.gate.e_score_correction_bias"),
            std::string::npos);
  const EditedCheckpoint more_experts("tiny_glm4_moe_lite", [](nlohmann::json& j) { j["n_routed_experts"] = 16; });
  EXPECT_NE(error_of(*open_model_source(more_experts.path())).find("model.layers.1.mlp.gate."), std::string::npos);
  const EditedCheckpoint wider_shared("tiny_glm4_moe_lite", [](nlohmann::json& j) { j["n_shared_experts"] = 2; });
  EXPECT_NE(error_of(*open_model_source(wider_shared.path())).find("model.layers.1.mlp.shared_experts.gate_proj.weight"),
            std::string::npos);
}

}  // namespace
}  // namespace marlin
