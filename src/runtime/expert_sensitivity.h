// How much each expert of a mixture-of-experts model moves its layer's output when quantized
// (marlin quantize --moe-bits auto): calibration sequences run through the unquantized model
// block by block; in every sparse block each token's experts and router weights are found by the
// backend's routing rule, and each expert is run on (a sample of) the tokens routed to it with
// its three matrices unquantized and round-to-nearest quantized in each candidate format.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "model/model.h"
#include "model/model_source.h"
#include "quant/format.h"

namespace marlin {

struct ExpertSensitivity {
  int layer = 0, expert = 0;          // expert: index among the layer's experts (shared ones last)
  std::array<std::string, 3> names;   // gate, up, down (Hugging Face names)
  int64_t params = 0;                 // of the three matrices
  int64_t tokens = 0;                 // calibration tokens routed to it (shared experts: all)
  double frequency = 0;               // tokens / calibration tokens
  // Per candidate format: Σ over its routed tokens of w²·‖f(x) − f_q(x)‖², divided by
  // (calibration tokens · d_model), where w is the token's router weight for the expert — the
  // mean squared change of the layer's output contributed by this expert alone. Tokens beyond
  // max_rows are sampled evenly and the sum scaled up to all of them. 0 for an unused expert.
  std::vector<double> error;
};

struct SensitivityOptions {
  std::vector<TensorFormat> formats;  // candidate formats (integer, no act-order)
  int64_t max_rows = 256;             // routed tokens per expert that are evaluated
};

// Every expert of every sparse layer of `model` (loaded from `source` on the CPU; the model is run
// but not changed), in layer then expert order.
std::vector<ExpertSensitivity> measure_expert_sensitivity(Model& model, const ModelSource& source,
                                                          const std::vector<std::vector<int32_t>>& calibration,
                                                          const SensitivityOptions& options, ThreadPool& pool);

}  // namespace marlin
