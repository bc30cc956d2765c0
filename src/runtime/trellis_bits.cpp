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

TrellisBitsPlan plan_trellis_bits(const ModelSource& source, const std::vector<QuantRule>& rules,
                                  const std::vector<std::vector<int32_t>>& calibration, double target_bits,
                                  int min_bits, int max_bits, ThreadPool& pool) {
  MARLIN_CHECK(!calibration.empty(), "trellis bits: the allocation needs calibration text");
  MARLIN_CHECK(min_bits >= 1 && max_bits <= 8 && min_bits <= max_bits && target_bits >= min_bits &&
                   target_bits <= max_bits,
               "trellis bits: a target of {} bits does not fit widths {} to {}", target_bits, min_bits, max_bits);
  auto model = load_model(source, pool);
  const ModelConfig& c = model->config();

  // tr(H) per linear group: 2·Σ‖x‖²/n over its calibration inputs, block by block.
  std::vector<std::vector<float>> hidden;
  int64_t longest = 0;
  for (const auto& tokens : calibration) {
    hidden.emplace_back(tokens.size() * size_t(c.d_model));
    model->embed(tokens, hidden.back().data());
    longest = std::max<int64_t>(longest, int64_t(tokens.size()));
  }
  auto cache = model->new_cache(longest);
  const auto nominal = TensorFormat::parse("trellis" + std::to_string(min_bits));
  std::vector<std::string> names;
  std::vector<LayerCost> costs;
  for (int layer = 0; layer < c.n_layers; ++layer) {
    const auto groups = model->linear_groups(layer);
    std::vector<double> energy(groups.size(), 0.0);
    std::vector<int64_t> samples(groups.size(), 0);
    for (size_t s = 0; s < hidden.size(); ++s) {
      cache->clear();
      model->run_layer(layer, hidden[s].data(), int64_t(calibration[s].size()), *cache,
                       [&](int group, const float* x, int64_t rows, int64_t cols) {
                         double sum = 0;
                         for (int64_t i = 0; i < rows * cols; ++i) sum += double(x[i]) * double(x[i]);
                         energy[size_t(group)] += sum;
                         samples[size_t(group)] += rows;
                       });
    }
    for (size_t g = 0; g < groups.size(); ++g) {
      const double trace_h = samples[g] > 0 ? 2.0 * energy[g] / double(samples[g]) : 0.0;
      for (const auto& name : groups[g].weights) {
        const auto t = source.tensor(name);
        MARLIN_CHECK(t.has_value(), "trellis bits: tensor '{}' is missing", name);
        const auto format = choose_format(name, t->rows, nominal, rules);
        if (!format || format->kind != FormatKind::kTrellis) continue;
        const double importance = squared_norm(*t) / double(t->cols) * trace_h;
        names.push_back(name);
        costs.push_back({t->rows * t->cols, rate_distortion_losses(importance, 0, max_bits)});
      }
    }
  }
  MARLIN_CHECK(!costs.empty(), "trellis bits: no tensor of the blocks is quantized to trellis");
  const auto bits = allocate_trellis_bits(costs, target_bits, min_bits, max_bits);
  TrellisBitsPlan plan;
  plan.target_bits = target_bits;
  double weighted = 0, weights = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    plan.formats[names[i]] = TensorFormat::parse("trellis" + std::to_string(bits[i]));
    plan.tensors_per_width[bits[i]]++;
    weighted += double(costs[i].weights) * bits[i];
    weights += double(costs[i].weights);
  }
  plan.average_bits = weighted / weights;
  return plan;
}

}  // namespace marlin
