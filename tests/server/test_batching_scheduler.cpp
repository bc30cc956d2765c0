// The continuous-batching scheduler on the default model: sequences that run together (joining and
// leaving at different steps, prompts fed in chunks, some sampled on the host) each give exactly
// what a Session gives them alone; cancellation frees slots; a long prompt does not stall running
// streams; the queue is bounded; drain; prompt prefixes share KV blocks; admission waits for blocks.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <thread>

#include "runtime/engine.h"
#include "server/batching_scheduler.h"
#include "tokenizer/tokenizer.h"

namespace marlin::server {
namespace {

using std::chrono::milliseconds;

const std::string kModel = std::string(MARLIN_MODELS_DIR) + "/SmolLM2-135M-Instruct.Q4_1.gguf";
constexpr int64_t kContext = 512;
constexpr int kBlockSize = 16;
constexpr int64_t kBlocksPerSlot = kContext / kBlockSize;

int64_t blocks_for(int64_t positions) { return (positions + kBlockSize - 1) / kBlockSize; }

struct Outcome {
  std::string text;
  TaskEvent finished;
  std::vector<TokenLogprob> logprobs;
};

// Reads a task's events until all `count` sequences finish (or 60 s pass); by choice index.
std::map<int, Outcome> wait_all(Task& task, int count = 1) {
  std::map<int, Outcome> out;
  int finished = 0;
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (finished < count && Clock::now() < deadline) {
    auto e = task.next(milliseconds(100));
    if (!e) continue;
    Outcome& o = out[e->index];
    if (e->kind == TaskEvent::Kind::kDelta) {
      o.text += e->text;
      o.logprobs.insert(o.logprobs.end(), e->logprobs.begin(), e->logprobs.end());
    } else {
      o.finished = *e;
      finished++;
    }
  }
  if (finished < count) ADD_FAILURE() << "task " << task.id() << " did not finish";
  return out;
}

class BatchingTest : public ::testing::Test {
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
  static BatchingOptions options(int max_batch, size_t max_queue = 8, int prefill_chunk = 256, int64_t kv_blocks = 0) {
    return {.context = kContext, .max_batch = max_batch, .max_queue = max_queue, .prefill_chunk = prefill_chunk,
            .block_size = kBlockSize, .kv_blocks = kv_blocks};
  }
  // What a Session gives the sequence alone (only while no scheduler runs: they share the model).
  static std::string alone(const SequenceSpec& spec) {
    Session session(engine_->model(), engine_->tokenizer(), kContext);
    return session.generate(spec.prompt, spec.params).text;
  }
  static std::shared_ptr<Task> task(const std::string& id, std::vector<SequenceSpec> specs) {
    return std::make_shared<Task>(id, std::move(specs));
  }
  // Waits until the scheduler reports nothing running and no KV blocks used (blocks kept for
  // prefix reuse are not in use); returns the gauges.
  static SchedulerGauges expect_empty(const Scheduler& scheduler, int64_t total_blocks) {
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    SchedulerGauges g = scheduler.gauges();
    while ((g.running_sequences != 0 || g.kv_blocks.used != 0) && Clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(10));
      g = scheduler.gauges();
    }
    EXPECT_EQ(g.running_sequences, 0);
    EXPECT_EQ(g.kv_blocks.used, 0);
    EXPECT_EQ(g.kv_blocks.total, total_blocks);
    EXPECT_EQ(g.kv_blocks.cached + g.kv_blocks.free, total_blocks);
    return g;
  }
  static std::unique_ptr<Engine> engine_;
  Metrics metrics_;
};
std::unique_ptr<Engine> BatchingTest::engine_;

TEST_F(BatchingTest, ConcurrentSequencesEachEqualTheirRunAlone) {
  // Different prompt lengths and answer lengths, one sampled (seeded) with penalties, one prompt
  // fed in chunks of 16 tokens: more sequences than slots, so some wait and join later.
  std::vector<SequenceSpec> specs = {greedy("What is the capital of France?", 20), greedy("Name three fruits.", 12),
                                     greedy("Write a haiku about the sea.", 28), greedy("Say hello.", 6),
                                     greedy("Count from one to ten in words, separated by commas.", 24)};
  specs[1].params.sampling = {.temperature = 0.9f, .top_k = 20, .presence_penalty = 0.5f, .seed = 7};
  specs[3].params.stop = {"!"};
  std::vector<std::string> expected;
  for (const auto& spec : specs) expected.push_back(alone(spec));

  BatchingScheduler scheduler(*engine_, options(3, 8, 16), metrics_);
  std::vector<std::shared_ptr<Task>> tasks;
  for (size_t i = 0; i < specs.size(); ++i) {
    tasks.push_back(task("t" + std::to_string(i), {specs[i]}));
    ASSERT_EQ(scheduler.submit(tasks.back()), SubmitResult::kAccepted);
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    const Outcome out = wait_all(*tasks[i])[0];
    EXPECT_EQ(out.text, expected[i]) << "sequence " << i;
    EXPECT_EQ(out.finished.kind, TaskEvent::Kind::kFinished);
    EXPECT_EQ(out.finished.prompt_tokens, int(specs[i].prompt.size()));
    EXPECT_GT(out.finished.completion_tokens, 0);
  }
  expect_empty(scheduler, 3 * kBlocksPerSlot);
  const std::string metrics = metrics_.render(scheduler.gauges());
  EXPECT_NE(metrics.find("marlin_time_to_first_token_seconds_count 5\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("marlin_kv_blocks_used 0\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("marlin_kv_blocks_total 96\n"), std::string::npos) << metrics;
}

TEST_F(BatchingTest, HostSampledRowsMatchTooAndCarryLogprobs) {
  // A sequence with logprobs and one with a logit bias bring the whole step's logits to the host;
  // a plain greedy one runs beside them. Each equals its run alone.
  SequenceSpec logprobs = greedy("Say hello.", 8), biased = greedy("Name a color.", 8),
               plain = greedy("What is two plus two?", 10);
  logprobs.top_logprobs = 2;
  biased.params.logit_bias = {{engine_->tokenizer().encode("Blue").front(), -100.0f}};
  const std::string expected_a = alone(logprobs), expected_b = alone(biased), expected_c = alone(plain);
  BatchingScheduler scheduler(*engine_, options(4), metrics_);
  auto a = task("a", {logprobs}), b = task("b", {biased}), c = task("c", {plain});
  for (const auto& t : {a, b, c}) ASSERT_EQ(scheduler.submit(t), SubmitResult::kAccepted);
  const Outcome out_a = wait_all(*a)[0], out_b = wait_all(*b)[0], out_c = wait_all(*c)[0];
  EXPECT_EQ(out_a.text, expected_a);
  EXPECT_EQ(out_b.text, expected_b);
  EXPECT_EQ(out_c.text, expected_c);
  const bool ended_turn = out_a.finished.finish == FinishReason::kEndOfTurn;
  EXPECT_EQ(out_a.logprobs.size() + (ended_turn ? 1 : 0), size_t(out_a.finished.completion_tokens));
  for (const auto& t : out_a.logprobs) {
    ASSERT_EQ(t.top.size(), 2u);
    EXPECT_EQ(t.top[0].first, t.token);  // greedy picks the most likely token
    EXPECT_LE(t.logprob, 0.0f);
  }
  EXPECT_TRUE(out_c.logprobs.empty());
}

TEST_F(BatchingTest, SeveralChoicesRunAsSeveralSequences) {
  const std::string expected = alone(greedy("Name a color.", 6));
  BatchingScheduler scheduler(*engine_, options(4), metrics_);
  auto t = task("n", {greedy("Name a color.", 6, 0), greedy("Name a color.", 6, 1), greedy("Name a color.", 6, 2)});
  ASSERT_EQ(scheduler.submit(t), SubmitResult::kAccepted);
  auto out = wait_all(*t, 3);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_FALSE(out[0].text.empty());
  EXPECT_EQ(out[0].text, out[1].text);  // greedy: the same answer each time
  EXPECT_EQ(out[0].text, out[2].text);
  EXPECT_EQ(out[0].text, expected);
}

TEST_F(BatchingTest, CancellationFreesTheSlotAndOthersGoOn) {
  const SequenceSpec keep = greedy("What is the capital of France?", 20);
  const std::string expected = alone(keep);
  BatchingScheduler scheduler(*engine_, options(2), metrics_);
  auto doomed = task("a", {greedy("Tell me a long story about a dragon.", 400)});
  auto kept = task("b", {keep});
  ASSERT_EQ(scheduler.submit(doomed), SubmitResult::kAccepted);
  ASSERT_EQ(scheduler.submit(kept), SubmitResult::kAccepted);
  ASSERT_TRUE(doomed->next(milliseconds(60000)).has_value());
  doomed->cancel();
  const Outcome cancelled = wait_all(*doomed)[0];
  EXPECT_EQ(cancelled.finished.finish, FinishReason::kCancelled);
  EXPECT_LT(cancelled.finished.completion_tokens, 400);
  EXPECT_EQ(wait_all(*kept)[0].text, expected);
  expect_empty(scheduler, 2 * kBlocksPerSlot);
  // The freed slots take new work; the same prompt again goes to the slot holding it and only
  // feeds its last token.
  auto next = task("c", {greedy("What is the capital of France?", 16)});
  ASSERT_EQ(scheduler.submit(next), SubmitResult::kAccepted);
  const Outcome again = wait_all(*next)[0];
  EXPECT_NE(again.text.find("Paris"), std::string::npos);
  EXPECT_EQ(again.finished.cached_tokens, int(keep.prompt.size()) - 1);
  expect_empty(scheduler, 2 * kBlocksPerSlot);
}

// A long prompt is fed in chunks between decode steps, so a running stream keeps producing tokens
// while it is prefilled (one per chunk) instead of waiting for the whole prompt.
TEST_F(BatchingTest, LongPromptDoesNotStallRunningStreams) {
  BatchingScheduler scheduler(*engine_, options(2, 8, 16), metrics_);
  auto running = task("a", {greedy("Tell me a long story about a dragon.", 300)});
  ASSERT_EQ(scheduler.submit(running), SubmitResult::kAccepted);
  ASSERT_TRUE(running->next(milliseconds(60000)).has_value());  // it is decoding
  std::string text;
  for (int i = 0; i < 40; ++i) text += "The quick brown fox jumps over the lazy dog. ";
  SequenceSpec long_spec = greedy(text + "How many foxes were there?", 4);
  const size_t prompt = long_spec.prompt.size();
  ASSERT_GT(prompt, 320u);  // at least 20 chunks of 16
  ASSERT_LT(prompt + 4, size_t(kContext));
  auto long_task = task("b", {long_spec});
  ASSERT_EQ(scheduler.submit(long_task), SubmitResult::kAccepted);
  int deltas_meanwhile = 0;
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  std::optional<TaskEvent> first;  // the long prompt's first event: its prefill is done
  while (!(first = long_task->next(milliseconds(0))) && Clock::now() < deadline) {
    if (auto e = running->next(milliseconds(5)); e && e->kind == TaskEvent::Kind::kDelta) ++deltas_meanwhile;
  }
  ASSERT_TRUE(first.has_value()) << "the long prompt was not served";
  // One decode step per chunk: about prompt / 16 tokens (a few may still sit unsent in a delta).
  EXPECT_GE(deltas_meanwhile, int(prompt / 16) / 2) << "tokens of the running stream while " << prompt
                                                     << " prompt tokens were fed";
  running->cancel();
  wait_all(*running);
  if (first->kind == TaskEvent::Kind::kDelta) wait_all(*long_task);
  expect_empty(scheduler, 2 * kBlocksPerSlot);
}

TEST_F(BatchingTest, QueueIsBounded) {
  BatchingScheduler scheduler(*engine_, options(1, 1), metrics_);
  auto running = task("a", {greedy("Tell me a long story.", 400)});
  ASSERT_EQ(scheduler.submit(running), SubmitResult::kAccepted);
  ASSERT_TRUE(running->next(milliseconds(60000)).has_value());  // it runs: the queue is empty again
  auto queued = task("b", {greedy("Hi", 4)});
  EXPECT_EQ(scheduler.submit(queued), SubmitResult::kAccepted);
  EXPECT_EQ(scheduler.gauges().queue_depth, 1);
  EXPECT_EQ(scheduler.gauges().running_sequences, 1);
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (scheduler.gauges().kv_blocks.used == 0 && Clock::now() < deadline) std::this_thread::sleep_for(milliseconds(5));
  EXPECT_GT(scheduler.gauges().kv_blocks.used, 0);
  auto refused = task("c", {greedy("Hi", 4)});
  EXPECT_EQ(scheduler.submit(refused), SubmitResult::kQueueFull);
  running->cancel();
  queued->cancel();
  EXPECT_EQ(wait_all(*queued)[0].finished.finish, FinishReason::kCancelled);
}

TEST_F(BatchingTest, BadSequencesFailAlone) {
  BatchingScheduler scheduler(*engine_, options(2), metrics_);
  SequenceSpec too_long = greedy("Hi", 4);
  too_long.prompt.assign(size_t(kContext), too_long.prompt.front());
  auto bad = task("bad", {too_long});
  auto good = task("good", {greedy("Say hello.", 4)});
  ASSERT_EQ(scheduler.submit(bad), SubmitResult::kAccepted);
  ASSERT_EQ(scheduler.submit(good), SubmitResult::kAccepted);
  auto e = bad->next(milliseconds(60000));
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->kind, TaskEvent::Kind::kFailed);
  EXPECT_NE(e->error.find("context"), std::string::npos) << e->error;
  EXPECT_EQ(wait_all(*good)[0].finished.kind, TaskEvent::Kind::kFinished);
}

TEST_F(BatchingTest, PromptsWithACommonPrefixShareBlocks) {
  // A long system prompt, then different questions; the second request arrives while the first
  // runs and maps the first's whole prefix blocks instead of computing them.
  const std::string system =
      "You are a meticulous assistant for a public library. Answer briefly, cite the shelf when you "
      "know it, never invent a book, and when a question is ambiguous ask which branch the reader "
      "means: the central branch, the harbour branch or the hill branch. Opening hours are nine to "
      "six on weekdays and ten to four on Saturdays; the library is closed on Sundays.";
  SequenceSpec first = greedy("", 120), second = greedy("", 12);
  first.prompt = engine_->chat_prompt({{"system", system}, {"user", "Tell me a long story about the library."}}, true);
  second.prompt = engine_->chat_prompt({{"system", system}, {"user", "When do you open on Saturday?"}}, true);
  size_t common = 0;
  while (common < first.prompt.size() && first.prompt[common] == second.prompt[common]) ++common;
  ASSERT_GE(common, 64u);
  const std::string expected = alone(second);

  BatchingScheduler scheduler(*engine_, options(2), metrics_);
  auto a = task("a", {first});
  ASSERT_EQ(scheduler.submit(a), SubmitResult::kAccepted);
  ASSERT_TRUE(a->next(milliseconds(60000)).has_value());  // prefilled: its blocks hold the prefix
  auto b = task("b", {second});
  ASSERT_EQ(scheduler.submit(b), SubmitResult::kAccepted);
  int64_t used_by_both = -1;
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (used_by_both < 0 && Clock::now() < deadline) {
    const SchedulerGauges g = scheduler.gauges();
    if (g.running_sequences == 2) used_by_both = g.kv_blocks.used;
    std::this_thread::sleep_for(milliseconds(1));
  }
  const Outcome out_b = wait_all(*b)[0];
  EXPECT_EQ(out_b.text, expected);  // exactly what computing the prefix gives
  EXPECT_LE(out_b.finished.cached_tokens, int(common));
  EXPECT_GT(out_b.finished.cached_tokens, int(common) - kBlockSize);
  ASSERT_GE(used_by_both, 0) << "never saw both sequences running";
  EXPECT_LT(used_by_both, blocks_for(int64_t(first.prompt.size())) + blocks_for(int64_t(second.prompt.size())));
  a->cancel();
  wait_all(*a);
  const SchedulerGauges g = expect_empty(scheduler, 2 * kBlocksPerSlot);
  EXPECT_GT(g.kv_blocks.cached, 0);  // the second's blocks stay for a later prompt like it
}

TEST_F(BatchingTest, AdmissionWaitsForBlocks) {
  // A pool too small for two of these sequences at once: the second waits for the first to end;
  // a sequence that could not fit even alone fails at once. Both others equal their runs alone.
  // Plain text prompts: no common prefix to share.
  SequenceSpec a = greedy("", 24), b = greedy("", 24);
  a.prompt = engine_->tokenizer().encode("Once upon a time, in a small village by the sea,");
  b.prompt = engine_->tokenizer().encode("The three largest cities of Italy are");
  const int64_t need_a = blocks_for(int64_t(a.prompt.size()) + 24), need_b = blocks_for(int64_t(b.prompt.size()) + 24);
  const int64_t pool = std::max(need_a, need_b) + 1;
  ASSERT_GT(need_a + need_b, pool);
  SequenceSpec huge = greedy("Tell me a story.", int(pool * kBlockSize));
  const std::string expected_a = alone(a), expected_b = alone(b);

  BatchingScheduler scheduler(*engine_, options(2, 8, 256, pool), metrics_);
  auto ta = task("a", {a}), tb = task("b", {b}), th = task("h", {huge});
  for (const auto& t : {ta, tb, th}) ASSERT_EQ(scheduler.submit(t), SubmitResult::kAccepted);
  std::atomic<int> most_running = 0;
  std::atomic<bool> done = false;
  std::thread monitor([&] {
    while (!done) {
      most_running = std::max(most_running.load(), scheduler.gauges().running_sequences);
      std::this_thread::sleep_for(milliseconds(1));
    }
  });
  const Outcome out_a = wait_all(*ta)[0], out_b = wait_all(*tb)[0];
  done = true;
  monitor.join();
  EXPECT_EQ(out_a.text, expected_a);
  EXPECT_EQ(out_b.text, expected_b);
  EXPECT_EQ(most_running, 1);
  const auto e = th->next(milliseconds(60000));
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->kind, TaskEvent::Kind::kFailed);
  EXPECT_NE(e->error.find("KV cache blocks"), std::string::npos) << e->error;
  expect_empty(scheduler, pool);
}

TEST_F(BatchingTest, DrainFinishesWorkThenRefuses) {
  BatchingScheduler scheduler(*engine_, options(2), metrics_);
  auto t = task("a", {greedy("Hi", 4)});
  ASSERT_EQ(scheduler.submit(t), SubmitResult::kAccepted);
  scheduler.drain(Clock::now() + std::chrono::seconds(60));
  EXPECT_EQ(wait_all(*t)[0].finished.kind, TaskEvent::Kind::kFinished);
  EXPECT_EQ(scheduler.submit(t), SubmitResult::kShuttingDown);
}

TEST_F(BatchingTest, DrainPastItsDeadlineCancels) {
  BatchingScheduler scheduler(*engine_, options(1), metrics_);
  auto running = task("a", {greedy("Tell me a long story.", 400)});
  auto queued = task("b", {greedy("Tell me another story.", 400)});
  ASSERT_EQ(scheduler.submit(running), SubmitResult::kAccepted);
  ASSERT_EQ(scheduler.submit(queued), SubmitResult::kAccepted);
  scheduler.drain(Clock::now() + milliseconds(200));
  EXPECT_EQ(wait_all(*running)[0].finished.finish, FinishReason::kCancelled);
  EXPECT_EQ(wait_all(*queued)[0].finished.finish, FinishReason::kCancelled);
}

}  // namespace
}  // namespace marlin::server
