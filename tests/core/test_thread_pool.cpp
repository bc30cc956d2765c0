#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "core/checked_math.h"
#include "core/thread_pool.h"

namespace marlin {
namespace {

TEST(ThreadPool, RunCallsEveryThreadOnce) {
  ThreadPool pool(4);
  for (int round = 0; round < 1000; ++round) {
    std::vector<std::atomic<int>> calls(4);
    pool.run([&](int index, int count) {
      ASSERT_EQ(count, 4);
      calls[size_t(index)]++;
    });
    for (auto& c : calls) ASSERT_EQ(c.load(), 1);
  }
}

TEST(ThreadPool, ParallelForCoversRangeExactlyOnce) {
  ThreadPool pool(3);
  for (int64_t n : {0, 1, 2, 7, 64, 1000}) {
    for (int64_t grain : {1, 4, 16}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      pool.parallel_for(n, grain, [&](int64_t begin, int64_t end) {
        EXPECT_EQ(begin % grain, 0);
        for (int64_t i = begin; i < end; ++i) hits[size_t(i)]++;
      });
      for (auto& h : hits) ASSERT_EQ(h.load(), 1);
    }
  }
}

TEST(ThreadPool, SingleThreadRunsInline) {
  ThreadPool pool(1);
  int calls = 0;
  pool.run([&](int index, int count) {
    EXPECT_EQ(index, 0);
    EXPECT_EQ(count, 1);
    ++calls;
  });
  EXPECT_EQ(calls, 1);
}

TEST(CheckedMath, DetectsOverflow) {
  EXPECT_FALSE(checked_add(UINT64_MAX, 1));
  EXPECT_EQ(*checked_add(2, 3), 5u);
  EXPECT_FALSE(checked_mul(uint64_t(1) << 33, uint64_t(1) << 31));
  EXPECT_EQ(*checked_align_up(33, 32), 64u);
  EXPECT_FALSE(checked_align_up(UINT64_MAX - 3, 32));
}

}  // namespace
}  // namespace marlin
