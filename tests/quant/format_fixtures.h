// Reads tests/fixtures/quant/formats/, written by tools/gen_format_fixtures.py.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fixture_io.h"

namespace marlin::test {

inline std::vector<uint8_t> read_format_fixture(const std::string& name) {
  return read_quant_fixture("formats/" + name);
}

inline std::vector<float> read_format_floats(const std::string& name) {
  return as_floats(read_format_fixture(name));
}

// Equal as values, NaN equal to NaN, and zeros of the same sign.
inline bool same_float(float a, float b) {
  uint32_t x, y;
  std::memcpy(&x, &a, 4);
  std::memcpy(&y, &b, 4);
  return (a != a && b != b) || x == y;
}

}  // namespace marlin::test
