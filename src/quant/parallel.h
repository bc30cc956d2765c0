// Splits [0, n) over a thread pool (or runs inline without one) and carries the first exception
// thrown by any range back to the caller (ThreadPool itself does not: a throwing task would end
// the process or leave workers running).
#pragma once

#include <cstdint>
#include <exception>
#include <mutex>

#include "core/thread_pool.h"

namespace marlin {

template <typename Fn>
void parallel_ranges(ThreadPool* pool, int64_t n, int64_t grain, Fn&& fn) {
  if (!pool || pool->size() == 1) {
    if (n > 0) fn(int64_t(0), n);
    return;
  }
  std::exception_ptr first_error;
  std::mutex mutex;
  pool->parallel_for(n, grain, [&](int64_t begin, int64_t end) {
    try {
      fn(begin, end);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex);
      if (!first_error) first_error = std::current_exception();
    }
  });
  if (first_error) std::rethrow_exception(first_error);
}

}  // namespace marlin
