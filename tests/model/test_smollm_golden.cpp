// The default model (SmolLM2-135M-Instruct, Q4_1) against transformers running the same weights
// dequantized to fp32: last-token logits of three prompts.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "formats/gguf.h"
#include "model/model.h"
#include "reference.h"

namespace marlin {
namespace {

const std::string kDir = std::string(MARLIN_FIXTURES_DIR) + "/model";
const std::string kModel = std::string(MARLIN_MODELS_DIR) + "/SmolLM2-135M-Instruct.Q4_1.gguf";

class SmolLmGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(SmolLmGolden, LastTokenLogits) {
  if (!std::filesystem::exists(kModel)) GTEST_FAIL() << kModel << " is missing: run scripts/setup.sh";
  const auto ref = testing::load_reference(kDir, GetParam());
  ASSERT_FALSE(ref.logits.empty());
  auto file = GgufFile::open(kModel);
  ThreadPool pool(2);
  auto model = load_model(*file, pool);
  auto cache = model->new_cache(int64_t(ref.tokens.size()));
  std::vector<float> logits(size_t(ref.vocab));
  model->forward(ref.tokens, *cache, logits.data(), false);

  double err = 0;
  for (int i = 0; i < ref.vocab; ++i) err = std::max(err, std::abs(double(logits[size_t(i)]) - ref.logits[size_t(i)]));
  const int argmax = int(std::max_element(logits.begin(), logits.end()) - logits.begin());
  EXPECT_EQ(argmax, ref.argmax[0]);
  EXPECT_LE(err, 2 * ref.fp32_error) << "fp32 reference error " << ref.fp32_error;
}

INSTANTIATE_TEST_SUITE_P(Prompts, SmolLmGolden,
                         ::testing::Values("smollm_prompt0", "smollm_prompt1", "smollm_prompt2"));

}  // namespace
}  // namespace marlin
