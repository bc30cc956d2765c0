// The sequential scheduler on the default model: its events against a Session run directly,
// the bounded queue, cancellation, and draining at shutdown.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>

#include "runtime/engine.h"
#include "server/scheduler.h"

namespace marlin::server {
namespace {

using std::chrono::milliseconds;

const std::string kModel = std::string(MARLIN_MODELS_DIR) + "/SmolLM2-135M-Instruct.Q4_1.gguf";
constexpr int64_t kContext = 512;

struct Outcome {
  std::string text;
  TaskEvent finished;
  int deltas = 0;
};

// Reads a task's events until sequence `index` finishes (or 60 s pass).
Outcome wait_for(Task& task, int index = 0) {
  Outcome out;
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < deadline) {
    auto e = task.next(milliseconds(100));
    if (!e || e->index != index) continue;
    if (e->kind == TaskEvent::Kind::kDelta) {
      out.text += e->text;
      out.deltas++;
    } else {
      out.finished = *e;
      return out;
    }
  }
  ADD_FAILURE() << "sequence " << index << " did not finish";
  return out;
}

class SchedulerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (std::filesystem::exists(kModel)) engine_ = std::make_unique<Engine>(EngineOptions{kModel, 2});
  }
  static void TearDownTestSuite() { engine_.reset(); }
  void SetUp() override {
    if (!engine_) GTEST_FAIL() << kModel << " is missing: run scripts/setup.sh";
  }
  static SequenceSpec greedy(const std::string& question, int max_tokens, int index = 0) {
    SequenceSpec s;
    s.index = index;
    s.prompt = engine_->chat_prompt({{"user", question}}, true);
    s.params.sampling.temperature = 0;
    s.params.max_tokens = max_tokens;
    return s;
  }
  static std::unique_ptr<Engine> engine_;
  Metrics metrics_;
};
std::unique_ptr<Engine> SchedulerTest::engine_;

TEST_F(SchedulerTest, EventsMatchASessionRunAlone) {
  const SequenceSpec spec = greedy("What is the capital of France?", 24);
  std::string reference;
  {
    Session session(engine_->model(), engine_->tokenizer(), kContext);
    reference = session.generate(spec.prompt, spec.params).text;
  }
  SequentialScheduler scheduler(*engine_, kContext, 4, metrics_);
  auto task = std::make_shared<Task>("t", std::vector<SequenceSpec>{spec});
  ASSERT_EQ(scheduler.submit(task), SubmitResult::kAccepted);
  const Outcome out = wait_for(*task);
  EXPECT_EQ(out.text, reference);
  EXPECT_EQ(out.finished.kind, TaskEvent::Kind::kFinished);
  EXPECT_EQ(out.finished.prompt_tokens, int(spec.prompt.size()));
  EXPECT_GT(out.finished.completion_tokens, 0);
  EXPECT_LE(out.finished.completion_tokens, 24);

  // The same prompt again reuses the cached prefix and gives the same answer.
  auto again = std::make_shared<Task>("t2", std::vector<SequenceSpec>{spec});
  ASSERT_EQ(scheduler.submit(again), SubmitResult::kAccepted);
  const Outcome second = wait_for(*again);
  EXPECT_EQ(second.text, reference);
  EXPECT_EQ(second.finished.cached_tokens, int(spec.prompt.size()) - 1);
  const std::string metrics = metrics_.render(scheduler.gauges());
  EXPECT_NE(metrics.find("marlin_time_to_first_token_seconds_count 2\n"), std::string::npos) << metrics;
}

TEST_F(SchedulerTest, LogprobsComeWithTheirTokens) {
  SequenceSpec spec = greedy("Say hello.", 8);
  spec.top_logprobs = 2;
  SequentialScheduler scheduler(*engine_, kContext, 4, metrics_);
  auto task = std::make_shared<Task>("t", std::vector<SequenceSpec>{spec});
  ASSERT_EQ(scheduler.submit(task), SubmitResult::kAccepted);
  size_t tokens = 0;
  while (true) {
    auto e = task->next(milliseconds(60000));
    ASSERT_TRUE(e.has_value());
    if (e->kind != TaskEvent::Kind::kDelta) {
      // Every generated token has logprobs except an end-of-turn token that ended the answer.
      const bool ended_turn = e->finish == FinishReason::kEndOfTurn;
      EXPECT_EQ(tokens + (ended_turn ? 1 : 0), size_t(e->completion_tokens));
      break;
    }
    for (const auto& t : e->logprobs) {
      ASSERT_EQ(t.top.size(), 2u);
      EXPECT_EQ(t.top[0].first, t.token);  // greedy picks the most likely token
      EXPECT_FLOAT_EQ(t.top[0].second, t.logprob);
      EXPECT_LE(t.logprob, 0.0f);
      EXPECT_GE(t.top[0].second, t.top[1].second);
    }
    tokens += e->logprobs.size();
  }
  EXPECT_GT(tokens, 0u);
}

TEST_F(SchedulerTest, QueueIsBounded) {
  SequentialScheduler scheduler(*engine_, kContext, 1, metrics_);
  auto running = std::make_shared<Task>("a", std::vector<SequenceSpec>{greedy("Tell me a long story.", 400)});
  ASSERT_EQ(scheduler.submit(running), SubmitResult::kAccepted);
  ASSERT_TRUE(running->next(milliseconds(60000)).has_value());  // it runs: the queue is empty again
  auto queued = std::make_shared<Task>("b", std::vector<SequenceSpec>{greedy("Hi", 4)});
  EXPECT_EQ(scheduler.submit(queued), SubmitResult::kAccepted);
  EXPECT_EQ(scheduler.gauges().queue_depth, 1);
  EXPECT_EQ(scheduler.gauges().running_sequences, 1);
  auto refused = std::make_shared<Task>("c", std::vector<SequenceSpec>{greedy("Hi", 4)});
  EXPECT_EQ(scheduler.submit(refused), SubmitResult::kQueueFull);
  running->cancel();
  queued->cancel();
}

TEST_F(SchedulerTest, CancelStopsWithinAToken) {
  SequentialScheduler scheduler(*engine_, kContext, 4, metrics_);
  auto task = std::make_shared<Task>("a", std::vector<SequenceSpec>{greedy("Tell me a long story about a dragon.", 400)});
  ASSERT_EQ(scheduler.submit(task), SubmitResult::kAccepted);
  ASSERT_TRUE(task->next(milliseconds(60000)).has_value());
  task->cancel();
  const Outcome out = wait_for(*task);
  EXPECT_EQ(out.finished.finish, FinishReason::kCancelled);
  EXPECT_LT(out.finished.completion_tokens, 400);
  // The next request runs normally.
  auto next = std::make_shared<Task>("b", std::vector<SequenceSpec>{greedy("What is the capital of France?", 16)});
  ASSERT_EQ(scheduler.submit(next), SubmitResult::kAccepted);
  EXPECT_NE(wait_for(*next).text.find("Paris"), std::string::npos);
}

TEST_F(SchedulerTest, SeveralChoicesEachFinish) {
  SequentialScheduler scheduler(*engine_, kContext, 4, metrics_);
  SequenceSpec a = greedy("Name a color.", 6, 0), b = greedy("Name a color.", 6, 1);
  auto task = std::make_shared<Task>("n", std::vector<SequenceSpec>{a, b});
  ASSERT_EQ(scheduler.submit(task), SubmitResult::kAccepted);
  int finished = 0;
  std::string texts[2];
  while (finished < 2) {
    auto e = task->next(milliseconds(60000));
    ASSERT_TRUE(e.has_value());
    if (e->kind == TaskEvent::Kind::kDelta) texts[e->index] += e->text;
    else finished++;
  }
  EXPECT_EQ(texts[0], texts[1]);  // greedy: the same answer twice
}

TEST_F(SchedulerTest, DrainFinishesWorkThenRefuses) {
  SequentialScheduler scheduler(*engine_, kContext, 4, metrics_);
  auto task = std::make_shared<Task>("a", std::vector<SequenceSpec>{greedy("Hi", 4)});
  ASSERT_EQ(scheduler.submit(task), SubmitResult::kAccepted);
  scheduler.drain(Clock::now() + std::chrono::seconds(60));
  EXPECT_EQ(wait_for(*task).finished.kind, TaskEvent::Kind::kFinished);
  EXPECT_EQ(scheduler.submit(task), SubmitResult::kShuttingDown);
}

TEST_F(SchedulerTest, DrainPastItsDeadlineCancels) {
  SequentialScheduler scheduler(*engine_, kContext, 4, metrics_);
  auto running = std::make_shared<Task>("a", std::vector<SequenceSpec>{greedy("Tell me a long story.", 400)});
  auto queued = std::make_shared<Task>("b", std::vector<SequenceSpec>{greedy("Tell me another story.", 400)});
  ASSERT_EQ(scheduler.submit(running), SubmitResult::kAccepted);
  ASSERT_EQ(scheduler.submit(queued), SubmitResult::kAccepted);
  scheduler.drain(Clock::now() + milliseconds(200));
  EXPECT_EQ(wait_for(*running).finished.finish, FinishReason::kCancelled);
  EXPECT_EQ(wait_for(*queued).finished.finish, FinishReason::kCancelled);
}

}  // namespace
}  // namespace marlin::server
