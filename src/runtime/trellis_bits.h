// Per-tensor trellis widths for a fractional average (marlin quantize --format trellis --bits 2.5):
// each linear of the blocks gets an integer K so that the weight-weighted average is at most the
// target and the estimated summed loss is least (quant/bit_allocation.h), each linear's loss at K
// taken as loss(K0)·4^(K0−K) (the trellis follows the rate–distortion rule within a few percent per
// bit for K ≤ 5). loss(K0) comes from one of two measures:
//
// - By trial (dense models): the linear's weights alone perturbed by white noise of the variance
//   trellis error has at K0 = kTrialBits — after the Hadamard rotations a layer's quantization
//   error behaves like white noise of variance mse(K)·‖w_r‖²/cols on row r — and the mean KL of the
//   model's next-token distributions from the unperturbed ones on a few calibration sequences. It
//   sees what a layer's error does to the output after every later layer, which the layer's own
//   output error does not: on the default model (30 blocks) the KL per linear spans 0.0035 (late
//   q_proj) to 0.58 (block 11's down_proj). One forward pass per linear and sequence.
// - By each layer's own expected output error (models with sparse MLPs, where a trial per expert
//   would take thousands of passes): tr(E·H·Eᵀ) = mse(K)·‖W‖²·tr(H)/cols, with tr(H) =
//   2·Σ‖x‖²/n over the layer's calibration inputs (one pass of the unquantized model), K0 = 0. n
//   counts every calibration token, whether or not it reached the layer: a routed expert's error
//   moves only the tokens routed to it, so its importance is its per-token one times the share of
//   tokens that chose it.
//
// LDLQ lowers every layer's loss below either figure; they rank the layers, they do not predict
// their final losses.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "quant/format.h"
#include "quant/quant_buffers.h"
#include "runtime/quant_rules.h"

namespace marlin {

class ModelSource;
class ThreadPool;

struct TrellisBitsPlan {
  std::map<std::string, TensorFormat> formats;  // every planned tensor: trellisK
  double target_bits = 0;
  double average_bits = 0;  // Σ weights·K / Σ weights over the planned tensors
  std::map<int, int> tensors_per_width;
  bool by_trial = false;  // the losses came from trials (else from the layers' own output error)
  DeviceKind trial_device = DeviceKind::kCpu;  // where the trials ran
};

// The output-error measure above, ‖W‖²/cols · tr(H) (tr(H) over all calibration tokens), of every
// linear of the blocks that `rules` leave in trellis, in block order. Throws marlin::Error without
// calibration sequences.
struct TrellisLinearImportance {
  std::string name;
  int64_t weights = 0;
  double importance = 0;
};
std::vector<TrellisLinearImportance> trellis_importance(const ModelSource& source, const std::vector<QuantRule>& rules,
                                                        const std::vector<std::vector<int32_t>>& calibration,
                                                        ThreadPool& pool);

// The trial: K0, the sequences (spread over the calibration text, each cut to kTrialTokens) and
// the noise of a linear's trial (seeded by its name, so every run perturbs it alike).
inline constexpr int kTrialBits = 2;
inline constexpr double kTrialMse = 0.0675;  // the trellis' MSE at K = 2 on unit Gaussian data
inline constexpr size_t kTrialSequences = 2, kTrialTokens = 256;
QuantBuffers trellis_trial_weights(const QuantTensor& t, const std::string& name);

// Receives (linears tried, linears to try) as the trials go.
using TrialProgress = std::function<void(int64_t done, int64_t total)>;

// The KL of each linear's trial (above), in block order, for the linears that `rules` leave in
// trellis, with the model on `device` (on a GPU its activations are fp16: the KLs differ from
// the CPU's by about the two backends' own disagreement, and a plan may differ where two linears
// nearly tie). Throws marlin::Error without calibration sequences.
std::vector<TrellisLinearImportance> trellis_importance_by_trial(const ModelSource& source,
                                                                 const std::vector<QuantRule>& rules,
                                                                 const std::vector<std::vector<int32_t>>& calibration,
                                                                 ThreadPool& pool, const TrialProgress& progress = {},
                                                                 DeviceKind device = DeviceKind::kCpu);

// Plans the linears of the blocks that `rules` and the trellis target leave in trellis (others keep
// what the rules give them), K in [min_bits, max_bits], by trial on dense models and by the layers'
// own output error on models with sparse MLPs (`by_trial` in the plan says which); the trials run
// on `trial_device`, or on the CPU where they fail on a GPU (the plan says where). Throws marlin::Error without calibration sequences, for a target outside
// [min_bits, max_bits], or when no tensor is planned.
TrellisBitsPlan plan_trellis_bits(const ModelSource& source, const std::vector<QuantRule>& rules,
                                  const std::vector<std::vector<int32_t>>& calibration, double target_bits,
                                  int min_bits, int max_bits, ThreadPool& pool, const TrialProgress& progress = {},
                                  DeviceKind trial_device = DeviceKind::kCpu);

}  // namespace marlin
