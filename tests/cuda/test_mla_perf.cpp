// Timings of the MLA latent kernel (ops.h mla_attention_latent) at GLM-4.7-Flash's shape (20 heads,
// cache rows of 512 latent + 64 RoPE values), printed for the record: decode steps of several
// batch sizes and context lengths (GB/s of cache rows read once per step) and a 2048-token prompt;
// and the absorbed per-head products (cuda_mla.h, cuBLAS) for several query row counts (GB/s of
// their weights).
// Each figure is the mean GPU time of 20 calls replayed from one CUDA graph. Asserts only that the
// kernel runs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "backend/cuda/cuda_mla.h"
#include "backend/cuda/ops.h"
#include "device_buffer.h"
#include "graph_timer.h"
#include "test_util.h"

namespace marlin::test {
namespace {

constexpr int kPage = 32;

const cuda::MlaGeometry kGlm{20, 192, 64, 512, 256, true, kPage};

// `batch` sequences of `len` positions each (rows_per_seq new tokens at the end of each), pages
// laid out sequence after sequence.
float latent_ms(int batch, int rows_per_seq, int len) {
  const cuda::MlaGeometry& g = kGlm;
  const int pages = (len + kPage - 1) / kPage;
  DeviceBuffer<uint16_t> cache(size_t(batch) * size_t(pages) * kPage * size_t(g.row_width()));
  DeviceBuffer<uint16_t> q_abs(size_t(batch) * size_t(rows_per_seq) * size_t(g.n_heads) * size_t(g.row_width()));
  DeviceBuffer<uint16_t> o_lat(size_t(batch) * size_t(rows_per_seq) * size_t(g.n_heads) * size_t(g.kv_lora));
  cuda_ok(cudaMemset(cache.get(), 0x11, cache.size() * 2), "memset");  // small positive halves
  cuda_ok(cudaMemset(q_abs.get(), 0x11, q_abs.size() * 2), "memset");
  std::vector<int32_t> table(size_t(batch) * size_t(pages));
  for (size_t i = 0; i < table.size(); ++i) table[i] = int32_t(i);
  DeviceBuffer<int32_t> d_table(table), lens(std::vector<int32_t>(size_t(batch), len));
  const int64_t floats = cuda::mla_attention_workspace_floats(batch, rows_per_seq, len, g);
  DeviceBuffer<float> workspace(size_t(std::max<int64_t>(floats, 1)));
  cuda_ok(cudaDeviceSynchronize(), "setup");
  return graph_ms(
      [&](cudaStream_t stream) {
        cuda::mla_attention_latent(as_half(q_abs), batch, rows_per_seq, lens.get(), d_table.get(), pages, len, g,
                                   as_half(cache), 0.07f, as_half(o_lat), workspace.get(), stream);
      },
      20);
}

TEST(CudaMlaPerf, LatentKernelAtGlmShape) {
  MARLIN_REQUIRE_GPU();
  const double row_bytes = 2.0 * kGlm.row_width();
  for (int len : {1024, 4096}) {
    for (int batch : {1, 8, 32}) {
      const float ms = latent_ms(batch, 1, len);
      std::printf("mla decode  batch %2d  context %4d: %7.1f us  %6.0f GB/s of cache rows\n", batch, len, 1e3 * ms,
                  batch * len * row_bytes / (ms * 1e-3) / 1e9);
    }
  }
  const int prompt = 2048;
  const float ms = latent_ms(1, prompt, prompt);
  // Causal: about half of prompt² (query, key) pairs per head, 2·(576 + 512) flops each.
  const double flops = 0.5 * prompt * double(prompt) * kGlm.n_heads * 2.0 * (kGlm.row_width() + kGlm.kv_lora);
  std::printf("mla prefill %d tokens: %.1f us  %.0f TFLOP/s\n", prompt, 1e3 * ms, flops / (ms * 1e-3) / 1e12);
  SUCCEED();
}

TEST(CudaMlaPerf, AbsorbedProductsAtGlmShape) {
  MARLIN_REQUIRE_GPU();
  const cuda::MlaGeometry& g = kGlm;
  std::vector<float> kv_b(size_t(g.n_heads) * size_t(g.qk_nope + g.v_dim) * size_t(g.kv_lora), 0.01f);
  const auto up = cuda::upload_mla_up_projection(kv_b);
  cublasHandle_t cublas;
  ASSERT_EQ(cublasCreate(&cublas), CUBLAS_STATUS_SUCCESS);
  const int most = 256;
  DeviceBuffer<uint16_t> q(size_t(most) * size_t(g.n_heads) * size_t(g.qk_nope + g.qk_rope));
  DeviceBuffer<uint16_t> q_abs(size_t(most) * size_t(g.n_heads) * size_t(g.row_width()));
  DeviceBuffer<uint16_t> o_lat(size_t(most) * size_t(g.n_heads) * size_t(g.kv_lora));
  DeviceBuffer<uint16_t> out(size_t(most) * size_t(g.n_heads) * size_t(g.v_dim));
  cuda_ok(cudaMemset(q.get(), 0x11, q.size() * 2), "memset");
  cuda_ok(cudaMemset(o_lat.get(), 0x11, o_lat.size() * 2), "memset");
  const double uk_bytes = 2.0 * g.n_heads * g.kv_lora * g.qk_nope, uv_bytes = 2.0 * g.n_heads * g.v_dim * g.kv_lora;
  for (int rows : {1, 8, 16, 64, 256}) {
    const float absorb = graph_ms(
        [&](cudaStream_t stream) {
          cublasSetStream(cublas, stream);
          cuda::mla_absorb_queries(cublas, as_half(q), rows, *up, g, as_half(q_abs));
        },
        20);
    const float project = graph_ms(
        [&](cudaStream_t stream) {
          cublasSetStream(cublas, stream);
          cuda::mla_project_outputs(cublas, as_half(o_lat), rows, *up, g, as_half(out));
        },
        20);
    std::printf("mla absorbed products, %3d rows: queries %6.1f us (%4.0f GB/s)  outputs %6.1f us (%4.0f GB/s)\n",
                rows, 1e3 * absorb,
                uk_bytes / (absorb * 1e-3) / 1e9, 1e3 * project, uv_bytes / (project * 1e-3) / 1e9);
  }
  cublasDestroy(cublas);
  SUCCEED();
}

}  // namespace
}  // namespace marlin::test
