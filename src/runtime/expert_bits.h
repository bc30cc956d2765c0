// Per-expert bit widths for mixture-of-experts models (marlin quantize --moe-bits): which integer
// widths an expert may get, the format each width maps to, and the allocation of widths that
// minimizes the summed quantization error of the experts under an average-bits budget.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "quant/format.h"

namespace marlin {

// The integer widths with a format (int2, int3, int4, int8) in [min_bits, max_bits], ascending.
// marlin::Error when the range holds none.
std::vector<int> expert_bit_widths(int min_bits, int max_bits);

// The format of an expert quantized to `bits`: int<bits> with the group size and zero points of
// `base` when that is an integer format (act-order and 2:4 are dropped), else group 128 symmetric;
// `group_size` > 0 overrides the group.
TensorFormat expert_width_format(int bits, const std::optional<TensorFormat>& base, int group_size = 0);

// Refuses inconsistent --min-bits / --max-bits / --target-bits (named in the message).
void check_expert_bits_range(int min_bits, int max_bits, double target_bits);

// One expert for the allocation: its parameter count and its error at each candidate width
// (error[i] at widths[i]; any non-negative measure that adds up over experts).
struct ExpertCost {
  int64_t params = 0;
  std::vector<double> error;
};

struct ExpertAllocation {
  std::vector<int> choice;  // per expert: an index into the widths
  double average_bits = 0;  // Σ params·width / Σ params
  double error = 0;         // Σ error at the chosen widths
};

// Chooses one width per expert so that the parameter-weighted average width stays ≤ target_bits
// and the summed error is small. Deterministic. Steps:
//  1. every expert starts at the lowest width; each expert's upgrades follow the lower convex hull
//     of its (width, error) points, taken best error reduction per extra bit·parameter first
//     (ties: lower expert index). The state before the first upgrade that does not fit is a
//     Lagrangian optimum: no allocation using at most its bits has less error;
//  2. upgrades that do not fit are skipped and the remaining budget is filled one upgrade at a
//     time (largest error reduction first), until no expert can move up a width within it;
//  3. of two experts of the same size where one gains at least as much from every upgrade as the
//     other (and more from some), the more sensitive one never ends below the other (swaps keep
//     the bits and never add error).
// Experts whose errors are all 0 (no calibration token chose them) stay at the lowest width.
// Hence the summed error lies between the optimum at the budget and the optimum at the budget
// less one upgrade of the largest expert across the full width range.
ExpertAllocation allocate_expert_bits(std::span<const ExpertCost> experts, std::span<const int> widths,
                                      double target_bits);

}  // namespace marlin
