#include "core/thread_pool.h"

#include <immintrin.h>

#include <chrono>

namespace marlin {
namespace {

// Waiting has three phases: busy polling (the next decode job usually comes within
// microseconds), then polling that yields the core (so an oversubscribed machine, like a test
// run beside a compiler, still makes progress), then sleeping on a futex.
constexpr auto kBusyPoll = std::chrono::microseconds(50);
constexpr auto kYieldPoll = std::chrono::microseconds(2000);

// Waits until `value` differs from `old`; returns the new value.
template <typename T>
T wait_for_change(const std::atomic<T>& value, T old) {
  T now;
  int polls = 0;
  auto start = std::chrono::steady_clock::time_point{};
  while ((now = value.load(std::memory_order_acquire)) == old) {
    if (++polls < 64) {
      _mm_pause();
      continue;
    }
    polls = 0;
    const auto t = std::chrono::steady_clock::now();
    if (start == decltype(start){}) start = t;
    if (t - start < kBusyPoll) continue;
    if (t - start < kYieldPoll) {
      std::this_thread::yield();
      continue;
    }
    value.wait(old, std::memory_order_acquire);
  }
  return now;
}

}  // namespace

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = int(std::thread::hardware_concurrency());
  if (threads <= 0) threads = 1;
  size_ = threads;  // set before any worker starts: workers read it
  workers_.reserve(size_t(threads - 1));
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  generation_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::dispatch(Task task, void* ctx) {
  const int count = size();
  if (count == 1) {
    task(ctx, 0, 1);
    return;
  }
  task_ = task;
  task_ctx_ = ctx;
  pending_.store(count - 1, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  task(ctx, 0, count);
  for (int left; (left = pending_.load(std::memory_order_acquire)) != 0;) wait_for_change(pending_, left);
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  const int count = size();
  for (;;) {
    seen = wait_for_change(generation_, seen);
    if (stop_.load(std::memory_order_acquire)) return;
    task_(task_ctx_, index, count);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
  }
}

}  // namespace marlin
