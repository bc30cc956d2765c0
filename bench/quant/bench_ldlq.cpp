// Incoherence processing + LDLQ time on the default model's layer shapes with a trivial (scalar
// grid) strip quantizer, and the block LDL time for n = 4096. JSON on stdout, a summary on stderr
// (bench/README.md).
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "core/thread_pool.h"
#include "quant/hadamard.h"
#include "quant/hessian.h"
#include "quant/ldl.h"
#include "quant/ldlq.h"
#include "../bench_util.h"

namespace {

using marlin::bench::seconds_since;
using marlin::bench::gaussian;
using marlin::bench::load_average;

using namespace marlin;
using Clock = std::chrono::steady_clock;

std::vector<double> activation_hessian(int64_t cols, ThreadPool* pool) {
  const int64_t samples = 1024;
  const std::vector<float> x = gaussian(samples * cols, 3);
  HessianAccumulator acc(cols);
  acc.add(x.data(), samples, pool);
  return acc.hessian();
}

void scalar_grid(const float* target, int64_t rows, int64_t width, int64_t, float* out) {
  for (int64_t i = 0; i < rows * width; ++i) out[i] = 0.25f * std::nearbyint(target[i] * 4.0f);
}

struct LayerTimes {
  double rotate_s = 0, ldl_s = 0, ldlq_s = 0, loss_s = 0, total_s = 0;
};

// Rotation of W (both sides) and H, block LDL, LDLQ, proxy loss: best of 3.
LayerTimes time_layer(int64_t rows, int64_t cols, ThreadPool* pool) {
  const std::vector<float> w0 = gaussian(rows * cols, 1);
  const std::vector<double> h0 = activation_hessian(cols, pool);
  LayerTimes best;
  best.total_s = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    std::vector<float> w = w0;
    std::vector<double> h = h0;
    LayerTimes t;
    auto start = Clock::now();
    const Rotation in(cols, 7), out(rows, 8);
    rotate_weight(w.data(), rows, cols, &out, &in, pool);
    rotate_hessian(h.data(), cols, in, pool);
    t.rotate_s = seconds_since(start);
    auto step = Clock::now();
    LdlOptions options;
    options.pool = pool;
    const BlockLdl ldl = block_ldl(h, cols, options);
    t.ldl_s = seconds_since(step);
    step = Clock::now();
    const std::vector<float> q = ldlq(w.data(), rows, cols, ldl, scalar_grid, pool);
    t.ldlq_s = seconds_since(step);
    step = Clock::now();
    const double loss = proxy_loss(w.data(), q.data(), rows, cols, h, pool);
    t.loss_s = seconds_since(step);
    t.total_s = seconds_since(start);
    if (!std::isfinite(loss)) std::fprintf(stderr, "non-finite loss\n");
    if (t.total_s < best.total_s) best = t;
  }
  return best;
}

// The Kac–Murdock–Szegő matrix ρ^|i−j| (positive definite), n = 4096: only the time matters.
double time_ldl_4096(ThreadPool* pool) {
  const int64_t n = 4096;
  std::vector<double> h(size_t(n * n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) h[size_t(i * n + j)] = std::pow(0.9, double(std::abs(i - j)));
  LdlOptions options;
  options.pool = pool;
  const auto start = Clock::now();
  const BlockLdl ldl = block_ldl(h, n, options);
  const double s = seconds_since(start);
  if (ldl.n != n) std::fprintf(stderr, "bad LDL\n");
  return s;
}

}  // namespace

int main() {
  std::printf("{\n  \"load_average_at_start\": %.2f,\n  \"layers\": [\n", load_average());
  bool first = true;
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{576, 576}, {1536, 576}}) {
      const LayerTimes t = time_layer(rows, cols, &pool);
      std::printf("%s    {\"rows\": %lld, \"cols\": %lld, \"threads\": %d, \"rotate_s\": %.4f, \"ldl_s\": %.4f, "
                  "\"ldlq_s\": %.4f, \"loss_s\": %.4f, \"total_s\": %.4f}",
                  first ? "" : ",\n", (long long)rows, (long long)cols, threads, t.rotate_s, t.ldl_s, t.ldlq_s,
                  t.loss_s, t.total_s);
      std::fprintf(stderr, "%lld x %lld, %d thread(s): rotate %.1f ms, LDL %.1f ms, LDLQ %.1f ms, loss %.1f ms, total %.1f ms\n",
                   (long long)rows, (long long)cols, threads, 1e3 * t.rotate_s, 1e3 * t.ldl_s, 1e3 * t.ldlq_s,
                   1e3 * t.loss_s, 1e3 * t.total_s);
      first = false;
    }
  }
  std::printf("\n  ],\n  \"ldl_4096\": [");
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    const double s = time_ldl_4096(&pool);
    std::printf("%s{\"threads\": %d, \"seconds\": %.3f}", threads == 1 ? "" : ", ", threads, s);
    std::fprintf(stderr, "block LDL n = 4096, %d thread(s): %.2f s\n", threads, s);
  }
  std::printf("],\n  \"load_average_at_end\": %.2f\n}\n", load_average());
  return 0;
}
