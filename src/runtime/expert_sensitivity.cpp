#include "runtime/expert_sensitivity.h"

#include <algorithm>

#include "backend/cpu/matmul.h"
#include "backend/cpu/moe.h"
#include "backend/cpu/ops.h"
#include "core/error.h"
#include "model/weights.h"
#include "quant/dequant.h"
#include "quant/rtn.h"

namespace marlin {
namespace {

// A matrix in fp32, and a view of it for the CPU matmul (which multiplies f32 weights with fp32
// activations, so only the weights' own error shows).
struct DenseMatrix {
  std::vector<float> values;
  int64_t rows = 0, cols = 0;

  static DenseMatrix of(const QuantTensor& t) {
    DenseMatrix m{std::vector<float>(size_t(t.rows * t.cols)), t.rows, t.cols};
    for (int64_t r = 0; r < t.rows; ++r) dequantize_row(t, r, &m.values[size_t(r * t.cols)]);
    return m;
  }
  QuantTensor view() const {
    QuantTensor t;
    t.rows = rows, t.cols = cols;
    t.codes = reinterpret_cast<const uint8_t*>(values.data());
    t.code_row_bytes = uint64_t(cols) * sizeof(float);
    return t;
  }
};

struct ExpertMatrices {
  DenseMatrix gate, up, down;
};

// y (n × d_model) = down · (silu(gate · x) ⊙ (up · x)) for the n rows of x.
std::vector<float> run_expert(const ExpertMatrices& m, const std::vector<float>& x, int64_t n, ThreadPool& pool) {
  const int64_t f = m.gate.rows;
  std::vector<float> gate(size_t(n * f)), up(size_t(n * f)), y(size_t(n * m.down.rows));
  cpu::matmul(m.gate.view(), x.data(), n, gate.data(), pool);
  cpu::matmul(m.up.view(), x.data(), n, up.data(), pool);
  cpu::silu_mul(gate.data(), up.data(), n * f);
  cpu::matmul(m.down.view(), gate.data(), n, y.data(), pool);
  return y;
}

DenseMatrix quantized(const DenseMatrix& m, const TensorFormat& format, ThreadPool& pool) {
  return DenseMatrix::of(quantize_rtn(m.values.data(), m.rows, m.cols, format, {}, &pool).view());
}

// The tokens routed to one expert of a layer and their router weights.
struct Routed {
  std::vector<int64_t> tokens;
  std::vector<float> weights;
};

class SensitivityPass {
 public:
  SensitivityPass(Model& model, const ModelSource& source, const std::vector<std::vector<int32_t>>& calibration,
                  const SensitivityOptions& options, ThreadPool& pool)
      : model_(model), source_(source), calibration_(calibration), options_(options), pool_(pool) {}

  std::vector<ExpertSensitivity> run() {
    MARLIN_CHECK(!calibration_.empty(), "moe bits: the sensitivity needs calibration text");
    MARLIN_CHECK(options_.max_rows >= 1, "moe bits: max_rows is {}", options_.max_rows);
    const ModelConfig& c = model_.config();
    std::vector<std::vector<float>> hidden;
    int64_t longest = 0;
    for (const auto& tokens : calibration_) {
      hidden.emplace_back(tokens.size() * size_t(c.d_model));
      model_.embed(tokens, hidden.back().data());
      longest = std::max<int64_t>(longest, int64_t(tokens.size()));
      total_tokens_ += int64_t(tokens.size());
    }
    auto cache = model_.new_cache(longest);
    for (int layer = 0; layer < c.n_layers; ++layer) {
      const auto groups = model_.sparse_mlp_groups(layer);
      // The router's input (every expert's input) of all calibration tokens, sequence after sequence.
      std::vector<float> inputs;
      for (size_t s = 0; s < hidden.size(); ++s) {
        cache->clear();
        LinearInputObserver observer;
        if (groups)
          observer = [&](int group, const float* x, int64_t rows, int64_t cols) {
            if (group == groups->router_group) inputs.insert(inputs.end(), x, x + rows * cols);
          };
        model_.run_layer(layer, hidden[s].data(), int64_t(calibration_[s].size()), *cache, observer);
      }
      if (groups) measure_layer(layer, *groups, inputs);
    }
    return std::move(out_);
  }

 private:
  std::vector<Routed> route(const SparseMlpGroups& groups, const std::vector<float>& inputs) const {
    const ModelConfig& c = model_.config();
    const MoeRouting& routing = c.moe.routing;
    const int routed = c.moe.n_experts;
    const int64_t d = c.d_model, n = total_tokens_;
    MARLIN_CHECK(int64_t(inputs.size()) == n * d, "moe bits: the router of '{}' saw {} values, not {} tokens",
                 groups.router, inputs.size(), n);
    MARLIN_CHECK(int(groups.experts.size()) == routed + routing.n_shared, "moe bits: '{}' routes {} of {} experts",
                 groups.router, routed, groups.experts.size());
    const DenseMatrix router = DenseMatrix::of(require_matrix(source_, groups.router, routed, d));
    std::vector<float> bias;
    if (c.moe.score_bias) {
      const std::string stem = groups.router.substr(0, groups.router.size() - std::string_view("weight").size());
      bias = require_vector(source_, stem + "e_score_correction_bias", routed);
    }
    std::vector<float> logits(size_t(n * routed));
    cpu::matmul(router.view(), inputs.data(), n, logits.data(), pool_);
    std::vector<Routed> out(groups.experts.size());
    std::vector<cpu::ExpertChoice> choices(size_t(routing.top_k));
    for (int64_t t = 0; t < n; ++t) {
      cpu::route_token(&logits[size_t(t * routed)], bias.empty() ? nullptr : bias.data(), routed, routing,
                       choices.data());
      for (const auto& choice : choices) {
        out[size_t(choice.expert)].tokens.push_back(t);
        out[size_t(choice.expert)].weights.push_back(choice.weight);
      }
      for (size_t e = size_t(routed); e < out.size(); ++e) {  // shared experts: every token, weight 1
        out[e].tokens.push_back(t);
        out[e].weights.push_back(1.0f);
      }
    }
    return out;
  }

  void measure_layer(int layer, const SparseMlpGroups& groups, const std::vector<float>& inputs) {
    const ModelConfig& c = model_.config();
    const int64_t d = c.d_model, f = c.moe.d_expert_ffn;
    const auto routed = route(groups, inputs);
    for (size_t e = 0; e < groups.experts.size(); ++e) {
      const auto& names = groups.experts[e];
      const Routed& r = routed[e];
      ExpertSensitivity s;
      s.layer = layer, s.expert = int(e), s.names = names;
      s.params = 3 * f * d;
      s.tokens = int64_t(r.tokens.size());
      s.frequency = double(s.tokens) / double(total_tokens_);
      s.error.assign(options_.formats.size(), 0.0);
      if (s.tokens > 0) measure_expert(names, r, inputs, s.error);
      out_.push_back(std::move(s));
    }
  }

  // Fills error[i] for options_.formats[i] on an even sample of the expert's routed tokens (rows
  // of `inputs`).
  void measure_expert(const std::array<std::string, 3>& names, const Routed& r, const std::vector<float>& inputs,
                      std::vector<double>& error) {
    const ModelConfig& c = model_.config();
    const int64_t d = c.d_model, f = c.moe.d_expert_ffn;
    const int64_t n = int64_t(r.tokens.size()), rows = std::min(n, options_.max_rows);
    std::vector<float> x(size_t(rows * d));
    std::vector<float> weight(size_t(rows), 0.0f);
    for (int64_t i = 0; i < rows; ++i) {
      const auto pick = size_t(i * n / rows);
      std::copy_n(&inputs[size_t(r.tokens[pick] * d)], d, &x[size_t(i * d)]);
      weight[size_t(i)] = r.weights[pick];
    }
    const ExpertMatrices original{DenseMatrix::of(require_matrix(source_, names[0], f, d)),
                                  DenseMatrix::of(require_matrix(source_, names[1], f, d)),
                                  DenseMatrix::of(require_matrix(source_, names[2], d, f))};
    const auto reference = run_expert(original, x, rows, pool_);
    // Scaled from the sample to all routed tokens, per calibration token and output value.
    const double scale = double(n) / double(rows) / (double(total_tokens_) * double(d));
    for (size_t i = 0; i < options_.formats.size(); ++i) {
      const TensorFormat& format = options_.formats[i];
      const ExpertMatrices q{quantized(original.gate, format, pool_), quantized(original.up, format, pool_),
                             quantized(original.down, format, pool_)};
      const auto y = run_expert(q, x, rows, pool_);
      double sum = 0;
      for (int64_t t = 0; t < rows; ++t) {
        double row = 0;
        for (int64_t j = 0; j < d; ++j) {
          const double diff = double(y[size_t(t * d + j)]) - double(reference[size_t(t * d + j)]);
          row += diff * diff;
        }
        sum += double(weight[size_t(t)]) * double(weight[size_t(t)]) * row;
      }
      error[i] = sum * scale;
    }
  }

  Model& model_;
  const ModelSource& source_;
  const std::vector<std::vector<int32_t>>& calibration_;
  const SensitivityOptions& options_;
  ThreadPool& pool_;
  int64_t total_tokens_ = 0;
  std::vector<ExpertSensitivity> out_;
};

}  // namespace

std::vector<ExpertSensitivity> measure_expert_sensitivity(Model& model, const ModelSource& source,
                                                          const std::vector<std::vector<int32_t>>& calibration,
                                                          const SensitivityOptions& options, ThreadPool& pool) {
  return SensitivityPass(model, source, calibration, options, pool).run();
}

}  // namespace marlin
