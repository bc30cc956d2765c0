// DeepSeek-V2/V3 and GLM-4.7-Flash from GGUF files laid out as llama.cpp's converter writes them
// (architecture "deepseek2"): tiny random checkpoints from tools/make_mla_gguf_fixtures.py, with
// transformers' logits and, per Hugging Face tensor name, the shape and a checksum of the values.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <set>

#include <unistd.h>

#include "core/error.h"
#include "core/thread_pool.h"
#include "model/model.h"
#include "model/model_source.h"
#include "quant/dequant.h"
#include "reference.h"

namespace marlin {
namespace {

namespace fs = std::filesystem;
const std::string kDir = std::string(MARLIN_FIXTURES_DIR) + "/model";

double max_abs_diff(const float* ours, const double* ref, size_t n) {
  double worst = 0;
  for (size_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(double(ours[i]) - ref[i]));
  return worst;
}

// The model of a fixture, or nullptr (and the test skipped) while its MoE layers are refused.
std::unique_ptr<Model> load_or_skip(const ModelSource& source, ThreadPool& pool, std::string& skipped) {
  try {
    return load_model(source, pool);
  } catch (const Error& e) {
    if (source.config().moe.n_experts == 0 || std::string(e.what()).find("not supported yet") == std::string::npos)
      throw;
    skipped = e.what();
    return nullptr;
  }
}

class MlaGguf : public ::testing::TestWithParam<std::string> {};

// Our fp32 arithmetic regroups transformers' sums (attention over the latent), so its distance
// from the float64 reference must stay within twice that of transformers' own fp32 run.
TEST_P(MlaGguf, LogitsMatchTransformers) {
  const auto ref = testing::load_reference(kDir, GetParam());
  ASSERT_FALSE(ref.logits.empty());
  auto source = open_model_source(kDir + "/" + GetParam() + ".gguf");
  ThreadPool pool(2);
  std::string skipped;
  auto model = load_or_skip(*source, pool, skipped);
  if (!model) GTEST_SKIP() << "MoE layers not loadable yet: " << skipped;
  auto cache = model->new_cache(int64_t(ref.tokens.size()));
  std::vector<float> logits(size_t(ref.positions) * size_t(ref.vocab));
  model->forward(ref.tokens, *cache, logits.data(), true);
  EXPECT_LE(max_abs_diff(logits.data(), ref.logits.data(), logits.size()), 2 * ref.fp32_error);

  // Prefill, then one token at a time through the compressed cache.
  cache = model->new_cache(int64_t(ref.tokens.size()));
  std::vector<float> row(size_t(ref.vocab));
  const size_t prefill = 41;
  model->forward(std::span(ref.tokens).first(prefill), *cache, row.data(), false);
  EXPECT_LE(max_abs_diff(row.data(), ref.row(int(prefill) - 1), row.size()), 2 * ref.fp32_error);
  for (size_t i = prefill; i < ref.tokens.size(); ++i) {
    model->forward(std::span(ref.tokens).subspan(i, 1), *cache, row.data(), false);
    ASSERT_LE(max_abs_diff(row.data(), ref.row(int(i)), row.size()), 2 * ref.fp32_error) << "position " << i;
  }
}

// Every Hugging Face name the architecture asks for resolves to a tensor of its shape and values
// (experts sliced from the 3-D tensors, kv_b_proj reassembled from attn_k_b / attn_v_b), and
// tensor_names() lists it.
TEST_P(MlaGguf, EveryHfTensorResolvesWithItsValues) {
  std::ifstream in(kDir + "/" + GetParam() + ".tensors.json");
  const auto expected = nlohmann::json::parse(in)["tensors"];
  ASSERT_GT(expected.size(), 20u);
  auto source = open_model_source(kDir + "/" + GetParam() + ".gguf");
  const auto listed = source->tensor_names();
  const std::set<std::string> names(listed.begin(), listed.end());
  for (const auto& e : expected) {
    const std::string name = e["name"];
    SCOPED_TRACE(name);
    EXPECT_TRUE(names.count(name)) << "not in tensor_names()";
    const auto t = source->tensor(name);
    ASSERT_TRUE(t.has_value());
    ASSERT_EQ(t->rows, e["rows"].get<int64_t>());
    ASSERT_EQ(t->cols, e["cols"].get<int64_t>());
    std::vector<float> values(size_t(t->rows * t->cols));
    for (int64_t r = 0; r < t->rows; ++r) dequantize_row(*t, r, values.data() + r * t->cols);
    // F32 and F16 values (the fixture rounded F16 ones in the reference too) come back exactly.
    const auto first = e["first"].get<std::vector<double>>();
    for (size_t i = 0; i < first.size(); ++i) EXPECT_EQ(double(values[i]), first[i]) << "value " << i;
    double checksum = 0;
    for (size_t i = 0; i < values.size(); ++i) checksum += double(values[i]) * double(1 + i % 13);
    EXPECT_NEAR(checksum, e["checksum"].get<double>(), 1e-9 * (1 + std::abs(checksum)));
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, MlaGguf,
                         ::testing::Values("tiny_mla_v3", "tiny_mla_v2_legacy", "tiny_mla_glm", "tiny_mla_v3_moe"));

TEST(MlaGgufConfig, DeepseekV3WithYarn) {
  const ModelConfig c = open_model_source(kDir + "/tiny_mla_v3.gguf")->config();
  EXPECT_EQ(c.architecture, "deepseek3");  // sigmoid expert gating
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.n_heads, 4);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.mla.q_lora_rank, 48);
  EXPECT_EQ(c.mla.kv_lora_rank, 32);
  EXPECT_EQ(c.mla.qk_nope_head_dim, 16);
  EXPECT_EQ(c.mla.qk_rope_head_dim, 8);
  EXPECT_EQ(c.mla.v_head_dim, 24);
  EXPECT_EQ(c.rope.pairing, RopePairing::kAdjacent);
  EXPECT_EQ(c.rope.scaling, RopeScaling::kYarn);
  EXPECT_EQ(c.rope.yarn_attn_factor, 1.0f);  // mscale = mscale_all_dim
  const double mscale = 0.1 * 0.7 * std::log(4.0) + 1.0;
  EXPECT_FLOAT_EQ(c.mla.softmax_scale, float(mscale * mscale / std::sqrt(24.0)));
  EXPECT_EQ(c.moe.n_experts, 4);
  EXPECT_EQ(c.moe.sparse_layers, std::vector<bool>({false, false}));  // leading_dense_block_count 2
}

TEST(MlaGgufConfig, LegacyLayoutAndGlm) {
  const ModelConfig v2 = open_model_source(kDir + "/tiny_mla_v2_legacy.gguf")->config();
  EXPECT_EQ(v2.architecture, "deepseek2");
  EXPECT_EQ(v2.mla.q_lora_rank, 0);
  EXPECT_EQ(v2.mla.qk_nope_head_dim, 16);
  EXPECT_EQ(v2.mla.v_head_dim, 24);
  EXPECT_EQ(v2.moe.routing.scoring, RouterScoring::kSoftmax);
  EXPECT_FLOAT_EQ(v2.mla.softmax_scale, float(1 / std::sqrt(24.0)));
  const ModelConfig glm = open_model_source(kDir + "/tiny_mla_glm.gguf")->config();
  EXPECT_EQ(glm.architecture, "glm4moelite");
  EXPECT_EQ(glm.n_layers, 2);  // block_count 3 less the multi-token-prediction block
  EXPECT_EQ(glm.mla.q_lora_rank, 40);
  EXPECT_EQ(glm.rope.theta, 1e6f);
}

TEST(MlaGgufConfig, DeepseekV3Routing) {
  const ModelConfig c = open_model_source(kDir + "/tiny_mla_v3_moe.gguf")->config();
  const MoeConfig& m = c.moe;
  EXPECT_EQ(c.architecture, "deepseek3");
  EXPECT_EQ(m.n_experts, 8);
  EXPECT_EQ(m.d_expert_ffn, 32);
  EXPECT_EQ(m.d_shared_ffn, 32);
  EXPECT_TRUE(m.score_bias);
  EXPECT_EQ(m.sparse_layers, std::vector<bool>({false, true, true}));
  EXPECT_EQ(m.routing.top_k, 3);
  EXPECT_TRUE(m.routing.renormalize);
  EXPECT_EQ(m.routing.scoring, RouterScoring::kSigmoid);
  EXPECT_EQ(m.routing.n_groups, 4);
  EXPECT_EQ(m.routing.top_groups, 2);
  EXPECT_EQ(m.routing.group_score, GroupScore::kTopTwoSum);
  EXPECT_FLOAT_EQ(m.routing.scale, 2.5f);
}

// A copy of a fixture with the bytes after the first occurrence of `needle` (a metadata key or a
// tensor name) replaced, removed with the object.
class PatchedGguf {
 public:
  PatchedGguf(const std::string& fixture, const std::string& needle, size_t skip, const void* bytes, size_t n)
      : path_(fs::temp_directory_path() / ("marlin_mla_gguf_" + std::to_string(::getpid()) + "_" +
                                           std::to_string(counter_++) + ".gguf")) {
    std::ifstream in(kDir + "/" + fixture + ".gguf", std::ios::binary);
    std::vector<char> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto at = std::search(data.begin(), data.end(), needle.begin(), needle.end());
    EXPECT_NE(at, data.end()) << needle;
    std::memcpy(&*(at + std::ptrdiff_t(needle.size() + skip)), bytes, n);
    std::ofstream(path_, std::ios::binary).write(data.data(), std::streamsize(data.size()));
  }
  ~PatchedGguf() { fs::remove(path_); }
  std::string path() const { return path_.string(); }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(MlaGgufErrors, InconsistentMetadataIsNamed) {
  const uint32_t three = 3, thirty_three = 33;
  // A scalar key is followed by its u32 type, then the value.
  PatchedGguf groups("tiny_mla_v3_moe", "deepseek2.expert_group_count", 4, &three, 4);
  EXPECT_NE(error_of([&] { open_model_source(groups.path()); }).find("does not split"), std::string::npos);
  PatchedGguf value("tiny_mla_v3", "deepseek2.attention.value_length", 4, &thirty_three, 4);
  EXPECT_NE(error_of([&] { open_model_source(value.path()); }).find("kv_lora_rank"), std::string::npos);
  const char renamed = 'X';
  PatchedGguf no_rank("tiny_mla_v3", "deepseek2.attention.kv_lora_ran", 0, &renamed, 1);
  EXPECT_NE(error_of([&] { open_model_source(no_rank.path()); }).find("kv_lora_rank' is missing"), std::string::npos);
}

TEST(MlaGgufErrors, SplitKvBOfAnotherShapeIsRefused) {
  // A tensor name is followed by its u32 dimension count, then u64 dimensions: swap the first two.
  const uint64_t swapped[2] = {32, 16};
  PatchedGguf file("tiny_mla_v3", "blk.0.attn_k_b.weight", 4, swapped, sizeof(swapped));
  auto source = open_model_source(file.path());
  const std::string error = error_of([&] { source->tensor("model.layers.0.self_attn.kv_b_proj.weight"); });
  EXPECT_NE(error.find("blk.0.attn_k_b.weight"), std::string::npos) << error;
  EXPECT_NE(error.find("qk_nope, kv_lora_rank, heads"), std::string::npos) << error;
}

}  // namespace
}  // namespace marlin
