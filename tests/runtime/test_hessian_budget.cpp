// GPTQ's Hessians within a memory budget: the default from the free memory, the split of a
// block's groups into passes, and whole-model quantizations whose tiny budgets force many passes
// over the calibration text, which must write exactly the tensors of an unlimited budget.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cctype>
#include <cstring>
#include <map>

#include "core/error.h"
#include "model/model_source.h"
#include "quant/hessian.h"
#include "quant/quant_buffers.h"
#include "runtime/hessian_budget.h"
#include "runtime/quantize_model.h"

namespace marlin {
namespace {

const std::string kDir = std::string(MARLIN_FIXTURES_DIR) + "/model";

TEST(HessianBudget, GivenWinsElseAShareOfTheFreeMemoryElseNoLimit) {
  EXPECT_EQ(hessian_budget(uint64_t(512) << 20, uint64_t(64) << 30).bytes, uint64_t(512) << 20);
  const HessianBudget share = hessian_budget(std::nullopt, uint64_t(10) << 30);
  EXPECT_EQ(share.bytes, uint64_t(6) << 30);
  EXPECT_EQ(share.summary, "6.00 GiB (60% of the 10.0 GiB available)");
  const HessianBudget unknown = hessian_budget(std::nullopt, std::nullopt);
  EXPECT_EQ(unknown.bytes, UINT64_MAX);
  EXPECT_TRUE(unknown.summary.starts_with("none (no MemAvailable")) << unknown.summary;
}

TEST(HessianBudget, PassesFillInOrderAndAnOversizedGroupGoesAlone) {
  using Passes = std::vector<HessianPass>;
  const std::vector<uint64_t> bytes = {4, 4, 4, 10, 1, 1, 8};
  EXPECT_EQ(plan_hessian_passes(bytes, 8), (Passes{{0, 2}, {2, 3}, {3, 4}, {4, 6}, {6, 7}}));
  EXPECT_EQ(plan_hessian_passes(bytes, 9), (Passes{{0, 2}, {2, 3}, {3, 4}, {4, 6}, {6, 7}}));
  EXPECT_EQ(plan_hessian_passes(bytes, 10), (Passes{{0, 2}, {2, 3}, {3, 4}, {4, 7}}));  // sums equal to it fit
  EXPECT_EQ(plan_hessian_passes(bytes, 12), (Passes{{0, 3}, {3, 6}, {6, 7}}));
  EXPECT_EQ(plan_hessian_passes(bytes, 32), (Passes{{0, 7}}));
  EXPECT_EQ(plan_hessian_passes(bytes, UINT64_MAX), (Passes{{0, 7}}));
  EXPECT_EQ(plan_hessian_passes(bytes, 0).size(), bytes.size());
  EXPECT_EQ(plan_hessian_passes({UINT64_MAX, UINT64_MAX}, UINT64_MAX), (Passes{{0, 1}, {1, 2}}));
  EXPECT_TRUE(plan_hessian_passes({}, 8).empty());
}

TEST(HessianBudget, AccumulatorBytesAreItsPaddedMatrix) {
  EXPECT_EQ(HessianAccumulator::memory_bytes(64), 64u * 64 * 8);
  EXPECT_EQ(HessianAccumulator::memory_bytes(33), 48u * 48 * 8);  // 16-column blocks
  EXPECT_EQ(HessianAccumulator::memory_bytes(kMaxHessianCols), uint64_t(8) << 30);
  EXPECT_THROW(HessianAccumulator::memory_bytes(kMaxHessianCols + 1), Error);
  EXPECT_THROW(HessianAccumulator::memory_bytes(0), Error);
}

// A written tensor: its format, shape and every stored byte (rows at the minimal stride).
struct Written {
  std::string format;
  int64_t rows = 0, cols = 0;
  std::vector<uint8_t> bytes;
  float tensor_scale = 0;
  uint64_t rotation_seed = 0;
  bool operator==(const Written&) const = default;
};

Written snapshot(const QuantTensor& t) {
  const QuantBuffers layout = QuantBuffers::allocate(t.format, t.rows, t.cols);
  Written w{t.format.name(), t.rows, t.cols, {}, t.tensor_scale, t.rotation_seed};
  for (int64_t r = 0; r < t.rows; ++r)
    w.bytes.insert(w.bytes.end(), t.codes + uint64_t(r) * t.code_row_bytes,
                   t.codes + uint64_t(r) * t.code_row_bytes + layout.code_row_bytes);
  auto append = [&](const void* data, size_t size) {
    const auto* bytes = static_cast<const uint8_t*>(data);
    if (size) w.bytes.insert(w.bytes.end(), bytes, bytes + size);
  };
  append(t.scales, layout.scales.size());
  append(t.zeros, layout.zeros.size());
  append(t.sparse_meta, layout.sparse_meta.size());
  append(t.perm, layout.perm.size() * sizeof(int32_t));
  return w;
}

struct Quantized {
  std::vector<std::pair<std::string, Written>> tensors;  // in the order written
  QuantizeReport report;
  std::vector<std::string> notices;
};

Quantized quantize(const ModelSource& source, QuantizeOptions options, uint64_t budget, ThreadPool& pool) {
  options.hessian_budget = budget;
  Quantized run;
  const TensorSink sink = [&](const std::string& name, const QuantTensor& t) {
    run.tensors.emplace_back(name, snapshot(t));
  };
  run.report = quantize_model(source, options, pool, sink, {},
                              [&](const std::string& message) { run.notices.push_back(message); });
  return run;
}

// 8 sequences of 32 tokens (fewer than other tests use: only equality is judged here).
std::vector<std::vector<int32_t>> calibration_tokens() {
  std::vector<std::vector<int32_t>> out;
  for (int s = 0; s < 8; ++s) {
    std::vector<int32_t> tokens;
    for (int i = 0; i < 32; ++i) tokens.push_back(int32_t((s * 131 + i * 17 + i * i) % 128));
    out.push_back(tokens);
  }
  return out;
}

struct BudgetCase {
  const char* model;   // under tests/fixtures/model
  const char* format;  // for the blocks' linears
  uint64_t budget;     // bytes: small enough for many passes
  int64_t passes;      // what that budget takes for the whole model
};

void PrintTo(const BudgetCase& c, std::ostream* os) {
  *os << c.model << " " << c.format << " in " << c.budget << " B";
}

class HessianBudgetModel : public ::testing::TestWithParam<BudgetCase> {};

// Tiny Mixtral, per block: q|k|v, o and the router (64 inputs: 32 KiB Hessians each), then 8
// experts' w1|w3 (32 KiB) and w2 (32 inputs: 8 KiB). 40 KiB holds an expert's pair: 3 + 8 passes.
// 1 byte: every group alone (19 passes), each over the budget. The Llama GGUF stores Q/K rows for
// adjacent RoPE pairs (reordered on the way out) and runs act-order GPTQ: q|k|v, o, gate|up
// (64 inputs: 32 KiB) and down (96 inputs: 72 KiB) with 96 KiB: q|k|v + o + gate|up, then down.
TEST_P(HessianBudgetModel, ManyPassesWriteTheBytesOfOne) {
  const BudgetCase& c = GetParam();
  ThreadPool pool(2);
  auto source = open_model_source(kDir + "/" + c.model);
  QuantizeOptions options;
  options.format = TensorFormat::parse(c.format);
  options.rules = parse_quant_rules("embed_tokens=keep,lm_head=keep");
  options.gptq = true;
  options.calibration = calibration_tokens();
  const Quantized one = quantize(*source, options, UINT64_MAX, pool);
  const Quantized many = quantize(*source, options, c.budget, pool);
  const int64_t blocks = source->config().n_layers;
  EXPECT_EQ(one.report.hessian_passes, blocks);
  EXPECT_EQ(many.report.hessian_passes, c.passes);
  ASSERT_EQ(one.tensors.size(), many.tensors.size());
  int calibrated = 0;
  for (size_t i = 0; i < one.tensors.size(); ++i) {
    const auto& [name, tensor] = one.tensors[i];
    EXPECT_EQ(many.tensors[i].first, name) << "tensor " << i << " written in another order";
    EXPECT_TRUE(many.tensors[i].second == tensor) << name << " differs";
    EXPECT_EQ(std::memcmp(&many.report.tensors[i].gptq_loss, &one.report.tensors[i].gptq_loss, sizeof(double)), 0)
        << name;
    calibrated += one.report.tensors[i].gptq_loss >= 0;
  }
  EXPECT_GT(calibrated, 2 * 4) << "too few linears were calibrated for the comparison to mean much";
  ASSERT_EQ(one.notices.size(), 1u);
  EXPECT_EQ(one.notices[0], "memory budget for a block's Hessians: 16.0 EiB");
  ASSERT_GE(many.notices.size(), 2u);
  EXPECT_TRUE(many.notices[0].starts_with("memory budget for a block's Hessians: ")) << many.notices[0];
  EXPECT_EQ(many.notices.back(), fmt::format("{} of {} blocks collect their Hessians in several passes over the "
                                             "calibration text (up to {})",
                                             blocks, blocks, c.passes / blocks));
  const bool oversized = many.notices.size() == 3;
  EXPECT_EQ(oversized, c.budget < HessianAccumulator::memory_bytes(32)) << many.notices[1];
  if (oversized) {
    EXPECT_TRUE(many.notices[1].starts_with("warning: ")) << many.notices[1];
  }
}

INSTANTIATE_TEST_SUITE_P(Tiny, HessianBudgetModel,
                         ::testing::Values(BudgetCase{"tiny_mixtral", "int4-g32", 40 << 10, 2 * 11},
                                           BudgetCase{"tiny_mixtral", "trellis3", 1, 2 * 19},
                                           BudgetCase{"tiny_llama.gguf", "int4-g32-act", 96 << 10, 2 * 2}),
                         [](const auto& info) {
                           std::string name = std::string(info.param.model) + "_" + info.param.format;
                           for (char& ch : name)
                             if (!std::isalnum(uint8_t(ch))) ch = '_';
                           return name;
                         });

}  // namespace
}  // namespace marlin
