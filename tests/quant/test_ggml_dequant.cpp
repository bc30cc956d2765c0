#include <gtest/gtest.h>

#include <cstring>

#include "core/error.h"
#include "fixture_io.h"
#include "quant/ggml_dequant.h"

namespace marlin {
namespace {

class DequantFixture : public ::testing::TestWithParam<GgmlType> {};

// gguf's numpy dequantization evaluates the same fp32 formula in the same order, so every value
// must match bit for bit (fixtures hold no NaN, so bitwise equality is value equality, and it
// tells -0.0 from 0.0).
TEST_P(DequantFixture, MatchesGgufBitExactly) {
  const GgmlType type = GetParam();
  const auto& info = ggml_type_info(type);
  const auto blocks = test::read_quant_fixture(std::string(info.name) + ".blocks");
  const auto expected = test::as_floats(test::read_quant_fixture(std::string(info.name) + ".expected"));
  ASSERT_EQ(blocks.size() / info.block_bytes * info.block_elements, expected.size());

  std::vector<float> got(expected.size());
  dequantize_row(type, blocks.data(), got.data(), int64_t(got.size()));
  int mismatches = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    uint32_t a, b;
    std::memcpy(&a, &got[i], 4);
    std::memcpy(&b, &expected[i], 4);
    if (a != b && ++mismatches <= 5)
      ADD_FAILURE() << info.name << " element " << i << ": got " << got[i] << " expected " << expected[i];
  }
  EXPECT_EQ(mismatches, 0);
}

INSTANTIATE_TEST_SUITE_P(AllTypes, DequantFixture,
                         ::testing::Values(GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q4_0,
                                           GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,
                                           GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K),
                         [](const auto& info) { return std::string(ggml_type_info(info.param).name); });

TEST(Dequant, RejectsPartialBlocks) {
  std::vector<uint8_t> src(1024);
  std::vector<float> dst(1024);
  EXPECT_THROW(dequantize_row(GgmlType::Q4_1, src.data(), dst.data(), 33), Error);
  EXPECT_THROW(dequantize_row(GgmlType::Q6_K, src.data(), dst.data(), 128), Error);
  EXPECT_THROW(dequantize_row(GgmlType::Q8_0, src.data(), dst.data(), -32), Error);
  EXPECT_NO_THROW(dequantize_row(GgmlType::Q8_0, src.data(), dst.data(), 0));
}

TEST(Dequant, RejectsUnsupportedTypes) {
  std::vector<uint8_t> src(1024);
  std::vector<float> dst(1024);
  EXPECT_THROW(dequantize_row(GgmlType::Q2_K, src.data(), dst.data(), 256), Error);
  EXPECT_THROW(dequantize_row(GgmlType::Q3_K, src.data(), dst.data(), 256), Error);
}

}  // namespace
}  // namespace marlin
