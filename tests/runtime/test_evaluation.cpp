// Perplexity and model comparison against values computed from transformers' logits.
#include <gtest/gtest.h>

#include <cmath>

#include "model/model.h"
#include "model/model_source.h"
#include "runtime/evaluation.h"
#include "../model/reference.h"

namespace marlin {
namespace {

const std::string kDir = std::string(MARLIN_FIXTURES_DIR) + "/model";

// Mean NLL of tokens[half..n) from reference logits rows half-1..n-2, in double.
double reference_nll(const testing::ReferenceLogits& ref, int n) {
  const int half = n / 2;
  double sum = 0;
  for (int i = half; i < n; ++i) {
    const double* row = ref.row(i - 1);
    double max = row[0], z = 0;
    for (int v = 1; v < ref.vocab; ++v) max = std::max(max, row[v]);
    for (int v = 0; v < ref.vocab; ++v) z += std::exp(row[v] - max);
    sum += max + std::log(z) - row[ref.tokens[size_t(i)]];
  }
  return sum / (n - half);
}

TEST(Evaluation, PerplexityMatchesTheReference) {
  const auto ref = testing::load_reference(kDir, "tiny_llama");
  auto source = open_model_source(kDir + "/tiny_llama.gguf");
  ThreadPool pool(2);
  auto model = load_model(*source, pool);
  EvaluationOptions options;
  options.ctx = 100;
  auto r = perplexity(*model, ref.tokens, options);
  EXPECT_EQ(r.chunks, 1);
  EXPECT_EQ(r.scored_tokens, 50);
  // Logits agree within ~1e-5 (see test_llama_parity), so the mean NLL does too.
  EXPECT_NEAR(r.mean_nll, reference_nll(ref, 100), 1e-4);
  EXPECT_NEAR(r.perplexity, std::exp(reference_nll(ref, 100)), 1e-3);
  EXPECT_GT(r.nll_stderr, 0);

  options.ctx = 40;  // two whole chunks of 40 (the last 20 tokens are left out)
  EXPECT_EQ(perplexity(*model, ref.tokens, options).chunks, 2);
  options.max_chunks = 1;
  EXPECT_EQ(perplexity(*model, ref.tokens, options).scored_tokens, 20);
}

TEST(Evaluation, ComparingAModelWithItself) {
  const auto ref = testing::load_reference(kDir, "tiny_llama");
  auto source = open_model_source(kDir + "/tiny_llama.gguf");
  ThreadPool pool(1);
  auto a = load_model(*source, pool), b = load_model(*source, pool);
  EvaluationOptions options;
  options.ctx = 50;
  auto r = compare_models(*a, *b, ref.tokens, options);
  EXPECT_EQ(r.mean_kl, 0.0);
  EXPECT_EQ(r.top1_agreement, 1.0);
  EXPECT_EQ(r.a.perplexity, r.b.perplexity);
  EXPECT_EQ(r.a.scored_tokens, 50);
}

TEST(Evaluation, ComparingDifferentModels) {
  const auto ref = testing::load_reference(kDir, "tiny_llama");
  auto sa = open_model_source(kDir + "/tiny_llama.gguf"), sb = open_model_source(kDir + "/tiny_yarn.gguf");
  ThreadPool pool(1);
  auto a = load_model(*sa, pool), b = load_model(*sb, pool);
  EvaluationOptions options;
  options.ctx = 100;
  auto r = compare_models(*a, *b, ref.tokens, options);
  EXPECT_GT(r.mean_kl, 0.01);  // different random weights
  EXPECT_LE(r.kl_p99, r.max_kl);
  EXPECT_GE(r.max_kl, r.mean_kl);
  EXPECT_NEAR(r.a.mean_nll, reference_nll(ref, 100), 1e-4);
}

TEST(Evaluation, RejectsTooLittleText) {
  auto source = open_model_source(kDir + "/tiny_llama.gguf");
  ThreadPool pool(1);
  auto model = load_model(*source, pool);
  std::vector<int32_t> tokens(10, 1);
  EvaluationOptions options;
  options.ctx = 64;
  EXPECT_THROW(perplexity(*model, tokens, options), Error);
  options.ctx = 2;
  EXPECT_THROW(perplexity(*model, tokens, options), Error);
}

}  // namespace
}  // namespace marlin
