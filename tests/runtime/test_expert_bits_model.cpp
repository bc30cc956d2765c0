// Per-expert widths on the tiny Mixtral and Qwen3-MoE checkpoints: the measured sensitivities,
// the budget, the ordering by sensitivity, a .marlin checkpoint written with the chosen formats
// and loaded back, and its logits against the unquantized model's and a uniform lowest width's.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>

#include <unistd.h>

#include "formats/marlin_writer.h"
#include "model/model.h"
#include "model/model_source.h"
#include "runtime/evaluation.h"
#include "runtime/expert_bits.h"
#include "runtime/expert_bits_plan.h"
#include "runtime/quantize_model.h"
#include "../model/reference.h"

namespace marlin {
namespace {

const std::string kDir = std::string(MARLIN_FIXTURES_DIR) + "/model";

// Token sequences other than the reference's (the logits are compared on those).
std::vector<std::vector<int32_t>> calibration(int vocab) {
  std::vector<std::vector<int32_t>> out;
  for (int s = 0; s < 8; ++s) {
    std::vector<int32_t> tokens;
    for (int i = 0; i < 64; ++i) tokens.push_back(int32_t((s * 131 + i * 17 + i * i) % vocab));
    out.push_back(tokens);
  }
  return out;
}

// Writes `source` quantized by `options` to a .marlin file and opens it.
std::unique_ptr<ModelSource> write_checkpoint(const ModelSource& source, const QuantizeOptions& options,
                                              const std::optional<ExpertBitsPlan>& plan, const std::string& path,
                                              ThreadPool& pool) {
  MarlinCheckpointInfo info;
  info.config = source.hf_config();
  if (plan) info.config[kExpertBitsConfigKey] = expert_bits_json(*plan);
  MarlinWriter writer(path, std::move(info));
  quantize_model(source, options, pool, [&](const std::string& name, const QuantTensor& t) { writer.add(name, t); });
  writer.finish();
  return open_model_source(path);
}

class ExpertBitsModel : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    source_ = open_model_source(kDir + "/" + GetParam());
    ref_ = testing::load_reference(kDir, GetParam());
    base_ = TensorFormat::parse("int4-g32");
    rules_ = parse_quant_rules("embed_tokens=keep,lm_head=keep");
    // One directory per test and process: ctest runs this fixture's tests in parallel.
    const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ("expert_bits_" + GetParam() + "_" + test.substr(0, test.find('/')) + "_" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  ExpertBitsPlan plan(const ExpertBitsOptions& o) {
    return plan_expert_bits(*source_, base_, rules_, calibration(source_->config().vocab_size), o, pool_);
  }
  QuantizeOptions options_for(const ExpertBitsPlan& plan) const {
    QuantizeOptions o;
    o.format = base_;
    o.rules = rules_;
    o.tensor_formats = expert_tensor_formats(plan);
    return o;
  }
  double kl_from_original(const ModelSource& quantized) {
    auto a = load_model(*source_, pool_), b = load_model(quantized, pool_);
    EvaluationOptions options;
    options.ctx = 100;
    return compare_models(*a, *b, ref_.tokens, options).mean_kl;
  }

  std::unique_ptr<ModelSource> source_;
  testing::ReferenceLogits ref_;
  std::optional<TensorFormat> base_;
  std::vector<QuantRule> rules_;
  std::filesystem::path dir_;
  ThreadPool pool_{2};
};

TEST_P(ExpertBitsModel, AutoRespectsTheBudgetAndTheSensitivityOrder) {
  const ModelConfig& c = source_->config();
  const double target = 3.0;
  const auto p = plan({.min_bits = 2, .max_bits = 8, .target_bits = target});
  int sparse_layers = 0;
  for (int l = 0; l < c.n_layers; ++l) sparse_layers += c.moe.sparse(l);
  ASSERT_EQ(p.experts.size(), size_t(sparse_layers * c.moe.n_experts));
  EXPECT_EQ(p.widths, (std::vector<int>{2, 3, 4, 8}));
  EXPECT_EQ(p.formats[1].name(), "int3-g32");

  // Budget: at most the target, and no expert could move up one width within it.
  const int64_t params = p.experts.front().params;
  const int64_t total = params * int64_t(p.experts.size());
  int64_t used = 0;
  for (const auto& x : p.experts) {
    EXPECT_EQ(x.params, params);
    EXPECT_GE(x.bits, 2);
    EXPECT_LE(x.bits, 8);
    used += x.params * x.bits;
  }
  EXPECT_LE(p.average_bits, target);
  EXPECT_NEAR(p.average_bits, double(used) / double(total), 1e-12);
  for (const auto& x : p.experts) {
    const size_t i = size_t(std::find(p.widths.begin(), p.widths.end(), x.bits) - p.widths.begin());
    if (i + 1 == p.widths.size() || x.frequency == 0) continue;
    if (x.error[i] < x.error[i + 1]) continue;  // a width that would not help is never forced
    EXPECT_GT(used + x.params * (p.widths[i + 1] - x.bits), int64_t(std::floor(target * double(total) * (1 + 1e-12))))
        << "layer " << x.layer << " expert " << x.expert << " could still move up";
  }

  // Routing: each layer's frequencies add up to top_k; every error falls as the width grows
  // (2 → 8 bits cuts RTN error by far more than any noise); unused experts get the lowest width.
  std::map<int, double> frequency_sum;
  for (const auto& x : p.experts) {
    frequency_sum[x.layer] += x.frequency;
    if (x.frequency == 0) {
      EXPECT_EQ(x.bits, 2);
      continue;
    }
    EXPECT_GT(x.error.front(), x.error.back());
  }
  for (const auto& [layer, sum] : frequency_sum) EXPECT_NEAR(sum, c.moe.routing.top_k, 1e-9) << layer;

  // An expert that gains at least as much from every upgrade as another (same size) never has fewer bits.
  for (const auto& a : p.experts)
    for (const auto& b : p.experts) {
      bool dominates = true, strictly = false;
      for (size_t i = 0; i < p.widths.size(); ++i)
        for (size_t j = i + 1; j < p.widths.size(); ++j) {
          const double ga = a.error[i] - a.error[j], gb = b.error[i] - b.error[j];
          dominates = dominates && ga >= gb;
          strictly = strictly || ga > gb;
        }
      if (dominates && strictly && b.frequency > 0) {
        EXPECT_GE(a.bits, b.bits) << "layer " << a.layer << " expert " << a.expert << " vs layer " << b.layer
                                  << " expert " << b.expert;
      }
    }
  std::cout << expert_bits_summary(expert_bits_json(p));
}

// The chosen formats land in a .marlin checkpoint that loads and runs; its logits are closer to
// the unquantized model's than with every expert at the lowest width.
TEST_P(ExpertBitsModel, CheckpointLoadsAndBeatsTheLowestUniformWidth) {
  const auto p = plan({.min_bits = 2, .max_bits = 8, .target_bits = 3.0});
  const auto auto_source = write_checkpoint(*source_, options_for(p), p, (dir_ / "auto.marlin").string(), pool_);
  for (const auto& x : p.experts)
    for (const auto& name : x.names)
      EXPECT_EQ(auto_source->tensor(name)->format.name(), fmt::format("int{}-g32", x.bits)) << name;
  EXPECT_EQ(auto_source->tensor("model.layers.0.self_attn.q_proj.weight")->format.name(), "int4-g32");
  const auto stored = auto_source->hf_config().at(kExpertBitsConfigKey);
  EXPECT_EQ(stored.at("mode"), "auto");
  EXPECT_DOUBLE_EQ(stored.at("average_bits").get<double>(), p.average_bits);
  std::set<int> sparse_layers;
  for (const auto& x : p.experts) sparse_layers.insert(x.layer);
  EXPECT_EQ(stored.at("layers").size(), sparse_layers.size());

  const auto lowest = plan({.bits = 2});
  const auto uniform3 = plan({.bits = 3});
  EXPECT_EQ(lowest.average_bits, 2.0);
  const auto low_source = write_checkpoint(*source_, options_for(lowest), lowest, (dir_ / "u2.marlin").string(), pool_);
  const auto u3_source = write_checkpoint(*source_, options_for(uniform3), uniform3, (dir_ / "u3.marlin").string(), pool_);
  const double kl_auto = kl_from_original(*auto_source), kl_low = kl_from_original(*low_source);
  const double kl_u3 = kl_from_original(*u3_source);
  EXPECT_LT(kl_auto, kl_low);
  EXPECT_LT(p.error, p.error_at_min_bits);
  std::cout << GetParam() << ": mean KL from the unquantized model: every expert int2 " << kl_low << ", auto (average "
            << p.average_bits << " bits) " << kl_auto << ", every expert int3 " << kl_u3 << "\n";
}

TEST_P(ExpertBitsModel, RefusesRulesOnExpertsAndBadRanges) {
  rules_ = parse_quant_rules("*.experts.*=int8-g32");
  EXPECT_THROW(plan({.bits = 4}), Error);
  rules_ = {};
  EXPECT_THROW(plan({.min_bits = 4, .max_bits = 3, .target_bits = 3.5}), Error);
  EXPECT_THROW(plan({.min_bits = 2, .max_bits = 8, .target_bits = 9}), Error);
  EXPECT_THROW(plan_expert_bits(*source_, base_, rules_, {}, {.min_bits = 2, .max_bits = 8, .target_bits = 3}, pool_),
               Error);  // auto without calibration
}

INSTANTIATE_TEST_SUITE_P(Tiny, ExpertBitsModel, ::testing::Values("tiny_mixtral", "tiny_qwen3_moe"));

TEST(ExpertBitsPlan, DenseModelsHaveNoExperts) {
  ThreadPool pool(2);
  auto source = open_model_source(kDir + "/tiny_llama.gguf");
  EXPECT_THROW(plan_expert_bits(*source, std::nullopt, {}, {}, {.bits = 4}, pool), Error);
}

}  // namespace
}  // namespace marlin
