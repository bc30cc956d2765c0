// The real Gemma-3-270M GGUF (Q4_K/Q5_0/Q6_K/Q8_0) against transformers running its weights
// dequantized to fp32 (tools/make_gemma3_fixtures.py --real): the chat prompt marlin builds
// (Gemma's turn format, the file having no template) and the greedy continuations of three prompts.
//
// Greedy decoding may only part from the reference where the reference itself hesitates: a step
// may pick another token only if the reference's margin between its first and second choice is
// below what the run's arithmetic can move (exact fp32 activations: summation order, ~1e-3 of
// logits around 20; the fast kernels' 8-bit activations: up to a few tenths), and the comparison
// ends there.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "backend/cpu/matmul.h"
#include "runtime/engine.h"
#include "tokenizer/tokenizer.h"

namespace marlin {
namespace {

const std::string kModel = std::string(MARLIN_MODELS_DIR) + "/gemma-3-270m-q4_k_m.gguf";
const std::string kReference = std::string(MARLIN_FIXTURES_DIR) + "/model/gemma3_270m_greedy.json";

class Gemma3Real : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kModel)) GTEST_FAIL() << kModel << " is missing: run scripts/setup.sh";
    engine_ = std::make_unique<Engine>(EngineOptions{kModel, 2, DeviceKind::kCpu});
    std::ifstream in(kReference);
    reference_ = nlohmann::json::parse(in);
  }

  std::vector<int32_t> prompt_of(const nlohmann::json& c) const {
    const std::string text = c["text"];
    return c["chat"] ? engine_->chat_prompt({{"user", text}}, true) : engine_->raw_prompt(text);
  }

  // Greedy continuation of each reference prompt, compared step by step.
  void expect_greedy_matches(double tie) {
    Model& model = engine_->model();
    const auto vocab = size_t(model.config().vocab_size);
    for (const auto& c : reference_["cases"]) {
      SCOPED_TRACE(c["text"].get<std::string>());
      const auto greedy = c["greedy"].get<std::vector<int32_t>>();
      const auto margins = c["margins"].get<std::vector<double>>();
      auto cache = model.new_cache(128);
      std::vector<float> logits(vocab);
      std::vector<int32_t> next = prompt_of(c);
      for (size_t step = 0; step < greedy.size(); ++step) {
        model.forward(next, *cache, logits.data(), false);
        const auto ours = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
        if (ours != greedy[step]) {
          EXPECT_LT(margins[step], tie) << "step " << step << ": marlin picks " << ours << ", the reference "
                                        << greedy[step] << " by a margin of " << margins[step];
          break;
        }
        next = {ours};
      }
    }
  }

  std::unique_ptr<Engine> engine_;
  nlohmann::json reference_;
};

// The file has no chat template: Gemma's turn format, tokenized as llama.cpp tokenizes it.
TEST_F(Gemma3Real, ChatPromptIsGemmasTurnFormat) {
  EXPECT_FALSE(engine_->has_own_chat_template());
  for (const auto& c : reference_["cases"])
    EXPECT_EQ(prompt_of(c), c["prompt"].get<std::vector<int32_t>>()) << c["text"];
  const Tokenizer& tok = engine_->tokenizer();
  EXPECT_EQ(tok.piece(106), "<end_of_turn>");
  EXPECT_TRUE(tok.is_end_of_turn(106));
  // A system message opens the first user turn.
  const auto with_system = engine_->chat_prompt({{"system", "Be brief."}, {"user", "Hi"}}, true);
  EXPECT_EQ(with_system, tok.encode("<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n",
                                    false, true));
}

TEST_F(Gemma3Real, GreedyMatchesTransformersWithExactActivations) {
  cpu::set_exact_activations(true);
  expect_greedy_matches(0.01);
  cpu::set_exact_activations(false);
}

TEST_F(Gemma3Real, GreedyMatchesTransformersWithFastKernels) { expect_greedy_matches(0.3); }

}  // namespace
}  // namespace marlin
