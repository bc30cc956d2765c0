#include "model/weights.h"

#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "quant/ggml_dequant.h"

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
  const uint8_t* p = t.codes;
  switch (t.format.kind) {
    case FormatKind::kF32: std::memcpy(out.data(), p, size_t(n) * sizeof(float)); break;
    case FormatKind::kF16:
    case FormatKind::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t bits = uint16_t(p[2 * i] | (p[2 * i + 1] << 8));
        out[size_t(i)] = t.format.kind == FormatKind::kF16 ? fp16_to_fp32(bits) : bf16_to_fp32(bits);
      }
      break;
    case FormatKind::kGgml: dequantize_row(t.format.ggml, p, out.data(), n); break;
    default: fail("model: vector '{}' is stored quantized, which is not supported", name);
  }
  return out;
}

}  // namespace marlin
