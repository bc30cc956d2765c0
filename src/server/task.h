// A request as the scheduler sees it: tokenized, validated sequences to generate, and a channel of
// events back to the HTTP thread waiting on it. The scheduler publishes; the HTTP thread reads and
// may cancel (its client went away). Neither side touches the other's state.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "runtime/session.h"
#include "server/logprobs.h"

namespace marlin::server {

using Clock = std::chrono::steady_clock;

struct SequenceSpec {
  int index = 0;  // the choice's index in the response
  std::vector<int32_t> prompt;
  GenerationParams params;
  int top_logprobs = -1;  // -1: no logprobs; else alternatives per token
};

struct TaskEvent {
  enum class Kind { kDelta, kFinished, kFailed };
  Kind kind = Kind::kDelta;
  int index = 0;
  // kDelta: text that became final, and the logprobs of the tokens sampled since the last delta.
  std::string text{};
  std::vector<TokenLogprob> logprobs{};
  // kFinished
  FinishReason finish = FinishReason::kLength;
  int prompt_tokens = 0;
  int completion_tokens = 0;
  int cached_tokens = 0;
  // kFailed: a one-line message (the sequence ends)
  std::string error{};
};

class Task {
 public:
  Task(std::string id, std::vector<SequenceSpec> sequences)
      : id_(std::move(id)), sequences_(std::move(sequences)), arrival_(Clock::now()) {}

  const std::string& id() const { return id_; }
  const std::vector<SequenceSpec>& sequences() const { return sequences_; }
  Clock::time_point arrival() const { return arrival_; }

  // Scheduler side.
  void publish(TaskEvent event);
  // Client side: the next event, or nullopt when none arrives within `timeout`.
  std::optional<TaskEvent> next(std::chrono::milliseconds timeout);

  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

 private:
  const std::string id_;
  const std::vector<SequenceSpec> sequences_;
  const Clock::time_point arrival_;
  std::atomic<bool> cancelled_{false};
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<TaskEvent> events_;
};

}  // namespace marlin::server
