// The GPU's sparse-MLP routing (moe_route) against the CPU's rule (backend/cpu/moe.h): the same
// experts in the same order for every token, and the same weights within fp32 rounding; equal
// logits break ties towards the lower expert index on both.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/cpu/moe.h"
#include "backend/cuda/ops.h"
#include "device_buffer.h"
#include "test_util.h"

namespace marlin::test {
namespace {

void check_routing(int rows, int n_experts, const MoeRouting& routing, std::mt19937& rng) {
  SCOPED_TRACE(testing::Message() << rows << " rows, " << n_experts << " experts, top " << routing.top_k
                                  << (routing.renormalize ? " renormalized" : "")
                                  << (routing.scoring == RouterScoring::kSigmoid ? " sigmoid" : " softmax"));
  std::uniform_real_distribution<float> dist(-4.0f, 4.0f);
  std::vector<float> logits(size_t(rows) * size_t(n_experts));
  for (auto& l : logits) l = dist(rng);
  for (int e = 0; e < n_experts; e += 3) logits[size_t(e)] = 1.5f;  // row 0: many equal logits
  DeviceBuffer<float> dlogits(logits), dweights(size_t(rows * routing.top_k));
  DeviceBuffer<int32_t> dids(size_t(rows * routing.top_k));
  cuda::moe_route(dlogits.get(), rows, n_experts, routing.top_k, routing.scoring == RouterScoring::kSigmoid,
                  routing.renormalize, dids.get(), dweights.get(), nullptr);
  const std::vector<int32_t> ids = dids.download();
  const std::vector<float> weights = dweights.download();
  std::vector<cpu::ExpertChoice> expected(size_t(routing.top_k));
  for (int t = 0; t < rows; ++t) {
    cpu::route_token(&logits[size_t(t) * size_t(n_experts)], nullptr, n_experts, routing, expected.data());
    for (int j = 0; j < routing.top_k; ++j) {
      const size_t at = size_t(t * routing.top_k + j);
      ASSERT_EQ(ids[at], expected[size_t(j)].expert) << "token " << t << " choice " << j;
      // fp32 against the CPU's double arithmetic rounded once: the sums of n_experts scores and
      // of top_k weights err by at most (n_experts + top_k) units of 2^-24 relative, expf and the
      // divisions by a few more.
      const double w = expected[size_t(j)].weight;
      EXPECT_NEAR(weights[at], w, (8 + n_experts + routing.top_k) * 0x1p-24 * w) << "token " << t << " choice " << j;
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

}  // namespace
}  // namespace marlin::test
