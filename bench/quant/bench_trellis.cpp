// Trellis quantizer speed and quality: trellis_encode_tiles on N(0,1) tiles at K = 2, 3, 4 bits per
// weight (or --bits), 1 thread and all hardware threads. JSON on stdout, a summary on stderr
// (bench/README.md).
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "backend/cpu/cpu_isa.h"
#include "core/thread_pool.h"
#include "quant/trellis.h"
#include "../bench_util.h"

namespace {

using marlin::bench::load_average;

using namespace marlin;
using Clock = std::chrono::steady_clock;

std::string cpu_model() {
  std::string model = "unknown";
  if (FILE* f = std::fopen("/proc/cpuinfo", "r")) {
    char line[512];
    while (std::fgets(line, sizeof line, f)) {
      std::string s(line);
      if (s.rfind("model name", 0) == 0 && s.find(':') != std::string::npos) {
        model = s.substr(s.find(':') + 2);
        if (!model.empty() && model.back() == '\n') model.pop_back();
        break;
      }
    }
    std::fclose(f);
  }
  return model;
}

}  // namespace

int main(int argc, char** argv) try {
  std::vector<int> bits = {2, 3, 4};
  int64_t tiles_per_thread = 8;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--bits" && i + 1 < argc) {
      bits.clear();
      const std::string list = argv[++i];
      for (size_t at = 0; at < list.size();) {
        const size_t comma = std::min(list.find(',', at), list.size());
        bits.push_back(std::atoi(list.substr(at, comma - at).c_str()));
        at = comma + 1;
      }
    } else if (arg == "--tiles" && i + 1 < argc) {
      tiles_per_thread = std::max<int64_t>(1, std::atoll(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: %s [--bits 2,3,4] [--tiles TILES_PER_THREAD (8)]\n", argv[0]);
      return 2;
    }
  }
  const int hardware = int(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<int> thread_counts = {1};
  if (hardware > 1) thread_counts.push_back(hardware);
  nlohmann::json report;
  report["cpu"] = cpu_model();
  report["isa"] = std::string(cpu::cpu_isa_name(cpu::active_cpu_isa()));
  report["hardware_threads"] = hardware;
  report["load_average_at_start"] = load_average();
  report["encode"] = nlohmann::json::array();
  std::fprintf(stderr, "trellis_encode_tiles, N(0,1) targets, 16-bit state, 256-value tiles (%s, %s)\n",
               report["cpu"].get<std::string>().c_str(), report["isa"].get<std::string>().c_str());
  for (int k : bits) {
    for (int threads : thread_counts) {
      const int64_t tiles = tiles_per_thread * threads;
      std::mt19937 rng(static_cast<uint32_t>(k));
      std::normal_distribution<float> normal(0.0f, 1.0f);
      std::vector<float> targets(size_t(tiles * kTrellisTileValues));
      for (float& x : targets) x = normal(rng);
      std::vector<uint16_t> packed(size_t(tiles * trellis_tile_words(k)));
      std::vector<double> errors(static_cast<size_t>(tiles));
      ThreadPool pool(threads);
      double best = 1e30, best_cpu = 1e30;
      for (int rep = 0; rep < 3; ++rep) {
        const auto t0 = Clock::now();
        const std::clock_t c0 = std::clock();
        trellis_encode_tiles(targets.data(), tiles, k, packed.data(), errors.data(), &pool);
        best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
        best_cpu = std::min(best_cpu, double(std::clock() - c0) / CLOCKS_PER_SEC);
      }
      double sum = 0.0;
      for (double e : errors) sum += e;
      const double weights = double(tiles * kTrellisTileValues), mse = sum / weights;
      std::fprintf(stderr, "  K=%d, %d thread(s): %.0f weights/s (best of 3; %.0f per CPU second), MSE %.5f\n", k,
                   threads, weights / best, weights / best_cpu, mse);
      report["encode"].push_back({{"bits", k},
                                  {"threads", threads},
                                  {"tiles", tiles},
                                  {"weights_per_s", weights / best},
                                  {"weights_per_cpu_s", weights / best_cpu},
                                  {"mse", mse}});
    }
  }
  report["load_average_at_end"] = load_average();
  std::printf("%s\n", report.dump(2).c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_trellis: %s\n", e.what());
  return 1;
}
