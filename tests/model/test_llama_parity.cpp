// Forward pass of tiny random Llama-family checkpoints (fp32 weights: Llama with three RoPE
// variants, Qwen3 from GGUF and from a Hugging Face directory) against transformers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "backend/cpu/matmul.h"
#include "backend/cpu/ops.h"
#include "model/model.h"
#include "model/model_source.h"
#include "model/weights.h"
#include "reference.h"

namespace marlin {
namespace {

const std::string kDir = std::string(MARLIN_FIXTURES_DIR) + "/model";

double max_abs_diff(const float* ours, const double* ref, int n) {
  double worst = 0;
  for (int i = 0; i < n; ++i) worst = std::max(worst, std::abs(double(ours[i]) - ref[i]));
  return worst;
}

// A reference (tools/make_llama_fixtures.py, make_qwen3_fixtures.py) and a checkpoint of its weights.
struct Checkpoint {
  const char* reference;
  const char* path;  // relative to kDir
};

void PrintTo(const Checkpoint& c, std::ostream* os) { *os << c.path; }

class TinyLlamaParity : public ::testing::TestWithParam<Checkpoint> {};

// Our fp32 arithmetic differs from transformers' fp32 run only in summation order, so its
// distance from the float64 reference must be of the same size: at most twice that of the fp32
// transformers run.
TEST_P(TinyLlamaParity, EveryPositionInOneBatch) {
  const auto ref = testing::load_reference(kDir, GetParam().reference);
  ASSERT_FALSE(ref.logits.empty());
  auto source = open_model_source(kDir + "/" + GetParam().path);
  for (int threads : {1, 3}) {
    ThreadPool pool(threads);
    auto model = load_model(*source, pool);
    ASSERT_EQ(model->config().vocab_size, ref.vocab);
    auto cache = model->new_cache(int64_t(ref.tokens.size()));
    std::vector<float> logits(static_cast<size_t>(ref.positions) * size_t(ref.vocab));
    model->forward(ref.tokens, *cache, logits.data(), true);
    const double err = max_abs_diff(logits.data(), ref.logits.data(), int(logits.size()));
    EXPECT_LE(err, 2 * ref.fp32_error) << "threads " << threads;
  }
}

TEST_P(TinyLlamaParity, PrefillThenTokenByToken) {
  const auto ref = testing::load_reference(kDir, GetParam().reference);
  auto source = open_model_source(kDir + "/" + GetParam().path);
  ThreadPool pool(2);
  auto model = load_model(*source, pool);
  auto cache = model->new_cache(int64_t(ref.tokens.size()));
  std::vector<float> logits(static_cast<size_t>(ref.vocab));
  const size_t prefill = 37;
  model->forward(std::span(ref.tokens).first(prefill), *cache, logits.data(), false);
  EXPECT_LE(max_abs_diff(logits.data(), ref.row(int(prefill) - 1), ref.vocab), 2 * ref.fp32_error);
  for (size_t i = prefill; i < ref.tokens.size(); ++i) {
    model->forward(std::span(ref.tokens).subspan(i, 1), *cache, logits.data(), false);
    ASSERT_LE(max_abs_diff(logits.data(), ref.row(int(i)), ref.vocab), 2 * ref.fp32_error) << "position " << i;
  }
  EXPECT_EQ(cache->length(), int64_t(ref.tokens.size()));
}

TEST(TinyLlama, RejectsTokensOutsideTheVocabulary) {
  auto source = open_model_source(kDir + "/tiny_llama.gguf");
  ThreadPool pool(1);
  auto model = load_model(*source, pool);
  auto cache = model->new_cache(8);
  std::vector<float> logits(static_cast<size_t>(model->config().vocab_size));
  const std::vector<int32_t> bad = {1, 100000};
  EXPECT_THROW(model->forward(bad, *cache, logits.data(), false), Error);
  const std::vector<int32_t> too_long(9, 1);
  EXPECT_THROW(model->forward(too_long, *cache, logits.data(), false), Error);
}

// Layer by layer (the calibration path of marlin quantize) computes what forward computes: the
// final hidden states, put through the final norm and lm_head here, give the reference logits.
TEST(TinyLlama, LayerByLayerReportsEveryLinearInput) {
  const auto ref = testing::load_reference(kDir, "tiny_llama");
  auto source = open_model_source(kDir + "/tiny_llama.gguf");
  ThreadPool pool(2);
  auto model = load_model(*source, pool);
  const auto& c = model->config();
  const int64_t n = 20;
  std::vector<float> x(static_cast<size_t>(n * c.d_model));
  model->embed(std::span(ref.tokens).first(n), x.data());
  auto cache = model->new_cache(n);
  for (int layer = 0; layer < c.n_layers; ++layer) {
    const auto groups = model->linear_groups(layer);
    ASSERT_EQ(groups.size(), 4u);
    std::vector<int64_t> cols_seen(groups.size(), 0);
    cache->clear();
    model->run_layer(layer, x.data(), n, *cache, [&](int group, const float*, int64_t rows, int64_t cols) {
      EXPECT_EQ(rows, n);
      cols_seen[size_t(group)] = cols;
    });
    EXPECT_EQ(cols_seen, (std::vector<int64_t>{c.d_model, c.n_heads * c.head_dim, c.d_model, c.d_ffn}));
    EXPECT_EQ(groups[0].weights.size(), 3u);
  }
  // Replacing a weight by itself changes nothing; a wrong shape or name is refused.
  auto q = source->tensor("model.layers.0.self_attn.q_proj.weight");
  model->replace_weight("model.layers.0.self_attn.q_proj.weight", *q);
  EXPECT_THROW(model->replace_weight("model.layers.0.self_attn.k_proj.weight", *q), Error);
  EXPECT_THROW(model->replace_weight("model.layers.9.self_attn.q_proj.weight", *q), Error);
  EXPECT_THROW(model->replace_weight("model.layers.01.self_attn.q_proj.weight", *q), Error);

  const auto norm = require_vector(*source, "model.norm.weight", c.d_model);
  const auto lm_head = require_matrix(*source, "lm_head.weight", c.vocab_size, c.d_model);
  std::vector<float> h(x.size()), logits(static_cast<size_t>(n) * size_t(ref.vocab));
  for (int64_t t = 0; t < n; ++t)
    cpu::rms_norm(&x[size_t(t * c.d_model)], norm.data(), c.rms_eps, c.d_model, &h[size_t(t * c.d_model)]);
  cpu::matmul(lm_head, h.data(), n, logits.data(), pool);
  for (int64_t i = 0; i < n * ref.vocab; ++i) ASSERT_NEAR(logits[size_t(i)], ref.logits[size_t(i)], 2 * ref.fp32_error);
}

INSTANTIATE_TEST_SUITE_P(Variants, TinyLlamaParity,
                         ::testing::Values(Checkpoint{"tiny_llama", "tiny_llama.gguf"},
                                           Checkpoint{"tiny_llama3_rope", "tiny_llama3_rope.gguf"},
                                           Checkpoint{"tiny_yarn", "tiny_yarn.gguf"},
                                           Checkpoint{"tiny_qwen3", "tiny_qwen3.gguf"},
                                           Checkpoint{"tiny_qwen3", "tiny_qwen3"}),
                         [](const ::testing::TestParamInfo<Checkpoint>& info) {
                           std::string name = info.param.path;
                           for (char& ch : name)
                             if (ch == '.') ch = '_';
                           return name.find("_gguf") == std::string::npos ? name + "_hf" : name;
                         });

}  // namespace
}  // namespace marlin
