// The GPU trellis search (backend/cuda/trellis_encode.h) against the CPU encoder
// (quant/trellis.h): the same packed words and squared errors, bit for bit, at every K it takes;
// and, printed for the record, both encoders' weights per second on this machine.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

#include "backend/cuda/trellis_encode.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "quant/trellis.h"
#include "quant/trellis_gpu_search.h"
#include "test_util.h"

namespace marlin::test {
namespace {

// Unit-variance normal targets (what LDLQ hands the encoder), then special tiles: all zeros (ties
// everywhere), spikes of ±5 (beyond the codebook's reach) among small values, and ±1e19 (every
// path's cost overflows to infinity: both searches must then agree on prefix 0).
std::vector<float> test_targets(int64_t tiles, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> t(size_t(tiles * kTrellisTileValues));
  for (auto& v : t) v = normal(rng);
  if (tiles >= 4) {
    std::fill_n(t.begin(), kTrellisTileValues, 0.0f);
    for (int i = 0; i < kTrellisTileValues; ++i) {
      t[size_t(kTrellisTileValues + i)] = i % 17 == 0 ? (i % 2 ? 5.0f : -5.0f) : 0.01f * float(i % 7);
      t[size_t(2 * kTrellisTileValues + i)] = i % 2 ? 1e19f : -1e19f;
    }
  }
  return t;
}

// The GPU's paths, packed on the host.
void encode_on_gpu(const std::vector<float>& targets, int64_t tiles, int k, std::vector<uint16_t>& packed,
                   std::vector<double>& errors) {
  std::vector<uint32_t> states(targets.size());
  cuda::trellis_tile_states(targets.data(), tiles, k, states.data());
  const int words = trellis_tile_words(k);
  packed.assign(size_t(tiles * words), 0);
  errors.assign(size_t(tiles), 0.0);
  for (int64_t i = 0; i < tiles; ++i)
    errors[size_t(i)] = pack_tile_states(&states[size_t(i * kTrellisTileValues)],
                                         &targets[size_t(i * kTrellisTileValues)], k, &packed[size_t(i * words)],
                                         nullptr);
}

TEST(CudaTrellisEncode, MatchesTheCpuSearch) {
  MARLIN_REQUIRE_GPU();
  allow_trellis_gpu_search(false);  // trellis_encode_tiles on the CPU is the reference
  ThreadPool pool(std::max(1u, std::thread::hardware_concurrency()));
  for (int k = 2; k <= 8; ++k) {
    // At K = 2 more tiles than one launch takes (256: its backpointers are 4 MiB a tile).
    const int64_t tiles = k == 2 ? 300 : 20;
    SCOPED_TRACE(testing::Message() << k << " bits");
    ASSERT_TRUE(cuda::trellis_search_supported(k));
    const std::vector<float> targets = test_targets(tiles, uint32_t(40 + k));
    std::vector<uint16_t> cpu_packed(size_t(tiles * trellis_tile_words(k)));
    std::vector<double> cpu_errors(static_cast<size_t>(tiles));
    trellis_encode_tiles(targets.data(), tiles, k, cpu_packed.data(), cpu_errors.data(), &pool);
    std::vector<uint16_t> gpu_packed;
    std::vector<double> gpu_errors;
    encode_on_gpu(targets, tiles, k, gpu_packed, gpu_errors);
    EXPECT_EQ(gpu_packed, cpu_packed) << "the GPU's paths differ from the CPU's";
    EXPECT_EQ(gpu_errors, cpu_errors);
  }
  allow_trellis_gpu_search(true);
  EXPECT_FALSE(cuda::trellis_search_supported(1));
  std::vector<uint32_t> states(kTrellisTileValues);
  const std::vector<float> targets = test_targets(1, 7);
  EXPECT_THROW(cuda::trellis_tile_states(targets.data(), 1, 1, states.data()), Error);
  std::vector<float> bad(targets);
  bad[3] = INFINITY;
  EXPECT_THROW(cuda::trellis_tile_states(bad.data(), 1, 4, states.data()), Error);
}

TEST(CudaTrellisPerf, EncoderThroughput) {
  MARLIN_REQUIRE_GPU();
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  ThreadPool pool(cores);
  for (const int k : {2, 4}) {
    const int64_t gpu_tiles = 4096, cpu_tiles = 8 * int64_t(cores);
    const std::vector<float> targets = test_targets(gpu_tiles, 9);
    std::vector<uint32_t> states(targets.size());
    cuda::trellis_tile_states(targets.data(), 132, k, states.data());  // warm-up
    // Weights per second of the GPU search over `tiles` tiles in one call.
    auto gpu_rate = [&](int64_t tiles) {
      const auto start = std::chrono::steady_clock::now();
      cuda::trellis_tile_states(targets.data(), tiles, k, states.data());
      return double(tiles * kTrellisTileValues) /
             std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    const double many = gpu_rate(gpu_tiles);
    const double strip = gpu_rate(36);  // one LDLQ strip of a 576-row layer, as quantizing calls it
    std::vector<uint16_t> packed(size_t(cpu_tiles * trellis_tile_words(k)));
    std::vector<double> errors(static_cast<size_t>(cpu_tiles));
    allow_trellis_gpu_search(false);
    const auto start = std::chrono::steady_clock::now();
    trellis_encode_tiles(targets.data(), cpu_tiles, k, packed.data(), errors.data(), &pool);
    const double cpu_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    allow_trellis_gpu_search(true);
    const double cpu_rate = double(cpu_tiles * kTrellisTileValues) / cpu_s;
    std::printf("{\"trellis_bits\": %d, \"gpu_weights_per_s\": %.0f, \"gpu_weights_per_s_36_tiles\": %.0f, "
                "\"cpu_weights_per_s\": %.0f, \"cpu_threads\": %u, \"gpu_over_cpu\": %.1f}\n",
                k, many, strip, cpu_rate, cores, many / cpu_rate);
  }
}

}  // namespace
}  // namespace marlin::test
