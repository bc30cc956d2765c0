// The importance behind fractional trellis widths (runtime/trellis_bits.h). On the tiny Mixtral and
// Qwen3-MoE checkpoints: a routed expert's tr(H) counts every calibration token, so summed over a
// layer's experts it is top_k times the tr(H) of the layer's router input (each token reaches
// top_k experts with that same input). On the tiny Llama: the trials (trellis_trial_check.h).
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
#include "trellis_trial_check.h"

namespace marlin {
namespace {

const std::string kDir = std::string(MARLIN_FIXTURES_DIR) + "/model";

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
  const auto text = trial_check::calibration(source->config().vocab_size);
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

// A dense model's importance by trial is the KL of the model with that linear alone perturbed
// (trellis_trial_check.h).
TEST(TrellisTrialImportance, IsTheKlOfTheModelWithThatLinearPerturbed) {
  for (const char* model : {"/tiny_llama.gguf", "/tiny_qwen3"}) {
    SCOPED_TRACE(model);
    trial_check::expect_trials_are_perturbed_kls(kDir + model, DeviceKind::kCpu);
  }
}

// Trials asked of a GPU that is not there (or that fails) run on the CPU: the same plan, and the
// plan says where the trials ran.
TEST(TrellisTrialImportance, FallBackToTheCpuWithoutAGpu) {
  if (cuda_device_present()) GTEST_SKIP() << "a GPU is present: the trials run there";
  ThreadPool pool(2);
  const auto source = open_model_source(kDir + "/tiny_qwen3");
  const auto text = trial_check::calibration(source->config().vocab_size);
  const auto on_cpu = plan_trellis_bits(*source, {}, text, 2.5, 2, 8, pool, {}, DeviceKind::kCpu);
  const auto asked_gpu = plan_trellis_bits(*source, {}, text, 2.5, 2, 8, pool, {}, DeviceKind::kCuda);
  EXPECT_EQ(asked_gpu.trial_device, DeviceKind::kCpu);
  EXPECT_EQ(asked_gpu.formats.size(), on_cpu.formats.size());
  for (const auto& [name, format] : on_cpu.formats) {
    ASSERT_TRUE(asked_gpu.formats.count(name)) << name;
    EXPECT_EQ(asked_gpu.formats.at(name).name(), format.name()) << name;
  }
}

}  // namespace
}  // namespace marlin
