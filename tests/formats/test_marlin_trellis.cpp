// Trellis tensors in .marlin checkpoints: bytes, format and the 64-bit rotation seed round-trip
// exactly (seeds above 2^53 included), and corrupt trellis entries get one-line errors.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>

#include "../quant/trellis_oracle.h"
#include "formats/hf_json.h"
#include "formats/marlin_checkpoint.h"
#include "formats/marlin_source.h"
#include "formats/marlin_writer.h"
#include "safetensors_test_util.h"

namespace marlin {
namespace {

using test::error_of;

const std::string kTinyConfig = std::string(MARLIN_FIXTURES_DIR) + "/formats/hf/tiny_llama/config.json";

TEST(MarlinTrellis, SeedText) {
  EXPECT_EQ(marlin_seed_text(0xfedcba9876543210ull), "0xfedcba9876543210");
  EXPECT_EQ(marlin_seed_text(1), "0x0000000000000001");
  EXPECT_EQ(parse_marlin_seed("0xFEDCBA9876543210"), 0xfedcba9876543210ull);
  for (const char* bad : {"", "0x", "fedcba9876543210", "0xfedcba987654321", "0xfedcba98765432100",
                          "0xfedcba987654321g", "0Xfedcba9876543210", " 0xfedcba987654321"})
    EXPECT_FALSE(parse_marlin_seed(bad).has_value()) << bad;
}

TEST(MarlinTrellis, RoundTripsBytesFormatAndSeed) {
  test::TempDir dir;
  const std::string path = dir.file("t.marlin");
  std::vector<QuantBuffers> written = {test::random_trellis(32, 48, 2, 1), test::random_trellis(16, 64, 3, 2),
                                       test::random_trellis(48, 16, 8, 3), test::random_trellis(16, 16, 1, 4)};
  written[0].rotation_seed = 0xffffffffffffffffull;  // above 2^53: a JSON double would lose it
  written[1].rotation_seed = (uint64_t(1) << 53) + 1;
  written[2].rotation_seed = 0;
  {
    MarlinCheckpointInfo info;
    info.config = read_json_object(kTinyConfig);
    MarlinWriter w(path, std::move(info));
    for (size_t i = 0; i < written.size(); ++i) w.add("layer" + std::to_string(i) + ".weight", written[i].view());
    w.finish();
  }
  const auto source = MarlinSource::open(path);
  for (size_t i = 0; i < written.size(); ++i) {
    SCOPED_TRACE(i);
    const auto t = source->tensor("layer" + std::to_string(i) + ".weight");
    ASSERT_TRUE(t.has_value());
    const QuantBuffers& want = written[i];
    EXPECT_EQ(t->format, want.format);
    EXPECT_EQ(t->rotation_seed, want.rotation_seed);
    EXPECT_EQ(t->code_row_bytes, want.code_row_bytes);
    EXPECT_EQ(std::memcmp(t->codes, want.codes.data(), want.codes.size()), 0);
    EXPECT_EQ(std::memcmp(t->scales, want.scales.data(), want.scales.size()), 0);
  }
}

// A checkpoint holding one trellis3 tensor "w" of 16 × 32 (codes U8 [16, 12], scales F16 [16, 1]),
// its entry edited by `edit`; returns the error opening it ("" when it opens).
std::string open_error(const std::function<void(nlohmann::json&)>& edit, uint64_t codes_cols = 12) {
  test::TempDir dir;
  const std::string path = dir.file("x.marlin");
  nlohmann::json doc = {{"format_version", 1},
                        {"config", read_json_object(kTinyConfig)},
                        {"tensors",
                         {{"w",
                           {{"format", "trellis3"},
                            {"shape", {16, 32}},
                            {"parts", {{"codes", "w.codes"}, {"scales", "w.scales"}}},
                            {"rotation_seed", "0x00000000000000ff"}}}}}};
  edit(doc["tensors"]["w"]);
  {
    SafetensorsWriter w(path, {.header_reserve = 4096, .align_tensors = true});
    w.set_metadata("marlin", doc.dump());
    w.add("w.codes", SafetensorsDtype::kU8, {16, codes_cols}, std::vector<uint8_t>(16 * codes_cols, 0x5a));
    w.add("w.scales", SafetensorsDtype::kF16, {16, 1}, std::vector<uint8_t>(32, 0x3c));
    w.finish();
  }
  return error_of([&] { MarlinSource::open(path); });
}

void expect_error(const std::string& message, const std::string& fragment) {
  EXPECT_NE(message.find(fragment), std::string::npos) << "message: " << message << "\nwanted: " << fragment;
  EXPECT_NE(message.find("tensor 'w'"), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
}

TEST(MarlinTrellis, CorruptEntriesAreRejected) {
  EXPECT_EQ(open_error([](nlohmann::json&) {}), "");
  expect_error(open_error([](nlohmann::json& e) { e.erase("rotation_seed"); }), "'rotation_seed' is missing");
  expect_error(open_error([](nlohmann::json& e) { e["rotation_seed"] = 255; }), "is not a string of 0x and 16 hex");
  expect_error(open_error([](nlohmann::json& e) { e["rotation_seed"] = "0xff"; }), "is not a string of 0x and 16 hex");
  expect_error(open_error([](nlohmann::json& e) { e["rotation_seed"] = "0x00000000000000fz"; }), "16 hex digits");
  expect_error(open_error([](nlohmann::json& e) { e["format"] = "trellis9"; }), "1 to 8");
  expect_error(open_error([](nlohmann::json& e) { e["format"] = "trellis0"; }), "1 to 8");
  expect_error(open_error([](nlohmann::json& e) { e["format"] = "trellis3-g128"; }), "takes no options");
  // K changed but the stored codes are K = 3's: the part's shape no longer matches.
  expect_error(open_error([](nlohmann::json& e) { e["format"] = "trellis4"; }), "needs U8 [16, 16]");
  expect_error(open_error([](nlohmann::json& e) { e["shape"] = {16, 36}; }, 13), "not made of 16 × 16 tiles");
  // A seed on a format without rotations (int4-pc has the same parts at 16 × 32 with 16-byte rows).
  expect_error(open_error([](nlohmann::json& e) { e["format"] = "int4-pc"; }, 16), "which has no rotations");
}

}  // namespace
}  // namespace marlin
