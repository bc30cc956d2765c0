// Valid GGUF files: values of every type, nested arrays, tensor placement, v2 vs v3, the typed
// getters, and a file written by the python `gguf` package checked against that package's reader.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/gguf_text.h"
#include "gguf_test_writer.h"

namespace marlin {
namespace {

using test::array_value;
using test::open_bytes;
using test::scalar;
using test::small_valid_spec;

TEST(GgufReader, SmallValidFile) {
  const auto spec = small_valid_spec();
  const auto bytes = spec.serialize();
  const auto file = open_bytes(bytes);
  EXPECT_EQ(file->version(), 3u);
  EXPECT_EQ(file->alignment(), 32u);
  ASSERT_EQ(file->metadata().size(), spec.metadata.size());
  for (size_t i = 0; i < spec.metadata.size(); ++i) EXPECT_EQ(file->metadata()[i].first, spec.metadata[i].first);

  EXPECT_EQ(file->find("test.u8")->type, GgufType::UINT8);
  EXPECT_EQ(std::get<uint64_t>(file->find("test.u8")->value), 200u);
  EXPECT_EQ(std::get<int64_t>(file->find("test.i8")->value), -100);
  EXPECT_EQ(std::get<uint64_t>(file->find("test.u16")->value), 60000u);
  EXPECT_EQ(std::get<int64_t>(file->find("test.i16")->value), -30000);
  EXPECT_EQ(std::get<uint64_t>(file->find("test.u32")->value), 4000000000u);
  EXPECT_EQ(std::get<int64_t>(file->find("test.i32")->value), -2000000000);
  EXPECT_EQ(std::get<uint64_t>(file->find("test.u64")->value), 18000000000000000000u);
  EXPECT_EQ(std::get<int64_t>(file->find("test.i64")->value), -9000000000000000000);
  EXPECT_EQ(file->find("test.f32")->type, GgufType::FLOAT32);
  EXPECT_EQ(std::get<double>(file->find("test.f32")->value), 0.25);
  EXPECT_EQ(std::get<double>(file->find("test.f64")->value), -1.5e300);
  EXPECT_EQ(file->get_bool("test.bool"), true);
  EXPECT_EQ(file->get_string("test.string"), "line one\nline two");
  EXPECT_EQ(file->get_string_array("test.strings"), (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(file->get_int_array("test.u16s"), (std::vector<int64_t>{7, 65535}));
  EXPECT_EQ(file->get_float_array("test.f32s"), (std::vector<double>{1.5, -2.0}));

  const auto& nested = std::get<GgufArray>(file->find("test.nested")->value);
  EXPECT_EQ(nested.element_type, GgufType::ARRAY);
  ASSERT_EQ(nested.items.size(), 2u);
  const auto& ints = std::get<GgufArray>(nested.items[0].value);
  EXPECT_EQ(ints.element_type, GgufType::INT32);
  ASSERT_EQ(ints.items.size(), 2u);
  EXPECT_EQ(std::get<int64_t>(ints.items[1].value), 2);
  const auto& strings = std::get<GgufArray>(nested.items[1].value);
  EXPECT_EQ(strings.element_type, GgufType::STRING);
  EXPECT_EQ(std::get<std::string>(strings.items.at(0).value), "x");
  EXPECT_EQ(gguf_value_summary(*file->find("test.nested")), "[ARRAY x 2: [INT32 x 2: 1, 2], [STRING x 1: 'x']]");

  ASSERT_EQ(file->tensors().size(), 4u);
  const uint64_t data_offset = file->data_offset();
  EXPECT_EQ(data_offset % 32, 0u);
  const auto& last = spec.tensors.back();
  EXPECT_EQ(data_offset, bytes.size() - (last.offset + test::GgufSpec::tensor_bytes(last)));
  for (size_t i = 0; i < spec.tensors.size(); ++i) {
    const auto& want = spec.tensors[i];
    const auto& got = file->tensors()[i];
    SCOPED_TRACE(want.name);
    EXPECT_EQ(got.name, want.name);
    EXPECT_EQ(got.shape, want.shape);
    EXPECT_EQ(uint32_t(got.type), want.type);
    EXPECT_EQ(got.offset, data_offset + want.offset);
    EXPECT_EQ(got.bytes, test::GgufSpec::tensor_bytes(want));
    const auto data = file->tensor_data(got);
    ASSERT_EQ(data.size(), got.bytes);
    // The writer fills the data section with byte i = i * 131 + 7.
    EXPECT_EQ(data[0], uint8_t(want.offset * 131 + 7));
  }
  EXPECT_EQ(file->find_tensor("t.q4_k")->elements, 256u);
  EXPECT_EQ(file->find_tensor("t.q4_k")->bytes, 144u);
  EXPECT_EQ(file->find_tensor("t.f16")->elements, 16u);
  EXPECT_EQ(file->find_tensor("missing"), nullptr);
}

TEST(GgufReader, Version2ReadsLikeVersion3) {
  auto spec = small_valid_spec();
  spec.version = 2;
  const auto v2 = open_bytes(spec.serialize());
  const auto v3 = open_bytes(small_valid_spec().serialize());
  EXPECT_EQ(v2->version(), 2u);
  EXPECT_EQ(v2->metadata().size(), v3->metadata().size());
  ASSERT_EQ(v2->tensors().size(), v3->tensors().size());
  for (size_t i = 0; i < v2->tensors().size(); ++i) EXPECT_EQ(v2->tensors()[i].offset, v3->tensors()[i].offset);
}

TEST(GgufReader, EmptyFileWithoutTensorsOrMetadata) {
  test::GgufSpec spec;
  const auto file = open_bytes(spec.serialize());
  EXPECT_TRUE(file->metadata().empty());
  EXPECT_TRUE(file->tensors().empty());
  EXPECT_EQ(file->alignment(), 32u);  // the default
}

TEST(GgufReader, CustomAlignmentMovesTheDataSection) {
  auto spec = small_valid_spec();
  spec.metadata[1].second = scalar(GgufType::UINT32, uint32_t(256));
  spec.alignment = 256;
  spec.layout();
  const auto file = open_bytes(spec.serialize());
  EXPECT_EQ(file->alignment(), 256u);
  EXPECT_EQ(file->data_offset() % 256, 0u);
  for (const auto& t : file->tensors()) EXPECT_EQ(t.offset % 256, 0u) << t.name;
}

TEST(GgufReader, NestingUpToTheDepthLimitParses) {
  // kGgufMaxArrayDepth arrays, each holding one array, innermost holding one u8.
  test::Bytes value = test::Bytes().type(GgufType::ARRAY);
  for (int depth = 1; depth < kGgufMaxArrayDepth; ++depth) value.type(GgufType::ARRAY).u64(1);
  value.type(GgufType::UINT8).u64(1).u8(42);
  test::GgufSpec spec;
  spec.add("deep", value);
  const auto file = open_bytes(spec.serialize());
  const GgufValue* v = file->find("deep");
  for (int depth = 1; depth < kGgufMaxArrayDepth; ++depth) v = &std::get<GgufArray>(v->value).items.at(0);
  EXPECT_EQ(std::get<uint64_t>(std::get<GgufArray>(v->value).items.at(0).value), 42u);
}

// --- typed getters -------------------------------------------------------------------------

class GgufGetters : public ::testing::Test {
 protected:
  void SetUp() override {
    test::GgufSpec spec;
    spec.add("neg", scalar(GgufType::INT32, int32_t(-3)));
    spec.add("pos_i8", scalar(GgufType::INT8, int8_t(5)));
    spec.add("big_u64", scalar(GgufType::UINT64, uint64_t(1) << 63));
    spec.add("u16", scalar(GgufType::UINT16, uint16_t(9)));
    spec.add("f64", scalar(GgufType::FLOAT64, 2.5));
    spec.add("flag", scalar(GgufType::BOOL, uint8_t(0)));
    spec.add("text", test::string_value("hi"));
    spec.add("i32s", array_value(GgufType::INT32, 2).put(int32_t(-1)).put(int32_t(4)));
    spec.add("u64s", array_value(GgufType::UINT64, 1).u64(uint64_t(1) << 63));
    spec.add("bools", array_value(GgufType::BOOL, 1).u8(1));
    spec.add("nested", array_value(GgufType::ARRAY, 1).type(GgufType::STRING).u64(0));
    file_ = open_bytes(spec.serialize());
  }
  template <typename Fn>
  void expect_error(Fn&& fn, const std::string& fragment) {
    try {
      fn();
      ADD_FAILURE() << "no error; expected one containing: " << fragment;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
      EXPECT_TRUE(std::string(e.what()).starts_with("gguf: ")) << e.what();
    }
  }
  std::unique_ptr<GgufFile> file_;
};

TEST_F(GgufGetters, AbsentKeysGiveNullopt) {
  EXPECT_FALSE(file_->get_uint("nope"));
  EXPECT_FALSE(file_->get_int("nope"));
  EXPECT_FALSE(file_->get_float("nope"));
  EXPECT_FALSE(file_->get_bool("nope"));
  EXPECT_FALSE(file_->get_string("nope"));
  EXPECT_FALSE(file_->get_string_array("nope"));
  EXPECT_FALSE(file_->get_float_array("nope"));
  EXPECT_FALSE(file_->get_int_array("nope"));
  EXPECT_EQ(file_->find("nope"), nullptr);
}

TEST_F(GgufGetters, IntegersConvertWhenTheValueFits) {
  EXPECT_EQ(file_->get_int("neg"), -3);
  EXPECT_EQ(file_->get_uint("pos_i8"), 5u);
  EXPECT_EQ(file_->get_int("u16"), 9);
  EXPECT_EQ(file_->get_uint("big_u64"), uint64_t(1) << 63);
  expect_error([&] { file_->get_uint("neg"); }, "'neg' holds -3");
  expect_error([&] { file_->get_int("big_u64"); }, "does not fit int64");
  expect_error([&] { file_->get_uint("f64"); }, "'f64' is FLOAT64, expected an integer");
  expect_error([&] { file_->get_int("flag"); }, "is BOOL");
}

TEST_F(GgufGetters, FloatsAcceptIntegers) {
  EXPECT_EQ(file_->get_float("f64"), 2.5);
  EXPECT_EQ(file_->get_float("neg"), -3.0);
  EXPECT_EQ(file_->get_float("u16"), 9.0);
  expect_error([&] { file_->get_float("text"); }, "'text' is STRING, expected a number");
}

TEST_F(GgufGetters, StringsAndBoolsAreStrict) {
  EXPECT_EQ(file_->get_string("text"), "hi");
  EXPECT_EQ(file_->get_bool("flag"), false);
  expect_error([&] { file_->get_string("u16"); }, "'u16' is UINT16, expected STRING");
  expect_error([&] { file_->get_bool("pos_i8"); }, "expected BOOL");
}

TEST_F(GgufGetters, ArraysCheckElementTypes) {
  EXPECT_EQ(file_->get_int_array("i32s"), (std::vector<int64_t>{-1, 4}));
  EXPECT_EQ(file_->get_float_array("i32s"), (std::vector<double>{-1.0, 4.0}));
  expect_error([&] { file_->get_string_array("i32s"); }, "'i32s' is ARRAY of INT32, expected ARRAY of STRING");
  expect_error([&] { file_->get_int_array("u64s"); }, "does not fit int64");
  expect_error([&] { file_->get_int_array("bools"); }, "ARRAY of BOOL");
  expect_error([&] { file_->get_float_array("nested"); }, "ARRAY of ARRAY");
  expect_error([&] { file_->get_int_array("text"); }, "'text' is STRING");
}

// --- a file from an independent writer --------------------------------------------------------

// Our value as JSON in the shape tools/make_gguf_fixtures.py records (nested arrays as lists).
nlohmann::json to_json(const GgufValue& value) {
  return std::visit(
      [](const auto& v) -> nlohmann::json {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, GgufArray>) {
          auto out = nlohmann::json::array();
          for (const auto& item : v.items) out.push_back(to_json(item));
          return out;
        } else {
          return v;
        }
      },
      value.value);
}

// ["ARRAY", "ARRAY", "INT32"] for an array of INT32 arrays (following the first item).
std::vector<std::string> type_chain(const GgufValue& value) {
  std::vector<std::string> chain{std::string(gguf_type_name(value.type))};
  const GgufValue* v = &value;
  while (v->type == GgufType::ARRAY) {
    const auto& array = std::get<GgufArray>(v->value);
    chain.emplace_back(gguf_type_name(array.element_type));
    if (array.element_type != GgufType::ARRAY || array.items.empty()) break;
    v = &array.items[0];
  }
  return chain;
}

TEST(GgufReader, MatchesThePythonPackageOnItsOwnFile) {
  const std::string dir = std::string(MARLIN_FIXTURES_DIR) + "/formats/";
  std::ifstream in(dir + "python_writer.json");
  ASSERT_TRUE(in) << "missing fixture; run tools/make_gguf_fixtures.py";
  const auto want = nlohmann::json::parse(in);
  const auto file = GgufFile::open(dir + "python_writer.gguf");

  EXPECT_EQ(file->file_size(), want["file_size"].get<uint64_t>());
  EXPECT_EQ(file->alignment(), want["alignment"].get<uint64_t>());
  EXPECT_EQ(file->data_offset(), want["data_offset"].get<uint64_t>());
  ASSERT_EQ(file->metadata().size(), want["metadata"].size());
  for (size_t i = 0; i < file->metadata().size(); ++i) {
    const auto& [key, value] = file->metadata()[i];
    const auto& expected = want["metadata"][i];
    SCOPED_TRACE(key);
    EXPECT_EQ(key, expected["key"].get<std::string>());
    EXPECT_EQ(type_chain(value), expected["types"].get<std::vector<std::string>>());
    EXPECT_EQ(to_json(value), expected["value"]);
  }
  ASSERT_EQ(file->tensors().size(), want["tensors"].size());
  for (size_t i = 0; i < file->tensors().size(); ++i) {
    const auto& t = file->tensors()[i];
    const auto& expected = want["tensors"][i];
    SCOPED_TRACE(t.name);
    EXPECT_EQ(t.name, expected["name"].get<std::string>());
    EXPECT_EQ(uint32_t(t.type), expected["type"].get<uint32_t>());
    EXPECT_EQ(t.shape, expected["shape"].get<std::vector<uint64_t>>());
    EXPECT_EQ(t.offset, expected["offset"].get<uint64_t>());
    EXPECT_EQ(t.bytes, expected["bytes"].get<uint64_t>());
    EXPECT_EQ(t.elements, expected["elements"].get<uint64_t>());
    const auto data = file->tensor_data(t);
    std::string hex;
    for (size_t b = 0; b < std::min<size_t>(16, data.size()); ++b) hex += fmt::format("{:02x}", data[b]);
    EXPECT_EQ(hex, expected["first_bytes"].get<std::string>());
  }
}

}  // namespace
}  // namespace marlin
