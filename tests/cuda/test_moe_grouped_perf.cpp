// Timings of one sparse MLP layer at Qwen3-30B-A3B's expert shape (128 experts of d_model 2048,
// d_ffn 768, int4-g128, 8 per token), printed for the record: the grouped path against the
// host-routed one (MARLIN_MOE_GROUPED=0 at upload) for steps of 16 to 2048 tokens, and the grouped
// path held to 32-position (mma.sync) or 64-position (wgmma) chunks (MARLIN_MOE_WGMMA). Each figure is
// the mean wall time of 10 calls after a warm-up, the stream drained after the last (the
// host-routed path synchronizes every call anyway). Asserts only that the paths run and agree to
// 1% rms: they round at the same points and differ in the order of fp32 sums (a few fp16 units,
// 2^-11 each), while a routing or indexing error would miss by the output's own size.
// Decode steps (1 and 8 tokens: routing and the two routed products on the device) are timed as a
// replayed graph, with the bytes of the experts they read against the bandwidth of a
// device-to-device copy measured in the same run.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <vector>

#include <cublas_v2.h>

#include "backend/cuda/cuda_experts.h"
#include "backend/cuda/tiled_gemm.h"
#include "core/half.h"
#include "device_buffer.h"
#include "graph_timer.h"
#include "moe_test_layer.h"
#include "test_util.h"

namespace marlin::test {
namespace {

// Mean seconds of one forward over `reps` calls after a warm-up.
double seconds_per_call(const cuda::CudaExperts& x, const __half* h, int64_t rows, const float* logits,
                        const MoeRouting& routing, __half* out, cuda::LinearContext& ctx, cuda::MoeScratch& scratch,
                        int reps) {
  x.forward(h, rows, logits, routing, out, ctx, scratch);
  cuda_ok(cudaDeviceSynchronize(), "warm-up");
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) x.forward(h, rows, logits, routing, out, ctx, scratch);
  cuda_ok(cudaDeviceSynchronize(), "timed calls");
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / reps;
}

// The layer at Qwen3-30B-A3B's expert shape and the experts' context as the backend sets it up.
struct Qwen3Layer {
  ThreadPool pool{8};
  Layer layer = make_layer(128, 2048, 768, TensorFormat::parse("int4-g128"), 900, pool);
  cuda::LinearContext ctx;
  Qwen3Layer() {
    EXPECT_EQ(cublasCreate(&ctx.cublas), CUBLAS_STATUS_SUCCESS);
    ctx.max_rows = 2048;  // the CUDA backend's most tokens per step
  }
  ~Qwen3Layer() { cublasDestroy(ctx.cublas); }
};

TEST(CudaMoeGroupedPerf, Qwen3LayerTimings) {
  MARLIN_REQUIRE_GPU();
  if (!cuda::tiled_gemm_supported()) GTEST_SKIP() << "the tiled kernels need sm_90";
  Qwen3Layer q;
  const Layer& layer = q.layer;
  cuda::LinearContext& ctx = q.ctx;
  auto grouped = cuda::CudaExperts::upload(layer.experts, {}, ctx);
  setenv("MARLIN_MOE_GROUPED", "0", 1);
  auto host = cuda::CudaExperts::upload(layer.experts, {}, ctx);
  unsetenv("MARLIN_MOE_GROUPED");
  // The grouped path on narrow (mma.sync) and on wide (wgmma) chunks whatever the step.
  std::unique_ptr<cuda::CudaExperts> chunks[2];
  for (int wide = 0; wide < 2; ++wide) {
    setenv("MARLIN_MOE_WGMMA", wide ? "1" : "0", 1);
    chunks[wide] = cuda::CudaExperts::upload(layer.experts, {}, ctx);
  }
  unsetenv("MARLIN_MOE_WGMMA");
  ASSERT_TRUE(grouped->grouped());
  ASSERT_FALSE(host->grouped());

  const MoeRouting routing{8, true, RouterScoring::kSoftmax};
  const int64_t most = 2048;
  std::mt19937 rng(31);
  const std::vector<uint16_t> h = random_halves(size_t(most * 2048), -1.0f, 1.0f, rng);
  std::vector<float> logits(size_t(most * 128));
  std::uniform_real_distribution<float> logit(-4.0f, 4.0f);
  for (auto& l : logits) l = logit(rng);
  DeviceBuffer<uint16_t> dh(h), out_grouped(size_t(most * 2048)), out_host(size_t(most * 2048));
  DeviceBuffer<float> dlogits(logits);
  cuda::MoeScratch scratch;
  std::printf("Qwen3-30B-A3B sparse MLP layer (int4-g128), one layer:\n");
  // rms difference of `out` from the host-routed output, over the step's rows.
  auto rms_from_host = [&](const DeviceBuffer<uint16_t>& out, int64_t rows) {
    const std::vector<float> a = to_float(out.download()), b = to_float(out_host.download());
    double err = 0, norm = 0;
    for (size_t i = 0; i < size_t(rows * 2048); ++i) {
      err += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
      norm += double(b[i]) * b[i];
    }
    return std::sqrt(err / norm);
  };
  for (const int64_t rows : {16, 64, 512, 2048}) {
    const double o = seconds_per_call(*host, as_half(dh), rows, dlogits.get(), routing, as_half(out_host), ctx,
                                      scratch, 10);
    const double g = seconds_per_call(*grouped, as_half(dh), rows, dlogits.get(), routing, as_half(out_grouped), ctx,
                                      scratch, 10);
    EXPECT_LE(rms_from_host(out_grouped, rows), 0.01) << rows << " tokens: the paths disagree";
    double narrow_wide[2];
    for (int wide = 0; wide < 2; ++wide) {
      narrow_wide[wide] = seconds_per_call(*chunks[wide], as_half(dh), rows, dlogits.get(), routing,
                                           as_half(out_grouped), ctx, scratch, 10);
      EXPECT_LE(rms_from_host(out_grouped, rows), 0.01) << rows << " tokens, wide " << wide << ": the paths disagree";
    }
    std::printf("  %5lld tokens: grouped %8.1f us (%8.0f tokens/s for 48 layers; 32-position chunks %8.1f us, "
                "64-position chunks %8.1f us), host-routed %8.1f us, %.1fx\n",
                static_cast<long long>(rows), g * 1e6, double(rows) / (48 * g), narrow_wide[0] * 1e6,
                narrow_wide[1] * 1e6, o * 1e6, o / g);
  }
}

// Decode steps at the same shape, alone (so that a profiler sees only them): the bytes of the
// distinct experts the step's tokens choose (their top 8 logits) against the time of one step, in
// one launch (moe_decode, where the step fits it), in two with routing, SwiGLU and the combination
// inside the routed products (MARLIN_MOE_ONE_LAUNCH=0), and in launches of their own
// (MARLIN_MOE_FUSED=0).
TEST(CudaMoeGroupedPerf, Qwen3DecodeSteps) {
  MARLIN_REQUIRE_GPU();
  if (!cuda::tiled_gemm_supported()) GTEST_SKIP() << "the tiled kernels need sm_90";
  Qwen3Layer q;
  const Layer& layer = q.layer;
  cuda::LinearContext& ctx = q.ctx;
  auto one = cuda::CudaExperts::upload(layer.experts, {}, ctx);
  setenv("MARLIN_MOE_ONE_LAUNCH", "0", 1);
  auto two = cuda::CudaExperts::upload(layer.experts, {}, ctx);
  unsetenv("MARLIN_MOE_ONE_LAUNCH");
  setenv("MARLIN_MOE_FUSED", "0", 1);
  auto separate = cuda::CudaExperts::upload(layer.experts, {}, ctx);
  unsetenv("MARLIN_MOE_FUSED");
  const MoeRouting routing{8, true, RouterScoring::kSoftmax};
  std::mt19937 rng(31);
  // Every call of a timed graph routes by other logits, as the layers of a model would (the
  // experts of one call fit in L2).
  constexpr int kCalls = 20;
  const std::vector<uint16_t> h = random_halves(size_t(8 * 2048), -1.0f, 1.0f, rng);
  std::vector<float> logits(size_t(kCalls * 8 * 128));
  std::uniform_real_distribution<float> logit(-4.0f, 4.0f);
  for (auto& l : logits) l = logit(rng);
  DeviceBuffer<uint16_t> dh(h), out(size_t(8 * 2048));
  DeviceBuffer<float> dlogits(logits);
  cuda::MoeScratch scratch;
  double expert_bytes = 0;
  for (int m = 0; m < 3; ++m)
    expert_bytes += double(layer.weights[size_t(m)].codes.size() + layer.weights[size_t(m)].scales.size() +
                           layer.weights[size_t(m)].zeros.size());
  DeviceBuffer<uint8_t> copy_from(size_t(1) << 30), copy_to(size_t(1) << 30);
  const float copy_ms = time_ms(
      [&](cudaStream_t s) {
        cuda_ok(cudaMemcpyAsync(copy_to.get(), copy_from.get(), size_t(1) << 30, cudaMemcpyDeviceToDevice, s), "copy");
      },
      5, false);
  const double copy_bytes_per_s = 2.0 * double(size_t(1) << 30) / (copy_ms * 1e-3);  // read + write
  std::printf("{\"device_copy_tb_per_s\": %.3f}\n", copy_bytes_per_s * 1e-12);
  for (const int64_t rows : {1, 2, 4, 8}) {
    double distinct = 0;  // experts per call, on average
    for (int call = 0; call < kCalls; ++call) {
      std::vector<char> used(128, 0);
      for (int64_t r = 0; r < rows; ++r) {
        const float* l = &logits[size_t((call * 8 + r) * 128)];
        std::vector<int> order(128);
        for (int e = 0; e < 128; ++e) order[size_t(e)] = e;
        std::partial_sort(order.begin(), order.begin() + 8, order.end(), [&](int a, int b) { return l[a] > l[b]; });
        for (int j = 0; j < 8; ++j) used[size_t(order[size_t(j)])] = 1;
      }
      distinct += double(std::count(used.begin(), used.end(), 1)) / kCalls;
    }
    const double bytes = expert_bytes * distinct;
    for (const auto* experts : {one.get(), two.get(), separate.get()}) {
      experts->forward(as_half(dh), rows, dlogits.get(), routing, as_half(out), ctx, scratch);  // sizes the scratch
      cuda_ok(cudaDeviceSynchronize(), "warm-up");
      int call = 0;
      const float ms = time_ms(
          [&](cudaStream_t s) {
            ctx.stream = s;
            experts->forward(as_half(dh), rows, dlogits.get() + size_t(call++ % kCalls) * 8 * 128, routing,
                             as_half(out), ctx, scratch);
          },
          kCalls, true);
      ctx.stream = nullptr;
      std::printf("{\"decode_tokens\": %lld, \"launches\": \"%s\", \"sparse_mlp_us\": %.2f, \"expert_mb\": %.2f, "
                  "\"tb_per_s\": %.3f, \"of_copy_bandwidth\": %.3f}\n",
                  static_cast<long long>(rows),
                  experts == separate.get()                ? "separate"
                  : experts->one_launch(int(rows) * 8) ? "one"
                                                           : "two",
                  ms * 1e3, bytes * 1e-6,
                  bytes / (ms * 1e-3) * 1e-12, bytes / (ms * 1e-3) / copy_bytes_per_s);
    }
  }
}

}  // namespace
}  // namespace marlin::test
