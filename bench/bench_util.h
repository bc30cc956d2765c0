// Small helpers the benchmarks share: wall-clock seconds, Gaussian test data, and the machine's
// load average (figures from a shared machine say what the load was).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

namespace marlin::bench {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// n values of N(0, 1) from `seed`.
inline std::vector<float> gaussian(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = normal(rng);
  return v;
}

// The 1-minute load average, or -1 where /proc/loadavg cannot be read.
inline double load_average() {
  double load = -1.0;
  if (std::FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &load) != 1) load = -1.0;
    std::fclose(f);
  }
  return load;
}

}  // namespace marlin::bench
