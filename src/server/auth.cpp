#include "server/auth.h"

namespace marlin::server {

bool constant_time_equal(std::string_view expected, std::string_view given) {
  if (expected.empty()) return false;
  // Every byte of `given` is compared (against expected, cycled), so the time reveals nothing
  // about where a guess first differs.
  unsigned diff = expected.size() == given.size() ? 0u : 1u;
  for (size_t i = 0; i < given.size(); ++i)
    diff |= static_cast<unsigned char>(expected[i % expected.size()]) ^ static_cast<unsigned char>(given[i]);
  return diff == 0;
}

std::optional<std::string_view> bearer_token(std::string_view value) {
  constexpr std::string_view kScheme = "bearer ";
  if (value.size() < kScheme.size()) return std::nullopt;
  for (size_t i = 0; i < kScheme.size(); ++i)
    if ((value[i] | 0x20) != kScheme[i]) return std::nullopt;
  value.remove_prefix(kScheme.size());
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  return value;
}

}  // namespace marlin::server
