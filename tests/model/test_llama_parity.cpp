// Forward pass of tiny random Llama checkpoints (fp32 weights) against transformers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "model/model.h"
#include "model/model_source.h"
#include "reference.h"

namespace marlin {
namespace {

const std::string kDir = std::string(MARLIN_FIXTURES_DIR) + "/model";

double max_abs_diff(const float* ours, const double* ref, int n) {
  double worst = 0;
  for (int i = 0; i < n; ++i) worst = std::max(worst, std::abs(double(ours[i]) - ref[i]));
  return worst;
}

class TinyLlamaParity : public ::testing::TestWithParam<std::string> {};

// Our fp32 arithmetic differs from transformers' fp32 run only in summation order, so its
// distance from the float64 reference must be of the same size: at most twice that of the fp32
// transformers run.
TEST_P(TinyLlamaParity, EveryPositionInOneBatch) {
  const auto ref = testing::load_reference(kDir, GetParam());
  ASSERT_FALSE(ref.logits.empty());
  auto source = open_model_source(kDir + "/" + GetParam() + ".gguf");
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
  const auto ref = testing::load_reference(kDir, GetParam());
  auto source = open_model_source(kDir + "/" + GetParam() + ".gguf");
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

INSTANTIATE_TEST_SUITE_P(Variants, TinyLlamaParity,
                         ::testing::Values("tiny_llama", "tiny_llama3_rope", "tiny_yarn"));

}  // namespace
}  // namespace marlin
