// The check behind TrellisTrialImportance (tests/runtime) and its CUDA twin (tests/cuda): a dense
// model's importance by trial is the mean KL, over the first kTrialTokens positions of the
// kTrialSequences calibration sequences it picks, of a model with that linear alone replaced by
// its trial weights: recomputed here on fresh models on the same device, one per linear checked
// (so the trials must also have put every earlier linear back). Rules that keep a linear leave it
// out.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/thread_pool.h"
#include "model/model.h"
#include "model/model_source.h"
#include "runtime/quant_rules.h"
#include "runtime/trellis_bits.h"

namespace marlin::trial_check {

// Log-probabilities in double of every position's logits (rows × vocab).
inline std::vector<double> log_probs(const std::vector<float>& logits, int64_t vocab) {
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

// Four calibration sequences of 48 tokens below `vocab`.
inline std::vector<std::vector<int32_t>> calibration(int vocab) {
  std::vector<std::vector<int32_t>> out;
  for (int s = 0; s < 4; ++s) {
    std::vector<int32_t> tokens;
    for (int i = 0; i < 48; ++i) tokens.push_back(int32_t((s * 97 + i * 13 + i * i) % vocab));
    out.push_back(tokens);
  }
  return out;
}

// The trials of a dense two-block model (7 linears a block, a context of at least kTrialTokens) on
// `device` against their recomputation there.
inline void expect_trials_are_perturbed_kls(const std::string& model_path, DeviceKind device) {
  ThreadPool pool(2);
  const auto source = open_model_source(model_path);
  const int64_t vocab = source->config().vocab_size;
  std::vector<std::vector<int32_t>> text = calibration(int(vocab));
  std::vector<int32_t> longer;  // longer than a trial reads
  for (size_t i = 0; i < kTrialTokens + 40; ++i) longer.push_back(int32_t((i * 31 + 5) % vocab));
  text.insert(text.begin() + 2, longer);
  const auto rules = parse_quant_rules("layers.0.mlp.up_proj=keep");
  const auto tried = trellis_importance_by_trial(*source, rules, text, pool, {}, device);
  ASSERT_EQ(tried.size(), 2u * 7u - 1u);  // 7 linears a block, one kept
  for (const auto& l : tried) EXPECT_NE(l.name, "model.layers.0.mlp.up_proj.weight");

  // kTrialSequences = 2 of 5: sequences 0 and 2 (i · 5 / 2), the second's first kTrialTokens.
  ASSERT_EQ(kTrialSequences, 2u);
  const std::vector<std::vector<int32_t>> seen = {text[0], {longer.begin(), longer.begin() + kTrialTokens}};
  for (const size_t i : {size_t(0), size_t(5), tried.size() - 1}) {
    const auto& l = tried[i];
    SCOPED_TRACE(l.name);
    auto model = load_model(*source, pool, device);
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

}  // namespace marlin::trial_check
