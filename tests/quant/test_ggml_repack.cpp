// Q4_0 and Q8_0 repacked into int4-g32 / int8-g32 dequantize to exactly the same values.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "core/error.h"
#include "quant/dequant.h"
#include "quant/ggml_dequant.h"
#include "quant/ggml_quantize.h"
#include "quant/ggml_repack.h"

namespace marlin {
namespace {

void expect_lossless(GgmlType type, int64_t rows, int64_t cols) {
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 0.05f);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (auto& v : w) v = dist(rng);
  const uint64_t row_bytes = *ggml_row_bytes(type, uint64_t(cols));
  std::vector<uint8_t> blocks(static_cast<size_t>(row_bytes * uint64_t(rows)));
  for (int64_t r = 0; r < rows; ++r) quantize_row(type, &w[size_t(r * cols)], &blocks[size_t(uint64_t(r) * row_bytes)], cols);

  QuantTensor ggml;
  ggml.format.kind = FormatKind::kGgml;
  ggml.format.ggml = type;
  ggml.rows = rows;
  ggml.cols = cols;
  ggml.codes = blocks.data();
  ggml.code_row_bytes = row_bytes;
  const QuantBuffers planar = repack_ggml(ggml);
  EXPECT_EQ(planar.format, *lossless_planar_format(type));
  std::vector<float> expected(static_cast<size_t>(cols)), got(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    dequantize_row(ggml, r, expected.data());
    dequantize_row(planar.view(), r, got.data());
    ASSERT_EQ(expected, got) << "row " << r;
  }
}

TEST(GgmlRepack, Q4_0IsExactlyInt4G32) { expect_lossless(GgmlType::Q4_0, 5, 96); }
TEST(GgmlRepack, Q8_0IsExactlyInt8G32) { expect_lossless(GgmlType::Q8_0, 3, 64); }

TEST(GgmlRepack, OtherTypesHaveNoLosslessForm) {
  EXPECT_FALSE(lossless_planar_format(GgmlType::Q4_1).has_value());
  QuantTensor t;
  t.format.kind = FormatKind::kGgml;
  t.format.ggml = GgmlType::Q4_1;
  EXPECT_THROW(repack_ggml(t), Error);
}

}  // namespace
}  // namespace marlin
