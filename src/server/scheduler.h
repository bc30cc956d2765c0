// The scheduler owns the model: it takes tasks from a bounded queue and runs them, publishing each
// task's events. HTTP threads only submit tasks, read their events and cancel them.
//
// SequentialScheduler runs one sequence at a time (FIFO) through a Session, which keeps the KV
// cache of the previous sequence so a prompt sharing its prefix only pays for the new tokens.
// A continuous-batching scheduler implements the same interface.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "runtime/engine.h"
#include "runtime/session.h"
#include "server/metrics.h"
#include "server/task.h"

namespace marlin::server {

enum class SubmitResult { kAccepted, kQueueFull, kShuttingDown };

class Scheduler {
 public:
  virtual ~Scheduler() = default;
  virtual SubmitResult submit(std::shared_ptr<Task> task) = 0;
  // Stops accepting tasks and waits for queued and running ones until `deadline`; what is left
  // then is cancelled (its sequences finish as cancelled). Returns when the scheduler is idle.
  virtual void drain(Clock::time_point deadline) = 0;
  virtual SchedulerGauges gauges() const = 0;
};

class SequentialScheduler final : public Scheduler {
 public:
  // `max_queue`: tasks that may wait (besides the running one).
  SequentialScheduler(Engine& engine, int64_t context, size_t max_queue, Metrics& metrics);
  ~SequentialScheduler() override;

  SubmitResult submit(std::shared_ptr<Task> task) override;
  void drain(Clock::time_point deadline) override;
  SchedulerGauges gauges() const override;

 private:
  void loop();
  void run(Task& task);
  void run_sequence(Task& task, const SequenceSpec& sequence, bool first);

  Engine& engine_;
  Session session_;
  Metrics& metrics_;
  const size_t max_queue_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;  // a task arrived, or stopping
  std::condition_variable idle_;  // the queue emptied and nothing runs
  std::deque<std::shared_ptr<Task>> queue_;
  std::shared_ptr<Task> running_;
  int running_sequences_ = 0;
  bool accepting_ = true;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace marlin::server
