#include "runtime/trellis_bits.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "model/model.h"
#include "model/model_source.h"
#include "quant/bit_allocation.h"
#include "quant/dequant.h"

namespace marlin {
namespace {

// Σ‖W‖² of a stored tensor, row by row in fp32 (summed in double).
double squared_norm(const QuantTensor& t) {
  std::vector<float> row(static_cast<size_t>(t.cols));
  double sum = 0;
  for (int64_t r = 0; r < t.rows; ++r) {
    dequantize_row(t, r, row.data());
    for (const float v : row) sum += double(v) * double(v);
  }
  return sum;
}

}  // namespace

std::vector<TrellisLinearImportance> trellis_importance(const ModelSource& source, const std::vector<QuantRule>& rules,
                                                        const std::vector<std::vector<int32_t>>& calibration,
                                                        ThreadPool& pool) {
  MARLIN_CHECK(!calibration.empty(), "trellis bits: the allocation needs calibration text");
  auto model = load_model(source, pool);
  const ModelConfig& c = model->config();

  // tr(H) per linear group: 2·Σ‖x‖²/tokens over its calibration inputs, block by block.
  std::vector<std::vector<float>> hidden;
  int64_t longest = 0, tokens = 0;
  for (const auto& sequence : calibration) {
    hidden.emplace_back(sequence.size() * size_t(c.d_model));
    model->embed(sequence, hidden.back().data());
    longest = std::max<int64_t>(longest, int64_t(sequence.size()));
    tokens += int64_t(sequence.size());
  }
  auto cache = model->new_cache(longest);
  const auto nominal = TensorFormat::parse("trellis4");
  std::vector<TrellisLinearImportance> out;
  for (int layer = 0; layer < c.n_layers; ++layer) {
    const auto groups = model->linear_groups(layer);
    std::vector<double> energy(groups.size(), 0.0);
    for (size_t s = 0; s < hidden.size(); ++s) {
      cache->clear();
      model->run_layer(layer, hidden[s].data(), int64_t(calibration[s].size()), *cache,
                       [&](int group, const float* x, int64_t rows, int64_t cols) {
                         double sum = 0;
                         for (int64_t i = 0; i < rows * cols; ++i) sum += double(x[i]) * double(x[i]);
                         energy[size_t(group)] += sum;
                       });
    }
    for (size_t g = 0; g < groups.size(); ++g) {
      const double trace_h = 2.0 * energy[g] / double(tokens);
      for (const auto& name : groups[g].weights) {
        const auto t = source.tensor(name);
        MARLIN_CHECK(t.has_value(), "trellis bits: tensor '{}' is missing", name);
        const auto format = choose_format(name, t->rows, nominal, rules);
        if (!format || format->kind != FormatKind::kTrellis) continue;
        out.push_back({name, t->rows * t->cols, squared_norm(*t) / double(t->cols) * trace_h});
      }
    }
  }
  return out;
}

TrellisBitsPlan plan_trellis_bits(const ModelSource& source, const std::vector<QuantRule>& rules,
                                  const std::vector<std::vector<int32_t>>& calibration, double target_bits,
                                  int min_bits, int max_bits, ThreadPool& pool) {
  MARLIN_CHECK(min_bits >= 1 && max_bits <= 8 && min_bits <= max_bits && target_bits >= min_bits &&
                   target_bits <= max_bits,
               "trellis bits: a target of {} bits does not fit widths {} to {}", target_bits, min_bits, max_bits);
  const auto linears = trellis_importance(source, rules, calibration, pool);
  MARLIN_CHECK(!linears.empty(), "trellis bits: no tensor of the blocks is quantized to trellis");
  std::vector<LayerCost> costs;
  for (const auto& l : linears) costs.push_back({l.weights, rate_distortion_losses(l.importance, 0, max_bits)});
  const auto bits = allocate_trellis_bits(costs, target_bits, min_bits, max_bits);
  TrellisBitsPlan plan;
  plan.target_bits = target_bits;
  double weighted = 0, weights = 0;
  for (size_t i = 0; i < linears.size(); ++i) {
    plan.formats[linears[i].name] = TensorFormat::parse("trellis" + std::to_string(bits[i]));
    plan.tensors_per_width[bits[i]]++;
    weighted += double(costs[i].weights) * bits[i];
    weights += double(costs[i].weights);
  }
  plan.average_bits = weighted / weights;
  return plan;
}

}  // namespace marlin
