// MARLIN_PROFILE_OPS's table (backend/cuda/op_profiler.h): each label's first call is shown apart
// and left out of the label's calls, total and mean.
#include <gtest/gtest.h>

#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "backend/cuda/op_profiler.h"
#include "test_util.h"

namespace marlin::test {
namespace {

// The table's row of `label`, split into its fields ("" when absent).
std::vector<std::string> row_of(const std::string& table, const std::string& label) {
  std::istringstream lines(table);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream fields(line);
    std::vector<std::string> out;
    for (std::string f; fields >> f;) out.push_back(f);
    if (!out.empty() && out[0] == label) return out;
  }
  return {};
}

TEST(CudaOpProfiler, FirstCallIsSetApart) {
  MARLIN_REQUIRE_GPU();
  ASSERT_EQ(setenv("MARLIN_PROFILE_OPS", "1", 1), 0);
  cuda::OpProfiler profiler;
  unsetenv("MARLIN_PROFILE_OPS");
  ASSERT_TRUE(profiler.enabled());
  for (int i = 0; i < 3; ++i) {
    profiler.begin(nullptr);
    profiler.end(nullptr, "three");
  }
  profiler.begin(nullptr);
  profiler.end(nullptr, "once");
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  profiler.collect();
  const std::string table = profiler.report();
  const auto three = row_of(table, "three"), once = row_of(table, "once");
  // label, calls, total ms, mean us, share, first us
  ASSERT_EQ(three.size(), 6u) << table;
  ASSERT_EQ(once.size(), 6u) << table;
  EXPECT_EQ(three[1], "2") << table;
  EXPECT_EQ(once[1], "0") << table;
  EXPECT_EQ(once[2], "0.000") << table;
}

}  // namespace
}  // namespace marlin::test
