// Files for tests/python/test_checkpoints_safetensors.py, which reads them with the reference
// `safetensors` package: when MARLIN_SAFETENSORS_EXPORT_DIR is set, the writer's output (every
// dtype, padding, a header that outgrew its reservation) lands there with a manifest of what was
// written. Without the variable the test only checks that the files re-read.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "formats/safetensors.h"
#include "formats/safetensors_writer.h"
#include "safetensors_test_util.h"

namespace marlin {
namespace {

struct Written {
  std::string name;
  SafetensorsDtype dtype;
  std::vector<uint64_t> shape;
  std::vector<uint8_t> bytes;
};

std::vector<Written> sample_tensors() {
  std::mt19937 rng(7);
  std::vector<Written> out;
  const SafetensorsDtype all[] = {
      SafetensorsDtype::kBool,       SafetensorsDtype::kU8,         SafetensorsDtype::kI8,
      SafetensorsDtype::kF8E4M3,     SafetensorsDtype::kF8E5M2,     SafetensorsDtype::kF8E8M0,
      SafetensorsDtype::kF4,         SafetensorsDtype::kI16,        SafetensorsDtype::kU16,
      SafetensorsDtype::kF16,        SafetensorsDtype::kBF16,       SafetensorsDtype::kI32,
      SafetensorsDtype::kU32,        SafetensorsDtype::kF32,        SafetensorsDtype::kI64,
      SafetensorsDtype::kU64,        SafetensorsDtype::kF64,        SafetensorsDtype::kC64,
      SafetensorsDtype::kF8E4M3Fnuz, SafetensorsDtype::kF8E5M2Fnuz,
  };
  for (size_t i = 0; i < std::size(all); ++i) {
    Written w{"t" + std::to_string(i) + "." + std::string(safetensors_dtype_name(all[i])), all[i], {3, 2 + i % 4}, {}};
    if (all[i] == SafetensorsDtype::kF4) w.shape = {3, 6};
    uint64_t bits = uint64_t(safetensors_dtype_bits(all[i])) * w.shape[0] * w.shape[1];
    w.bytes.resize(size_t(bits / 8));
    for (auto& b : w.bytes) b = uint8_t(all[i] == SafetensorsDtype::kBool ? rng() & 1 : rng());
    out.push_back(std::move(w));
  }
  out.push_back({"big", SafetensorsDtype::kF32, {257, 1031}, std::vector<uint8_t>(257 * 1031 * 4)});
  for (auto& b : out.back().bytes) b = uint8_t(rng());
  out.push_back({"scalar", SafetensorsDtype::kF64, {}, std::vector<uint8_t>(8, 0x3f)});
  out.push_back({"empty", SafetensorsDtype::kBF16, {4, 0}, {}});
  return out;
}

std::string hex(const std::vector<uint8_t>& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (uint8_t b : bytes) out += std::string{digits[b >> 4], digits[b & 15]};
  return out;
}

TEST(SafetensorsExport, WriterOutputForThePythonPackage) {
  test::TempDir scratch;
  const char* env = std::getenv("MARLIN_SAFETENSORS_EXPORT_DIR");
  const std::string dir = env ? env : scratch.path().string();
  const auto tensors = sample_tensors();
  nlohmann::json manifest;
  struct Variant {
    const char* file;
    SafetensorsWriter::Options options;
  };
  for (const Variant& v : {Variant{"plain.safetensors", {}},
                           Variant{"aligned.safetensors", {.header_reserve = 4096, .align_tensors = true}},
                           Variant{"moved.safetensors", {.header_reserve = 16, .align_tensors = false}}}) {
    const std::string path = dir + "/" + v.file;
    {
      SafetensorsWriter w(path, v.options);
      w.set_metadata("format", "pt");
      w.set_metadata("marlin", "{\"format_version\": 1, \"text\": \"ünïcode\"}");
      for (const auto& t : tensors) w.add(t.name, t.dtype, t.shape, t.bytes);
      w.finish();
    }
    auto file = SafetensorsFile::open(path);
    for (const auto& t : tensors) {
      const auto* read = file->find(t.name);
      ASSERT_NE(read, nullptr) << t.name;
      auto data = file->data(*read);
      EXPECT_TRUE(std::equal(data.begin(), data.end(), t.bytes.begin(), t.bytes.end())) << t.name;
      if (v.options.align_tensors) EXPECT_EQ(read->offset % 8, 0u) << t.name;
    }
    nlohmann::json entry;
    entry["aligned"] = v.options.align_tensors;
    entry["metadata"] = {{"format", "pt"}, {"marlin", "{\"format_version\": 1, \"text\": \"ünïcode\"}"}};
    for (const auto& t : tensors) {
      entry["tensors"][t.name] = {
          {"dtype", safetensors_dtype_name(t.dtype)}, {"shape", t.shape}, {"hex", hex(t.bytes)}};
    }
    manifest[v.file] = entry;
  }
  std::ofstream(dir + "/manifest.json") << manifest.dump(1);
}

}  // namespace
}  // namespace marlin
