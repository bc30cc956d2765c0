#include "core/memory_size.h"

#include <fmt/format.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace marlin {
namespace {

[[noreturn]] void bad_memory_size(std::string_view text) {
  fail("memory size '{}' is not a positive size such as 4096, 512M, 8G or 1.5G", text);
}

}  // namespace

std::optional<uint64_t> parse_mem_available(std::string_view meminfo) {
  constexpr std::string_view kKey = "MemAvailable:";
  while (!meminfo.empty()) {
    const size_t eol = meminfo.find('\n');
    std::string_view line = meminfo.substr(0, eol);
    meminfo.remove_prefix(eol == std::string_view::npos ? meminfo.size() : eol + 1);
    if (!line.starts_with(kKey)) continue;
    line.remove_prefix(kKey.size());  // "   16318412 kB"
    while (!line.empty() && std::isspace(uint8_t(line.front()))) line.remove_prefix(1);
    while (!line.empty() && std::isspace(uint8_t(line.back()))) line.remove_suffix(1);
    uint64_t kib = 0;
    const auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), kib);
    const std::string_view unit(end, size_t(line.data() + line.size() - end));
    // The kernel writes every size in kB (meaning KiB).
    if (ec != std::errc() || unit != " kB" || kib > (UINT64_MAX >> 10)) return std::nullopt;
    return kib << 10;
  }
  return std::nullopt;
}

std::optional<uint64_t> mem_available() {
  std::ifstream file("/proc/meminfo");
  if (!file) return std::nullopt;
  std::ostringstream text;
  text << file.rdbuf();
  return parse_mem_available(text.str());
}

uint64_t parse_memory_size(std::string_view text) {
  std::string_view s = text;
  while (!s.empty() && std::isspace(uint8_t(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(uint8_t(s.back()))) s.remove_suffix(1);
  // The number: digits with at most one decimal point (no sign, exponent, inf or nan).
  size_t digits = 0;
  bool point = false;
  while (digits < s.size() && (std::isdigit(uint8_t(s[digits])) || (s[digits] == '.' && !point))) {
    point = point || s[digits] == '.';
    ++digits;
  }
  if (digits == 0 || (digits == 1 && point)) bad_memory_size(text);
  double value = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + digits, value);
  if (ec != std::errc() || end != s.data() + digits) bad_memory_size(text);
  std::string unit(s.substr(digits));
  for (char& c : unit) c = char(std::toupper(uint8_t(c)));
  if (unit.ends_with("IB") && unit.size() == 3) unit.resize(1);
  else if (unit.ends_with("B") && unit.size() <= 2) unit.pop_back();
  static constexpr std::string_view kUnits = "KMGT";
  int shift = 0;
  if (!unit.empty()) {
    const size_t u = kUnits.find(unit.front());
    if (unit.size() != 1 || u == std::string_view::npos) bad_memory_size(text);
    shift = 10 * int(u + 1);
  }
  const double bytes = std::ldexp(value, shift);
  if (!(bytes >= 1)) bad_memory_size(text);
  MARLIN_CHECK(bytes < 0x1p63, "memory size '{}' is beyond 2^63 bytes", text);
  return uint64_t(bytes);
}

std::string format_memory_size(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double value = double(bytes);
  int unit = 0;
  while (value >= 1024 && unit + 1 < int(std::size(kUnits))) value /= 1024, ++unit;
  if (unit == 0) return fmt::format("{} B", bytes);
  return fmt::format("{:.{}f} {}", value, value < 10 ? 2 : value < 100 ? 1 : 0, kUnits[unit]);
}

}  // namespace marlin
