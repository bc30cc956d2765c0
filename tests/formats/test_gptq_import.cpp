// GPTQ and AWQ imports against weights numpy computed from the published formulas
// (tools/make_checkpoint_fixtures.py quant): 4-bit act-order with AutoGPTQ's "zeros − 1" and a
// zero point of 16, symmetric gptq_v2 with a partial last group, 8-bit, 3-bit act-order
// (codes straddling words), 2-bit per channel, and AutoAWQ's interleaved GEMM packing. The import
// dequantized (quant/dequant.h, un-permuted through perm) must equal them bit for bit. Then
// malformed configurations and tensors, each a one-line error naming the problem.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "formats/hf_source.h"
#include "formats/safetensors_writer.h"
#include "quant/dequant.h"
#include "safetensors_test_util.h"

namespace marlin {
namespace {

namespace fs = std::filesystem;
using test::error_of;

const std::string kFixtures = std::string(MARLIN_FIXTURES_DIR) + "/formats/";

struct Variant {
  const char* dir;
  const char* format;  // of every linear except where K = 96 meets g64 (still int4-g64)
};

class QuantImport : public testing::TestWithParam<Variant> {};

TEST_P(QuantImport, DequantizesExactlyToThePublishedFormula) {
  const Variant v = GetParam();
  auto source = open_hf_source(kFixtures + v.dir);
  auto expected = SafetensorsFile::open(kFixtures + v.dir + "/expected.safetensors");
  const auto names = source->tensor_names();
  for (const auto& name : names) {
    EXPECT_FALSE(name.ends_with(".qweight") || name.ends_with(".qzeros") || name.ends_with(".g_idx") ||
                 name.ends_with(".scales"))
        << name;
  }
  ASSERT_EQ(expected->tensors().size(), 7u);
  for (const auto& want : expected->tensors()) {
    SCOPED_TRACE(want.name);
    EXPECT_NE(std::find(names.begin(), names.end(), want.name), names.end());
    auto t = source->tensor(want.name);
    ASSERT_TRUE(t.has_value());
    t->validate();
    EXPECT_EQ(t->format.name(), v.format);
    const int64_t n = int64_t(want.shape[0]), k = int64_t(want.shape[1]);
    ASSERT_EQ(t->rows, n);
    ASSERT_EQ(t->cols, k);
    if (t->format.act_order) check_permutation(t->perm, k);
    const auto bytes = expected->data(want);
    std::vector<float> stored(static_cast<size_t>(k)), logical(stored.size()), reference(stored.size());
    int64_t mismatches = 0;
    for (int64_t row = 0; row < n; ++row) {
      dequantize_row(*t, row, stored.data());
      for (int64_t j = 0; j < k; ++j) logical[size_t(t->perm ? t->perm[j] : j)] = stored[size_t(j)];
      std::memcpy(reference.data(), bytes.data() + size_t(row * k) * 4, size_t(k) * 4);
      for (int64_t j = 0; j < k; ++j) mismatches += std::memcmp(&logical[size_t(j)], &reference[size_t(j)], 4) != 0;
    }
    EXPECT_EQ(mismatches, 0);
  }
  // Unquantized tensors pass through as stored.
  auto embed = source->tensor("model.embed_tokens.weight");
  ASSERT_TRUE(embed.has_value());
  EXPECT_EQ(embed->format.kind, FormatKind::kF16);
  // The same view comes back on the second call (converted once, kept).
  EXPECT_EQ(source->tensor(expected->tensors()[0].name)->codes, source->tensor(expected->tensors()[0].name)->codes);
}

INSTANTIATE_TEST_SUITE_P(
    Variants, QuantImport,
    testing::Values(Variant{"gptq/int4_act_asym_v1", "int4-g32-asym-act"}, Variant{"gptq/int4_sym_v2", "int4-g64"},
                    Variant{"gptq/int8_asym_v1", "int8-g32-asym"}, Variant{"gptq/int3_act_sym", "int3-g32-act"},
                    Variant{"gptq/int2_pc_asym_v2", "int2-pc-asym"}, Variant{"awq/int4_gemm", "int4-g32-asym"}),
    [](const auto& info) {
      std::string name = info.param.dir;
      for (char& c : name)
        if (c == '/') c = '_';
      return name;
    });

// --- malformed checkpoints -------------------------------------------------------------------

const char* kLinear = "model.layers.0.mlp.up_proj";

struct Stored {
  SafetensorsDtype dtype;
  std::vector<uint64_t> shape;
  std::vector<uint8_t> bytes;  // zero-filled to size when empty
};

// A folder with config.json (+ quantization_config), one quantized linear and nothing else.
class FakeCheckpoint {
 public:
  explicit FakeCheckpoint(nlohmann::json quantization) : quantization_(std::move(quantization)) {}

  // A GPTQ 4-bit linear of K = 64 inputs and N = 64 outputs with group size 32.
  static std::map<std::string, Stored> gptq4() {
    return {{"qweight", {SafetensorsDtype::kI32, {8, 64}, {}}},
            {"qzeros", {SafetensorsDtype::kI32, {2, 8}, {}}},
            {"scales", {SafetensorsDtype::kF16, {2, 64}, {}}},
            {"g_idx", {SafetensorsDtype::kI32, {64}, {}}}};
  }

  std::string write(const std::map<std::string, Stored>& parts) {
    nlohmann::json config = {{"architectures", {"LlamaForCausalLM"}},
                             {"hidden_size", 64},
                             {"intermediate_size", 64},
                             {"num_hidden_layers", 1},
                             {"num_attention_heads", 4},
                             {"vocab_size", 64}};
    if (!quantization_.is_null()) config["quantization_config"] = quantization_;
    std::ofstream(dir_.file("config.json")) << config.dump();
    SafetensorsWriter w(dir_.file("model.safetensors"));
    for (const auto& [part, s] : parts) {
      uint64_t bytes = uint64_t(safetensors_dtype_bits(s.dtype)) / 8;
      for (auto d : s.shape) bytes *= d;
      std::vector<uint8_t> data = s.bytes;
      data.resize(size_t(bytes), 0);
      w.add(std::string(kLinear) + "." + part, s.dtype, s.shape, data);
    }
    w.finish();
    return dir_.path().string();
  }

 private:
  nlohmann::json quantization_;
  test::TempDir dir_;
};

nlohmann::json gptq_config(int bits = 4, int group = 32) {
  return {{"quant_method", "gptq"}, {"bits", bits}, {"group_size", group}, {"desc_act", true}, {"sym", false}};
}

// The error raised opening the checkpoint or, if it opens, converting the linear.
std::string import_error(const std::string& dir) {
  return error_of([&] { open_hf_source(dir)->tensor(std::string(kLinear) + ".weight"); });
}

void expect_error(const std::string& message, const std::string& fragment) {
  EXPECT_NE(message.find(fragment), std::string::npos) << "message: " << message << "\nwanted: " << fragment;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
}

std::vector<uint8_t> int32_bytes(const std::vector<int32_t>& values) {
  std::vector<uint8_t> out(values.size() * 4);
  std::memcpy(out.data(), values.data(), out.size());
  return out;
}

TEST(QuantImportErrors, ValidCheckpointImports) {
  FakeCheckpoint c(gptq_config());
  auto parts = FakeCheckpoint::gptq4();
  std::vector<int32_t> g_idx(64);
  for (int k = 0; k < 64; ++k) g_idx[size_t(k)] = (k % 2);  // act-order: even inputs in group 0
  parts["g_idx"].bytes = int32_bytes(g_idx);
  auto source = open_hf_source(c.write(parts));
  auto t = source->tensor(std::string(kLinear) + ".weight");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->format.name(), "int4-g32-asym-act");
  EXPECT_EQ(t->perm[1], 2);
}

TEST(QuantImportErrors, BadTensors) {
  auto with = [](const char* part, Stored s) {
    auto parts = FakeCheckpoint::gptq4();
    parts[part] = std::move(s);
    return parts;
  };
  {
    FakeCheckpoint c(gptq_config());
    expect_error(import_error(c.write(with("qweight", {SafetensorsDtype::kF32, {8, 64}, {}}))),
                 "tensor 'model.layers.0.mlp.up_proj.qweight' is F32 [8, 64], expected I32 [*, *]");
  }
  {
    FakeCheckpoint c(gptq_config());
    expect_error(import_error(c.write(with("scales", {SafetensorsDtype::kF16, {64, 2}, {}}))),
                 "tensor 'model.layers.0.mlp.up_proj.scales' is F16 [64, 2], expected F16 [2, 64]");
  }
  {
    FakeCheckpoint c(gptq_config());
    expect_error(import_error(c.write(with("scales", {SafetensorsDtype::kBF16, {2, 64}, {}}))), "expected F16 [2, 64]");
  }
  {
    FakeCheckpoint c(gptq_config());
    expect_error(import_error(c.write(with("qzeros", {SafetensorsDtype::kI32, {2, 64}, {}}))),
                 "qzeros' is I32 [2, 64], expected I32 [2, 8]");
  }
  {
    FakeCheckpoint c(gptq_config());
    expect_error(import_error(c.write(with("g_idx", {SafetensorsDtype::kI32, {63}, {}}))),
                 "g_idx' is I32 [63], expected I32 [64]");
  }
  {
    FakeCheckpoint c(gptq_config());
    std::vector<int32_t> g_idx(64, 0);
    g_idx[3] = 9;
    expect_error(import_error(c.write(with("g_idx", {SafetensorsDtype::kI32, {64}, int32_bytes(g_idx)}))),
                 "g_idx[3] = 9 is outside 0..1");
  }
  {
    FakeCheckpoint c(gptq_config());
    std::vector<int32_t> g_idx(64, 0);
    g_idx[0] = 1;  // group 1 gets 33 inputs, group 0 only 31
    expect_error(import_error(c.write(with("g_idx", {SafetensorsDtype::kI32, {64}, int32_bytes(g_idx)}))),
                 "g_idx does not give every group 32 inputs");
  }
  {
    FakeCheckpoint c(gptq_config());
    auto parts = FakeCheckpoint::gptq4();
    parts.erase("scales");
    expect_error(import_error(c.write(parts)), "tensor 'model.layers.0.mlp.up_proj.scales' is missing");
  }
  {
    FakeCheckpoint c(gptq_config(3));
    expect_error(import_error(c.write(with("qweight", {SafetensorsDtype::kI32, {8, 64}, {}}))),
                 "holds no whole number of 3-bit inputs");
  }
  {
    FakeCheckpoint c(gptq_config(4, 16));
    auto parts = FakeCheckpoint::gptq4();
    parts["qzeros"].shape = {4, 8};
    parts["scales"].shape = {4, 64};
    parts.erase("g_idx");
    expect_error(import_error(c.write(parts)),
                 "group size 16 has no marlin format (32, 64, 128 or one group per output)");
  }
  {
    // AutoGPTQ v1 8-bit: a stored zero of 255 means 256, which no byte holds.
    FakeCheckpoint c(gptq_config(8));
    auto parts = FakeCheckpoint::gptq4();
    parts["qweight"].shape = {16, 64};
    parts["qzeros"] = {SafetensorsDtype::kI32, {2, 16}, std::vector<uint8_t>(128, 0xff)};
    parts.erase("g_idx");
    expect_error(import_error(c.write(parts)), "zero point 256 (row 0, group 0) does not fit a byte");
  }
}

TEST(QuantImportErrors, BadConfigs) {
  auto config_error = [](nlohmann::json q) {
    FakeCheckpoint c(std::move(q));
    return import_error(c.write(FakeCheckpoint::gptq4()));
  };
  expect_error(config_error({{"quant_method", "gptq"}, {"bits", 5}}),
               "GPTQ with 5 bits is not supported (2, 3, 4 or 8)");
  expect_error(config_error({{"quant_method", "gptq"}}), "quantization_config: 'bits' is missing");
  expect_error(config_error({{"quant_method", "gptq"}, {"bits", 4}, {"checkpoint_format", "marlin"}}),
               "GPTQ checkpoint format 'marlin' is not supported (gptq or gptq_v2)");
  expect_error(config_error({{"quant_method", "gptq"}, {"bits", 4}, {"group_size", 0}}), "group_size 0 is not -1");
  expect_error(config_error({{"quant_method", "gptq"}, {"bits", 4}, {"desc_act", "yes"}}),
               "'desc_act' is '\"yes\"', not true or false");
  expect_error(config_error({{"quant_method", "bitsandbytes"}}), "quantization method 'bitsandbytes' is not supported");
  expect_error(config_error({{"quant_method", "awq"}, {"bits", 4}, {"version", "gemv"}}),
               "AWQ version 'gemv' is not supported (gemm)");
  expect_error(config_error({{"quant_method", "awq"}, {"bits", 8}}), "AWQ with 8 bits is not supported");
  expect_error(config_error({{"quant_method", "awq"}, {"zero_point", false}}), "AWQ without zero points");
  expect_error(config_error(nlohmann::json::array()), "not an object");
}

TEST(QuantImportErrors, AwqShapes) {
  FakeCheckpoint c({{"quant_method", "awq"}, {"bits", 4}, {"group_size", 32}, {"version", "GEMM"}});
  std::map<std::string, Stored> parts = {{"qweight", {SafetensorsDtype::kI32, {64, 8}, {}}},
                                         {"qzeros", {SafetensorsDtype::kI32, {2, 8}, {}}},
                                         {"scales", {SafetensorsDtype::kF16, {2, 32}, {}}}};
  expect_error(import_error(c.write(parts)), "scales' is F16 [2, 32], expected F16 [2, 64]");
}

}  // namespace
}  // namespace marlin
