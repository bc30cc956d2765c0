// The per-expert width allocator on synthetic error tables, judged against a brute-force search
// over every allocation, and the checks of the --moe-bits ranges.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <random>

#include "core/error.h"
#include "runtime/expert_bits.h"

namespace marlin {
namespace {

const std::vector<int> kWidths = {2, 3, 4, 8};

int64_t bit_params(std::span<const ExpertCost> experts, std::span<const int> widths, const std::vector<int>& choice) {
  int64_t sum = 0;
  for (size_t e = 0; e < experts.size(); ++e) sum += experts[e].params * widths[size_t(choice[e])];
  return sum;
}

// The least summed error of any allocation using at most `budget` bit·parameters (infinity if none fits).
double brute_force_optimum(std::span<const ExpertCost> experts, std::span<const int> widths, int64_t budget) {
  const size_t n = experts.size(), w = widths.size();
  std::vector<int> choice(n, 0);
  double best = std::numeric_limits<double>::infinity();
  for (;;) {
    if (bit_params(experts, widths, choice) <= budget) {
      double err = 0;
      for (size_t e = 0; e < n; ++e) err += experts[e].error[size_t(choice[e])];
      best = std::min(best, err);
    }
    size_t i = 0;
    while (i < n && ++choice[i] == int(w)) choice[i++] = 0;
    if (i == n) return best;
  }
}

// Errors shaped like quantization error (about 4^-bits), scaled per expert and jittered, so some
// tables are not convex.
std::vector<ExpertCost> random_table(std::mt19937& rng, size_t n, std::span<const int> widths, bool equal_sizes,
                                     double jitter) {
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  const int64_t sizes[] = {96, 192, 288};
  std::vector<ExpertCost> out(n);
  for (auto& x : out) {
    x.params = equal_sizes ? 96 : sizes[rng() % 3];
    const double scale = std::exp(4 * unit(rng));
    for (const int b : widths) x.error.push_back(scale * std::pow(4.0, -b) * (1 + jitter * unit(rng)));
  }
  return out;
}

double total_params(std::span<const ExpertCost> experts) {
  double sum = 0;
  for (const auto& x : experts) sum += double(x.params);
  return sum;
}

// Budget, optimality bounds, and "no expert can still move up a width within the budget".
void check_allocation(std::span<const ExpertCost> experts, std::span<const int> widths, double target) {
  const auto a = allocate_expert_bits(experts, widths, target);
  const double total = total_params(experts);
  const auto budget = int64_t(std::floor(target * total * (1 + 1e-12)));
  const int64_t used = bit_params(experts, widths, a.choice);
  ASSERT_LE(used, budget);
  EXPECT_NEAR(a.average_bits, double(used) / total, 1e-12);
  const double optimum = brute_force_optimum(experts, widths, budget);
  EXPECT_GE(a.error, optimum * (1 - 1e-12));
  // Never worse than the optimum with one whole-range upgrade of the largest expert less.
  int64_t largest = 0;
  for (const auto& x : experts) largest = std::max(largest, x.params);
  const int64_t reduced = budget - largest * (widths.back() - widths.front());
  const double min_total = total * widths.front();
  if (double(reduced) >= min_total) {
    EXPECT_LE(a.error, brute_force_optimum(experts, widths, reduced) * (1 + 1e-12));
  }
  for (size_t e = 0; e < experts.size(); ++e) {
    const int c = a.choice[e];
    if (c + 1 == int(widths.size())) continue;
    const bool gains = experts[e].error[size_t(c)] >= experts[e].error[size_t(c + 1)];
    if (gains) {
      EXPECT_GT(used + experts[e].params * (widths[size_t(c + 1)] - widths[size_t(c)]), budget)
          << "expert " << e << " could still move up from " << widths[size_t(c)] << " bits";
    }
  }
}

TEST(AllocateExpertBits, WithinBudgetAndBracketedByBruteForce) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 60; ++trial) {
    const size_t n = 3 + size_t(trial % 4);  // up to 6 experts: 4096 allocations
    const auto experts = random_table(rng, n, kWidths, trial % 2 == 0, trial % 3 == 0 ? 3.0 : 0.2);
    for (const double target : {2.0, 2.5, 3.0, 3.4, 4.0, 5.5, 8.0}) {
      SCOPED_TRACE(::testing::Message() << "trial " << trial << " target " << target);
      check_allocation(experts, kWidths, target);
    }
  }
}

// Unit steps between widths, equal sizes and convex errors: greedy by marginal gain is exactly
// optimal, so the allocation must match the brute force.
TEST(AllocateExpertBits, ExactWithUnitStepsAndConvexErrors) {
  const std::vector<int> widths = {2, 3, 4};
  std::mt19937 rng(11);
  for (int trial = 0; trial < 40; ++trial) {
    const auto experts = random_table(rng, 6, widths, true, 0.0);
    for (const double target : {2.0, 2.34, 2.5, 3.0, 3.67, 4.0}) {
      const auto a = allocate_expert_bits(experts, widths, target);
      const auto budget = int64_t(std::floor(target * total_params(experts) * (1 + 1e-12)));
      EXPECT_NEAR(a.error, brute_force_optimum(experts, widths, budget), 1e-12 * a.error) << trial << " " << target;
    }
  }
}

// a gains at least as much as b from every upgrade between two widths, and more from one.
bool more_sensitive(const ExpertCost& a, const ExpertCost& b) {
  bool strictly = false;
  for (size_t i = 0; i < a.error.size(); ++i)
    for (size_t j = i + 1; j < a.error.size(); ++j) {
      const double ga = a.error[i] - a.error[j], gb = b.error[i] - b.error[j];
      if (ga < gb) return false;
      strictly = strictly || ga > gb;
    }
  return strictly;
}

// An expert that gains more from every upgrade (as a more often routed one does: its curve is
// another's scaled up, plus a decreasing extra) never gets fewer bits than one of the same size
// that gains less.
TEST(AllocateExpertBits, MoreSensitiveExpertsNeverGetFewerBits) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  auto decreasing = [&] {  // a decreasing, often non-convex curve
    std::vector<double> v(kWidths.size());
    for (double& x : v) x = unit(rng);
    std::sort(v.begin(), v.end(), std::greater<>());
    return v;
  };
  int compared = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const auto base = decreasing();
    std::vector<ExpertCost> experts;
    for (int e = 0; e < 8; ++e) {
      const double factor = std::exp(3 * unit(rng)), extra = trial % 2 ? unit(rng) : 0.0;
      const auto bump = decreasing();
      ExpertCost x{96, {}};
      for (size_t i = 0; i < base.size(); ++i) x.error.push_back(base[i] * factor + extra * bump[i]);
      experts.push_back(x);
    }
    const double target = 2 + 6 * unit(rng);
    const auto a = allocate_expert_bits(experts, kWidths, target);
    for (size_t i = 0; i < experts.size(); ++i)
      for (size_t j = 0; j < experts.size(); ++j)
        if (more_sensitive(experts[i], experts[j])) {
          ++compared;
          EXPECT_GE(a.choice[i], a.choice[j]) << "trial " << trial << " target " << target;
        }
  }
  EXPECT_GT(compared, 1000);
}

TEST(AllocateExpertBits, UnusedExpertsStayAtTheLowestWidthAndTiesAreDeterministic) {
  std::vector<ExpertCost> experts = {{100, {0, 0, 0, 0}}, {100, {8, 4, 2, 1}}, {100, {8, 4, 2, 1}}};
  const auto a = allocate_expert_bits(experts, kWidths, 4.0);
  EXPECT_EQ(a.choice[0], 0);
  // 6 extra bits·100 to spend on two equal experts: 2→3 for both, then 3→4 for both (the lower
  // index first); neither 4→8 upgrade (4 bits·100) fits the remaining 2.
  EXPECT_EQ(a.choice[1], 2);
  EXPECT_EQ(a.choice[2], 2);
  EXPECT_NEAR(a.average_bits, (2 + 4 + 4) / 3.0, 1e-12);
  const auto b = allocate_expert_bits(experts, kWidths, 4.0);
  EXPECT_EQ(a.choice, b.choice);
}

TEST(AllocateExpertBits, RefusesBadTables) {
  EXPECT_THROW(allocate_expert_bits(std::vector<ExpertCost>{{100, {1, 0.5}}}, kWidths, 3.0), Error);
  EXPECT_THROW(allocate_expert_bits(std::vector<ExpertCost>{{0, {1, 1, 1, 1}}}, kWidths, 3.0), Error);
  EXPECT_THROW(allocate_expert_bits(std::vector<ExpertCost>{{10, {1, NAN, 1, 1}}}, kWidths, 3.0), Error);
  EXPECT_THROW(allocate_expert_bits(std::vector<ExpertCost>{{10, {1, 1, 1, 1}}}, kWidths, 1.5), Error);
}

TEST(ExpertBitWidths, CandidatesFormatsAndRanges) {
  EXPECT_EQ(expert_bit_widths(2, 8), (std::vector<int>{2, 3, 4, 8}));
  EXPECT_EQ(expert_bit_widths(3, 7), (std::vector<int>{3, 4}));
  EXPECT_THROW(expert_bit_widths(5, 7), Error);
  EXPECT_EQ(expert_width_format(3, TensorFormat::parse("int4-g32-asym")).name(), "int3-g32-asym");
  EXPECT_EQ(expert_width_format(8, TensorFormat::parse("int4-g64-act")).name(), "int8-g64");
  EXPECT_EQ(expert_width_format(2, TensorFormat::parse("fp8-g128")).name(), "int2-g128");
  EXPECT_EQ(expert_width_format(4, std::nullopt, 64).name(), "int4-g64");
  EXPECT_THROW(expert_width_format(5, std::nullopt), Error);
  EXPECT_NO_THROW(check_expert_bits_range(2, 8, 3.5));
  EXPECT_NO_THROW(check_expert_bits_range(3, 4, 3.0));
  EXPECT_THROW(check_expert_bits_range(4, 3, 3.5), Error);   // min > max
  EXPECT_THROW(check_expert_bits_range(2, 8, 1.9), Error);   // below min
  EXPECT_THROW(check_expert_bits_range(2, 4, 4.5), Error);   // above max
  EXPECT_THROW(check_expert_bits_range(2, 7, 6.0), Error);   // above the highest width (4) in range
  EXPECT_THROW(check_expert_bits_range(5, 7, 6.0), Error);   // no width in range
  EXPECT_THROW(check_expert_bits_range(1, 8, 3.0), Error);
}

}  // namespace
}  // namespace marlin
