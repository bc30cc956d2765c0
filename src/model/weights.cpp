#include "model/weights.h"

#include "core/error.h"
#include "quant/dequant.h"

namespace marlin {
namespace {

QuantTensor require(const ModelSource& source, const std::string& name) {
  auto t = source.tensor(name);
  MARLIN_CHECK(t.has_value(), "model: tensor '{}' is missing from {}", name, source.description());
  return *t;
}

}  // namespace

QuantTensor require_matrix(const ModelSource& source, const std::string& name, int64_t rows, int64_t cols) {
  QuantTensor t = require(source, name);
  MARLIN_CHECK(t.rows == rows && t.cols == cols, "model: tensor '{}' is {} x {}, expected {} x {}", name, t.rows,
               t.cols, rows, cols);
  return t;
}

std::vector<float> require_vector(const ModelSource& source, const std::string& name, int64_t n) {
  const QuantTensor t = require(source, name);
  MARLIN_CHECK(t.rows * t.cols == n, "model: tensor '{}' has {} values, expected {}", name, t.rows * t.cols, n);
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t r = 0; r < t.rows; ++r) dequantize_row(t, r, out.data() + r * t.cols);
  return out;
}

}  // namespace marlin
