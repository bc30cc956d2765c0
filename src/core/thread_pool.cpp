#include "core/thread_pool.h"

#include <immintrin.h>

#include <chrono>

namespace marlin {
namespace {

// How long an idle worker polls for the next job before it sleeps.
constexpr auto kSpinTime = std::chrono::microseconds(2000);

inline void cpu_relax() { _mm_pause(); }

}  // namespace

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = int(std::thread::hardware_concurrency());
  if (threads <= 0) threads = 1;
  thread_count_ = threads;
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
  while (pending_.load(std::memory_order_acquire) != 0) cpu_relax();
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  const int count = size();
  for (;;) {
    uint64_t now = generation_.load(std::memory_order_acquire);
    if (now == seen) {
      const auto deadline = std::chrono::steady_clock::now() + kSpinTime;
      int polls = 0;
      while ((now = generation_.load(std::memory_order_acquire)) == seen) {
        cpu_relax();
        if (++polls % 256 == 0 && std::chrono::steady_clock::now() > deadline) {
          generation_.wait(seen, std::memory_order_acquire);
        }
      }
    }
    seen = now;
    if (stop_.load(std::memory_order_acquire)) return;
    task_(task_ctx_, index, count);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace marlin
