#include "server/scheduler.h"

#include <exception>

#include "tokenizer/tokenizer.h"

namespace marlin::server {
namespace {

double seconds_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

}  // namespace

SequentialScheduler::SequentialScheduler(Engine& engine, int64_t context, size_t max_queue, Metrics& metrics)
    : engine_(engine),
      session_(engine.model(), engine.tokenizer(), context),
      metrics_(metrics),
      max_queue_(max_queue),
      thread_([this] { loop(); }) {}

SequentialScheduler::~SequentialScheduler() { drain(Clock::now()); }

SubmitResult SequentialScheduler::submit(std::shared_ptr<Task> task) {
  {
    std::lock_guard lock(mutex_);
    if (!accepting_) return SubmitResult::kShuttingDown;
    if (queue_.size() >= max_queue_) return SubmitResult::kQueueFull;
    queue_.push_back(std::move(task));
  }
  wake_.notify_one();
  return SubmitResult::kAccepted;
}

void SequentialScheduler::drain(Clock::time_point deadline) {
  std::unique_lock lock(mutex_);
  accepting_ = false;
  auto is_idle = [&] { return queue_.empty() && !running_; };
  if (!idle_.wait_until(lock, deadline, is_idle)) {
    for (auto& task : queue_) task->cancel();
    if (running_) running_->cancel();
    idle_.wait(lock, is_idle);  // a cancelled sequence stops within one token
  }
  stopping_ = true;
  lock.unlock();
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

SchedulerGauges SequentialScheduler::gauges() const {
  std::lock_guard lock(mutex_);
  return {int(queue_.size()), running_sequences_};
}

void SequentialScheduler::loop() {
  while (true) {
    std::unique_lock lock(mutex_);
    wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and nothing left
    running_ = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    run(*running_);
    lock.lock();
    running_.reset();
    if (queue_.empty()) idle_.notify_all();
  }
}

void SequentialScheduler::run(Task& task) {
  bool first = true;
  for (const auto& sequence : task.sequences()) {
    if (task.cancelled()) {
      TaskEvent done{.kind = TaskEvent::Kind::kFinished, .index = sequence.index};
      done.finish = FinishReason::kCancelled;
      task.publish(std::move(done));
      continue;
    }
    {
      std::lock_guard lock(mutex_);
      running_sequences_ = 1;
    }
    try {
      run_sequence(task, sequence, first);
    } catch (const std::exception& e) {
      session_.reset();  // the cache may no longer match the session's tokens
      task.publish({.kind = TaskEvent::Kind::kFailed, .index = sequence.index, .error = e.what()});
    }
    first = false;
    std::lock_guard lock(mutex_);
    running_sequences_ = 0;
  }
}

void SequentialScheduler::run_sequence(Task& task, const SequenceSpec& sequence, bool first) {
  const Tokenizer& tokenizer = engine_.tokenizer();
  std::vector<TokenLogprob> pending;  // logprobs of tokens whose text has not been published yet
  std::optional<Clock::time_point> last_token;
  auto on_token = [&](int32_t token, std::span<const float> logits) {
    const auto now = Clock::now();
    if (last_token)
      metrics_.observe_inter_token_latency(seconds_between(*last_token, now));
    else if (first)
      metrics_.observe_time_to_first_token(seconds_between(task.arrival(), now));
    last_token = now;
    const bool ends_turn = sequence.params.stop_at_end_of_turn && tokenizer.is_end_of_turn(token);
    if (sequence.top_logprobs >= 0 && !ends_turn) pending.push_back(token_logprob(logits, token, sequence.top_logprobs));
    return !task.cancelled();
  };
  auto on_text = [&](std::string_view text) {
    task.publish({.kind = TaskEvent::Kind::kDelta, .index = sequence.index, .text = std::string(text), .logprobs = std::move(pending)});
    pending.clear();
    return !task.cancelled();
  };
  GenerationParams params = sequence.params;
  params.token_logits = sequence.top_logprobs >= 0;  // logprobs need the logits on the host
  const GenerationResult result = session_.generate(sequence.prompt, params, on_text, on_token);
  if (!pending.empty()) task.publish({.kind = TaskEvent::Kind::kDelta, .index = sequence.index, .logprobs = std::move(pending)});
  metrics_.count_tokens(result.prompt_tokens, int64_t(result.tokens.size()));
  TaskEvent done{.kind = TaskEvent::Kind::kFinished, .index = sequence.index};
  done.finish = result.finish;
  done.prompt_tokens = result.prompt_tokens;
  done.completion_tokens = int(result.tokens.size());
  done.cached_tokens = result.cached_prompt_tokens;
  task.publish(std::move(done));
}

}  // namespace marlin::server
