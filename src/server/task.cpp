#include "server/task.h"

namespace marlin::server {

void Task::publish(TaskEvent event) {
  {
    std::lock_guard lock(mutex_);
    events_.push_back(std::move(event));
  }
  ready_.notify_one();
}

std::optional<TaskEvent> Task::next(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  if (!ready_.wait_for(lock, timeout, [&] { return !events_.empty(); })) return std::nullopt;
  TaskEvent event = std::move(events_.front());
  events_.pop_front();
  return event;
}

}  // namespace marlin::server
