// CPU matmul benchmark at the default model's shapes (SmolLM2-135M: hidden 576, FFN 1536,
// 3 KV heads × 64, vocab 49152) in every weight format. Prints one JSON document on stdout and a
// table of the figures on stderr.
//
// "matrices": each shape × format × m alone, with enough distinct copies of the weights that a pass
// streams at least 256 MiB (more than the L3 of the dev machine, 105 MiB, so every figure is one
// of weights streamed from DRAM). "decode_model": every matmul of
// one decode step of the whole model (30 layers + lm_head) at m = 1, all in one format ("q4_1" is
// the real model: Q4_1 layers and a Q8_0 lm_head).
// Weight GB/s counts every byte a call reads for its weights: codes, scales, zero points, 2:4
// metadata. Planar and trellis weights are random codes with sane scales (the kernels' speed does
// not depend on the values; every trellis bitstream is valid); GGML weights are quantized from
// random normals. Trellis timings include the two Hadamard rotations (activations and outputs).
//
// Usage: bench_cpu_matmul [--quick] [--threads 1,2] [--isa NAME] [--formats a,b] [--m 1,512]
//                         [--no-model]
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_isa.h"
#include "backend/cpu/matmul.h"
#include "core/error.h"
#include "core/half.h"
#include "quant/ggml_quantize.h"
#include "quant/pack.h"
#include "quant/quant_buffers.h"
#include "../bench_util.h"

using namespace marlin;
using Clock = std::chrono::steady_clock;

namespace {

using marlin::bench::load_average;

struct Shape {
  const char* name;
  int64_t cols, rows;
};

constexpr Shape kShapes[] = {
    {"attn_q/attn_output 576->576", 576, 576},
    {"attn_k/attn_v 576->192", 576, 192},
    {"ffn_gate/ffn_up 576->1536", 576, 1536},
    {"ffn_down 1536->576", 1536, 576},
    {"lm_head 576->49152", 576, 49152},
};

const char* const kDefaultFormats[] = {"q4_1",     "int4-g128", "int4-g128-asym", "int8-pc", "f16",  "fp8-pc",
                                       "int3-g128", "int2-g128", "fp4-g128",       "mxfp4",   "nvfp4", "int4-g128-24",
                                       "trellis2",  "trellis3",  "trellis4"};

std::vector<std::string> split_commas(const char* s) {
  std::vector<std::string> out;
  std::string cur;
  for (const char* p = s;; ++p) {
    if (*p == ',' || *p == 0) {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
      if (*p == 0) return out;
    } else {
      cur += *p;
    }
  }
}

// One rows × cols tensor of format f with plausible contents.
QuantBuffers make_weights(const TensorFormat& f, int64_t rows, int64_t cols, std::mt19937& rng) {
  QuantBuffers b = QuantBuffers::allocate(f, rows, cols);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  std::uniform_int_distribution<int> byte(0, 255);
  if (f.kind == FormatKind::kGgml) {
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      for (auto& v : row) v = normal(rng);
      quantize_row(f.ggml, row.data(), b.codes.data() + r * b.code_row_bytes, cols);
    }
    return b;
  }
  if (!f.quantized()) {
    for (int64_t i = 0; i < rows * cols; ++i) {
      const float v = normal(rng);
      const uint16_t h = f.kind == FormatKind::kBF16 ? fp32_to_bf16(v) : fp32_to_fp16(v);
      if (f.kind == FormatKind::kF32) std::memcpy(&b.codes[size_t(4 * i)], &v, 4);
      else std::memcpy(&b.codes[size_t(2 * i)], &h, 2);
    }
    return b;
  }
  const FormatInfo& info = format_info(f.kind);
  for (auto& c : b.codes) c = uint8_t(byte(rng) & (f.kind == FormatKind::kFp8E4M3 ? 0xf7 : 0xff));  // no NaN codes
  const int entry = scale_bytes(info.scale);
  for (size_t i = 0; i < b.scales.size() / size_t(entry); ++i) {
    if (info.scale == ScaleType::kF16) {
      const uint16_t h = fp32_to_fp16(0.002f + 0.01f * float(byte(rng)) / 255.0f);
      std::memcpy(&b.scales[2 * i], &h, 2);
    } else {
      b.scales[i] = uint8_t(info.scale == ScaleType::kE8M0 ? 118 + byte(rng) % 8 : 0x28 + byte(rng) % 16);
    }
  }
  for (auto& z : b.zeros) z = uint8_t(byte(rng) % (1 << info.code_bits));
  for (auto& m : b.sparse_meta) m = uint8_t(sparse_pattern(0, 2) | sparse_pattern(1, 3) << 4);
  if (f.act_order) std::shuffle(b.perm.begin(), b.perm.end(), rng);
  return b;
}

uint64_t weight_bytes(const QuantBuffers& b) {
  return b.codes.size() + b.scales.size() + b.zeros.size() + b.sparse_meta.size();
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

// Distinct copies of a tensor totalling at least `bytes` (the first made, the rest copied).
std::vector<QuantBuffers> copies_of(QuantBuffers first, uint64_t bytes) {
  const int n = int(std::max<uint64_t>(1, bytes / weight_bytes(first)));
  std::vector<QuantBuffers> out(size_t(n), first);
  out[0] = std::move(first);
  return out;
}

void bench_matrices(const std::vector<std::string>& formats, const std::vector<int64_t>& ms,
                    const std::vector<int>& thread_counts, double budget, std::mt19937& rng, nlohmann::json& out) {
  for (const Shape& s : kShapes)
    for (const std::string& name : formats) {
      const TensorFormat f = TensorFormat::parse(name);
      const auto weights = copies_of(make_weights(f, s.rows, s.cols, rng), 256u << 20);
      const uint64_t bytes = weight_bytes(weights[0]);
      for (int64_t m : ms) {
        std::vector<float> x(static_cast<size_t>(m * s.cols)), y(static_cast<size_t>(m * s.rows));
        std::normal_distribution<float> normal;
        for (auto& v : x) v = normal(rng);
        for (int threads : thread_counts) {
          ThreadPool pool(threads);
          size_t next = 0;
          const Timing t = time_calls(
              [&] {
                cpu::matmul(weights[next].view(), x.data(), m, y.data(), pool);
                next = (next + 1) % weights.size();
              },
              m == 1 ? budget : budget * 2);
          out.push_back({{"shape", s.name},
                         {"format", name},
                         {"bits_per_weight", 8.0 * double(bytes) / double(s.rows * s.cols)},
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
}

// One decode step of the whole model: 30 layers of q, k, v, o, gate, up, down, then lm_head.
void bench_model(const std::vector<std::string>& formats, const std::vector<int>& thread_counts, double budget,
                 std::mt19937& rng, nlohmann::json& out) {
  struct Matrix {
    int64_t rows, cols;
  };
  const Matrix layer[] = {{576, 576}, {192, 576}, {192, 576}, {576, 576}, {1536, 576}, {1536, 576}, {576, 1536}};
  for (const std::string& name : formats) {
    const TensorFormat f = TensorFormat::parse(name);
    const TensorFormat head = f == TensorFormat::parse("q4_1") ? TensorFormat::parse("q8_0") : f;
    std::vector<QuantBuffers> weights;
    for (const Matrix& m : layer) {  // one random tensor per shape, copied into every layer
      const QuantBuffers first = make_weights(f, m.rows, m.cols, rng);
      for (int l = 0; l < 30; ++l) weights.push_back(first);
    }
    weights.push_back(make_weights(head, 49152, 576, rng));
    uint64_t total = 0;
    for (const auto& w : weights) total += weight_bytes(w);
    std::vector<float> x(1536, 0.5f), y(49152);
    for (int threads : thread_counts) {
      ThreadPool pool(threads);
      const Timing t = time_calls(
          [&] {
            for (int l = 0; l < 30; ++l)
              for (size_t i = 0; i < 7; ++i) cpu::matmul(weights[i * 30 + size_t(l)].view(), x.data(), 1, y.data(), pool);
            cpu::matmul(weights.back().view(), x.data(), 1, y.data(), pool);
          },
          budget * 4);
      out.push_back({{"format", name},
                     {"lm_head_format", head.name()},
                     {"threads", threads},
                     {"weight_mb", double(total) / 1e6},
                     {"best_ms_per_token", t.best * 1e3},
                     {"median_ms_per_token", t.median * 1e3},
                     {"cpu_ms_per_token", t.cpu * 1e3},
                     {"tokens_per_s_matmul_only", 1.0 / t.best},
                     {"weight_gb_per_s", double(total) / t.best / 1e9}});
    }
  }
}

void print_summary(const nlohmann::json& report) {
  std::fprintf(stderr, "isa %s, load average %.2f -> %.2f\n", report["isa"].get<std::string>().c_str(),
               report["load_average_at_start"].get<double>(), report["load_average_at_end"].get<double>());
  std::fprintf(stderr, "%-30s %-15s %5s %3s %10s %8s %8s\n", "shape", "format", "m", "thr", "best_us", "GB/s",
               "GFLOP/s");
  for (const auto& r : report["matrices"])
    std::fprintf(stderr, "%-30s %-15s %5lld %3d %10.1f %8.2f %8.1f\n", r["shape"].get<std::string>().c_str(),
                 r["format"].get<std::string>().c_str(), (long long)r["m"].get<int64_t>(), r["threads"].get<int>(),
                 r["best_us"].get<double>(), r["weight_gb_per_s"].get<double>(), r["gflop_per_s"].get<double>());
  for (const auto& r : report["decode_model"])
    std::fprintf(stderr, "decode step %-15s thr %d: %.2f ms/token (%.1f MB, %.2f GB/s)\n",
                 r["format"].get<std::string>().c_str(), r["threads"].get<int>(), r["best_ms_per_token"].get<double>(),
                 r["weight_mb"].get<double>(), r["weight_gb_per_s"].get<double>());
}

}  // namespace

int main(int argc, char** argv) try {
  bool quick = false, model = true;
  std::vector<int> thread_counts = {1, 2};
  std::vector<int64_t> ms = {1, 512};
  std::vector<std::string> formats(std::begin(kDefaultFormats), std::end(kDefaultFormats));
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--quick") {
      quick = true;
    } else if (arg == "--no-model") {
      model = false;
    } else if (arg == "--threads" && i + 1 < argc) {
      thread_counts.clear();
      for (const auto& t : split_commas(argv[++i])) thread_counts.push_back(std::stoi(t));
    } else if (arg == "--m" && i + 1 < argc) {
      ms.clear();
      for (const auto& m : split_commas(argv[++i])) ms.push_back(std::stoll(m));
    } else if (arg == "--formats" && i + 1 < argc) {
      formats = split_commas(argv[++i]);
      for (const auto& f : formats) TensorFormat::parse(f);  // fail early on a bad name
    } else if (arg == "--isa" && i + 1 < argc) {
      auto isa = cpu::parse_cpu_isa(argv[++i]);
      MARLIN_CHECK(isa, "unknown ISA {}", argv[i]);
      cpu::set_cpu_isa_override(*isa);
    } else {
      std::fprintf(stderr,
                   "usage: %s [--quick] [--threads 1,2] [--isa scalar|avx2|avx2vnni|avx512|avx512fp16] [--formats a,b] "
                   "[--m 1,512] [--no-model]\n",
                   argv[0]);
      return 2;
    }
  }
  const double budget = quick ? 0.1 : 0.5;
  std::mt19937 rng(42);
  nlohmann::json report;
  report["isa"] = std::string(cpu::cpu_isa_name(cpu::active_cpu_isa()));
  report["load_average_at_start"] = load_average();
  report["matrices"] = nlohmann::json::array();
  report["decode_model"] = nlohmann::json::array();
  bench_matrices(formats, ms, thread_counts, budget, rng, report["matrices"]);
  if (model) bench_model(formats, thread_counts, budget, rng, report["decode_model"]);
  report["load_average_at_end"] = load_average();
  std::printf("%s\n", report.dump(2).c_str());
  print_summary(report);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_cpu_matmul: %s\n", e.what());
  return 1;
}
