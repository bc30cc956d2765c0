// Reference dequantization of every format against tools/gen_format_fixtures.py (numpy packing,
// torch / ml_dtypes decoding, format.h's formulas) and the gguf package's GGML fixtures.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <vector>

#include "core/error.h"
#include "format_fixtures.h"
#include "quant/dequant.h"
#include "quant/ggml_types.h"

namespace marlin {
namespace {

using test::read_format_fixture;
using test::read_quant_fixture;
using test::same_float;

std::vector<uint8_t> optional_fixture(const std::string& name) {
  const auto path = std::filesystem::path(MARLIN_FIXTURES_DIR) / "quant/formats" / name;
  return std::filesystem::exists(path) ? read_format_fixture(name) : std::vector<uint8_t>{};
}

TEST(Dequantize, EveryFormatMatchesTheIndependentReference) {
  std::ifstream in(std::string(MARLIN_FIXTURES_DIR) + "/quant/formats/index.json");
  ASSERT_TRUE(in.good()) << "run tools/gen_format_fixtures.py";
  const auto index = nlohmann::json::parse(in);
  ASSERT_GE(index.size(), 15u);
  for (const auto& entry : index) {
    const std::string name = entry["name"];
    SCOPED_TRACE(name);
    const std::vector<uint8_t> codes = read_format_fixture(name + ".codes");
    const std::vector<uint8_t> scales = read_format_fixture(name + ".scales");
    const std::vector<uint8_t> zeros = optional_fixture(name + ".zeros");
    const std::vector<uint8_t> meta = optional_fixture(name + ".meta");
    const std::vector<float> expected = test::as_floats(read_format_fixture(name + ".expected"));

    QuantTensor t;
    t.format = TensorFormat::parse(name);
    t.rows = entry["rows"];
    t.cols = entry["cols"];
    t.code_row_bytes = t.format.min_code_row_bytes(t.cols);
    ASSERT_EQ(codes.size(), t.code_row_bytes * t.rows);
    ASSERT_EQ(expected.size(), size_t(t.rows * t.cols));
    ASSERT_EQ(scales.size(), size_t(t.rows * t.groups() * scale_bytes(format_info(t.format.kind).scale)));
    t.codes = codes.data();
    t.scales = scales.data();
    t.zeros = zeros.empty() ? nullptr : zeros.data();
    t.sparse_meta = meta.empty() ? nullptr : meta.data();
    t.tensor_scale = entry["tensor_scale"];
    // Act-order does not change what comes out: values stay in stored order.
    std::vector<int32_t> perm(static_cast<size_t>(t.cols));
    std::iota(perm.rbegin(), perm.rend(), 0);
    if (t.format.act_order) t.perm = perm.data();

    std::vector<float> row(static_cast<size_t>(t.cols));
    int mismatches = 0;
    for (int64_t r = 0; r < t.rows; ++r) {
      dequantize_row(t, r, row.data());
      for (int64_t k = 0; k < t.cols; ++k) {
        const float want = expected[size_t(r * t.cols + k)];
        if (!same_float(row[size_t(k)], want) && ++mismatches <= 5)
          ADD_FAILURE() << "row " << r << " col " << k << ": " << row[size_t(k)] << " vs " << want;
      }
    }
    EXPECT_EQ(mismatches, 0);
  }
}

TEST(Dequantize, GgmlAndPlainKindsDelegate) {
  for (const char* type : {"Q4_0", "Q4_1", "Q8_0", "Q4_K", "Q6_K", "F16", "BF16", "F32"}) {
    SCOPED_TRACE(type);
    const std::vector<uint8_t> blocks = read_quant_fixture(std::string(type) + ".blocks");
    const std::vector<float> expected = test::as_floats(read_quant_fixture(std::string(type) + ".expected"));
    QuantTensor t;
    t.format = TensorFormat::parse(type);
    t.rows = 2;
    t.cols = int64_t(expected.size() / 2);
    t.codes = blocks.data();
    t.code_row_bytes = blocks.size() / 2;
    std::vector<float> row(static_cast<size_t>(t.cols));
    for (int64_t r = 0; r < 2; ++r) {
      dequantize_row(t, r, row.data());
      for (int64_t k = 0; k < t.cols; ++k)
        ASSERT_TRUE(same_float(row[size_t(k)], expected[size_t(r * t.cols + k)])) << "row " << r << " col " << k;
    }
  }
}

TEST(Dequantize, RejectsBadTensorsAndRows) {
  std::vector<uint8_t> bytes(256, 0x11);
  QuantTensor t;
  t.format = TensorFormat::parse("int4-g32-24");
  t.rows = 2;
  t.cols = 32;
  t.codes = bytes.data();
  t.code_row_bytes = 8;
  t.scales = bytes.data();
  std::vector<float> out(32);
  EXPECT_THROW(dequantize_row(t, 0, out.data()), Error);  // no metadata
  t.sparse_meta = bytes.data();                            // pattern 0x1: first 1, second 0
  EXPECT_THROW(dequantize_row(t, 0, out.data()), Error);
  std::vector<uint8_t> meta(8, 0xd7);  // nibbles 0x7 (3, 1: bad) and 0xd (1, 3)
  t.sparse_meta = meta.data();
  EXPECT_THROW(dequantize_row(t, 0, out.data()), Error);
  std::fill(meta.begin(), meta.end(), 0xdd);
  EXPECT_NO_THROW(dequantize_row(t, 1, out.data()));
  EXPECT_EQ(out[0], 0.0f);
  EXPECT_EQ(out[2], 0.0f);
  EXPECT_NE(out[1], 0.0f);
  EXPECT_THROW(dequantize_row(t, 2, out.data()), Error);
  EXPECT_THROW(dequantize_row(t, -1, out.data()), Error);
}

TEST(Dequantize, CheckPermutation) {
  const int32_t good[] = {2, 0, 1};
  const int32_t repeated[] = {2, 0, 2};
  const int32_t outside[] = {0, 1, 3};
  EXPECT_NO_THROW(check_permutation(good, 3));
  EXPECT_THROW(check_permutation(repeated, 3), Error);
  EXPECT_THROW(check_permutation(outside, 3), Error);
  EXPECT_THROW(check_permutation(nullptr, 3), Error);
}

}  // namespace
}  // namespace marlin
