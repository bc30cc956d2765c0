// Deterministic fuzzing of the .marlin metadata document: a valid checkpoint's document with one
// value replaced (wrong types, negative, huge, missing, swapped names) must open or raise
// marlin::Error — never crash — and whatever opens must hand out tensors that validate and
// dequantize.
#include <gtest/gtest.h>

#include <random>

#include "formats/hf_json.h"
#include "formats/marlin_source.h"
#include "formats/marlin_writer.h"
#include "quant/dequant.h"
#include "quant/quant_buffers.h"
#include "safetensors_test_util.h"

namespace marlin {
namespace {

using Json = nlohmann::json;

const std::string kTiny = std::string(MARLIN_FIXTURES_DIR) + "/formats/hf/tiny_llama";

// Every JSON pointer in `j` (objects and arrays included).
void pointers(const Json& j, const Json::json_pointer& at, std::vector<Json::json_pointer>& out) {
  out.push_back(at);
  if (j.is_object()) {
    for (const auto& [k, v] : j.items()) pointers(v, at / k, out);
  } else if (j.is_array()) {
    for (size_t i = 0; i < j.size(); ++i) pointers(j[i], at / i, out);
  }
}

TEST(MarlinCheckpointFuzz, MutatedDocuments) {
  test::TempDir dir;
  const std::string valid_path = dir.file("valid.marlin");
  {
    MarlinCheckpointInfo info;
    info.config = read_json_object(kTiny + "/config.json");
    MarlinWriter w(valid_path, std::move(info));
    std::mt19937_64 rng(3);
    for (const char* format : {"int4-g32-asym-act", "nvfp4", "f32", "int8-pc", "int4-g64-24"}) {
      QuantBuffers b = QuantBuffers::allocate(TensorFormat::parse(format), 4, 64);
      for (auto& x : b.codes) x = uint8_t(rng());
      for (auto& x : b.sparse_meta) x = 0x44;
      std::shuffle(b.perm.begin(), b.perm.end(), rng);
      w.add(std::string("w.") + format, b.view());
    }
    w.finish();
  }
  auto valid = SafetensorsFile::open(valid_path);
  const Json doc = parse_json_text(*valid->metadata("marlin"), "doc");
  std::vector<Json::json_pointer> paths;
  pointers(doc, Json::json_pointer(), paths);

  const Json replacements[] = {nullptr,
                               -1,
                               0,
                               1,
                               3,
                               64,
                               1e300,
                               18446744073709551615ull,
                               "",
                               "w.int8-pc.codes",
                               "w.f32",
                               "int4-g32",
                               "f16",
                               "nvfp4",
                               Json::array(),
                               Json::object(),
                               Json::array({4, 64}),
                               Json::array({0}),
                               true};
  std::mt19937_64 rng(20261127);
  int opened = 0, rejected = 0;
  for (int iteration = 0; iteration < 600; ++iteration) {
    Json mutated = doc;
    const int edits = 1 + int(rng() % 2);
    for (int e = 0; e < edits; ++e) {
      const auto& at = paths[rng() % paths.size()];
      if (at.empty() || !mutated.contains(at)) continue;
      if (rng() % 4 == 0 && mutated[at.parent_pointer()].is_object()) {
        mutated[at.parent_pointer()].erase(at.back());
      } else {
        mutated[at] = replacements[rng() % std::size(replacements)];
      }
    }
    const std::string path = dir.file("m" + std::to_string(iteration) + ".marlin");
    {
      SafetensorsWriter w(path, {.header_reserve = 8192, .align_tensors = false});
      w.set_metadata("marlin", mutated.dump());
      for (const auto& t : valid->tensors()) w.add(t.name, t.dtype, t.shape, valid->data(t));
      w.finish();
    }
    try {
      auto source = MarlinSource::open(path);
      std::vector<float> row;
      for (const auto& name : source->tensor_names()) {
        const QuantTensor t = *source->tensor(name);
        t.validate();
        row.resize(size_t(t.cols));
        if (t.format.kind != FormatKind::kGgml) dequantize_row(t, t.rows - 1, row.data());
      }
      ++opened;
    } catch (const Error& e) {
      ASSERT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
      ++rejected;
    }
    std::filesystem::remove(path);
  }
  EXPECT_GT(rejected, 300);
  EXPECT_GT(opened, 0);
}

}  // namespace
}  // namespace marlin
