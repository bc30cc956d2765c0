// The per-expert bit widths of a mixture-of-experts model before it is quantized (marlin quantize
// --moe-bits): every expert at one width, or widths chosen by calibration sensitivity under an
// average-bits budget (expert_bits.h allocates, expert_sensitivity.h measures). The plan becomes
// exact per-tensor formats for quantize_model and a JSON summary stored in the checkpoint.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "model/model_source.h"
#include "quant/format.h"
#include "runtime/quant_rules.h"

namespace marlin {

// The key of the plan's summary in a checkpoint's config.json object.
inline constexpr const char* kExpertBitsConfigKey = "marlin_expert_bits";

struct ExpertBitsOptions {
  int bits = 0;            // > 0: every expert at this width (2, 3, 4 or 8); 0: chosen ("auto")
  int min_bits = 2, max_bits = 8;
  double target_bits = 0;  // auto: the average width per expert weight, weighted by parameters
  int group_size = 0;      // > 0: the widths' group size (else that of the base format, or 128)
  int64_t max_rows = 256;  // auto: routed calibration tokens evaluated per expert
};

struct ExpertBitsChoice {
  int layer = 0, expert = 0;
  std::array<std::string, 3> names;  // gate, up, down
  int64_t params = 0;
  double frequency = -1;      // share of calibration tokens routed to it (auto only)
  int bits = 0;
  std::vector<double> error;  // per candidate width (auto only)
};

struct ExpertBitsPlan {
  bool automatic = false;
  int min_bits = 0, max_bits = 0;
  double target_bits = 0;
  std::vector<int> widths;                  // candidates, ascending
  std::vector<TensorFormat> formats;        // the format of each width
  int64_t calibration_tokens = 0;           // auto only
  double average_bits = 0;                  // achieved, parameter-weighted
  double error = 0, error_at_min_bits = 0;  // auto: summed expert error as chosen / all at the lowest width
  std::vector<ExpertBitsChoice> experts;    // layer then expert order
};

// Finds the experts of `source` (loading it on the CPU) and chooses their widths. `base`: the
// --format of the other matrices (its group size and zero points carry over to the widths).
// Auto needs `calibration`. marlin::Error for bad options, a model without experts, or a rule of
// `rules` that also matches an expert's tensor (the plan decides those).
ExpertBitsPlan plan_expert_bits(const ModelSource& source, const std::optional<TensorFormat>& base,
                                const std::vector<QuantRule>& rules,
                                const std::vector<std::vector<int32_t>>& calibration,
                                const ExpertBitsOptions& options, ThreadPool& pool);

// Every expert tensor's format (for QuantizeOptions::tensor_formats).
std::map<std::string, TensorFormat> expert_tensor_formats(const ExpertBitsPlan& plan);

// What the checkpoint stores under kExpertBitsConfigKey: mode, range, target and achieved
// average, the format of each width, experts per width, and each layer's widths by expert.
nlohmann::ordered_json expert_bits_json(const ExpertBitsPlan& plan);

// The report for people: the json's content as lines of text (used by quantize and inspect).
std::string expert_bits_summary(const nlohmann::json& summary);

}  // namespace marlin
