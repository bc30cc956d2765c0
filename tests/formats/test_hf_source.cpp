// The Hugging Face folder source on a tiny sharded Llama checkpoint written by the reference
// safetensors/tokenizers packages (tools/make_checkpoint_fixtures.py tiny): tensors as stored,
// tokens as HF tokenizers gives them, the chat template; and broken folders.
#include <gtest/gtest.h>

#include <filesystem>

#include "formats/hf_json.h"
#include "formats/hf_source.h"
#include "formats/safetensors_writer.h"
#include "safetensors_test_util.h"
#include "tokenizer/tokenizer.h"

namespace marlin {
namespace {

namespace fs = std::filesystem;
using test::error_of;

const std::string kTiny = std::string(MARLIN_FIXTURES_DIR) + "/formats/hf/tiny_llama";

std::string hex(const uint8_t* bytes, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) out += std::string{digits[bytes[i] >> 4], digits[bytes[i] & 15]};
  return out;
}

TEST(HfSource, TinyLlama) {
  const auto expected = read_json_object(kTiny + "/expected.json");
  auto source = open_hf_source(kTiny);
  const ModelConfig& c = source->config();
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.d_model, 32);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.rope.pairing, RopePairing::kHalfSplit);
  EXPECT_NE(source->description().find("tiny_llama' (Hugging Face checkpoint)"), std::string::npos);

  const auto names = source->tensor_names();
  const auto& tensors = expected.at("tensors");
  ASSERT_EQ(names.size(), tensors.size());
  for (const auto& name : names) {
    SCOPED_TRACE(name);
    const auto& want = tensors.at(name);
    auto t = source->tensor(name);
    ASSERT_TRUE(t.has_value());
    const std::string dtype = want.at("dtype");
    const FormatKind kind = dtype == "F32" ? FormatKind::kF32 : dtype == "F16" ? FormatKind::kF16 : FormatKind::kBF16;
    EXPECT_EQ(t->format.kind, kind);
    const auto shape = want.at("shape").get<std::vector<int64_t>>();
    EXPECT_EQ(t->cols, shape.back());
    EXPECT_EQ(t->rows, shape.size() == 2 ? shape[0] : 1);
    EXPECT_EQ(t->code_row_bytes, uint64_t(shape.back()) * (kind == FormatKind::kF32 ? 4 : 2));
    EXPECT_EQ(hex(t->codes, 16), want.at("hex16").get<std::string>());
  }
  EXPECT_FALSE(source->tensor("model.layers.9.mlp.up_proj.weight").has_value());

  auto tokenizer = source->tokenizer();
  for (const auto& [text, ids] : expected.at("tokens").items()) {
    EXPECT_EQ(tokenizer->encode(text), ids.get<std::vector<int32_t>>()) << text;
  }
  EXPECT_EQ(source->chat_template(), expected.at("chat_template").get<std::string>());
}

// A writable copy of the tiny checkpoint.
class TinyCopy {
 public:
  TinyCopy() { fs::copy(kTiny, dir_.path() / "m", fs::copy_options::recursive); }
  std::string path() const { return (dir_.path() / "m").string(); }
  std::string file(const std::string& name) const { return (dir_.path() / "m" / name).string(); }

 private:
  test::TempDir dir_;
};

TEST(HfSource, ChatTemplateSources) {
  TinyCopy copy;
  test::write_file(copy.file("chat_template.json"), std::string(R"({"chat_template": "from json"})"));
  EXPECT_EQ(HfSource::open(copy.path())->chat_template(), "from json");
  test::write_file(copy.file("chat_template.jinja"), std::string("from jinja"));
  EXPECT_EQ(HfSource::open(copy.path())->chat_template(), "from jinja");
  fs::remove(copy.file("chat_template.jinja"));
  fs::remove(copy.file("chat_template.json"));
  test::write_file(copy.file("tokenizer_config.json"),
                   std::string(R"({"chat_template": [{"name": "tool_use", "template": "t"},)"
                               R"( {"name": "default", "template": "d"}]})"));
  EXPECT_EQ(HfSource::open(copy.path())->chat_template(), "d");
  fs::remove(copy.file("tokenizer_config.json"));
  EXPECT_EQ(HfSource::open(copy.path())->chat_template(), "");
}

TEST(HfSource, SingleFileAndOddNames) {
  TinyCopy copy;
  fs::remove(copy.file("model.safetensors.index.json"));
  fs::remove(copy.file("model-00002-of-00002.safetensors"));
  fs::rename(copy.file("model-00001-of-00002.safetensors"), copy.file("weights.safetensors"));
  auto source = HfSource::open(copy.path());
  EXPECT_FALSE(source->tensor_names().empty());
  {
    SafetensorsWriter w(copy.file("other.safetensors"));
    w.finish();
  }
  EXPECT_NE(error_of([&] { HfSource::open(copy.path()); }).find("has 2 .safetensors files and no index"),
            std::string::npos);
}

TEST(HfSource, BrokenFolders) {
  test::TempDir empty;
  EXPECT_NE(error_of([&] { HfSource::open(empty.file("nope")); }).find("is not a folder"), std::string::npos);
  EXPECT_NE(error_of([&] { HfSource::open(empty.path().string()); }).find("has no config.json"), std::string::npos);

  TinyCopy copy;
  fs::remove(copy.file("tokenizer.json"));
  EXPECT_NE(error_of([&] { HfSource::open(copy.path())->tokenizer(); }).find("has no tokenizer.json"),
            std::string::npos);
  fs::remove(copy.file("model-00002-of-00002.safetensors"));
  EXPECT_NE(error_of([&] { HfSource::open(copy.path()); }).find("shard 'model-00002-of-00002.safetensors'"),
            std::string::npos);
  fs::remove(copy.file("model.safetensors.index.json"));
  fs::remove(copy.file("model-00001-of-00002.safetensors"));
  EXPECT_NE(error_of([&] { HfSource::open(copy.path()); }).find("has no .safetensors weights"), std::string::npos);

  test::write_file(copy.file("config.json"), std::string(R"({"architectures": ["GPT2LMHeadModel"]})"));
  const std::string message = error_of([&] { HfSource::open(copy.path()); });
  EXPECT_NE(message.find("config.json: architecture 'GPT2LMHeadModel' is not supported"), std::string::npos) << message;
  EXPECT_NE(message.find(copy.path()), std::string::npos) << message;
}

TEST(HfSource, NonFloatTensorsAreNamedNotUsed) {
  TinyCopy copy;
  fs::remove(copy.file("model.safetensors.index.json"));
  fs::remove(copy.file("model-00001-of-00002.safetensors"));
  fs::remove(copy.file("model-00002-of-00002.safetensors"));
  {
    SafetensorsWriter w(copy.file("model.safetensors"));
    const std::vector<uint8_t> eight(8, 0);
    w.add("model.position_ids", SafetensorsDtype::kI64, {1}, eight);
    w.finish();
  }
  auto source = HfSource::open(copy.path());
  EXPECT_EQ(source->tensor_names(), std::vector<std::string>{"model.position_ids"});
  EXPECT_NE(error_of([&] {
              source->tensor("model.position_ids");
            }).find("tensor 'model.position_ids' has dtype I64, which marlin cannot use as a weight"),
            std::string::npos);
}

}  // namespace
}  // namespace marlin
