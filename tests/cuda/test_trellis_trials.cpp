// The fractional trellis planner's trials (runtime/trellis_bits.h) with the model on the GPU, as
// `marlin quantize` runs them where there is one: each linear's importance must be the KL of a
// fresh GPU model with that linear alone perturbed (tests/runtime/trellis_trial_check.h, the same
// check as on the CPU).
#include <gtest/gtest.h>

#include "../runtime/trellis_trial_check.h"
#include "test_util.h"

namespace marlin {
namespace {

TEST(CudaTrellisTrials, AreTheKlOfTheModelWithThatLinearPerturbed) {
  MARLIN_REQUIRE_GPU();
  trial_check::expect_trials_are_perturbed_kls(std::string(MARLIN_FIXTURES_DIR) + "/model", DeviceKind::kCuda);
}

}  // namespace
}  // namespace marlin
