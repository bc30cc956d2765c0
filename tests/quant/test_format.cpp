// The format table, format names and the shape rules of quant/format.h.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "quant/format.h"

namespace marlin {
namespace {

TEST(FormatTable, OneRowPerKind) {
  const FormatKind kinds[] = {FormatKind::kF32,  FormatKind::kF16,  FormatKind::kBF16,    FormatKind::kGgml,
                              FormatKind::kInt8, FormatKind::kInt4, FormatKind::kInt3,    FormatKind::kInt2,
                              FormatKind::kFp8E4M3, FormatKind::kFp4, FormatKind::kMxFp4, FormatKind::kNvFp4};
  for (FormatKind kind : kinds) EXPECT_EQ(format_info(kind).kind, kind);
  EXPECT_EQ(format_info(FormatKind::kInt3).code_bits, 3);
  EXPECT_EQ(format_info(FormatKind::kMxFp4).fixed_group, 32);
  EXPECT_EQ(format_info(FormatKind::kNvFp4).fixed_group, 16);
  EXPECT_EQ(format_info(FormatKind::kNvFp4).scale, ScaleType::kE4M3);
  EXPECT_TRUE(format_info(FormatKind::kInt4).sparse_24);
  EXPECT_FALSE(format_info(FormatKind::kFp8E4M3).zero_points);
}

TEST(FormatName, RoundTripsCanonicalNames) {
  for (const char* name : {"f32", "f16", "bf16", "q4_0", "q4_1", "q8_0", "q4_k", "q6_k", "int8-pc", "int8-g128",
                           "int4-g32", "int4-g64-asym", "int4-g128-asym-act", "int4-g128-24", "int4-pc-asym-act-24",
                           "int3-g128", "int2-g64-asym", "fp8-pc", "fp8-g128-act", "fp4-g32", "mxfp4", "mxfp4-act",
                           "nvfp4"}) {
    SCOPED_TRACE(name);
    const TensorFormat f = TensorFormat::parse(name);
    EXPECT_EQ(f.name(), name);
    EXPECT_NO_THROW(f.validate());
  }
}

TEST(FormatName, ParsesFields) {
  const TensorFormat f = TensorFormat::parse("int4-g128-asym-act");
  EXPECT_EQ(f.kind, FormatKind::kInt4);
  EXPECT_EQ(f.group_size, 128);
  EXPECT_TRUE(f.asymmetric);
  EXPECT_TRUE(f.act_order);
  EXPECT_FALSE(f.sparse_24);
  EXPECT_EQ(TensorFormat::parse("mxfp4").group_size, 32);
  EXPECT_EQ(TensorFormat::parse("nvfp4").group_size, 16);
  EXPECT_EQ(TensorFormat::parse("Q4_K").ggml, GgmlType::Q4_K);
  EXPECT_EQ(TensorFormat::parse("q5_1").kind, FormatKind::kGgml);
  // Options in any order, a redundant fixed group: same format, canonical name.
  EXPECT_EQ(TensorFormat::parse("int4-act-g64").name(), "int4-g64-act");
  EXPECT_EQ(TensorFormat::parse("mxfp4-g32"), TensorFormat::parse("mxfp4"));
}

void expect_parse_error(const char* name, const std::string& fragment) {
  SCOPED_TRACE(name);
  try {
    TensorFormat::parse(name);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(FormatName, RejectsBadNames) {
  expect_parse_error("", "empty");
  expect_parse_error("int5-g128", "unknown format");
  expect_parse_error("int4-g100", "group size '100'");
  expect_parse_error("int4-g", "unknown option 'g'");
  expect_parse_error("int4-gx2", "bad group size");
  expect_parse_error("int4-g99999999999", "bad group size");
  expect_parse_error("mxfp4-g64", "fixed group of 32");
  expect_parse_error("nvfp4-pc", "fixed group of 16");
  expect_parse_error("fp8-g128-asym", "no asymmetric");
  expect_parse_error("int8-g128-24", "no 2:4");
  expect_parse_error("int4", "needs a group size");
  expect_parse_error("int4-g128-g64", "given twice");
  expect_parse_error("int4-g128-asym-asym", "given twice");
  expect_parse_error("int4-g128-foo", "unknown option 'foo'");
  expect_parse_error("f16-g128", "takes no options");
  expect_parse_error("q4_0-act", "takes no options");
  expect_parse_error("int4-g128-", "unknown option ''");
}

TEST(FormatValidate, RejectsInconsistentFields) {
  TensorFormat f;
  f.kind = FormatKind::kInt4;
  f.group_size = 100;
  EXPECT_THROW(f.validate(), Error);
  f.group_size = 64;
  EXPECT_NO_THROW(f.validate());
  f.kind = FormatKind::kMxFp4;
  EXPECT_THROW(f.validate(), Error);
  f = TensorFormat{};
  f.kind = FormatKind::kGgml;
  f.ggml = GgmlType::F16;
  EXPECT_THROW(f.validate(), Error);
  f = TensorFormat{};
  f.act_order = true;
  EXPECT_THROW(f.validate(), Error);
}

TEST(FormatBits, CountsCodesScalesAndZeros) {
  EXPECT_DOUBLE_EQ(TensorFormat::parse("f32").bits_per_weight(), 32.0);
  EXPECT_DOUBLE_EQ(TensorFormat::parse("bf16").bits_per_weight(), 16.0);
  EXPECT_DOUBLE_EQ(TensorFormat::parse("q4_0").bits_per_weight(), 4.5);
  EXPECT_DOUBLE_EQ(TensorFormat::parse("q4_k").bits_per_weight(), 4.5);
  EXPECT_DOUBLE_EQ(TensorFormat::parse("int4-g128").bits_per_weight(), 4.125);
  EXPECT_DOUBLE_EQ(TensorFormat::parse("int4-g128-asym").bits_per_weight(), 4.1875);
  EXPECT_DOUBLE_EQ(TensorFormat::parse("int4-pc").bits_per_weight(), 4.0);
  EXPECT_DOUBLE_EQ(TensorFormat::parse("int3-g64").bits_per_weight(), 3.25);
  EXPECT_DOUBLE_EQ(TensorFormat::parse("int4-g128-24").bits_per_weight(), 3.125);
  EXPECT_DOUBLE_EQ(TensorFormat::parse("mxfp4").bits_per_weight(), 4.25);
  EXPECT_DOUBLE_EQ(TensorFormat::parse("nvfp4").bits_per_weight(), 4.5);
  EXPECT_DOUBLE_EQ(TensorFormat::parse("fp8-g32").bits_per_weight(), 8.5);
}

TEST(FormatShape, GroupsAndRowBytes) {
  const TensorFormat g128 = TensorFormat::parse("int4-g128");
  EXPECT_EQ(g128.groups(576), 5);  // 4 full groups and one of 64
  EXPECT_EQ(g128.groups(128), 1);
  EXPECT_EQ(TensorFormat::parse("int4-pc").groups(4096), 1);
  EXPECT_EQ(TensorFormat::parse("f16").groups(4096), 0);
  EXPECT_EQ(g128.min_code_row_bytes(576), 288u);
  EXPECT_EQ(TensorFormat::parse("int3-g64").min_code_row_bytes(64), 24u);
  EXPECT_EQ(TensorFormat::parse("int3-g64").min_code_row_bytes(3), 2u);
  EXPECT_EQ(TensorFormat::parse("int2-g32").min_code_row_bytes(5), 2u);
  EXPECT_EQ(TensorFormat::parse("int4-g64-24").min_code_row_bytes(64), 16u);
  EXPECT_EQ(TensorFormat::parse("q4_1").min_code_row_bytes(64), 40u);
  EXPECT_EQ(TensorFormat::parse("bf16").min_code_row_bytes(3), 6u);
  EXPECT_EQ(sparse_meta_row_bytes(64), 8u);
  EXPECT_EQ(sparse_meta_row_bytes(12), 2u);

  EXPECT_THROW(TensorFormat::parse("q4_0").check_shape(1, 48), Error);
  EXPECT_THROW(TensorFormat::parse("int4-g32-24").check_shape(1, 42), Error);
  EXPECT_THROW(g128.check_shape(0, 128), Error);
  EXPECT_THROW(g128.check_shape(1, -5), Error);
  EXPECT_NO_THROW(g128.check_shape(1, 100));
}

TEST(QuantTensorView, ValidateNamesWhatIsMissing) {
  static const uint8_t bytes[4096] = {};
  static const int32_t perm[64] = {};
  QuantTensor t;
  t.format = TensorFormat::parse("int4-g32-asym-act-24");
  t.rows = 2;
  t.cols = 64;
  EXPECT_THROW(t.validate(), Error);  // no codes
  t.codes = bytes;
  t.code_row_bytes = 15;
  EXPECT_THROW(t.validate(), Error);  // stride too small for 32 kept 4-bit codes
  t.code_row_bytes = 16;
  t.scales = bytes;
  t.zeros = bytes;
  t.perm = perm;
  EXPECT_THROW(t.validate(), Error);  // no 2:4 metadata
  t.sparse_meta = bytes;
  EXPECT_NO_THROW(t.validate());
  EXPECT_EQ(t.groups(), 2);
  t.zeros = nullptr;
  EXPECT_THROW(t.validate(), Error);
}

}  // namespace
}  // namespace marlin
