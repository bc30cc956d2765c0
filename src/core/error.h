// Errors: library code throws marlin::Error with a one-line message naming what is wrong;
// the CLI (and later the server) catch it at the edge. Nothing in the library exits the process.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace marlin {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace marlin

// Throws marlin::Error with the formatted message when the condition is false.
#define MARLIN_CHECK(condition, ...)         \
  do {                                       \
    if (!(condition)) ::marlin::fail(__VA_ARGS__); \
  } while (0)
