#include "runtime/trellis_bits.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>

#include "core/error.h"
#include "core/thread_pool.h"
#include "model/model.h"
#include "model/model_source.h"
#include "quant/bit_allocation.h"
#include "quant/dequant.h"
#include "runtime/evaluation.h"

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

// Σ over rows of KL(p ‖ q) between the next-token distributions of logits a (of p) and b (of q),
// rows × vocab (runtime/evaluation.h's arithmetic), the rows spread over the pool and summed in
// row order (the same sum on any number of threads). With the model on a GPU this is most of a
// trial's time.
double summed_kl(const std::vector<float>& a, const std::vector<float>& b, int64_t rows, int vocab,
                 ThreadPool& pool) {
  std::vector<double> per_row(static_cast<size_t>(rows));
  pool.parallel_for(rows, 1, [&](int64_t begin, int64_t end) {
    std::vector<double> log_p, log_q;
    for (int64_t r = begin; r < end; ++r) {
      log_softmax(a.data() + r * vocab, vocab, log_p);
      log_softmax(b.data() + r * vocab, vocab, log_q);
      per_row[size_t(r)] = kl_divergence(log_p, log_q);
    }
  });
  double total = 0;
  for (const double kl : per_row) total += kl;
  return total;
}

bool has_sparse_mlp(const ModelConfig& c) {
  for (int layer = 0; layer < c.n_layers; ++layer)
    if (c.moe.sparse(layer)) return true;
  return false;
}

}  // namespace

QuantBuffers trellis_trial_weights(const QuantTensor& t, const std::string& name) {
  QuantBuffers noisy = QuantBuffers::allocate(TensorFormat::parse("f32"), t.rows, t.cols);
  float* w = reinterpret_cast<float*>(noisy.codes.data());
  std::mt19937_64 rng(std::hash<std::string>{}(name));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t r = 0; r < t.rows; ++r) {
    float* row = w + r * t.cols;
    dequantize_row(t, r, row);
    double energy = 0;
    for (int64_t i = 0; i < t.cols; ++i) energy += double(row[i]) * double(row[i]);
    const auto sigma = float(std::sqrt(kTrialMse * energy / double(t.cols)));
    for (int64_t i = 0; i < t.cols; ++i) row[i] += sigma * normal(rng);
  }
  return noisy;
}

std::vector<TrellisLinearImportance> trellis_importance_by_trial(const ModelSource& source,
                                                                 const std::vector<QuantRule>& rules,
                                                                 const std::vector<std::vector<int32_t>>& calibration,
                                                                 ThreadPool& pool, const TrialProgress& progress,
                                                                 DeviceKind device) {
  MARLIN_CHECK(!calibration.empty(), "trellis bits: the allocation needs calibration text");
  auto model = load_model(source, pool, device);
  const ModelConfig& c = model->config();
  const int vocab = c.vocab_size;
  std::vector<std::vector<int32_t>> texts;
  const size_t count = std::min(kTrialSequences, calibration.size());
  for (size_t i = 0; i < count; ++i) {
    const auto& s = calibration[i * calibration.size() / count];
    texts.emplace_back(s.begin(), s.begin() + ptrdiff_t(std::min(s.size(), kTrialTokens)));
  }
  auto cache = model->new_cache(int64_t(kTrialTokens));
  const auto logits_of = [&](const std::vector<int32_t>& tokens) {
    std::vector<float> logits(tokens.size() * size_t(vocab));
    cache->clear();
    model->forward(tokens, *cache, logits.data(), true);
    return logits;
  };
  std::vector<std::vector<float>> clean;
  int64_t positions = 0;
  for (const auto& t : texts) {
    clean.push_back(logits_of(t));
    positions += int64_t(t.size());
  }

  // The linears to try, in block order.
  const auto nominal = TensorFormat::parse("trellis4");
  std::vector<std::pair<std::string, QuantTensor>> linears;
  for (int layer = 0; layer < c.n_layers; ++layer)
    for (const auto& group : model->linear_groups(layer))
      for (const auto& name : group.weights) {
        const auto t = source.tensor(name);
        MARLIN_CHECK(t.has_value(), "trellis bits: tensor '{}' is missing", name);
        const auto format = choose_format(name, t->rows, nominal, rules);
        if (format && format->kind == FormatKind::kTrellis) linears.emplace_back(name, *t);
      }
  std::vector<TrellisLinearImportance> out;
  for (const auto& [name, t] : linears) {
    const QuantBuffers noisy = trellis_trial_weights(t, name);
    model->replace_weight(name, noisy.view());
    double kl = 0;
    for (size_t s = 0; s < texts.size(); ++s)
      kl += summed_kl(clean[s], logits_of(texts[s]), int64_t(texts[s].size()), vocab, pool);
    model->replace_weight(name, t);  // back to the weights as stored
    out.push_back({name, t.rows * t.cols, kl / double(positions)});
    if (progress) progress(int64_t(out.size()), int64_t(linears.size()));
  }
  return out;
}

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
                                  int min_bits, int max_bits, ThreadPool& pool, const TrialProgress& progress,
                                  DeviceKind trial_device) {
  MARLIN_CHECK(min_bits >= 1 && max_bits <= 8 && min_bits <= max_bits && target_bits >= min_bits &&
                   target_bits <= max_bits,
               "trellis bits: a target of {} bits does not fit widths {} to {}", target_bits, min_bits, max_bits);
  TrellisBitsPlan plan;
  plan.by_trial = !has_sparse_mlp(source.config());
  plan.trial_device = trial_device;
  const auto tried = [&] {
    try {
      return trellis_importance_by_trial(source, rules, calibration, pool, progress, trial_device);
    } catch (const Error& e) {  // the model does not fit in the GPU's memory, say
      if (trial_device == DeviceKind::kCpu) throw;
      std::fprintf(stderr, "trellis bits: the trials failed on the GPU (%s); running them on the CPU\n", e.what());
      plan.trial_device = DeviceKind::kCpu;
      return trellis_importance_by_trial(source, rules, calibration, pool, progress, DeviceKind::kCpu);
    }
  };
  const auto linears = plan.by_trial ? tried() : trellis_importance(source, rules, calibration, pool);
  MARLIN_CHECK(!linears.empty(), "trellis bits: no tensor of the blocks is quantized to trellis");
  const int k0 = plan.by_trial ? kTrialBits : 0;
  std::vector<LayerCost> costs;
  for (const auto& l : linears) costs.push_back({l.weights, rate_distortion_losses(l.importance, k0, max_bits)});
  const auto bits = allocate_trellis_bits(costs, target_bits, min_bits, max_bits);
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
