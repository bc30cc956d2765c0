// A persistent pool of worker threads for data-parallel kernels.
//
// The calling thread takes part as thread 0, so a pool of size 1 runs everything inline.
// Workers spin briefly between jobs (decode issues hundreds of small jobs per token, and a
// futex wake per job would cost more than the job) and then sleep on an atomic wait.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace marlin {

class ThreadPool {
 public:
  // threads <= 0 means one per hardware thread.
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return thread_count_; }

  // Calls fn(thread_index, thread_count) once on every thread; returns when all calls return.
  // Not re-entrant: fn must not call run() on the same pool.
  template <typename Fn>
  void run(Fn&& fn) {
    auto trampoline = [](void* ctx, int index, int count) { (*static_cast<Fn*>(ctx))(index, count); };
    dispatch(trampoline, &fn);
  }

  // Splits [0, n) into contiguous ranges, at most one per thread, each a multiple of `grain`
  // (except the last), and calls fn(begin, end) for every non-empty range.
  template <typename Fn>
  void parallel_for(int64_t n, int64_t grain, Fn&& fn) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    const int64_t chunks = (n + grain - 1) / grain;
    run([&](int index, int count) {
      const int64_t first = chunks * index / count, last = chunks * (index + 1) / count;
      const int64_t begin = first * grain, end = last * grain < n ? last * grain : n;
      if (begin < end) fn(begin, end);
    });
  }

 private:
  using Task = void (*)(void* ctx, int index, int count);
  void dispatch(Task task, void* ctx);
  void worker_loop(int index);

  int thread_count_ = 1;  // set before any worker starts (workers read it)
  std::vector<std::thread> workers_;
  Task task_ = nullptr;
  void* task_ctx_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace marlin
