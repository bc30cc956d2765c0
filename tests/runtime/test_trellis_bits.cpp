// The importance behind fractional trellis widths (runtime/trellis_bits.h) on the tiny Mixtral and
// Qwen3-MoE checkpoints: a routed expert's tr(H) counts every calibration token, so summed over a
// layer's experts it is top_k times the tr(H) of the layer's router input (each token reaches
// top_k experts with that same input).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "core/thread_pool.h"
#include "model/model.h"
#include "model/model_source.h"
#include "quant/dequant.h"
#include "runtime/quant_rules.h"
#include "runtime/trellis_bits.h"

namespace marlin {
namespace {

const std::string kDir = std::string(MARLIN_FIXTURES_DIR) + "/model";

std::vector<std::vector<int32_t>> calibration(int vocab) {
  std::vector<std::vector<int32_t>> out;
  for (int s = 0; s < 4; ++s) {
    std::vector<int32_t> tokens;
    for (int i = 0; i < 48; ++i) tokens.push_back(int32_t((s * 97 + i * 13 + i * i) % vocab));
    out.push_back(tokens);
  }
  return out;
}

double squared_norm_per_column(const QuantTensor& t) {
  std::vector<float> row(static_cast<size_t>(t.cols));
  double sum = 0;
  for (int64_t r = 0; r < t.rows; ++r) {
    dequantize_row(t, r, row.data());
    for (const float v : row) sum += double(v) * double(v);
  }
  return sum / double(t.cols);
}

class TrellisImportance : public ::testing::TestWithParam<std::string> {};

TEST_P(TrellisImportance, ExpertsShareTheirRouterInputByRouting) {
  ThreadPool pool(2);
  const auto source = open_model_source(kDir + "/" + GetParam());
  const auto text = calibration(source->config().vocab_size);
  std::map<std::string, double> importance;
  for (const auto& l : trellis_importance(*source, {}, text, pool)) importance[l.name] = l.importance;

  // The router inputs' 2·Σ‖x‖²/tokens, layer by layer, from an independent pass.
  auto model = load_model(*source, pool);
  const ModelConfig& c = model->config();
  std::vector<std::vector<float>> hidden;
  int64_t tokens = 0;
  for (const auto& sequence : text) {
    hidden.emplace_back(sequence.size() * size_t(c.d_model));
    model->embed(sequence, hidden.back().data());
    tokens += int64_t(sequence.size());
  }
  auto cache = model->new_cache(64);
  int sparse = 0;
  for (int layer = 0; layer < c.n_layers; ++layer) {
    const auto groups = model->sparse_mlp_groups(layer);
    double router_energy = 0;
    for (size_t s = 0; s < hidden.size(); ++s) {
      cache->clear();
      model->run_layer(layer, hidden[s].data(), int64_t(text[s].size()), *cache,
                       [&](int group, const float* x, int64_t rows, int64_t cols) {
                         if (!groups || group != groups->router_group) return;
                         for (int64_t i = 0; i < rows * cols; ++i) router_energy += double(x[i]) * double(x[i]);
                       });
    }
    if (!groups) continue;
    ++sparse;
    double experts_trace = 0;
    for (const auto& expert : groups->experts) {
      ASSERT_TRUE(importance.count(expert[0])) << expert[0];
      experts_trace += importance[expert[0]] / squared_norm_per_column(*source->tensor(expert[0]));
    }
    const double router_trace = 2.0 * router_energy / double(tokens);
    EXPECT_NEAR(experts_trace, c.moe.routing.top_k * router_trace, 1e-9 * experts_trace) << "layer " << layer;
  }
  EXPECT_GT(sparse, 0);
}

INSTANTIATE_TEST_SUITE_P(Tiny, TrellisImportance, ::testing::Values("tiny_mixtral", "tiny_qwen3_moe"));

// Log-probabilities in double of every position's logits (rows × vocab).
std::vector<double> log_probs(const std::vector<float>& logits, int64_t vocab) {
  std::vector<double> out(logits.size());
  for (size_t r = 0; r < logits.size() / size_t(vocab); ++r) {
    const float* x = logits.data() + r * size_t(vocab);
    const double top = *std::max_element(x, x + vocab);
    double sum = 0;
    for (int64_t i = 0; i < vocab; ++i) sum += std::exp(double(x[i]) - top);
    for (int64_t i = 0; i < vocab; ++i) out[r * size_t(vocab) + size_t(i)] = double(x[i]) - top - std::log(sum);
  }
  return out;
}

// A dense model's importance by trial is the mean KL, over the first kTrialTokens positions of the
// kTrialSequences calibration sequences it picks, of a model with that linear alone replaced by
// its trial weights: recomputed here on fresh models, one per linear checked (so the trials must
// also have put every earlier linear back). Rules that keep a linear leave it out.
TEST(TrellisTrialImportance, IsTheKlOfTheModelWithThatLinearPerturbed) {
  ThreadPool pool(2);
  const auto source = open_model_source(kDir + "/tiny_llama.gguf");
  const int64_t vocab = source->config().vocab_size;
  std::vector<std::vector<int32_t>> text = calibration(int(vocab));
  std::vector<int32_t> longer;  // longer than a trial reads
  for (size_t i = 0; i < kTrialTokens + 40; ++i) longer.push_back(int32_t((i * 31 + 5) % vocab));
  text.insert(text.begin() + 2, longer);
  const auto rules = parse_quant_rules("layers.0.mlp.up_proj=keep");
  const auto tried = trellis_importance_by_trial(*source, rules, text, pool);
  ASSERT_EQ(tried.size(), 2u * 7u - 1u);  // 7 linears a block, one kept
  for (const auto& l : tried) EXPECT_NE(l.name, "model.layers.0.mlp.up_proj.weight");

  // kTrialSequences = 2 of 5: sequences 0 and 2 (i · 5 / 2), the second's first kTrialTokens.
  ASSERT_EQ(kTrialSequences, 2u);
  const std::vector<std::vector<int32_t>> seen = {text[0], {longer.begin(), longer.begin() + kTrialTokens}};
  for (const size_t i : {size_t(0), size_t(5), tried.size() - 1}) {
    const auto& l = tried[i];
    SCOPED_TRACE(l.name);
    auto model = load_model(*source, pool);
    auto cache = model->new_cache(int64_t(kTrialTokens));
    std::vector<std::vector<double>> clean;
    for (const auto& tokens : seen) {
      std::vector<float> logits(tokens.size() * size_t(vocab));
      cache->clear();
      model->forward(tokens, *cache, logits.data(), true);
      clean.push_back(log_probs(logits, vocab));
    }
    const QuantBuffers noisy = trellis_trial_weights(*source->tensor(l.name), l.name);
    model->replace_weight(l.name, noisy.view());
    double kl = 0;
    int64_t positions = 0;
    for (size_t s = 0; s < seen.size(); ++s) {
      std::vector<float> logits(seen[s].size() * size_t(vocab));
      cache->clear();
      model->forward(seen[s], *cache, logits.data(), true);
      const auto q = log_probs(logits, vocab);
      for (size_t j = 0; j < q.size(); ++j) kl += std::exp(clean[s][j]) * (clean[s][j] - q[j]);
      positions += int64_t(seen[s].size());
    }
    kl /= double(positions);
    EXPECT_GT(l.importance, 0.0);
    // The same terms from the same fp32 logits in double, summed in another order; the bound is
    // that of fp32 log-probabilities (2 · 16 · 2^-24 ≈ 2e-6 per term, weighted by p), which the
    // trial no longer rounds to.
    EXPECT_NEAR(l.importance, kl, 2e-6);
    EXPECT_GT(kl, 1e-4) << "too little noise for the comparison to mean much";
  }
}

}  // namespace
}  // namespace marlin
