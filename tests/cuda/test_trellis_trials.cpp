// The fractional trellis planner's trials (runtime/trellis_bits.h) with the model on the GPU, as
// `marlin quantize` runs them where there is one: each linear's importance must be the KL of a
// fresh GPU model with that linear alone perturbed (tests/runtime/trellis_trial_check.h, the same
// check as on the CPU), on the tiny Qwen3 (the tiny Llama's 16-wide heads do not run on the GPU).
#include <gtest/gtest.h>

#include "../runtime/trellis_trial_check.h"
#include "test_util.h"

namespace marlin {
namespace {

TEST(CudaTrellisTrials, AreTheKlOfTheModelWithThatLinearPerturbed) {
  MARLIN_REQUIRE_GPU();
  trial_check::expect_trials_are_perturbed_kls(std::string(MARLIN_FIXTURES_DIR) + "/model/tiny_qwen3",
                                               DeviceKind::kCuda);
}

}  // namespace
}  // namespace marlin
