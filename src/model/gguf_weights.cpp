#include "model/gguf_weights.h"

#include "core/error.h"
#include "formats/gguf.h"
#include "quant/ggml_dequant.h"

namespace marlin {
namespace {

const GgufTensorInfo& require_tensor(const GgufFile& file, const std::string& name) {
  const GgufTensorInfo* info = file.find_tensor(name);
  MARLIN_CHECK(info != nullptr, "model: tensor '{}' is missing", name);
  return *info;
}

}  // namespace

bool gguf_has_tensor(const GgufFile& file, const std::string& name) { return file.find_tensor(name) != nullptr; }

cpu::QuantMatrix gguf_matrix(const GgufFile& file, const std::string& name, int64_t rows, int64_t cols) {
  const auto& t = require_tensor(file, name);
  MARLIN_CHECK(t.shape.size() == 2 && int64_t(t.shape[0]) == cols && int64_t(t.shape[1]) == rows,
               "model: tensor '{}' should have shape [{}, {}]", name, cols, rows);
  MARLIN_CHECK(ggml_type_info(t.type).supported, "model: tensor '{}' has unsupported type {}", name,
               ggml_type_info(t.type).name);
  auto data = file.tensor_data(t);
  return cpu::QuantMatrix{t.type, rows, cols, data.data(), data.size() / uint64_t(rows)};
}

std::vector<float> gguf_vector(const GgufFile& file, const std::string& name, int64_t n) {
  const auto& t = require_tensor(file, name);
  MARLIN_CHECK(int64_t(t.elements) == n, "model: tensor '{}' should have {} elements, has {}", name, n,
               t.elements);
  std::vector<float> out(static_cast<size_t>(n));
  dequantize_row(t.type, file.tensor_data(t).data(), out.data(), n);
  return out;
}

}  // namespace marlin
