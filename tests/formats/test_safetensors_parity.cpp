// Files written by the reference `safetensors` package (tools/make_safetensors_fixtures.py) read
// back exactly: every dtype it knows, numpy arrays, and a sharded checkpoint with its index. The
// manifest holds what was handed to the package, so the test checks the reader against the
// package's writer, not against itself.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "formats/hf_json.h"
#include "formats/safetensors_shards.h"

namespace marlin {
namespace {

const std::string kDir = std::string(MARLIN_FIXTURES_DIR) + "/formats/safetensors/";

std::string hex(std::span<const uint8_t> bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (uint8_t b : bytes) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

TEST(SafetensorsParity, ReadsWhatThePythonPackageWrote) {
  const auto manifest = read_json_object(kDir + "manifest.json");
  ASSERT_EQ(manifest.size(), 3u);
  for (const auto& [file, expected] : manifest.items()) {
    SCOPED_TRACE(file);
    auto set = SafetensorsShards::open(kDir + file);
    const auto& tensors = expected.at("tensors");
    EXPECT_EQ(set->entries().size(), tensors.size());
    for (const auto& [name, want] : tensors.items()) {
      SCOPED_TRACE(name);
      const auto* entry = set->find(name);
      ASSERT_NE(entry, nullptr);
      EXPECT_EQ(safetensors_dtype_name(entry->tensor->dtype), want.at("dtype").get<std::string>());
      EXPECT_EQ(entry->tensor->shape, want.at("shape").get<std::vector<uint64_t>>());
      EXPECT_EQ(hex(set->data(*entry)), want.at("hex").get<std::string>());
    }
    const auto& metadata = expected.at("metadata");
    if (!metadata.empty()) {
      const auto& first = *set->files().front();
      EXPECT_EQ(first.metadata().size(), metadata.size());
      for (const auto& [key, value] : metadata.items()) EXPECT_EQ(first.metadata(key), value.get<std::string>());
    }
  }
}

}  // namespace
}  // namespace marlin
