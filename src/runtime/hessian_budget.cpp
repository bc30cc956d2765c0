#include "runtime/hessian_budget.h"

#include <fmt/format.h>

#include <cmath>

#include "core/memory_size.h"

namespace marlin {

HessianBudget hessian_budget(std::optional<uint64_t> given, std::optional<uint64_t> available) {
  if (given) return {*given, format_memory_size(*given)};
  if (!available) return {UINT64_MAX, "none (no MemAvailable in /proc/meminfo to size it from; set one to limit it)"};
  const auto bytes = uint64_t(std::floor(kHessianBudgetShare * double(*available)));
  return {std::max<uint64_t>(bytes, 1), fmt::format("{} ({:.0f}% of the {} available)", format_memory_size(bytes),
                                                    kHessianBudgetShare * 100, format_memory_size(*available))};
}

std::vector<HessianPass> plan_hessian_passes(const std::vector<uint64_t>& bytes, uint64_t budget) {
  std::vector<HessianPass> passes;
  uint64_t used = 0;
  for (size_t g = 0; g < bytes.size(); ++g) {
    // bytes[g] > budget - used: the sum would pass the budget (written so that it cannot overflow).
    if (passes.empty() || used > budget || bytes[g] > budget - used) {
      passes.push_back({g, g});
      used = 0;
    }
    passes.back().second = g + 1;
    used += bytes[g];
  }
  return passes;
}

}  // namespace marlin
