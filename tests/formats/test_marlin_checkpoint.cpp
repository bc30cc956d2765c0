// .marlin checkpoints: every format written and read back byte for byte (odd sizes, padded rows
// compacted, 2:4 metadata, act-order permutations, GGML blocks, nvfp4 tensor scales), the
// tokenizer/template/config/RoPE overrides, shards (opened from any shard, mixed or missing
// shards rejected), a GPTQ import converted to .marlin, and hand-made broken checkpoints.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>

#include "core/half.h"
#include "formats/hf_json.h"
#include "formats/hf_source.h"
#include "formats/marlin_checkpoint.h"
#include "formats/marlin_source.h"
#include "formats/marlin_writer.h"
#include "quant/dequant.h"
#include "quant/quant_buffers.h"
#include "safetensors_test_util.h"
#include "tokenizer/tokenizer.h"

namespace marlin {
namespace {

namespace fs = std::filesystem;
using test::error_of;

const std::string kTiny = std::string(MARLIN_FIXTURES_DIR) + "/formats/hf/tiny_llama";

MarlinCheckpointInfo tiny_info() {
  MarlinCheckpointInfo info;
  info.config = read_json_object(kTiny + "/config.json");
  info.tokenizer_json = read_side_file(kTiny + "/tokenizer.json");
  info.tokenizer_config_json = read_side_file(kTiny + "/tokenizer_config.json");
  info.chat_template = "{{ messages[0]['content'] }} ✓";
  return info;
}

// Random contents of every buffer, a valid permutation and valid 2:4 patterns.
QuantBuffers random_tensor(const std::string& format, int64_t rows, int64_t cols, uint64_t seed) {
  QuantBuffers b = QuantBuffers::allocate(TensorFormat::parse(format), rows, cols);
  std::mt19937_64 rng(seed);
  for (auto* v : {&b.codes, &b.scales, &b.zeros}) {
    for (auto& x : *v) x = uint8_t(rng());
  }
  for (auto& x : b.sparse_meta) x = uint8_t(0x4 | 0x40);  // keep columns 0 and 1 of every 4
  if (!b.perm.empty()) std::shuffle(b.perm.begin(), b.perm.end(), rng);
  if (b.format.kind == FormatKind::kNvFp4) b.tensor_scale = 0.375f;
  return b;
}

struct Case {
  std::string name, format;
  int64_t rows, cols;
  std::vector<uint64_t> shape;
};

std::vector<Case> all_cases() {
  return {{"model.norm.weight", "f32", 1, 33, {33}},      {"model.embed_tokens.weight", "f16", 7, 13, {}},
          {"lm_head.weight", "bf16", 5, 9, {}},           {"a.int4_act.weight", "int4-g32-asym-act", 6, 96, {}},
          {"a.int4.weight", "int4-g128", 3, 200, {}},     {"a.int8.weight", "int8-pc", 5, 17, {}},
          {"a.int3.weight", "int3-g64-asym", 7, 130, {}}, {"a.int2.weight", "int2-g32", 2, 64, {}},
          {"a.fp8.weight", "fp8-g128", 3, 256, {}},       {"a.fp4.weight", "fp4-g32", 4, 96, {}},
          {"a.mxfp4.weight", "mxfp4", 3, 64, {}},         {"a.nvfp4.weight", "nvfp4", 5, 48, {}},
          {"a.sparse.weight", "int4-g64-24", 3, 128, {}}, {"a.q4_1.weight", "q4_1", 3, 64, {}},
          {"a.q6_k.weight", "q6_k", 2, 256, {}},          {"experts.weight", "int4-g32", 2 * 3, 64, {2, 3, 64}}};
}

void expect_same_bytes(const uint8_t* a, const uint8_t* b, size_t n, const char* what) {
  ASSERT_EQ(a == nullptr, b == nullptr) << what;
  if (a) EXPECT_EQ(std::memcmp(a, b, n), 0) << what;
}

void expect_same_tensor(const QuantTensor& got, const QuantBuffers& want) {
  EXPECT_EQ(got.format, want.format);
  EXPECT_EQ(got.rows, want.rows);
  EXPECT_EQ(got.cols, want.cols);
  EXPECT_EQ(got.tensor_scale, want.tensor_scale);
  const uint64_t row_bytes = want.format.min_code_row_bytes(want.cols);
  EXPECT_EQ(got.code_row_bytes, row_bytes);
  for (int64_t r = 0; r < want.rows; ++r) {
    expect_same_bytes(got.codes + r * got.code_row_bytes, want.codes.data() + r * want.code_row_bytes, row_bytes,
                      "codes");
  }
  expect_same_bytes(got.scales, want.scales.empty() ? nullptr : want.scales.data(), want.scales.size(), "scales");
  expect_same_bytes(got.zeros, want.zeros.empty() ? nullptr : want.zeros.data(), want.zeros.size(), "zeros");
  expect_same_bytes(got.sparse_meta, want.sparse_meta.empty() ? nullptr : want.sparse_meta.data(),
                    want.sparse_meta.size(), "sparse_meta");
  expect_same_bytes(reinterpret_cast<const uint8_t*>(got.perm),
                    want.perm.empty() ? nullptr : reinterpret_cast<const uint8_t*>(want.perm.data()),
                    want.perm.size() * 4, "perm");
}

TEST(MarlinCheckpoint, EveryFormatRoundTrips) {
  test::TempDir dir;
  const std::string path = dir.file("m.marlin");
  const auto cases = all_cases();
  std::vector<QuantBuffers> written;
  {
    MarlinCheckpointInfo info = tiny_info();
    info.rope_pairing = RopePairing::kAdjacent;
    info.rope_freq_factors = {1, 2, 3, 4};  // tiny_llama: head_dim 8, 4 frequencies
    MarlinWriter w(path, std::move(info), {.expected_tensors = cases.size()});
    for (size_t i = 0; i < cases.size(); ++i) {
      written.push_back(random_tensor(cases[i].format, cases[i].rows, cases[i].cols, i));
      w.add(cases[i].name, written.back().view(), cases[i].shape);
    }
    EXPECT_EQ(w.finish(), std::vector<std::string>{path});
  }
  EXPECT_EQ(fs::directory_iterator(dir.path())->path().filename(), "m.marlin");  // nothing else left behind

  auto source = MarlinSource::open(path);
  std::vector<std::string> names;
  for (const auto& c : cases) names.push_back(c.name);
  EXPECT_EQ(source->tensor_names(), names);
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].format);
    auto t = source->tensor(cases[i].name);
    ASSERT_TRUE(t.has_value());
    expect_same_tensor(*t, written[i]);
  }
  EXPECT_FALSE(source->tensor("missing").has_value());

  const ModelConfig& c = source->config();
  EXPECT_EQ(c.d_model, 32);
  EXPECT_EQ(c.rope.pairing, RopePairing::kAdjacent);
  EXPECT_EQ(c.rope.freq_factors, (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(source->chat_template(), "{{ messages[0]['content'] }} ✓");
  EXPECT_EQ(source->tokenizer_json(), read_side_file(kTiny + "/tokenizer.json"));
  const auto expected = read_json_object(kTiny + "/expected.json");
  auto tokenizer = source->tokenizer();
  for (const auto& [text, ids] : expected.at("tokens").items()) {
    EXPECT_EQ(tokenizer->encode(text), ids.get<std::vector<int32_t>>());
  }
  EXPECT_NE(source->description().find("marlin checkpoint, 16 tensors"), std::string::npos);
}

TEST(MarlinCheckpoint, PaddedRowsAreCompacted) {
  test::TempDir dir;
  QuantBuffers b = random_tensor("int4-g32", 4, 64, 9);
  std::vector<uint8_t> padded(size_t(4 * 40), 0xee);  // rows of 40 bytes, 32 used
  for (int r = 0; r < 4; ++r) std::memcpy(padded.data() + r * 40, b.codes.data() + r * 32, 32);
  QuantTensor view = b.view();
  view.codes = padded.data();
  view.code_row_bytes = 40;
  {
    MarlinWriter w(dir.file("p.marlin"), tiny_info());
    w.add("w", view);
    w.finish();
  }
  auto source = MarlinSource::open(dir.file("p.marlin"));
  auto t = source->tensor("w");
  ASSERT_TRUE(t.has_value());
  expect_same_tensor(*t, b);
}

TEST(MarlinCheckpoint, Shards) {
  test::TempDir dir;
  const std::string path = dir.file("big.marlin");
  std::vector<QuantBuffers> written;
  std::vector<std::string> files;
  {
    MarlinWriter w(path, tiny_info(), {.max_shard_bytes = 4000});
    for (int i = 0; i < 6; ++i) {
      written.push_back(random_tensor("int4-g32-asym", 32, 128, uint64_t(100 + i)));  // ~2.4 KB each
      w.add("layer." + std::to_string(i) + ".weight", written.back().view());
    }
    files = w.finish();
  }
  ASSERT_GT(files.size(), 2u);
  EXPECT_EQ(files[0], dir.file(fmt::format("big-00001-of-{:05d}.marlin", files.size())));
  for (const auto& f : files) EXPECT_TRUE(fs::exists(f)) << f;
  EXPECT_FALSE(fs::exists(path));

  for (const auto& open_path : {files[0], files[1]}) {
    auto source = MarlinSource::open(open_path);
    EXPECT_EQ(source->shard_paths(), files);
    ASSERT_EQ(source->tensor_names().size(), 6u);
    for (int i = 0; i < 6; ++i)
      expect_same_tensor(*source->tensor("layer." + std::to_string(i) + ".weight"), written[size_t(i)]);
    EXPECT_NE(source->description().find(fmt::format("{} shards", files.size())), std::string::npos);
  }

  // A shard of another checkpoint in its place.
  test::TempDir other;
  std::vector<std::string> other_files;
  {
    MarlinWriter w(other.file("big.marlin"), tiny_info(), {.max_shard_bytes = 4000});
    for (int i = 0; i < 6; ++i) w.add("layer." + std::to_string(i) + ".weight", written[size_t(i)].view());
    other_files = w.finish();
  }
  ASSERT_EQ(other_files.size(), files.size());
  fs::copy_file(other_files[1], files[1], fs::copy_options::overwrite_existing);
  EXPECT_NE(error_of([&] { MarlinSource::open(files[0]); }).find("is not shard 2 of"), std::string::npos);
  fs::remove(files[1]);
  EXPECT_NE(error_of([&] { MarlinSource::open(files[0]); }).find("does not exist"), std::string::npos);
  fs::remove(files[0]);
  EXPECT_NE(error_of([&] { MarlinSource::open(files[2]); }).find("this is a later shard"), std::string::npos);
}

TEST(MarlinCheckpoint, WriterMisuse) {
  test::TempDir dir;
  MarlinWriter w(dir.file("w.marlin"), tiny_info());
  QuantBuffers b = random_tensor("int4-g32", 2, 64, 1);
  w.add("x", b.view());
  EXPECT_NE(error_of([&] { w.add("x", b.view()); }).find("tensor 'x' is added twice"), std::string::npos);
  EXPECT_NE(error_of([&] { w.add("__tokenizer_json__", b.view()); }).find("not a usable tensor name"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              w.add("y", b.view(), {3, 64});
            }).find("shape [3, 64] does not match 2 rows × 64 columns"),
            std::string::npos);
  QuantTensor broken = b.view();
  broken.scales = nullptr;
  EXPECT_NE(error_of([&] { w.add("z", broken); }).find("tensor 'z': int4-g32 tensor without scales"),
            std::string::npos);
  MarlinCheckpointInfo bad = tiny_info();
  bad.config = nlohmann::json::array();
  EXPECT_NE(error_of([&] { MarlinWriter(dir.file("v.marlin"), bad); }).find("not a config.json object"),
            std::string::npos);
}

TEST(MarlinCheckpoint, GptqImportConvertsToMarlin) {
  test::TempDir dir;
  auto gptq = open_hf_source(std::string(MARLIN_FIXTURES_DIR) + "/formats/gptq/int4_act_asym_v1");
  auto* hf = dynamic_cast<HfSource*>(gptq.get());
  ASSERT_NE(hf, nullptr);
  {
    MarlinCheckpointInfo info;
    info.config = hf->hf_config();
    info.config.erase("quantization_config");
    MarlinWriter w(dir.file("g.marlin"), std::move(info));
    for (const auto& name : gptq->tensor_names()) w.add(name, *gptq->tensor(name));
    w.finish();
  }
  auto source = MarlinSource::open(dir.file("g.marlin"));
  EXPECT_EQ(source->tensor_names(), gptq->tensor_names());
  const std::string name = "model.layers.0.mlp.down_proj.weight";
  auto a = gptq->tensor(name), b = source->tensor(name);
  EXPECT_EQ(b->format.name(), "int4-g32-asym-act");
  std::vector<float> ra(size_t(a->cols)), rb(ra.size());
  for (int64_t r = 0; r < a->rows; ++r) {
    dequantize_row(*a, r, ra.data());
    dequantize_row(*b, r, rb.data());
    ASSERT_EQ(ra, rb);
  }
  EXPECT_NE(error_of([&] { source->tokenizer(); }).find("stores no tokenizer"), std::string::npos);
}

// --- broken checkpoints made by hand ----------------------------------------------------------

struct StoredTensor {
  std::string name;
  SafetensorsDtype dtype;
  std::vector<uint64_t> shape;
  std::vector<uint8_t> bytes;  // zero-filled to size when empty
};

// A valid document with one int4-g32 weight "w" of 4 × 64 stored as w.codes and w.scales.
nlohmann::json valid_doc() {
  return {
      {"format_version", 1},
      {"config", read_json_object(kTiny + "/config.json")},
      {"tensors",
       {{"w",
         {{"format", "int4-g32"}, {"shape", {4, 64}}, {"parts", {{"codes", "w.codes"}, {"scales", "w.scales"}}}}}}}};
}

std::vector<StoredTensor> valid_tensors() {
  return {{"w.codes", SafetensorsDtype::kU8, {4, 32}, {}}, {"w.scales", SafetensorsDtype::kF16, {4, 2}, {}}};
}

std::string open_error(const nlohmann::json& doc, const std::vector<StoredTensor>& tensors, bool align = true,
                       const char* key = "marlin") {
  test::TempDir dir;
  const std::string path = dir.file("x.marlin");
  {
    SafetensorsWriter w(path, {.header_reserve = 4096, .align_tensors = align});
    if (!doc.is_null()) w.set_metadata(key, doc.is_string() ? doc.get<std::string>() : doc.dump());
    for (const auto& t : tensors) {
      uint64_t bytes = uint64_t(safetensors_dtype_bits(t.dtype)) / 8;
      for (auto d : t.shape) bytes *= d;
      std::vector<uint8_t> data = t.bytes;
      data.resize(size_t(bytes), 0);
      w.add(t.name, t.dtype, t.shape, data);
    }
    w.finish();
  }
  return error_of([&] { MarlinSource::open(path); });
}

void expect_error(const std::string& message, const std::string& fragment) {
  EXPECT_TRUE(message.starts_with("marlin: '")) << message;
  EXPECT_NE(message.find(fragment), std::string::npos) << "message: " << message << "\nwanted: " << fragment;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
}

TEST(MarlinCheckpointErrors, Document) {
  EXPECT_EQ(open_error(valid_doc(), valid_tensors()), "");
  expect_error(open_error(nullptr, valid_tensors()), "not a marlin checkpoint");
  expect_error(open_error("{oops", valid_tensors()), "metadata: not valid JSON");
  expect_error(open_error("[1]", valid_tensors()), "the metadata document is array, not an object");
  auto doc = valid_doc();
  doc["format_version"] = 2;
  expect_error(open_error(doc, valid_tensors()), "format_version 2 is not supported (this build reads 1)");
  doc = valid_doc();
  doc.erase("config");
  expect_error(open_error(doc, valid_tensors()), "'config' is missing or not an object");
  doc = valid_doc();
  doc["config"]["architectures"] = {"BertModel"};
  expect_error(open_error(doc, valid_tensors()), "config.json: architecture 'BertModel' is not supported");
  doc = valid_doc();
  doc["rope"] = {{"pairing", "sideways"}};
  expect_error(open_error(doc, valid_tensors()), "rope pairing 'sideways' is not");
  doc = valid_doc();
  doc["rope"] = {{"freq_factors", {1, 2}}};
  expect_error(open_error(doc, valid_tensors()), "rope freq_factors is not a list of 4 numbers");
  doc = valid_doc();
  doc["tensors"] = 5;
  expect_error(open_error(doc, valid_tensors()), "'tensors' is missing or not an object");
  doc = valid_doc();
  doc["shards"] = {"x.marlin", "../evil.marlin"};
  expect_error(open_error(doc, valid_tensors()), "shard 1 is '\"../evil.marlin\"', not a file name");
  expect_error(open_error(valid_doc(), valid_tensors(), true, "marlin_shard"), "this is a later shard");
}

TEST(MarlinCheckpointErrors, Entries) {
  auto with = [](const char* key, nlohmann::json value) {
    auto doc = valid_doc();
    doc["tensors"]["w"][key] = std::move(value);
    return doc;
  };
  const auto tensors = valid_tensors();
  expect_error(open_error(with("format", "int5-g32"), tensors), "tensor 'w': unknown format 'int5-g32'");
  expect_error(open_error(with("format", 4), tensors), "tensor 'w': 'format' is '4', not a string");
  expect_error(open_error(with("shape", {4, 0}), tensors), "tensor 'w': shape dimension '0' is not a positive integer");
  expect_error(open_error(with("shape", "4x64"), tensors), "'shape' is not a list of 1 to 8 dimensions");
  expect_error(open_error(with("format", "int4-g32-asym"), tensors), "tensor 'w': part 'zeros' is missing");
  expect_error(open_error(with("parts", {{"codes", "w.codes"}, {"scales", "nope"}}), tensors),
               "part 'scales' names tensor 'nope', which is not stored");
  expect_error(
      open_error(with("parts", {{"codes", "w.codes"}, {"scales", "w.scales"}, {"zeros", "w.scales"}}), tensors),
      "format int4-g32 has no part 'zeros'");
  expect_error(open_error(with("shape", {4, 66}), tensors),
               "part 'codes' ('w.codes') is U8 [4, 32], format int4-g32 needs U8 [4, 33]");
  expect_error(open_error(with("parts", {{"codes", "w.codes"}, {"scales", "w.codes"}}), tensors),
               "part 'scales' ('w.codes') is U8 [4, 32], format int4-g32 needs F16 [4, 2]");
  auto nvfp4 = with("format", "nvfp4");
  nvfp4["tensors"]["w"]["tensor_scale"] = 0;
  expect_error(open_error(nvfp4, {{"w.codes", SafetensorsDtype::kU8, {4, 32}, {}},
                                  {"w.scales", SafetensorsDtype::kF8E4M3, {4, 4}, {}}}),
               "tensor 'w': tensor_scale 0 is not usable");
}

TEST(MarlinCheckpointErrors, StoredTensors) {
  auto tensors = valid_tensors();
  tensors.push_back({"stray", SafetensorsDtype::kU8, {3}, {}});
  expect_error(open_error(valid_doc(), tensors), "stored tensor 'stray' belongs to no weight");

  auto doc = valid_doc();
  doc["tensors"]["v"] = doc["tensors"]["w"];
  expect_error(open_error(doc, valid_tensors()), "is a part of two weights");

  // Scales at an odd offset: written without alignment after a 3-byte tensor.
  const std::vector<StoredTensor> misaligned = {{"__padding_x__", SafetensorsDtype::kU8, {3}, {}},
                                                {"w.scales", SafetensorsDtype::kF16, {4, 2}, {}},
                                                {"w.codes", SafetensorsDtype::kU8, {4, 32}, {}}};
  expect_error(open_error(valid_doc(), misaligned, false), "part 'scales' starts at offset");

  // An act-order permutation that repeats a column.
  doc = valid_doc();
  doc["tensors"]["w"]["format"] = "int4-g32-act";
  doc["tensors"]["w"]["parts"]["perm"] = "w.perm";
  auto with_perm = valid_tensors();
  with_perm.push_back({"w.perm", SafetensorsDtype::kI32, {64}, {}});  // all zeros
  expect_error(open_error(doc, with_perm), "tensor 'w': column permutation repeats column 0");
}

}  // namespace
}  // namespace marlin

namespace marlin {
namespace {

// For tests/python/test_checkpoints_safetensors.py: a .marlin file and the weights marlin's
// dequantizer gives for two of its tensors, which the Python test recomputes from the layout
// docs/formats.md documents. Runs as a plain round trip without MARLIN_SAFETENSORS_EXPORT_DIR.
TEST(MarlinExport, CheckpointForThePythonPackage) {
  test::TempDir scratch;
  const char* env = std::getenv("MARLIN_SAFETENSORS_EXPORT_DIR");
  const std::string dir = env ? env : scratch.path().string();
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> scale(0.01f, 1.0f);
  nlohmann::json manifest;
  {
    MarlinWriter w(dir + "/export.marlin", tiny_info());
    for (const char* format : {"int4-g32-asym-act", "int8-pc", "int3-g64", "f16"}) {
      QuantBuffers b = random_tensor(format, 5, 128, uint64_t(format[3]));
      for (size_t i = 0; i + 1 < b.scales.size(); i += 2) {
        const uint16_t h = fp32_to_fp16(scale(rng));
        b.scales[i] = uint8_t(h);
        b.scales[i + 1] = uint8_t(h >> 8);
      }
      if (b.format.kind == FormatKind::kF16) {
        for (size_t i = 0; i + 1 < b.codes.size(); i += 2) {
          const uint16_t h = fp32_to_fp16(scale(rng) - 0.5f);
          b.codes[i] = uint8_t(h);
          b.codes[i + 1] = uint8_t(h >> 8);
        }
      }
      const std::string name = std::string("w.") + format;
      w.add(name, b.view());
      std::vector<float> stored(128), logical(128), all;
      const QuantTensor t = b.view();
      for (int64_t r = 0; r < t.rows; ++r) {
        dequantize_row(t, r, stored.data());
        for (int64_t j = 0; j < 128; ++j) logical[size_t(t.perm ? t.perm[j] : j)] = stored[size_t(j)];
        all.insert(all.end(), logical.begin(), logical.end());
      }
      manifest["dequantized"][name] = all;
    }
    w.finish();
  }
  manifest["tokenizer_json"] = read_side_file(kTiny + "/tokenizer.json");
  std::ofstream(dir + "/export.marlin.json") << manifest.dump();
  auto source = MarlinSource::open(dir + "/export.marlin");
  EXPECT_EQ(source->tensor_names().size(), 4u);
}

}  // namespace
}  // namespace marlin

namespace marlin {
namespace {

// Odd-sized parts need alignment filler in every shard; the filler of one shard must not clash
// with another's.
TEST(MarlinCheckpoint, ShardsWithPaddingInEveryFile) {
  test::TempDir dir;
  std::vector<QuantBuffers> written;
  std::vector<std::string> files;
  {
    MarlinWriter w(dir.file("odd.marlin"), tiny_info(), {.max_shard_bytes = 600});
    for (int i = 0; i < 4; ++i) {
      written.push_back(random_tensor("int3-g32", 7, 96, uint64_t(7 + i)));
      w.add("odd." + std::to_string(i) + ".weight", written.back().view());
    }
    files = w.finish();
  }
  ASSERT_GT(files.size(), 1u);
  auto source = MarlinSource::open(files[0]);
  ASSERT_EQ(source->tensor_names().size(), 4u);
  for (int i = 0; i < 4; ++i) expect_same_tensor(*source->tensor("odd." + std::to_string(i) + ".weight"), written[size_t(i)]);
}

TEST(MarlinCheckpoint, ShardNames) {
  EXPECT_EQ(marlin_shard_name("/a/m.marlin", 0, 3), "/a/m-00001-of-00003.marlin");
  EXPECT_EQ(marlin_shard_name("m", 11, 12), "m-00012-of-00012.marlin");
  EXPECT_EQ(marlin_first_shard("/a/m-00002-of-00003.marlin"), "/a/m-00001-of-00003.marlin");
  EXPECT_EQ(marlin_first_shard("/a/m-00001-of-00003.marlin"), std::nullopt);
  EXPECT_EQ(marlin_first_shard("/a/m.marlin"), std::nullopt);
  EXPECT_EQ(marlin_first_shard("/a/m-0000x-of-00003.marlin"), std::nullopt);
  EXPECT_EQ(marlin_first_shard("-00002-of-00003.marlin"), std::nullopt);
}

}  // namespace
}  // namespace marlin
