// Bits per weight for each layer of a model quantized with the trellis (any format whose widths
// are integers): integer K per layer, chosen so that the average over all weights (weighted by
// each layer's weight count) is at most a target, possibly fractional (2.5), and the summed loss
// is least.
//
// The losses come from the caller: measured at every candidate K (a trial quantization per K), or
// estimated from one trial at K0 by the rate–distortion rule loss(K) ≈ loss(K0)·4^(K0 − K)
// (rate_distortion_losses below). The rule is what the trellis achieves on Gaussian data within a
// few percent per step for K ≤ 5 (docs/quantization.md: MSE 0.272, 0.0675, 0.0174, 0.0045,
// 0.00118 for K = 1..5, ratios 4.0, 3.9, 3.9, 3.8), and rotated weights are close to Gaussian, so
// one trial (the cost of quantizing the model once) replaces max − min + 1 of them. A good loss to
// sum is each layer's relative proxy loss (TrellisLayer::relative_loss): output error relative to
// output energy, comparable across layers of different scales.
//
// The solver is exact: a multiple-choice knapsack by dynamic programming over the budget in units
// of the greatest common divisor of the weight counts. When that table would be too large (more
// than kMaxAllocationCells entries), the unit is doubled and each layer's cost rounded up to it,
// which keeps the result within the budget and near-optimal (the slack is under one unit per
// layer); when even that would make units coarser than 1/16 of an average layer (thousands of
// layers, e.g. every expert of a large MoE), a greedy pass by loss reduction per added weight·bit
// takes over (optimal up to the last bits when the losses are convex in K, as 4^−K is). The
// method and unit depend on the layers and the bit range only, never on the target, so with the DP
// a larger target never gives a larger loss.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace marlin {

inline constexpr int64_t kMaxAllocationCells = int64_t(1) << 24;

struct LayerCost {
  int64_t weights = 0;       // the layer's weight count, > 0
  std::vector<double> loss;  // loss[K] for K = 0..max_bits (entries below min_bits are not read), finite
};

// K per layer (same order as `layers`), min_bits ≤ K ≤ max_bits, Σ weights·K ≤ target_bits·Σ weights,
// least Σ loss[K] (see above); deterministic: among equal losses, fewer bits for the last layer first.
// Throws marlin::Error for no layers, bits outside 1..16 or min > max, a weight count ≤ 0, a
// missing or non-finite loss, or a target below min_bits (no allocation fits).
std::vector<int> allocate_trellis_bits(std::span<const LayerCost> layers, double target_bits, int min_bits,
                                       int max_bits);

// loss[K] = loss_at_k0 · 4^(k0 − K) for K = 0..max_bits.
std::vector<double> rate_distortion_losses(double loss_at_k0, int k0, int max_bits);

}  // namespace marlin
