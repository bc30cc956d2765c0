// Timings of the attention kernels on the Llama-3.1-8B shape (32 query heads, 8 KV heads, head_dim
// 128), printed for the record (cudaEvent timing of repeated calls, replayed from a CUDA graph).
// They assert only that the kernels run; the figures are noted in docs/kernels.md.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <tuple>
#include <vector>

#include "backend/cuda/device_info.h"
#include "backend/cuda/ops.h"
#include "device_buffer.h"
#include "graph_timer.h"
#include "test_util.h"

namespace marlin::test {
namespace {

cuda::AttentionGeometry llama8b(int head_dim = 128, int n_heads = 32, int n_kv_heads = 8) {
  cuda::AttentionGeometry g;
  g.n_heads = n_heads;
  g.n_kv_heads = n_kv_heads;
  g.head_dim = head_dim;
  g.rotary_dim = head_dim;
  g.page_size = 16;
  return g;
}

// `n` fp16 values in [-1, 1]: a random block repeated (generating a GiB value by value is slow).
std::vector<uint16_t> filler(size_t n, std::mt19937& rng) {
  const std::vector<uint16_t> block = random_halves(size_t(1) << 20, -1.0f, 1.0f, rng);
  std::vector<uint16_t> v(n);
  for (size_t i = 0; i < n; i += block.size()) std::copy_n(block.begin(), std::min(block.size(), n - i), v.begin() + long(i));
  return v;
}

// A cache of `pages` pages and shuffled block tables.
struct PerfCache {
  DeviceBuffer<uint16_t> keys, values;
  DeviceBuffer<int32_t> tables;
  PerfCache(const cuda::AttentionGeometry& g, int pages, std::mt19937& rng)
      : keys(filler(size_t(pages) * g.n_kv_heads * g.page_size * g.head_dim, rng)),
        values(filler(keys.size(), rng)),
        tables(shuffled(pages, rng)) {}
  static std::vector<int32_t> shuffled(int pages, std::mt19937& rng) {
    std::vector<int32_t> t(static_cast<size_t>(pages));
    std::iota(t.begin(), t.end(), 0);
    std::shuffle(t.begin(), t.end(), rng);
    return t;
  }
};

TEST(CudaAttentionPerf, Prefill) {
  MARLIN_REQUIRE_GPU();
  std::printf("device: %s\n", cuda::device_name(0).c_str());
  for (auto shape : {std::tuple{128, 32, 8}, std::tuple{64, 9, 3}, std::tuple{64, 32, 8}}) {
    const auto [hd, heads, kv_heads] = shape;
    const cuda::AttentionGeometry g = llama8b(hd, heads, kv_heads);
    const float scale = 1.0f / std::sqrt(float(hd));
    const int rows = 2048, pages = rows / g.page_size;
    std::mt19937 rng(1);
    PerfCache cache(g, pages, rng);
    DeviceBuffer<uint16_t> qkv(random_halves(size_t(rows) * (heads + 2 * kv_heads) * hd, -1.0f, 1.0f, rng)),
        out(size_t(rows) * heads * hd);
    const float ms = time_ms(
        [&](cudaStream_t stream) {
          cuda::attention_prefill(as_half(qkv), rows, 0, cache.tables.get(), g,
                                  {as_half(cache.keys), as_half(cache.values)}, scale, as_half(out), stream);
        },
        20, true);
    // Two products of 2 FLOP per (query, visible key, head, dim): the causal triangle.
    const double flops = 4.0 * heads * hd * (double(rows) * (rows + 1) / 2);
    std::printf("prefill %d tokens, %d/%d heads, hd %d: %.1f us, %.1f TFLOP/s\n", rows, heads, kv_heads, hd,
                ms * 1e3, flops / (ms * 1e-3) / 1e12);
  }
}

TEST(CudaAttentionPerf, Decode) {
  MARLIN_REQUIRE_GPU();
  const cuda::AttentionGeometry g = llama8b();
  for (int batch : {1, 32}) {
    for (int ctx : {2048, 8192}) {
      const int max_pages = ctx / g.page_size;
      std::mt19937 rng(2);
      PerfCache cache(g, batch * max_pages, rng);
      DeviceBuffer<uint16_t> qkv(random_halves(size_t(batch) * (g.n_heads + 2 * g.n_kv_heads) * g.head_dim, -1.0f,
                                               1.0f, rng)),
          out(size_t(batch) * g.n_heads * g.head_dim);
      DeviceBuffer<int32_t> lens(std::vector<int32_t>(size_t(batch), ctx));
      DeviceBuffer<float> workspace(size_t(std::max<int64_t>(1, cuda::attention_decode_workspace_floats(batch, ctx, g))));
      auto launch = [&](cudaStream_t stream) {
        cuda::attention_decode(as_half(qkv), batch, lens.get(), cache.tables.get(), max_pages, ctx, g,
                               {as_half(cache.keys), as_half(cache.values)}, 1.0f / std::sqrt(128.0f),
                               as_half(out), workspace.get(), stream);
      };
      const float graph_ms = time_ms(launch, 50, true), launch_ms = time_ms(launch, 50, false);
      const double bytes = 2.0 * batch * ctx * g.n_kv_heads * g.head_dim * sizeof(uint16_t);  // K and V
      std::printf("decode batch %d, context %d: %.1f us in a graph (%.0f GB/s of KV), %.1f us launched one by one\n",
                  batch, ctx, graph_ms * 1e3, bytes / (graph_ms * 1e-3) / 1e9, launch_ms * 1e3);
    }
  }
}

// The small ops at Llama-3.1-8B sizes: GB/s of what each reads and writes.
TEST(CudaOpsPerf, SmallOps) {
  MARLIN_REQUIRE_GPU();
  std::mt19937 rng(3);
  auto report = [](const char* what, float ms, double bytes) {
    std::printf("%s: %.2f us, %.0f GB/s\n", what, ms * 1e3, bytes / (ms * 1e-3) / 1e9);
  };
  const int64_t d = 4096, f = 14336, vocab = 128256;
  for (int64_t rows : {1, 2048}) {
    DeviceBuffer<float> x(std::vector<float>(size_t(rows * d), 0.5f)), w(std::vector<float>(size_t(d), 1.0f));
    DeviceBuffer<uint16_t> delta(filler(size_t(rows * d), rng)), out(size_t(rows * d));
    const float ms = time_ms(
        [&](cudaStream_t stream) {
          cuda::add_rms_norm(x.get(), as_half(delta), w.get(), 1e-5f, rows, d, as_half(out), stream);
        },
        50, true);
    report(rows == 1 ? "add_rms_norm 1 x 4096" : "add_rms_norm 2048 x 4096", ms, double(rows * d) * (4 + 2 + 4 + 2));
    DeviceBuffer<uint16_t> gate_up(filler(size_t(rows * 2 * f), rng)), act(size_t(rows * f));
    const float silu_ms = time_ms(
        [&](cudaStream_t stream) { cuda::silu_mul(as_half(gate_up), rows, f, as_half(act), stream); }, 50, true);
    report(rows == 1 ? "silu_mul 1 x 14336" : "silu_mul 2048 x 14336", silu_ms, double(rows * f) * 6);
  }
  {
    const cuda::AttentionGeometry g = llama8b();
    const int rows = 2048;
    const int64_t row_len = int64_t(g.n_heads + 2 * g.n_kv_heads) * g.head_dim;
    PerfCache cache(g, rows / g.page_size, rng);
    DeviceBuffer<uint16_t> qkv(filler(size_t(rows * row_len), rng));
    std::vector<int32_t> positions(rows);
    std::iota(positions.begin(), positions.end(), 0);
    DeviceBuffer<int32_t> pos(positions), slots(positions);
    DeviceBuffer<float> cos_sin(std::vector<float>(size_t(rows) * size_t(g.rotary_dim), 0.5f));
    const float ms = time_ms(
        [&](cudaStream_t stream) {
          cuda::rope_store_kv(as_half(qkv), rows, pos.get(), slots.get(), cos_sin.get(), g,
                              {as_half(cache.keys), as_half(cache.values)}, stream);
        },
        50, true);
    // q and k read and written, k and v written to the cache (v read once).
    report("rope_store_kv 2048 tokens", ms, double(rows) * g.head_dim * 2 * (2 * (g.n_heads + g.n_kv_heads) + 3 * g.n_kv_heads));
  }
  for (int batch : {1, 32}) {
    DeviceBuffer<float> logits(std::vector<float>(size_t(batch * vocab), 1.0f));
    DeviceBuffer<int32_t> tokens(static_cast<size_t>(batch));
    const float ms = time_ms(
        [&](cudaStream_t stream) { cuda::argmax(logits.get(), batch, vocab, tokens.get(), stream); }, 50, true);
    report(batch == 1 ? "argmax 1 x 128256" : "argmax 32 x 128256", ms, double(batch * vocab) * 4);
  }
}

}  // namespace
}  // namespace marlin::test
