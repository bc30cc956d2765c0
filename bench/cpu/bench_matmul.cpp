// CPU matmul benchmark at the default model's shapes (SmolLM2-135M: hidden 576, FFN 1536,
// 3 KV heads × 64, vocab 49152 tied Q8_0 embeddings). Prints one JSON document.
//
// "matrices": each shape alone, with enough distinct copies of the weights that a pass streams
// at least 64 MiB (so the figure is not an L2-resident one). "decode_model": every matmul of one
// decode step of the whole model (30 layers + lm_head, 96 MB of weights) at m = 1.
//
// Usage: bench_cpu_matmul [--quick] [--threads 1,2] [--isa NAME]
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_isa.h"
#include "backend/cpu/matmul.h"
#include "core/error.h"
#include "quant/ggml_quantize.h"

using namespace marlin;
using Clock = std::chrono::steady_clock;

namespace {

struct Shape {
  const char* name;
  GgmlType type;
  int64_t cols, rows;
};

constexpr Shape kShapes[] = {
    {"attn_q/attn_output 576->576", GgmlType::Q4_1, 576, 576},
    {"attn_k/attn_v 576->192", GgmlType::Q4_1, 576, 192},
    {"ffn_gate/ffn_up 576->1536", GgmlType::Q4_1, 576, 1536},
    {"ffn_down 1536->576", GgmlType::Q4_1, 1536, 576},
    {"lm_head 576->49152", GgmlType::Q8_0, 576, 49152},
};

std::vector<uint8_t> make_weights(GgmlType type, int64_t rows, int64_t cols, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 0.05f);
  std::vector<float> row(static_cast<size_t>(cols));
  const uint64_t row_bytes = *ggml_row_bytes(type, uint64_t(cols));
  std::vector<uint8_t> out(row_bytes * uint64_t(rows));
  for (int64_t r = 0; r < rows; ++r) {
    for (auto& v : row) v = normal(rng);
    quantize_row(type, row.data(), out.data() + r * row_bytes, cols);
  }
  return out;
}

struct Timing {
  double best, median;  // wall seconds per call
  double cpu;           // CPU seconds per call of the whole process (all threads, spinning included)
};

double process_cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + double(t.tv_nsec) * 1e-9;
}

// Times repeated calls of fn for about `budget` seconds. On a shared machine the best time is the
// figure to compare (other load only ever adds time); the median shows how noisy the run was.
template <typename Fn>
Timing time_calls(Fn&& fn, double budget) {
  fn();  // warm up
  std::vector<double> samples;
  const auto start = Clock::now();
  const double cpu_start = process_cpu_seconds();
  do {
    const auto t0 = Clock::now();
    fn();
    samples.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  } while (std::chrono::duration<double>(Clock::now() - start).count() < budget || samples.size() < 3);
  const double cpu = (process_cpu_seconds() - cpu_start) / double(samples.size());
  std::sort(samples.begin(), samples.end());
  return {samples.front(), samples[samples.size() / 2], cpu};
}

double load_average() {
  double load = -1;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &load) != 1) load = -1;
    std::fclose(f);
  }
  return load;
}

}  // namespace

int main(int argc, char** argv) try {
  bool quick = false;
  std::vector<int> thread_counts = {1, 2};
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--quick") {
      quick = true;
    } else if (arg == "--threads" && i + 1 < argc) {
      thread_counts.clear();
      for (const char* p = argv[++i]; *p;) {
        thread_counts.push_back(std::atoi(p));
        while (*p && *p != ',') ++p;
        if (*p == ',') ++p;
      }
    } else if (arg == "--isa" && i + 1 < argc) {
      auto isa = cpu::parse_cpu_isa(argv[++i]);
      MARLIN_CHECK(isa, "unknown ISA {}", argv[i]);
      cpu::set_cpu_isa_override(*isa);
    } else {
      std::fprintf(stderr, "usage: %s [--quick] [--threads 1,2] [--isa scalar|avx2|avx2vnni|avx512]\n", argv[0]);
      return 2;
    }
  }
  const double budget = quick ? 0.1 : 0.5;
  std::mt19937 rng(42);
  nlohmann::json report;
  report["isa"] = std::string(cpu::cpu_isa_name(cpu::active_cpu_isa()));
  report["load_average_at_start"] = load_average();
  report["matrices"] = nlohmann::json::array();

  for (const Shape& s : kShapes) {
    const uint64_t row_bytes = *ggml_row_bytes(s.type, uint64_t(s.cols));
    const uint64_t bytes = row_bytes * uint64_t(s.rows);
    const int copies = int(std::max<uint64_t>(1, (64u << 20) / bytes));
    std::vector<std::vector<uint8_t>> weights;
    for (int i = 0; i < copies; ++i) weights.push_back(make_weights(s.type, s.rows, s.cols, rng));
    for (int64_t m : {int64_t(1), int64_t(512)}) {
      std::vector<float> x(static_cast<size_t>(m * s.cols)), y(static_cast<size_t>(m * s.rows));
      std::normal_distribution<float> normal;
      for (auto& v : x) v = normal(rng);
      for (int threads : thread_counts) {
        ThreadPool pool(threads);
        int next = 0;
        const Timing t = time_calls(
            [&] {
              const cpu::QuantMatrix w{s.type, s.rows, s.cols, weights[size_t(next)].data(), row_bytes};
              next = (next + 1) % copies;
              cpu::matmul(w, x.data(), m, y.data(), pool);
            },
            m == 1 ? budget : budget * 2);
        report["matrices"].push_back({{"shape", s.name},
                                      {"type", std::string(ggml_type_info(s.type).name)},
                                      {"k", s.cols},
                                      {"n", s.rows},
                                      {"m", m},
                                      {"threads", threads},
                                      {"best_us", t.best * 1e6},
                                      {"median_us", t.median * 1e6},
                                      {"cpu_us", t.cpu * 1e6},
                                      {"weight_gb_per_s", double(bytes) / t.best / 1e9},
                                      {"gflop_per_s", 2.0 * double(m) * double(s.cols) * double(s.rows) / t.best / 1e9}});
      }
    }
  }

  // One decode step of the whole model: 30 layers of q, k, v, o, gate, up, down, then lm_head.
  struct Layer {
    std::vector<uint8_t> q, k, v, o, gate, up, down;
  };
  std::vector<Layer> layers(30);
  for (auto& l : layers) {
    l.q = make_weights(GgmlType::Q4_1, 576, 576, rng);
    l.k = make_weights(GgmlType::Q4_1, 192, 576, rng);
    l.v = make_weights(GgmlType::Q4_1, 192, 576, rng);
    l.o = make_weights(GgmlType::Q4_1, 576, 576, rng);
    l.gate = make_weights(GgmlType::Q4_1, 1536, 576, rng);
    l.up = make_weights(GgmlType::Q4_1, 1536, 576, rng);
    l.down = make_weights(GgmlType::Q4_1, 576, 1536, rng);
  }
  const auto head = make_weights(GgmlType::Q8_0, 49152, 576, rng);
  uint64_t total_bytes = head.size();
  for (const auto& l : layers)
    total_bytes += l.q.size() + l.k.size() + l.v.size() + l.o.size() + l.gate.size() + l.up.size() + l.down.size();
  std::vector<float> x(1536, 0.5f), y(49152);
  report["decode_model"] = nlohmann::json::array();
  for (int threads : thread_counts) {
    ThreadPool pool(threads);
    auto mm = [&](const std::vector<uint8_t>& w, int64_t rows, int64_t cols, GgmlType t) {
      cpu::matmul({t, rows, cols, w.data(), *ggml_row_bytes(t, uint64_t(cols))}, x.data(), 1, y.data(), pool);
    };
    const Timing t = time_calls(
        [&] {
          for (const auto& l : layers) {
            mm(l.q, 576, 576, GgmlType::Q4_1);
            mm(l.k, 192, 576, GgmlType::Q4_1);
            mm(l.v, 192, 576, GgmlType::Q4_1);
            mm(l.o, 576, 576, GgmlType::Q4_1);
            mm(l.gate, 1536, 576, GgmlType::Q4_1);
            mm(l.up, 1536, 576, GgmlType::Q4_1);
            mm(l.down, 576, 1536, GgmlType::Q4_1);
          }
          mm(head, 49152, 576, GgmlType::Q8_0);
        },
        budget * 4);
    report["decode_model"].push_back({{"threads", threads},
                                      {"best_ms_per_token", t.best * 1e3},
                                      {"median_ms_per_token", t.median * 1e3},
                                      {"cpu_ms_per_token", t.cpu * 1e3},
                                      {"tokens_per_s_matmul_only", 1.0 / t.best},
                                      {"weight_gb_per_s", double(total_bytes) / t.best / 1e9}});
  }
  report["load_average_at_end"] = load_average();
  std::printf("%s\n", report.dump(2).c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_cpu_matmul: %s\n", e.what());
  return 1;
}
