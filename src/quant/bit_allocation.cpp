#include "quant/bit_allocation.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <queue>
#include <utility>

#include "core/error.h"

namespace marlin {

namespace {

// The multiple-choice knapsack by DP: best[c] = least loss of the layers so far with at most c
// units of extra bits (cost[i] units per extra bit of layer i), one choice byte per layer and c.
std::vector<int> allocate_exact(std::span<const LayerCost> layers, const std::vector<int64_t>& cost, int64_t capacity,
                                int min_bits, int max_bits) {
  const int64_t n = int64_t(layers.size());
  const int spread = max_bits - min_bits;
  int64_t widest = 0;
  for (int64_t c : cost) widest += spread * c;
  capacity = std::min(capacity, widest);
  std::vector<double> best(size_t(capacity + 1), 0.0), next(best.size());
  std::vector<uint8_t> choice(size_t(n * (capacity + 1)));
  for (int64_t i = 0; i < n; ++i) {
    const std::vector<double>& loss = layers[size_t(i)].loss;
    const int64_t step = cost[size_t(i)];
    for (int64_t c = 0; c <= capacity; ++c) {
      double least = std::numeric_limits<double>::infinity();
      int pick = 0;
      for (int e = 0; e <= spread && e * step <= c; ++e) {
        const double v = best[size_t(c - e * step)] + loss[size_t(min_bits + e)];
        if (v < least) least = v, pick = e;
      }
      next[size_t(c)] = least;
      choice[size_t(i * (capacity + 1) + c)] = uint8_t(pick);
    }
    best.swap(next);
  }
  std::vector<int> bits(layers.size());
  for (int64_t i = n - 1, c = capacity; i >= 0; --i) {
    const int e = choice[size_t(i * (capacity + 1) + c)];
    bits[size_t(i)] = min_bits + e;
    c -= e * cost[size_t(i)];
  }
  return bits;
}

// For more layers than the DP table holds: from min_bits everywhere, repeatedly add one bit to the
// layer with the largest loss reduction per added weight·bit that still fits (ties: lower index);
// a layer whose next bit does not fit is done, as the budget only shrinks.
std::vector<int> allocate_greedy(std::span<const LayerCost> layers, int64_t extra_budget, int min_bits, int max_bits) {
  std::vector<int> bits(layers.size(), min_bits);
  auto gain = [&](size_t i) {
    const auto& loss = layers[i].loss;
    return (loss[size_t(bits[i])] - loss[size_t(bits[i] + 1)]) / double(layers[i].weights);
  };
  using Entry = std::pair<double, int64_t>;  // (gain, −index): the largest pops first
  std::priority_queue<Entry> queue;
  if (max_bits > min_bits)
    for (size_t i = 0; i < layers.size(); ++i) queue.push({gain(i), -int64_t(i)});
  while (!queue.empty()) {
    const size_t i = size_t(-queue.top().second);
    queue.pop();
    if (layers[i].weights > extra_budget) continue;
    extra_budget -= layers[i].weights;
    if (++bits[i] < max_bits) queue.push({gain(i), -int64_t(i)});
  }
  return bits;
}

}  // namespace

std::vector<int> allocate_trellis_bits(std::span<const LayerCost> layers, double target_bits, int min_bits,
                                       int max_bits) {
  MARLIN_CHECK(!layers.empty(), "bit allocation: no layers");
  MARLIN_CHECK(min_bits >= 1 && max_bits <= 16 && min_bits <= max_bits,
               "bit allocation: bits {}..{} are not a range inside 1..16", min_bits, max_bits);
  MARLIN_CHECK(std::isfinite(target_bits) && target_bits >= min_bits,
               "bit allocation: target {} bits per weight is below the minimum {}", target_bits, min_bits);
  int64_t total = 0, unit = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    const LayerCost& l = layers[i];
    MARLIN_CHECK(l.weights > 0, "bit allocation: layer {} has {} weights", i, l.weights);
    MARLIN_CHECK(int64_t(l.loss.size()) > max_bits, "bit allocation: layer {} has losses for {} widths, {} bits need {}",
                 i, l.loss.size(), max_bits, max_bits + 1);
    for (int k = min_bits; k <= max_bits; ++k)
      MARLIN_CHECK(std::isfinite(l.loss[size_t(k)]), "bit allocation: layer {} has loss {} at {} bits", i,
                   l.loss[size_t(k)], k);
    MARLIN_CHECK(total <= (int64_t(1) << 48) - l.weights, "bit allocation: more than 2^48 weights");
    total += l.weights;
    unit = std::gcd(unit, l.weights);
  }
  const int64_t n = int64_t(layers.size()), spread = max_bits - min_bits;
  if (target_bits >= max_bits) return std::vector<int>(layers.size(), max_bits);

  // Budget unit: the gcd (exact), doubled while the table over the widest budget is too big, as
  // long as an average layer still spans 16 units; past that, greedy. The choice depends on the
  // layers and the bit range only, never on the target, so the DP's loss is monotone in the target.
  std::vector<int64_t> cost(layers.size());  // units per extra bit, rounded up
  double table = 0.0;  // n × (widest budget + 1) cells; sums below 2^52, the product may not fit int64
  for (;;) {
    int64_t sum = 0;
    for (size_t i = 0; i < layers.size(); ++i) sum += cost[i] = (layers[i].weights + unit - 1) / unit;
    table = double(n) * double(spread * sum + 1);
    if (table <= double(kMaxAllocationCells) || unit > total / (16 * n)) break;
    unit *= 2;
  }
  const double extra_budget = std::floor((target_bits - min_bits) * double(total));
  if (table > double(kMaxAllocationCells)) return allocate_greedy(layers, int64_t(extra_budget), min_bits, max_bits);
  return allocate_exact(layers, cost, int64_t(std::floor(extra_budget / double(unit))), min_bits, max_bits);
}

std::vector<double> rate_distortion_losses(double loss_at_k0, int k0, int max_bits) {
  MARLIN_CHECK(std::isfinite(loss_at_k0) && loss_at_k0 >= 0.0, "bit allocation: loss {} at {} bits", loss_at_k0, k0);
  MARLIN_CHECK(k0 >= 0 && max_bits >= 0 && max_bits <= 16, "bit allocation: widths {} and {} outside 0..16", k0, max_bits);
  std::vector<double> loss(size_t(max_bits + 1));
  for (int k = 0; k <= max_bits; ++k) loss[size_t(k)] = loss_at_k0 * std::ldexp(1.0, 2 * (k0 - k));
  return loss;
}

}  // namespace marlin
