// The layer trellis quantizer (rotation + LDLQ + trellis tiles) on the default model's layer
// shapes with synthetic correlated activations: time (weights/s) and proxy loss against GPTQ
// int-K (group 128 with and without act-order, per channel) at K = 2, 3, 4, and the proxy loss for several row-scale
// factors (TrellisQuantOptions::scale_factor). JSON on stdout, a summary on stderr (bench/README.md).
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "quant/dequant.h"
#include "quant/gptq.h"
#include "quant/hessian.h"
#include "quant/ldlq.h"
#include "quant/trellis_quantize.h"

#include "../../tests/quant/synthetic_layer.h"
#include "../bench_util.h"

namespace {

using marlin::bench::seconds_since;
using marlin::bench::load_average;

using namespace marlin;
using Clock = std::chrono::steady_clock;

using marlin::testing::correlated_hessian;
using marlin::testing::layer_weights;


double gptq_loss(const std::vector<float>& w, int64_t rows, int64_t cols, const std::vector<double>& h,
                 const std::string& format, ThreadPool* pool) {
  GptqOptions options;
  options.pool = pool;
  const GptqResult g = quantize_gptq(w.data(), rows, cols, TensorFormat::parse(format), h, options);
  std::vector<float> q(w.size()), row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {  // act-order undone: Ŵ in the original column order
    dequantize_row(g.weights.view(), r, row.data());
    for (int64_t c = 0; c < cols; ++c) q[size_t(r * cols + (g.weights.perm.empty() ? c : g.weights.perm[size_t(c)]))] = row[size_t(c)];
  }
  return proxy_loss(w.data(), q.data(), rows, cols, h, pool);
}

}  // namespace

int main() {
  ThreadPool pool(2);
  std::printf("{\n  \"threads\": 2,\n  \"load_average_at_start\": %.2f,\n  \"layers\": [\n", load_average());
  bool first = true;
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{576, 576}, {1536, 576}}) {
    const auto w = layer_weights(rows, cols, 1);
    const auto h = correlated_hessian(cols, 2048, 2, &pool);
    for (int k : {2, 3, 4}) {
      TrellisQuantOptions options;
      options.pool = &pool;
      const auto start = Clock::now();
      const TrellisLayer layer = quantize_trellis_layer(w.data(), rows, cols, h, k, 7, options);
      const double seconds = seconds_since(start);
      const double g128 = gptq_loss(w, rows, cols, h, fmt::format("int{}-g128", k), &pool);
      const double pc = gptq_loss(w, rows, cols, h, fmt::format("int{}-pc", k), &pool);
      const double g128_act = gptq_loss(w, rows, cols, h, fmt::format("int{}-g128-act", k), &pool);
      const double rate = double(rows * cols) / seconds;
      std::printf("%s    {\"rows\": %lld, \"cols\": %lld, \"k\": %d, \"seconds\": %.3f, \"weights_per_s\": %.0f, "
                  "\"relative_loss\": %.6g, \"trellis_over_gptq_g128\": %.4f, \"trellis_over_gptq_pc\": %.4f, "
                  "\"trellis_over_gptq_g128_act\": %.4f}",
                  first ? "" : ",\n", (long long)rows, (long long)cols, k, seconds, rate, layer.relative_loss,
                  layer.proxy_loss / g128, layer.proxy_loss / pc, layer.proxy_loss / g128_act);
      std::fprintf(stderr, "%lld x %lld K=%d: %.2f s (%.0f weights/s), relative loss %.4g, trellis/GPTQ g128 %.3f, pc %.3f, "
                   "g128-act %.3f\n",
                   (long long)rows, (long long)cols, k, seconds, rate, layer.relative_loss, layer.proxy_loss / g128,
                   layer.proxy_loss / pc, layer.proxy_loss / g128_act);
      first = false;
    }
  }
  std::printf("\n  ],\n  \"row_scale_factor\": [\n");
  first = true;
  const int64_t rows = 576, cols = 576;
  const auto w = layer_weights(rows, cols, 3);
  const auto h = correlated_hessian(cols, 2048, 4, &pool);
  for (int k : {2, 3, 4})
    for (double factor : {0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2}) {
      TrellisQuantOptions options;
      options.pool = &pool;
      options.scale_factor = factor;
      const TrellisLayer with_h = quantize_trellis_layer(w.data(), rows, cols, h, k, 7, options);
      const TrellisLayer plain = quantize_trellis_layer(w.data(), rows, cols, {}, k, 7, options);
      std::printf("%s    {\"k\": %d, \"factor\": %.2f, \"relative_loss_ldlq\": %.6g, \"relative_mse_no_hessian\": %.6g}",
                  first ? "" : ",\n", k, factor, with_h.relative_loss, plain.relative_loss);
      std::fprintf(stderr, "576 x 576 K=%d scale factor %.2f: relative loss with LDLQ %.5g, relative MSE without H %.5g\n",
                   k, factor, with_h.relative_loss, plain.relative_loss);
      first = false;
    }
  std::printf("\n  ],\n  \"load_average_at_end\": %.2f\n}\n", load_average());
  return 0;
}
