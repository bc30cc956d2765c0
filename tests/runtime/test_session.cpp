// Generation on the default model: streaming, prefix reuse, determinism, stop conditions.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <memory>

#include "formats/gguf.h"
#include "runtime/engine.h"
#include "runtime/session.h"
#include "tokenizer/tokenizer.h"

namespace marlin {
namespace {

const std::string kModel = std::string(MARLIN_MODELS_DIR) + "/SmolLM2-135M-Instruct.Q4_1.gguf";

// True when `s` is a sequence of whole, valid UTF-8 characters.
bool whole_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (size_t j = 1; j < len; ++j)
      if ((static_cast<unsigned char>(s[i + j]) & 0xc0) != 0x80) return false;
    i += len;
  }
  return true;
}

class SessionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(kModel)) return;
    engine_ = std::make_unique<Engine>(EngineOptions{kModel, 2});
  }
  static void TearDownTestSuite() { engine_.reset(); }
  void SetUp() override {
    if (!engine_) GTEST_FAIL() << kModel << " is missing: run scripts/setup.sh";
  }
  static GenerationParams greedy(int max_tokens) {
    GenerationParams p;
    p.sampling.temperature = 0;
    p.max_tokens = max_tokens;
    return p;
  }
  static std::unique_ptr<Engine> engine_;
};
std::unique_ptr<Engine> SessionTest::engine_;

TEST_F(SessionTest, AnswersTheCapitalOfFrance) {
  Session session(engine_->model(), engine_->tokenizer(), 512);
  auto prompt = engine_->chat_prompt({{"user", "What is the capital of France?"}}, true);
  auto result = session.generate(prompt, greedy(32));
  EXPECT_NE(result.text.find("Paris"), std::string::npos) << result.text;
  EXPECT_EQ(result.finish, FinishReason::kEndOfTurn);
}

// marlin serve's warm-up runs on a cache of its own: the answers after it are the same.
TEST_F(SessionTest, WarmUpChangesNoAnswer) {
  auto prompt = engine_->chat_prompt({{"user", "Name a colour."}}, true);
  Session before(engine_->model(), engine_->tokenizer(), 256);
  const auto first = before.generate(prompt, greedy(12));
  const double seconds = engine_->warm_up();
  EXPECT_GT(seconds, 0);
  Session after(engine_->model(), engine_->tokenizer(), 256);
  EXPECT_EQ(after.generate(prompt, greedy(12)).tokens, first.tokens);
}

TEST_F(SessionTest, StreamsWholeCharacters) {
  Session session(engine_->model(), engine_->tokenizer(), 512);
  GenerationParams params;
  params.sampling.temperature = 1.0f;
  params.max_tokens = 48;
  params.stop_at_end_of_turn = false;
  for (uint64_t seed : {1, 2, 3}) {
    params.sampling.seed = seed;
    std::string streamed;
    auto result = session.generate(engine_->raw_prompt("日本語の文章：東京は"), params, [&](std::string_view piece) {
      EXPECT_TRUE(whole_utf8(std::string(piece))) << "piece splits a character";
      streamed += piece;
      return true;
    });
    EXPECT_EQ(streamed, result.text);
    EXPECT_EQ(result.text, engine_->tokenizer().decode(result.tokens, /*skip_special=*/true));
  }
}

TEST_F(SessionTest, SameSeedSameText) {
  GenerationParams params;
  params.sampling.temperature = 0.9f;
  params.max_tokens = 24;
  auto prompt = engine_->chat_prompt({{"user", "Tell me a story."}}, true);
  auto run = [&](uint64_t seed) {
    Session session(engine_->model(), engine_->tokenizer(), 256);
    params.sampling.seed = seed;
    return session.generate(prompt, params).text;
  };
  EXPECT_EQ(run(11), run(11));
  EXPECT_TRUE(run(11) != run(12) || run(11) != run(13));
}

TEST_F(SessionTest, ReusesThePromptPrefixWithTheSameResult) {
  auto prompt = engine_->chat_prompt({{"user", "Name three colors."}}, true);
  Session fresh(engine_->model(), engine_->tokenizer(), 512);
  const auto expected = fresh.generate(prompt, greedy(20));

  Session reused(engine_->model(), engine_->tokenizer(), 512);
  reused.generate(engine_->chat_prompt({{"user", "Name three animals."}}, true), greedy(20));
  const auto again = reused.generate(prompt, greedy(20));
  EXPECT_GT(again.cached_prompt_tokens, 10);  // the shared system/header tokens
  EXPECT_LT(again.cached_prompt_tokens, int(prompt.size()));
  EXPECT_EQ(again.text, expected.text);
  const auto third = reused.generate(prompt, greedy(20));
  EXPECT_EQ(third.cached_prompt_tokens, int(prompt.size()) - 1);
  EXPECT_EQ(third.text, expected.text);
}

TEST_F(SessionTest, StopsAtMaxTokensAndStopStrings) {
  Session session(engine_->model(), engine_->tokenizer(), 512);
  auto prompt = engine_->chat_prompt({{"user", "Count from 1 to 20, separated by commas."}}, true);
  auto limited = session.generate(prompt, greedy(5));
  EXPECT_EQ(limited.tokens.size(), 5u);
  EXPECT_EQ(limited.finish, FinishReason::kLength);

  auto full = session.generate(prompt, greedy(64));
  ASSERT_NE(full.text.find("5"), std::string::npos) << full.text;
  auto params = greedy(64);
  params.stop = {"5"};
  auto stopped = session.generate(prompt, params);
  EXPECT_EQ(stopped.finish, FinishReason::kStopString);
  EXPECT_EQ(stopped.text, full.text.substr(0, full.text.find("5")));
}

TEST_F(SessionTest, CancelsWhenTheCallbackSaysSo) {
  Session session(engine_->model(), engine_->tokenizer(), 512);
  GenerationParams params = greedy(100);
  params.stop_at_end_of_turn = false;
  int calls = 0;
  auto result = session.generate(engine_->raw_prompt("Once upon a time"), params, [&](std::string_view) {
    return ++calls < 3;
  });
  EXPECT_EQ(result.finish, FinishReason::kCancelled);
  EXPECT_EQ(calls, 3);
}

TEST_F(SessionTest, RejectsPromptsLongerThanTheContext) {
  Session session(engine_->model(), engine_->tokenizer(), 16);
  std::vector<int32_t> prompt(16, 1);
  EXPECT_THROW(session.generate(prompt, greedy(4)), Error);
  EXPECT_THROW(session.generate({}, greedy(4)), Error);
}

TEST_F(SessionTest, StopsWhenTheContextIsFull) {
  Session session(engine_->model(), engine_->tokenizer(), 24);
  GenerationParams params = greedy(100);
  params.stop_at_end_of_turn = false;
  auto prompt = engine_->raw_prompt("The history of the world");
  auto result = session.generate(prompt, params);
  EXPECT_EQ(result.finish, FinishReason::kContextFull);
  EXPECT_LE(int(prompt.size() + result.tokens.size()), 25);
}

TEST_F(SessionTest, LogitBiasSteersSamplingButNotTheReportedLogits) {
  Session session(engine_->model(), engine_->tokenizer(), 512);
  auto prompt = engine_->chat_prompt({{"user", "What is the capital of France?"}}, true);
  auto params = greedy(3);
  const int32_t forced = engine_->tokenizer().encode(" banana").front();
  params.logit_bias = {{forced, 100.0f}};
  std::vector<int32_t> seen, raw_argmax;
  auto on_token = [&](int32_t token, std::span<const float> logits) {
    seen.push_back(token);
    raw_argmax.push_back(int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin()));
    return true;
  };
  auto result = session.generate(prompt, params, {}, on_token);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen, result.tokens);
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i], forced);
    EXPECT_NE(raw_argmax[i], forced);  // the callback sees the model's logits, without the bias
  }
  params.logit_bias = {{engine_->model().config().vocab_size, 1.0f}};
  EXPECT_THROW(session.generate(prompt, params), Error);
}

TEST_F(SessionTest, TokenCallbackCancels) {
  Session session(engine_->model(), engine_->tokenizer(), 512);
  auto prompt = engine_->chat_prompt({{"user", "Tell me a story."}}, true);
  int calls = 0;
  auto result = session.generate(prompt, greedy(50), {}, [&](int32_t, std::span<const float>) { return ++calls < 2; });
  EXPECT_EQ(result.finish, FinishReason::kCancelled);
  EXPECT_EQ(result.tokens.size(), 2u);
}

}  // namespace
}  // namespace marlin
