// Free memory from /proc/meminfo's text, sizes typed by a user, sizes shown to one.
#include <gtest/gtest.h>

#include "core/error.h"
#include "core/memory_size.h"

namespace marlin {
namespace {

constexpr const char* kMeminfo =
    "MemTotal:       24589472 kB\n"
    "MemFree:         1021484 kB\n"
    "MemAvailable:   16318412 kB\n"
    "Buffers:          412764 kB\n"
    "SwapCached:            0 kB\n";

TEST(MemorySize, MemAvailableFromMeminfo) {
  EXPECT_EQ(parse_mem_available(kMeminfo), uint64_t(16318412) * 1024);
  EXPECT_EQ(parse_mem_available("MemAvailable: 0 kB"), 0u);  // the last line need not end
  EXPECT_EQ(parse_mem_available("MemFree: 5 kB\r\nMemAvailable:\t7 kB\r\n"), 7u * 1024);
}

TEST(MemorySize, MissingOrGarbledMeminfoGivesNothing) {
  EXPECT_EQ(parse_mem_available(""), std::nullopt);
  EXPECT_EQ(parse_mem_available("MemTotal: 24589472 kB\nMemFree: 1021484 kB\n"), std::nullopt);  // older kernels
  EXPECT_EQ(parse_mem_available("MemAvailable: lots kB\n"), std::nullopt);
  EXPECT_EQ(parse_mem_available("MemAvailable: 16318412\n"), std::nullopt);
  EXPECT_EQ(parse_mem_available("MemAvailable: 16318412 MB\n"), std::nullopt);
  EXPECT_EQ(parse_mem_available("MemAvailable: -5 kB\n"), std::nullopt);
  EXPECT_EQ(parse_mem_available("MemAvailable: 99999999999999999999999 kB\n"), std::nullopt);
  EXPECT_EQ(parse_mem_available("MemAvailable: 18014398509481984 kB\n"), std::nullopt);  // 2^64 bytes
  EXPECT_EQ(parse_mem_available("HugeMemAvailable: 5 kB\n"), std::nullopt);  // the key starts its line
  EXPECT_EQ(parse_mem_available(std::string_view("MemAvailable:\0 5 kB", 19)), std::nullopt);
}

TEST(MemorySize, ThisMachineReportsSomethingOrNothing) {
  const auto available = mem_available();  // nullopt where /proc/meminfo is absent; never throws
  if (available) {
    EXPECT_GT(*available, 0u);
  }
}

TEST(MemorySize, ParsesSizesInBinaryUnits) {
  EXPECT_EQ(parse_memory_size("4096"), 4096u);
  EXPECT_EQ(parse_memory_size("512K"), 512u << 10);
  EXPECT_EQ(parse_memory_size("512M"), 512u << 20);
  EXPECT_EQ(parse_memory_size("8G"), uint64_t(8) << 30);
  EXPECT_EQ(parse_memory_size("1.5G"), uint64_t(3) << 29);
  EXPECT_EQ(parse_memory_size("2T"), uint64_t(2) << 40);
  EXPECT_EQ(parse_memory_size("8g"), uint64_t(8) << 30);
  EXPECT_EQ(parse_memory_size("8GB"), uint64_t(8) << 30);
  EXPECT_EQ(parse_memory_size("8GiB"), uint64_t(8) << 30);
  EXPECT_EQ(parse_memory_size("100B"), 100u);
  EXPECT_EQ(parse_memory_size(" 0.5M "), 512u << 10);
  EXPECT_EQ(parse_memory_size(".5K"), 512u);
  EXPECT_EQ(parse_memory_size("2."), 2u);
}

TEST(MemorySize, RejectsAnythingElse) {
  for (const char* bad : {"", " ", "G", "abc", "8X", "8 G", "8GG", "8iB", "-1G", "+1G", "0", "0.0G", "0.5", "1e9",
                          "1.5.G", ".", "inf", "nan", "8G junk", "0x10", "10000000T"}) {
    EXPECT_THROW(parse_memory_size(bad), Error) << "'" << bad << "'";
  }
  try {
    parse_memory_size("lots");
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "memory size 'lots' is not a positive size such as 4096, 512M, 8G or 1.5G");
  }
}

TEST(MemorySize, FormatsThreeDigits) {
  EXPECT_EQ(format_memory_size(0), "0 B");
  EXPECT_EQ(format_memory_size(1000), "1000 B");
  EXPECT_EQ(format_memory_size(40 << 10), "40.0 KiB");
  EXPECT_EQ(format_memory_size(512u << 20), "512 MiB");
  EXPECT_EQ(format_memory_size(uint64_t(3) << 29), "1.50 GiB");
  EXPECT_EQ(format_memory_size(UINT64_MAX), "16.0 EiB");
}

}  // namespace
}  // namespace marlin
