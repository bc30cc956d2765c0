#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "fixture_io.h"
#include "quant/ggml_dequant.h"
#include "quant/ggml_quantize.h"

namespace marlin {
namespace {

class QuantizeFixture : public ::testing::TestWithParam<GgmlType> {};

// gguf's quantizers are ggml's reference ones in numpy; ours must produce the same bytes.
TEST_P(QuantizeFixture, MatchesGgufBytes) {
  const GgmlType type = GetParam();
  const auto& info = ggml_type_info(type);
  const auto x = test::as_floats(test::read_quant_fixture("quantize_input.f32"));
  const auto expected = test::read_quant_fixture(std::string(info.name) + ".quantized");
  ASSERT_EQ(expected.size(), *ggml_row_bytes(type, x.size()));
  std::vector<uint8_t> got(expected.size());
  quantize_row(type, x.data(), got.data(), int64_t(x.size()));
  for (size_t b = 0; b < got.size() / info.block_bytes; ++b) {
    const size_t off = b * info.block_bytes;
    ASSERT_TRUE(std::equal(got.begin() + off, got.begin() + off + info.block_bytes, expected.begin() + off))
        << info.name << " block " << b << " differs";
  }
}

INSTANTIATE_TEST_SUITE_P(WeightTypes, QuantizeFixture,
                         ::testing::Values(GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1,
                                           GgmlType::Q8_0),
                         [](const auto& info) { return std::string(ggml_type_info(info.param).name); });

TEST(Quantize, RejectsBadInput) {
  std::vector<float> x(64);
  std::vector<uint8_t> out(256);
  EXPECT_THROW(quantize_row(GgmlType::Q4_1, x.data(), out.data(), 48), Error);
  EXPECT_THROW(quantize_row(GgmlType::Q4_K, x.data(), out.data(), 256), Error);
}

std::vector<float> test_activations(int64_t n) {
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[size_t(i)] = std::sin(0.37f * float(i)) * (1.0f + float(i % 97));
  for (int j = 0; j < 32; ++j) x[size_t(32 + j)] = 0.0f;  // an all-zero block
  return x;
}

// Round to nearest: every value is within half a step (plus the rounding of x / d, a relative
// 2^-24 of the ≤127 steps) of its quantized value, and the extreme maps to ±127.
TEST(Quantize, Q8ActivationErrorIsHalfAStep) {
  const auto x = test_activations(256);
  std::vector<BlockQ8Act> blocks(8);
  quantize_row_q8_act(x.data(), blocks.data(), 256);
  for (int b = 0; b < 8; ++b) {
    const float d = blocks[size_t(b)].d;
    int peak = 0;
    for (int j = 0; j < 32; ++j) {
      const int q = blocks[size_t(b)].q[j];
      peak = std::max(peak, std::abs(q));
      EXPECT_LE(std::fabs(x[size_t(32 * b + j)] - d * float(q)), d * (0.5f + 128.0f * 0x1p-23f)) << b << "," << j;
    }
    EXPECT_EQ(peak, b == 1 ? 0 : 127) << "block " << b;
  }
}

TEST(Quantize, Q8KMatchesDefinition) {
  const auto x = test_activations(512);
  std::vector<BlockQ8K> blocks(2);
  quantize_row_q8_k(x.data(), blocks.data(), 512);
  for (int b = 0; b < 2; ++b) {
    const BlockQ8K& blk = blocks[size_t(b)];
    for (int g = 0; g < 16; ++g) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += blk.q[16 * g + j];
      EXPECT_EQ(sum, blk.bsums[g]);
    }
    for (int j = 0; j < 256; ++j)
      EXPECT_LE(std::fabs(x[size_t(256 * b + j)] - blk.d * float(blk.q[j])), std::fabs(blk.d) * 0.5001f);
  }
}

}  // namespace
}  // namespace marlin
