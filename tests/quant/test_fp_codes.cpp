// E2M1 / E4M3 / E8M0 codecs against torch and ml_dtypes (tools/gen_format_fixtures.py).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "format_fixtures.h"
#include "quant/fp_codes.h"

namespace marlin {
namespace {

using test::read_format_fixture;
using test::read_format_floats;
using test::same_float;

template <typename Decode>
void check_decode(const char* codec, Decode decode) {
  const std::vector<float> expected = read_format_floats(std::string(codec) + ".decode.f32");
  ASSERT_FALSE(expected.empty());
  for (size_t code = 0; code < expected.size(); ++code)
    EXPECT_TRUE(same_float(decode(uint8_t(code)), expected[code]))
        << codec << " code " << code << ": " << decode(uint8_t(code)) << " vs " << expected[code];
}

template <typename Encode>
void check_encode(const char* codec, Encode encode) {
  const std::vector<float> inputs = read_format_floats(std::string(codec) + ".encode.f32");
  const std::vector<uint8_t> expected = read_format_fixture(std::string(codec) + ".encode.u8");
  ASSERT_EQ(inputs.size(), expected.size());
  ASSERT_GT(inputs.size(), 500u);
  int mismatches = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (encode(inputs[i]) == expected[i]) continue;
    if (++mismatches <= 10)
      ADD_FAILURE() << codec << " encode(" << inputs[i] << ") = " << int(encode(inputs[i])) << ", reference "
                    << int(expected[i]);
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(FpCodes, E4M3MatchesTorch) {
  check_decode("e4m3", e4m3_to_float);
  check_encode("e4m3", float_to_e4m3);
}

TEST(FpCodes, E2M1MatchesMlDtypes) {
  check_decode("e2m1", e2m1_to_float);
  check_encode("e2m1", float_to_e2m1);
}

TEST(FpCodes, E8M0MatchesTorch) {
  check_decode("e8m0", e8m0_to_float);
  check_encode("e8m0", float_to_e8m0);
}

TEST(FpCodes, EdgeCases) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(e4m3_to_float(0x7e), kE4M3Max);
  EXPECT_EQ(float_to_e4m3(1e30f), 0x7e);
  EXPECT_EQ(float_to_e4m3(-inf), 0xfe);
  EXPECT_EQ(float_to_e4m3(std::nanf("")), 0x7f);
  EXPECT_EQ(float_to_e4m3(0.0009765625f), 0x00);  // 2^-10: halfway to the least subnormal, ties to 0
  EXPECT_EQ(float_to_e4m3(0.0146484375f), 0x08);  // 0.9375·2^-6 rounds up to the least normal
  EXPECT_EQ(float_to_e2m1(0.25f), 0x0);
  EXPECT_EQ(float_to_e2m1(-5.0f), 0xe);
  EXPECT_EQ(float_to_e2m1(1e9f), 0x7);
  EXPECT_EQ(float_to_e8m0(3e38f), 254);  // saturates where torch gives NaN
  EXPECT_EQ(float_to_e8m0(inf), 254);
  EXPECT_EQ(float_to_e8m0(-4.0f), 129);
  EXPECT_EQ(float_to_e8m0(1.4f * std::ldexp(1.0f, -127)), 0);  // nearest (torch rounds this one up)
  EXPECT_EQ(e8m0_to_float(0), std::ldexp(1.0f, -127));
  EXPECT_TRUE(std::isnan(e8m0_to_float(255)));
  // Every code decodes and re-encodes to itself (NaN codes aside).
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) != 0x7f) EXPECT_EQ(float_to_e4m3(e4m3_to_float(uint8_t(c))), c);
    if (c < 255) EXPECT_EQ(float_to_e8m0(e8m0_to_float(uint8_t(c))), c);
    if (c < 16) EXPECT_EQ(float_to_e2m1(e2m1_to_float(uint8_t(c))), c);
  }
}

}  // namespace
}  // namespace marlin
