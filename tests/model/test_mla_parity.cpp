// Multi-head latent attention (DeepSeek-V2/V3, GLM-4.7-Flash) against transformers: tiny random
// dense checkpoints from tools/make_mla_fixtures.py, run with the absorbed up-projections over the
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
#include "model/weights.h"
#include "reference.h"

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
// each linear group's input in the order of linear_groups().
TEST_P(MlaParity, LayerByLayerReportsEveryLinearInput) {
  const auto ref = testing::load_reference(kDir, GetParam());
  auto source = open_model_source(kDir + "/" + GetParam());
  ThreadPool pool(2);
  auto model = load_model(*source, pool);
  const ModelConfig& c = model->config();
  const MlaConfig& m = c.mla;
  const int64_t n = 20;
  std::vector<float> x(size_t(n * c.d_model));
  model->embed(std::span(ref.tokens).first(n), x.data());
  auto cache = model->new_cache(n);
  std::vector<int64_t> expected_cols = {c.d_model, c.d_model};  // q_a_proj or q_proj, kv_a_proj_with_mqa
  if (m.q_lora_rank > 0) expected_cols.push_back(m.q_lora_rank);  // q_b_proj
  for (int64_t cols : {int64_t(c.n_heads) * m.v_head_dim, int64_t(c.d_model), int64_t(c.d_ffn)})
    expected_cols.push_back(cols);
  for (int layer = 0; layer < c.n_layers; ++layer) {
    const auto groups = model->linear_groups(layer);
    ASSERT_EQ(groups.size(), expected_cols.size());
    EXPECT_EQ(groups[1].weights[0], "model.layers." + std::to_string(layer) + ".self_attn.kv_a_proj_with_mqa.weight");
    std::vector<int64_t> cols_seen;
    cache->clear();
    model->run_layer(layer, x.data(), n, *cache, [&](int group, const float*, int64_t rows, int64_t cols) {
      EXPECT_EQ(rows, n);
      EXPECT_EQ(group, int(cols_seen.size()));
      cols_seen.push_back(cols);
    });
    EXPECT_EQ(cols_seen, expected_cols);
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
  EXPECT_EQ(glm.moe.sparse_layers, std::vector<bool>(2, false));
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

TEST(Mla, MoeLayersAreRefusedForNow) {
  ThreadPool pool(1);
  const EditedCheckpoint v3("tiny_deepseek_v3", [](nlohmann::json& j) { j["first_k_dense_replace"] = 1; });
  const EditedCheckpoint glm("tiny_glm4_moe_lite", [](nlohmann::json& j) { j.erase("mlp_layer_types"); });
  for (const auto& [path, arch] : {std::pair{v3.path(), "deepseek3"}, std::pair{glm.path(), "glm4moelite"}}) {
    auto source = open_model_source(path);
    try {
      load_model(*source, pool);
      ADD_FAILURE() << "loaded " << path;
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), fmt::format("MoE layers for {} are not supported yet", arch));
    }
  }
}

}  // namespace
}  // namespace marlin
