// How good a trellis codebook is: the MSE per value of an exact free-start Viterbi (16-bit state,
// K bits per value) over sequences of 256 N(0,1) targets, for the production codebook
// (quant/trellis_code.h) and alternatives of the same decoding cost or of none:
//   - "mask_lo3": the production formula with the low piece's exponent drawn from 3 random bits
//     (mask 0x8fff9fff, fixed bits 0x30002000: |lo| in [2^-7, 2), |hi| in [2^-3, 2));
//   - "shuffled": the production values assigned to the states at random (its value distribution
//     without its state→value structure);
//   - "gaussian": 2^16 independent N(0,1) values (a stored table: the quality a computed code aims at);
//   - "pairs_gaussian": one N(0,1) pair per state, each step emitting two values for 2K bits (a
//     decoder that makes two values per multiply-add would have this many codewords at best).
// Every codebook is normalized to mean 0, variance 1. One JSON object per line on stdout.
//   bench_trellis_codebooks [--bits K] [--sequences N] [--seed S]   (defaults 4, 16, 1)
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/half.h"
#include "quant/trellis_code.h"
#include "../bench_util.h"

namespace {

constexpr int kStates = 1 << 16;
constexpr int kValues = 256;

void normalize(std::vector<float>& v) {
  double mean = 0, square = 0;
  for (float x : v) mean += x, square += double(x) * x;
  mean /= double(v.size());
  const double sd = std::sqrt(square / double(v.size()) - mean * mean);
  for (float& x : v) x = float((x - mean) / sd);
}

// The production formula with another piece mask: fp16(lo + hi), lo and hi the fp16 halves of
// ((mul·state + add) & mask) | bits.
std::vector<float> computed_codebook(uint32_t mask, uint32_t bits) {
  std::vector<float> v(kStates);
  for (uint32_t s = 0; s < kStates; ++s) {
    const uint32_t pieces = ((marlin::kTrellisMul * s + marlin::kTrellisAdd) & mask) | bits;
    const float sum = marlin::fp16_to_fp32(uint16_t(pieces)) + marlin::fp16_to_fp32(uint16_t(pieces >> 16));
    v[s] = marlin::fp16_to_fp32(marlin::fp32_to_fp16(sum));
  }
  normalize(v);
  return v;
}

// Exact free-start Viterbi, `width` values per step (1, or 2 for pair codebooks whose state s
// emits (table[width·s], table[width·s + 1])), K·width new bits per step entering at the state's
// low end: the mean squared error per value of the best path over every sequence.
double viterbi_mse(const std::vector<float>& table, int width, int k, const std::vector<float>& x) {
  const int step_bits = k * width, groups = kStates >> step_bits;
  std::vector<float> cost(kStates), next(kStates), best(static_cast<size_t>(groups));
  auto error = [&](const float* t, uint32_t s) {
    float e = 0;
    for (int i = 0; i < width; ++i) {
      const float d = t[i] - table[size_t(width) * s + size_t(i)];
      e += d * d;
    }
    return e;
  };
  double total = 0;
  for (size_t q = 0; q + kValues <= x.size(); q += kValues) {
    const float* t = &x[q];
    for (uint32_t s = 0; s < kStates; ++s) cost[s] = error(t, s);
    for (int i = width; i < kValues; i += width) {
      // A state's predecessors share its high 16 − step_bits bits as their low ones.
      for (int p = 0; p < groups; ++p) {
        float m = INFINITY;
        for (int h = 0; h < (1 << step_bits); ++h) m = std::min(m, cost[size_t(h) << (16 - step_bits) | size_t(p)]);
        best[size_t(p)] = m;
      }
      for (uint32_t s = 0; s < kStates; ++s) next[s] = best[s >> step_bits] + error(t + i, s);
      std::swap(cost, next);
    }
    total += *std::min_element(cost.begin(), cost.end());
  }
  return total / double(x.size() / kValues * kValues);
}

}  // namespace

int main(int argc, char** argv) {
  int k = 4, sequences = 16;
  uint32_t seed = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--bits") k = std::atoi(argv[i + 1]);
    else if (flag == "--sequences") sequences = std::atoi(argv[i + 1]);
    else if (flag == "--seed") seed = uint32_t(std::atoi(argv[i + 1]));
    else {
      std::fprintf(stderr, "bench_trellis_codebooks: unknown flag %s\n", argv[i]);
      return 2;
    }
  }
  if (k < 1 || k > 4 || sequences < 1 || sequences > 4096) {
    std::fprintf(stderr, "bench_trellis_codebooks: --bits must be 1..4 and --sequences 1..4096\n");
    return 2;
  }
  const std::vector<float> x = marlin::bench::gaussian(int64_t(sequences) * kValues, seed);
  std::vector<float> production(marlin::trellis_value_table(), marlin::trellis_value_table() + kStates);
  normalize(production);
  std::vector<float> shuffled = production;
  std::mt19937 rng(seed + 1);
  std::shuffle(shuffled.begin(), shuffled.end(), rng);
  std::vector<float> gaussian = marlin::bench::gaussian(kStates, seed + 2);
  std::vector<float> pairs = marlin::bench::gaussian(2 * kStates, seed + 3);
  normalize(gaussian);
  normalize(pairs);
  struct Entry {
    const char* name;
    const std::vector<float>* table;
    int width;
  };
  const std::vector<float> mask_lo3 = computed_codebook(0x8fff9fffu, 0x30002000u);
  const Entry entries[] = {{"production", &production, 1}, {"mask_lo3", &mask_lo3, 1}, {"shuffled", &shuffled, 1},
                           {"gaussian", &gaussian, 1},     {"pairs_gaussian", &pairs, 2}};
  for (const Entry& e : entries) {
    const double mse = viterbi_mse(*e.table, e.width, k, x);
    nlohmann::json j = {{"bench", "trellis_codebooks"}, {"codebook", e.name}, {"bits", k}, {"sequences", sequences},
                        {"seed", seed}, {"mse", mse}, {"shannon_bound", std::pow(4.0, -k)}};
    std::printf("%s\n", j.dump().c_str());
    std::fflush(stdout);
  }
  return 0;
}
