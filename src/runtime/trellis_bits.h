// Per-tensor trellis widths for a fractional average (marlin quantize --format trellis --bits 2.5):
// each linear of the blocks gets an integer K so that the weight-weighted average is at most the
// target and the estimated summed output error is least (quant/bit_allocation.h).
//
// The estimate needs one pass of the unquantized model over the calibration text and no trial
// quantization: after the Hadamard rotations a layer's quantization error behaves like white noise
// of variance mse(K)·s_r² on row r (s_r² ≈ ‖w_r‖²/cols), so its expected proxy loss tr(E·H·Eᵀ) is
// mse(K)·‖W‖²·tr(H)/cols, with tr(H) = 2·Σ‖x‖²/n over the layer's calibration inputs and mse(K)
// ≈ 4^−K (the trellis follows the rate–distortion rule within a few percent per bit for K ≤ 5).
// LDLQ lowers every layer's loss below this estimate; the estimate ranks the layers, it does not
// predict their final losses. n counts every calibration token, whether or not it reached the
// layer: a routed expert's error moves only the tokens routed to it, so its importance is its
// per-token one times the share of tokens that chose it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "quant/format.h"
#include "runtime/quant_rules.h"

namespace marlin {

class ModelSource;
class ThreadPool;

struct TrellisBitsPlan {
  std::map<std::string, TensorFormat> formats;  // every planned tensor: trellisK
  double target_bits = 0;
  double average_bits = 0;  // Σ weights·K / Σ weights over the planned tensors
  std::map<int, int> tensors_per_width;
};

// The importance ‖W‖²/cols · tr(H) of every linear of the blocks that `rules` leave in trellis
// (tr(H) over all calibration tokens, as above), in block order. Throws marlin::Error without
// calibration sequences.
struct TrellisLinearImportance {
  std::string name;
  int64_t weights = 0;
  double importance = 0;
};
std::vector<TrellisLinearImportance> trellis_importance(const ModelSource& source, const std::vector<QuantRule>& rules,
                                                        const std::vector<std::vector<int32_t>>& calibration,
                                                        ThreadPool& pool);

// Plans the linears of the blocks that `rules` and the trellis target leave in trellis (others keep
// what the rules give them), K in [min_bits, max_bits]. Throws marlin::Error without calibration
// sequences, for a target outside [min_bits, max_bits], or when no tensor is planned.
TrellisBitsPlan plan_trellis_bits(const ModelSource& source, const std::vector<QuantRule>& rules,
                                  const std::vector<std::vector<int32_t>>& calibration, double target_bits,
                                  int min_bits, int max_bits, ThreadPool& pool);

}  // namespace marlin
