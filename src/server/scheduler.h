// The scheduler owns the model: it takes tasks from a bounded queue and runs them, publishing each
// task's events. HTTP threads only submit tasks, read their events and cancel them.
//
// BatchingScheduler (batching_scheduler.h) runs many sequences together, one decode step for all
// of them at a time.
#pragma once

#include <memory>

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

}  // namespace marlin::server
