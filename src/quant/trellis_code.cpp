#include "quant/trellis_code.h"

#include <cstddef>
#include <vector>

namespace marlin {

const float* trellis_value_table() {
  static const std::vector<float> table = [] {
    std::vector<float> values(std::size_t(1) << 16);
    for (uint32_t s = 0; s < values.size(); ++s) values[s] = trellis_value(s);
    return values;
  }();
  return table.data();
}

}  // namespace marlin
