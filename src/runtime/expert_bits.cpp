#include "runtime/expert_bits.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <queue>

#include "core/error.h"

namespace marlin {
namespace {

// The integer widths that have a format, ascending.
constexpr int kIntegerWidths[] = {2, 3, 4, 8};

FormatKind integer_kind(int bits) {
  switch (bits) {
    case 2: return FormatKind::kInt2;
    case 3: return FormatKind::kInt3;
    case 4: return FormatKind::kInt4;
    case 8: return FormatKind::kInt8;
    default: fail("moe bits: no integer format has {} bits (2, 3, 4 or 8)", bits);
  }
}

bool is_integer(FormatKind k) {
  return k == FormatKind::kInt2 || k == FormatKind::kInt3 || k == FormatKind::kInt4 || k == FormatKind::kInt8;
}

// An upgrade of one expert from width index `from` to `to`.
struct Upgrade {
  double slope = 0;  // error reduction per extra bit·parameter
  size_t expert = 0;
  int from = 0, to = 0;
};

// Best slope first; equal slopes: the lower expert index first.
struct WorseUpgrade {
  bool operator()(const Upgrade& a, const Upgrade& b) const {
    if (a.slope != b.slope) return a.slope < b.slope;
    return a.expert > b.expert;
  }
};

class Allocator {
 public:
  Allocator(std::span<const ExpertCost> experts, std::span<const int> widths, double target_bits)
      : experts_(experts), widths_(widths), choice_(experts.size(), 0), used_(experts.size(), false) {
    MARLIN_CHECK(!widths.empty(), "moe bits: no candidate widths");
    MARLIN_CHECK(std::is_sorted(widths.begin(), widths.end()) &&
                     std::adjacent_find(widths.begin(), widths.end()) == widths.end(),
                 "moe bits: the candidate widths must ascend");
    int64_t total = 0;
    for (size_t e = 0; e < experts.size(); ++e) {
      const ExpertCost& x = experts[e];
      MARLIN_CHECK(x.params > 0, "moe bits: expert {} has {} parameters", e, x.params);
      MARLIN_CHECK(x.error.size() == widths.size(), "moe bits: expert {} has {} errors for {} widths", e,
                   x.error.size(), widths.size());
      for (const double v : x.error)
        MARLIN_CHECK(std::isfinite(v) && v >= 0, "moe bits: expert {} has the error {}", e, v);
      used_[e] = std::any_of(x.error.begin(), x.error.end(), [](double v) { return v > 0; });
      total += x.params;
      spent_ += x.params * widths.front();
    }
    total_params_ = total;
    // The budget in bit·parameters; the small slack absorbs the rounding of target·total.
    budget_ = int64_t(std::floor(target_bits * double(total) * (1 + 1e-12)));
    MARLIN_CHECK(spent_ <= budget_, "moe bits: the target {} is below the lowest width {}", target_bits,
                 widths.front());
  }

  ExpertAllocation run() {
    take_hull_upgrades();
    fill_remaining_budget();
    order_by_sensitivity();
    ExpertAllocation out;
    out.choice = choice_;
    int64_t bits = 0;
    for (size_t e = 0; e < experts_.size(); ++e) {
      bits += experts_[e].params * widths_[size_t(choice_[e])];
      out.error += experts_[e].error[size_t(choice_[e])];
    }
    out.average_bits = total_params_ ? double(bits) / double(total_params_) : double(widths_.front());
    return out;
  }

 private:
  int64_t extra_cost(size_t e, int from, int to) const {
    return experts_[e].params * (widths_[size_t(to)] - widths_[size_t(from)]);
  }
  double gain(size_t e, int from, int to) const {
    return experts_[e].error[size_t(from)] - experts_[e].error[size_t(to)];
  }

  // The next vertex of expert e's lower convex hull after width index `from`: the width with the
  // steepest error reduction per extra bit (ties: the nearer one); nullopt when none reduces it.
  std::optional<Upgrade> next_hull_upgrade(size_t e, int from) const {
    std::optional<Upgrade> best;
    for (int to = from + 1; to < int(widths_.size()); ++to) {
      const double g = gain(e, from, to);
      if (g <= 0) continue;
      const double slope = g / double(extra_cost(e, from, to));
      if (!best || slope > best->slope) best = Upgrade{slope, e, from, to};
    }
    return best;
  }

  void take_hull_upgrades() {
    std::priority_queue<Upgrade, std::vector<Upgrade>, WorseUpgrade> queue;
    for (size_t e = 0; e < experts_.size(); ++e)
      if (auto u = next_hull_upgrade(e, 0)) queue.push(*u);
    while (!queue.empty()) {
      const Upgrade u = queue.top();
      queue.pop();
      const int64_t cost = extra_cost(u.expert, u.from, u.to);
      if (spent_ + cost > budget_) continue;  // skipped: step 2 may still raise this expert
      spent_ += cost;
      choice_[u.expert] = u.to;
      if (auto next = next_hull_upgrade(u.expert, u.to)) queue.push(*next);
    }
  }

  void fill_remaining_budget() {
    for (;;) {
      std::optional<Upgrade> best;
      double best_gain = 0;
      int64_t best_cost = 0;
      for (size_t e = 0; e < experts_.size(); ++e) {
        if (!used_[e]) continue;
        for (int to = choice_[e] + 1; to < int(widths_.size()); ++to) {
          const int64_t cost = extra_cost(e, choice_[e], to);
          const double g = gain(e, choice_[e], to);
          if (spent_ + cost > budget_ || g < 0) continue;
          if (!best || g > best_gain || (g == best_gain && cost < best_cost)) {
            best = Upgrade{0, e, choice_[e], to};
            best_gain = g, best_cost = cost;
          }
        }
      }
      if (!best) return;
      spent_ += best_cost;
      choice_[best->expert] = best->to;
    }
  }

  // a gains at least as much as b from every upgrade between two widths, and more from one.
  bool more_sensitive(size_t a, size_t b) const {
    bool strictly = false;
    for (int i = 0; i < int(widths_.size()); ++i)
      for (int j = i + 1; j < int(widths_.size()); ++j) {
        const double ga = gain(a, i, j), gb = gain(b, i, j);
        if (ga < gb) return false;
        strictly = strictly || ga > gb;
      }
    return strictly;
  }

  // Swapping the widths of a more sensitive expert below a less sensitive one of the same size
  // keeps the bits and changes the error by gain_b − gain_a ≤ 0 over the swapped range. Each swap
  // raises Σ width·(summed gains over all width pairs), so the passes end.
  void order_by_sensitivity() {
    std::map<int64_t, std::vector<size_t>> by_size;
    for (size_t e = 0; e < experts_.size(); ++e)
      if (used_[e]) by_size[experts_[e].params].push_back(e);
    for (const auto& [params, members] : by_size) {
      for (bool swapped = true; swapped;) {
        swapped = false;
        for (const size_t a : members)
          for (const size_t b : members)
            if (choice_[a] < choice_[b] && more_sensitive(a, b)) {
              std::swap(choice_[a], choice_[b]);
              swapped = true;
            }
      }
    }
  }

  std::span<const ExpertCost> experts_;
  std::span<const int> widths_;
  std::vector<int> choice_;
  std::vector<bool> used_;
  int64_t total_params_ = 0, spent_ = 0, budget_ = 0;
};

}  // namespace

std::vector<int> expert_bit_widths(int min_bits, int max_bits) {
  std::vector<int> out;
  for (const int b : kIntegerWidths)
    if (b >= min_bits && b <= max_bits) out.push_back(b);
  MARLIN_CHECK(!out.empty(), "moe bits: no integer format (2, 3, 4, 8 bits) lies in [{}, {}]", min_bits, max_bits);
  return out;
}

TensorFormat expert_width_format(int bits, const std::optional<TensorFormat>& base, int group_size) {
  TensorFormat f;
  f.kind = integer_kind(bits);
  f.group_size = 128;
  if (base && is_integer(base->kind)) {
    f.group_size = base->group_size;
    f.asymmetric = base->asymmetric;
  }
  if (group_size > 0) f.group_size = group_size;
  f.validate();
  return f;
}

void check_expert_bits_range(int min_bits, int max_bits, double target_bits) {
  MARLIN_CHECK(min_bits >= 2 && max_bits <= 8 && min_bits <= max_bits,
               "--min-bits {} and --max-bits {} must satisfy 2 <= min <= max <= 8", min_bits, max_bits);
  const auto widths = expert_bit_widths(min_bits, max_bits);
  MARLIN_CHECK(std::isfinite(target_bits) && target_bits >= widths.front() && target_bits <= widths.back(),
               "--target-bits {} must lie between the lowest and highest candidate widths {} and {} (formats in "
               "[--min-bits {}, --max-bits {}])",
               target_bits, widths.front(), widths.back(), min_bits, max_bits);
}

ExpertAllocation allocate_expert_bits(std::span<const ExpertCost> experts, std::span<const int> widths,
                                      double target_bits) {
  return Allocator(experts, widths, target_bits).run();
}

}  // namespace marlin
