// Quantization figures: RTN error of every format on a Gaussian matrix, GPTQ against RTN on
// correlated activations, and GPTQ time on the default model's FFN shapes. JSON on stdout, a
// summary on stderr (bench/README.md).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "quant/dequant.h"
#include "quant/gptq.h"
#include "quant/hessian.h"
#include "quant/rtn.h"
#include "../bench_util.h"

namespace {

using marlin::bench::gaussian;
using marlin::bench::seconds_since;

using namespace marlin;
using Clock = std::chrono::steady_clock;

std::vector<float> dequantize_logical(const QuantBuffers& q) {
  std::vector<float> out(size_t(q.rows * q.cols)), row(static_cast<size_t>(q.cols));
  const QuantTensor t = q.view();
  for (int64_t r = 0; r < q.rows; ++r) {
    dequantize_row(t, r, row.data());
    for (int64_t k = 0; k < q.cols; ++k)
      out[size_t(r * q.cols + (q.perm.empty() ? k : q.perm[size_t(k)]))] = row[size_t(k)];
  }
  return out;
}

// Activations with 8 shared directions of the given amplitude, log-normal feature scales and unit
// noise.
std::vector<float> activations(int64_t n, int64_t cols, uint32_t seed, float amplitude) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> basis(size_t(8 * cols)), scale(static_cast<size_t>(cols)), x(size_t(n * cols));
  for (auto& v : basis) v = normal(rng);
  for (auto& s : scale) s = std::exp(0.7f * normal(rng));
  for (int64_t t = 0; t < n; ++t) {
    float z[8];
    for (auto& v : z) v = amplitude * normal(rng);
    for (int64_t i = 0; i < cols; ++i) {
      float v = normal(rng);
      for (int d = 0; d < 8; ++d) v += z[d] * basis[size_t(d * cols + i)];
      x[size_t(t * cols + i)] = scale[size_t(i)] * v;
    }
  }
  return x;
}

// Σ over rows of δᵀ·H·δ with δ = w − q: the output error up to the factor n/2.
double hessian_error(const std::vector<double>& h, const std::vector<float>& w, const std::vector<float>& q,
                     int64_t rows, int64_t cols) {
  double total = 0.0;
  std::vector<double> d(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < cols; ++k) d[size_t(k)] = double(w[size_t(r * cols + k)]) - q[size_t(r * cols + k)];
    for (int64_t i = 0; i < cols; ++i) {
      double s = 0.0;
      for (int64_t j = 0; j < cols; ++j) s += h[size_t(i * cols + j)] * d[size_t(j)];
      total += d[size_t(i)] * s;
    }
  }
  return total;
}

}  // namespace

int main() {
  const char* formats[] = {"int8-pc", "int8-g128", "int4-pc", "int4-g128", "int4-g128-asym", "int4-g32",
                           "int4-g128-24", "int3-g128", "int3-g64-asym", "int2-g64", "int2-g32-asym", "fp8-pc",
                           "fp8-g128", "fp4-g32", "mxfp4", "nvfp4"};
  std::string json = "{\"rtn_gaussian\": [";
  std::fprintf(stderr, "RTN on a 1536x576 N(0,1) matrix: relative RMS error, SNR\n");
  const int64_t rows = 1536, cols = 576;
  const std::vector<float> w = gaussian(rows * cols, 1);
  double power = 0.0;
  for (float v : w) power += double(v) * v;
  for (const char* name : formats) {
    const TensorFormat f = TensorFormat::parse(name);
    const std::vector<float> q = dequantize_logical(quantize_rtn(w.data(), rows, cols, f));
    double err = 0.0;
    for (size_t i = 0; i < w.size(); ++i) err += (double(w[i]) - q[i]) * (double(w[i]) - q[i]);
    const double rel = std::sqrt(err / power);
    std::fprintf(stderr, "  %-16s %6.3f bits/w  rel RMSE %.4f  SNR %5.2f dB\n", name, f.bits_per_weight(), rel,
                 -20.0 * std::log10(rel));
    json += fmt::format("{}{{\"format\": \"{}\", \"bits_per_weight\": {:.4f}, \"rel_rmse\": {:.5f}}}",
                        json.back() == '[' ? "" : ", ", name, f.bits_per_weight(), rel);
  }

  std::fprintf(stderr, "GPTQ vs RTN, 512x576 N(0,1) weights, Hessian of 4096 synthetic activation rows: "
                       "output error ratio\n");
  json += "], \"gptq_vs_rtn\": [";
  {
    const int64_t r = 512, c = 576, n = 4096;
    const std::vector<float> w2 = gaussian(r * c, 3);
    // "strong": 8 shared directions of amplitude 3 over unit noise; "mild": amplitude 0.5.
    for (auto [label, amplitude] : {std::pair<const char*, float>{"strong", 3.0f}, {"mild", 0.5f}}) {
      const std::vector<float> x = activations(n, c, 2, amplitude);
      HessianAccumulator acc(c);
      acc.add(x.data(), n);
      const std::vector<double> h = acc.hessian();
      for (const char* name : {"int4-g128", "int4-g128-act", "int3-g128", "int2-g64", "fp4-g32", "mxfp4", "nvfp4",
                               "int4-g128-24"}) {
        const TensorFormat f = TensorFormat::parse(name);
        std::vector<int32_t> perm;
        if (f.act_order)
          for (int32_t k = 0; k < c; ++k) perm.push_back(k);
        const double rtn = hessian_error(h, w2, dequantize_logical(quantize_rtn(w2.data(), r, c, f, perm)), r, c);
        const double gptq =
            hessian_error(h, w2, dequantize_logical(quantize_gptq(w2.data(), r, c, f, h).weights), r, c);
        std::fprintf(stderr, "  %-6s %-16s GPTQ/RTN %.3f\n", label, name, gptq / rtn);
        json += fmt::format("{}{{\"activations\": \"{}\", \"format\": \"{}\", \"gptq_over_rtn\": {:.4f}}}",
                            json.back() == '[' ? "" : ", ", label, name, gptq / rtn);
      }
    }
  }

  std::fprintf(stderr, "GPTQ time (int4-g128, Hessian given; factorization included)\n");
  json += "], \"gptq_seconds\": [";
  for (auto [r, c] : {std::pair<int64_t, int64_t>{1536, 576}, {576, 1536}}) {
    const std::vector<float> x = activations(2048, c, 4, 3.0f), w3 = gaussian(r * c, 5);
    for (int threads : {1, 2}) {
      ThreadPool pool(threads);
      auto t0 = Clock::now();
      HessianAccumulator acc(c);
      acc.add(x.data(), 2048, &pool);
      const std::vector<double> h = acc.hessian();
      const double t_hessian = seconds_since(t0);
      GptqOptions options;
      options.pool = &pool;
      double best = 1e30, best_cpu = 1e30;
      for (int rep = 0; rep < 3; ++rep) {
        t0 = Clock::now();
        const std::clock_t c0 = std::clock();
        quantize_gptq(w3.data(), r, c, TensorFormat::parse("int4-g128"), h, options);
        best = std::min(best, seconds_since(t0));
        best_cpu = std::min(best_cpu, double(std::clock() - c0) / CLOCKS_PER_SEC);
      }
      std::fprintf(stderr,
                   "  %lldx%lld, %d thread(s): GPTQ %.3f s (best of 3; CPU time %.3f s); Hessian of 2048 rows %.3f s\n",
                   (long long)r, (long long)c, threads, best, best_cpu, t_hessian);
      json += fmt::format(
          "{}{{\"rows\": {}, \"cols\": {}, \"threads\": {}, \"gptq_s\": {:.4f}, \"gptq_cpu_s\": {:.4f}, "
          "\"hessian_2048_s\": {:.4f}}}",
          json.back() == '[' ? "" : ", ", r, c, threads, best, best_cpu, t_hessian);
    }
  }
  json += "]}";
  std::printf("%s\n", json.c_str());
  return 0;
}
