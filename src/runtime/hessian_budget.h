// GPTQ's Hessians within a memory budget. Quantizing a block holds one Hessian (cols² doubles)
// per linear group while the calibration text runs through the block; for a mixture-of-experts
// block (Qwen3-30B-A3B: 128 experts × (2048² + 768²) doubles ≈ 4.8 GB) or a wide dense one
// (Llama-70B's down_proj: 28672² doubles ≈ 6.6 GB) that can pass the free RAM. Such a block runs
// the calibration text several times instead, each pass collecting the Hessians of a subset.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace marlin {

// The share of MemAvailable a block's Hessians may take by default. The rest stays for what
// quantizing needs besides them, which grows with the model and not with the budget: one group's
// Hessian copied out densely and the factorizations GPTQ/LDLQ make of it (a few cols² matrices),
// the calibration activations, the block's quantized weights held until it is done, and whatever
// else runs on the machine while a quantization takes hours.
inline constexpr double kHessianBudgetShare = 0.6;

struct HessianBudget {
  uint64_t bytes = UINT64_MAX;  // UINT64_MAX: no limit
  std::string summary;          // for the user: "9.41 GiB (60% of the 15.7 GiB available)"
};

// The budget `given` (bytes), else kHessianBudgetShare of `available` (MemAvailable), else (no
// figure for the free memory) no limit, as before budgets existed.
HessianBudget hessian_budget(std::optional<uint64_t> given, std::optional<uint64_t> available);

// Groups [begin, end) collected in one pass over the calibration text.
using HessianPass = std::pair<size_t, size_t>;

// Splits groups needing `bytes[i]` each into consecutive passes whose sums fit `budget`, filling
// each pass greedily (the fewest passes an in-order split can have). A group alone over the budget
// gets a pass of its own. Passes keep the groups' order, so tensors come out in the same order
// whatever the budget.
std::vector<HessianPass> plan_hessian_passes(const std::vector<uint64_t>& bytes, uint64_t budget);

}  // namespace marlin
