// The GPU's sparse-MLP routing (moe_route) against the CPU's rule (backend/cpu/moe.h): the same
// experts in the same order for every token, and the same weights within fp32 rounding; equal
// logits break ties towards the lower expert index on both.
#include <gtest/gtest.h>

#include <cuda_fp16.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/cpu/moe.h"
#include "backend/cuda/ops.h"
#include "device_buffer.h"
#include "test_util.h"

namespace marlin::test {
namespace {

void check_routing(int rows, int n_experts, const MoeRouting& routing, std::mt19937& rng, bool bias = false) {
  SCOPED_TRACE(testing::Message() << rows << " rows, " << n_experts << " experts, top " << routing.top_k
                                  << (routing.renormalize ? " renormalized" : "")
                                  << (routing.scoring == RouterScoring::kSigmoid ? " sigmoid" : " softmax") << ", "
                                  << routing.top_groups << " of " << routing.n_groups << " groups, "
                                  << routing.n_shared << " shared" << (bias ? ", biased" : ""));
  std::uniform_real_distribution<float> dist(-4.0f, 4.0f);
  std::vector<float> logits(size_t(rows) * size_t(n_experts));
  for (auto& l : logits) l = dist(rng);
  for (int e = 0; e < n_experts; e += 3) logits[size_t(e)] = 1.5f;  // row 0: many equal logits
  std::vector<float> score_bias;
  std::uniform_real_distribution<float> bias_dist(-0.3f, 0.3f);
  if (bias)
    for (int e = 0; e < n_experts; ++e) score_bias.push_back(bias_dist(rng));
  const int per_token = routing.top_k + routing.n_shared;
  DeviceBuffer<float> dlogits(logits), dweights(size_t(rows * per_token));
  DeviceBuffer<float> dbias(bias ? score_bias : std::vector<float>(1));
  DeviceBuffer<int32_t> dids(size_t(rows * per_token));
  cuda::moe_route(dlogits.get(), bias ? dbias.get() : nullptr, rows, n_experts, routing, dids.get(), dweights.get(),
                  nullptr);
  const std::vector<int32_t> ids = dids.download();
  const std::vector<float> weights = dweights.download();
  std::vector<cpu::ExpertChoice> expected(size_t(routing.top_k));
  for (int t = 0; t < rows; ++t) {
    cpu::route_token(&logits[size_t(t) * size_t(n_experts)], bias ? score_bias.data() : nullptr, n_experts, routing,
                     expected.data());
    for (int j = 0; j < routing.top_k; ++j) {
      const size_t at = size_t(t * per_token + j);
      ASSERT_EQ(ids[at], expected[size_t(j)].expert) << "token " << t << " choice " << j;
      // fp32 against the CPU's double arithmetic rounded once: the sums of n_experts scores and
      // of top_k weights err by at most (n_experts + top_k) units of 2^-24 relative, expf, the
      // divisions and the scale by a few more.
      const double w = expected[size_t(j)].weight;
      EXPECT_NEAR(weights[at], w, (8 + n_experts + routing.top_k) * 0x1p-24 * w) << "token " << t << " choice " << j;
    }
    for (int j = 0; j < routing.n_shared; ++j) {
      const size_t at = size_t(t * per_token + routing.top_k + j);
      EXPECT_EQ(ids[at], n_experts + j) << "token " << t << " shared " << j;
      EXPECT_EQ(weights[at], 1.0f) << "token " << t << " shared " << j;
    }
  }
}

TEST(CudaMoe, RoutingMatchesCpu) {
  MARLIN_REQUIRE_GPU();
  std::mt19937 rng(11);
  check_routing(5, 8, {2, true, RouterScoring::kSoftmax}, rng);
  check_routing(3, 60, {4, false, RouterScoring::kSoftmax}, rng);
  check_routing(17, 128, {8, true, RouterScoring::kSoftmax}, rng);
  check_routing(2, 256, {8, false, RouterScoring::kSigmoid}, rng);
  check_routing(4, 33, {32, true, RouterScoring::kSigmoid}, rng);
}

// DeepSeek-V2 (softmax, groups by their best score, scaled), DeepSeek-V3 / GLM (sigmoid, a score
// bias, groups by their two best, renormalized and scaled, a shared expert).
TEST(CudaMoe, GroupedBiasedRoutingMatchesCpu) {
  MARLIN_REQUIRE_GPU();
  std::mt19937 rng(12);
  MoeRouting v2{6, false, RouterScoring::kSoftmax};
  v2.n_groups = 8, v2.top_groups = 3, v2.scale = 16.0f, v2.n_shared = 2;
  check_routing(9, 160, v2, rng);
  MoeRouting v3{8, true, RouterScoring::kSigmoid};
  v3.n_groups = 8, v3.top_groups = 4, v3.group_score = GroupScore::kTopTwoSum, v3.scale = 2.5f, v3.n_shared = 1;
  check_routing(9, 256, v3, rng, true);
  MoeRouting glm{4, true, RouterScoring::kSigmoid};
  glm.scale = 1.8f, glm.n_shared = 1;
  check_routing(8, 64, glm, rng, true);
  MoeRouting tiny{2, true, RouterScoring::kSigmoid};
  tiny.n_groups = 4, tiny.top_groups = 2, tiny.group_score = GroupScore::kTopTwoSum;
  check_routing(16, 8, tiny, rng, true);
}

// dense_gemv (routers' fp32 logits) against a double-precision product of the same fp16 values:
// fp32 sums of `cols` products err by at most cols · 2^-24 relative to the sum of magnitudes.
TEST(CudaMoe, DenseGemvMatchesDouble) {
  MARLIN_REQUIRE_GPU();
  std::mt19937 rng(13);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (const int rows : {128, 61}) {
    const int cols = rows == 61 ? 1000 : 2048;  // 1000: a partial batch of loads
    std::vector<__half> w(size_t(rows) * cols), x(size_t(cuda::kDenseGemvRows) * cols);
    for (auto& v : w) v = __float2half(dist(rng));
    for (auto& v : x) v = __float2half(dist(rng));
    DeviceBuffer<__half> dw(w), dx(x);
    for (const int m : {1, 3, 8, 16}) {
      SCOPED_TRACE(testing::Message() << rows << " rows, m = " << m);
      DeviceBuffer<float> out(size_t(m) * rows);
      DeviceBuffer<__half> out16(size_t(m) * rows);
      cuda::dense_gemv(dw.get(), rows, cols, dx.get(), m, out.get(), true, nullptr);
      cuda::dense_gemv(dw.get(), rows, cols, dx.get(), m, out16.get(), false, nullptr);
      const std::vector<float> got = out.download();
      const std::vector<__half> got16 = out16.download();
      for (int t = 0; t < m; ++t)
        for (int r = 0; r < rows; ++r) {
          double want = 0, magnitude = 0;
          for (int k = 0; k < cols; ++k) {
            const double p = double(__half2float(w[size_t(r) * cols + k])) * __half2float(x[size_t(t) * cols + k]);
            want += p;
            magnitude += std::fabs(p);
          }
          const size_t at = size_t(t) * rows + size_t(r);
          ASSERT_NEAR(got[at], want, cols * 0x1p-24 * magnitude) << "token " << t << " row " << r;
          // fp16 output: the fp32 sum rounded once (half an fp16 ulp, 2^-11 relative).
          ASSERT_NEAR(__half2float(got16[at]), got[at], std::fabs(got[at]) * 0x1p-11 + 0x1p-24) << "fp16 " << t;
        }
    }
  }
}

}  // namespace
}  // namespace marlin::test
