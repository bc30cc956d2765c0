// A quantized linear layer on the GPU (backend/cuda/cuda_linear.h) against the format's reference
// dequantizer (quant/dequant.h) and float64 sums, at the shapes where tiled_gemm_pick changes
// kernels: a product wider than 8 strips of 16 rows per SM, at 1–10 tokens (the few-token GEMV
// since 2026-11-28, striped blocks before) and at 11 and 16 (striped blocks).
//
// Tolerance: the kernels dequantize each weight to fp16 (one rounding of code × scale: at most
// 2^-11 of |w|), multiply by fp16 activations exactly in fp32, add in fp32 (at most K · 2^-24 of
// Σ|w·x| however the sum is ordered) and round the output to fp16 once (2^-11 of it). The bound
// is twice that sum of the three; a wrong row, token or k-range is off by about |w·x| itself.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "backend/cuda/cuda_linear.h"
#include "backend/cuda/tiled_gemm.h"
#include "core/half.h"
#include "device_buffer.h"
#include "quant/dequant.h"
#include "quant/quant_buffers.h"
#include "test_util.h"

namespace marlin::test {
namespace {

TEST(CudaLinear, FewTokenProductsOfAWideMatrixMatchTheReference) {
  MARLIN_REQUIRE_GPU();
  if (!cuda::tiled_gemm_supported()) GTEST_SKIP() << "the tiled kernels need sm_90";
  int device = 0, sms = 0;
  ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
  ASSERT_EQ(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), cudaSuccess);
  const int64_t rows = 16 * (8 * int64_t(sms) + 32), cols = 512;  // 32 strips beyond the old GEMV limit
  std::mt19937 rng(5);
  QuantBuffers w = QuantBuffers::allocate(TensorFormat::parse("int4-g128"), rows, cols);
  for (auto& c : w.codes) c = uint8_t(rng());
  auto* scales = reinterpret_cast<uint16_t*>(w.scales.data());
  std::uniform_real_distribution<float> scale(0.005f, 0.02f);
  for (size_t i = 0; i < w.scales.size() / 2; ++i) scales[i] = fp32_to_fp16(scale(rng));
  const QuantTensor view = w.view();
  std::vector<float> dequantized(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r) dequantize_row(view, r, dequantized.data() + r * cols);

  cuda::LinearContext ctx;
  ctx.max_rows = 16;
  ASSERT_EQ(cublasCreate(&ctx.cublas), CUBLAS_STATUS_SUCCESS);
  {
    const auto linear = cuda::CudaLinear::upload(std::span(&view, 1), ctx);
    for (int m : {1, 2, 3, 4, 5, 8, 9, 10, 11, 16}) {
      SCOPED_TRACE("tokens " + std::to_string(m));
      const auto x = random_halves(size_t(m * cols), -1.0f, 1.0f, rng);
      const auto xf = to_float(x);
      DeviceBuffer<uint16_t> dx(x), dy(std::vector<uint16_t>(size_t(m * rows), 0x7e00));  // NaN: unwritten
      linear->forward(as_half(dx), m, dy.get(), false, ctx);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const auto y = to_float(dy.download());
      int bad = 0;
      for (int t = 0; t < m; ++t)
        for (int64_t r = 0; r < rows; ++r) {
          double exact = 0, magnitude = 0;
          for (int64_t k = 0; k < cols; ++k) {
            const double term = double(dequantized[size_t(r * cols + k)]) * xf[size_t(t * cols + k)];
            exact += term;
            magnitude += std::abs(term);
          }
          const double bound =
              2.0 * (kHalfUlp * std::abs(exact) + (kHalfUlp + double(cols) * std::ldexp(1.0, -24)) * magnitude);
          const double got = y[size_t(t * rows + r)];
          if (!(std::abs(got - exact) <= bound) && ++bad <= 5)
            ADD_FAILURE() << "token " << t << " row " << r << ": " << got << " against " << exact << " ± " << bound;
        }
      EXPECT_EQ(bad, 0);
    }
  }
  cublasDestroy(ctx.cublas);
}

}  // namespace
}  // namespace marlin::test
