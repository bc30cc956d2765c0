// Text renderings used in error messages and `marlin inspect`.
#include <gtest/gtest.h>

#include "formats/gguf_text.h"

namespace marlin {
namespace {

TEST(GgufText, QuoteEscapesControlBytesAndCutsAtUtf8Boundaries) {
  EXPECT_EQ(gguf_quote("plain"), "'plain'");
  EXPECT_EQ(gguf_quote(std::string_view("a\nb\t\x01\x7f\\", 7)), "'a\\nb\\t\\x01\\x7f\\\\'");
  EXPECT_EQ(gguf_quote("abcdef", 3), "'abc'...");
  // "é" is two bytes; a cut inside it moves back to before it.
  EXPECT_EQ(gguf_quote("ab\xc3\xa9", 3), "'ab'...");
  EXPECT_EQ(gguf_quote("ab\xc3\xa9", 4), "'ab\xc3\xa9'");
}

TEST(GgufText, ShapeText) {
  const std::vector<uint64_t> shape{576, 49152};
  EXPECT_EQ(gguf_shape_text(shape), "[576, 49152]");
}

TEST(GgufText, ValueSummaries) {
  EXPECT_EQ(gguf_value_summary({GgufType::FLOAT32, double(1e-5f)}), "1e-05");
  EXPECT_EQ(gguf_value_summary({GgufType::FLOAT64, 0.1}), "0.1");
  EXPECT_EQ(gguf_value_summary({GgufType::INT8, int64_t(-7)}), "-7");
  EXPECT_EQ(gguf_value_summary({GgufType::BOOL, true}), "true");
  EXPECT_EQ(gguf_value_summary({GgufType::STRING, std::string(100, 'x')}, 4, 10), "'xxxxxxxxxx'... (100 bytes)");
  GgufArray array{GgufType::UINT32, {}};
  for (uint64_t i = 0; i < 6; ++i) array.items.push_back({GgufType::UINT32, i});
  EXPECT_EQ(gguf_value_summary({GgufType::ARRAY, array}, 3), "[UINT32 x 6: 0, 1, 2, ...]");
  EXPECT_EQ(gguf_value_summary({GgufType::ARRAY, GgufArray{GgufType::STRING, {}}}), "[STRING x 0]");
}

}  // namespace
}  // namespace marlin
