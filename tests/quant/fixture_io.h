// Reads the binary fixtures written by tools/gen_quant_fixtures.py.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/error.h"

namespace marlin::test {

inline std::vector<uint8_t> read_quant_fixture(const std::string& name) {
  const std::string path = std::string(MARLIN_FIXTURES_DIR) + "/quant/" + name;
  std::ifstream in(path, std::ios::binary);
  MARLIN_CHECK(in.good(), "missing fixture {} (run tools/gen_quant_fixtures.py)", path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline std::vector<float> as_floats(const std::vector<uint8_t>& bytes) {
  std::vector<float> out(bytes.size() / 4);
  std::memcpy(out.data(), bytes.data(), out.size() * 4);
  return out;
}

}  // namespace marlin::test
