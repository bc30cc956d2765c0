// safetensors reader, writer and sharded sets on hand-built files.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <numeric>

#include "core/error.h"
#include "formats/safetensors.h"
#include "formats/safetensors_shards.h"
#include "formats/safetensors_writer.h"
#include "safetensors_test_util.h"

namespace marlin {
namespace {

using test::error_of;
using test::safetensors_bytes;
using test::TempDir;

std::vector<uint8_t> iota_bytes(size_t n, uint8_t start = 0) {
  std::vector<uint8_t> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

TEST(SafetensorsDtype, NamesAndSizes) {
  EXPECT_EQ(safetensors_dtype_name(SafetensorsDtype::kBF16), "BF16");
  EXPECT_EQ(safetensors_dtype_bits(SafetensorsDtype::kF4), 4);
  EXPECT_EQ(safetensors_dtype_bits(SafetensorsDtype::kF6E3M2), 6);
  EXPECT_EQ(safetensors_dtype_bits(SafetensorsDtype::kC64), 64);
  EXPECT_EQ(parse_safetensors_dtype("F8_E4M3"), SafetensorsDtype::kF8E4M3);
  EXPECT_EQ(parse_safetensors_dtype("F8_E8M0"), SafetensorsDtype::kF8E8M0);
  EXPECT_EQ(parse_safetensors_dtype("float32"), std::nullopt);
}

TEST(SafetensorsReader, TensorsComeBackInStorageOrder) {
  const std::string header =
      R"({"b":{"dtype":"U8","shape":[2],"data_offsets":[6,8]},)"
      R"("__metadata__":{"format":"pt","note":"x"},)"
      R"("a":{"dtype":"F16","shape":[1,3],"data_offsets":[0,6]},)"
      R"("empty":{"dtype":"F32","shape":[0,5],"data_offsets":[8,8]},)"
      R"("s":{"dtype":"I32","shape":[],"data_offsets":[8,12],"extra":{"nested":[1,{"x":null}]}}})";
  const auto bytes = safetensors_bytes(header, iota_bytes(12, 100));
  const auto h = parse_safetensors_header(bytes, "t");
  EXPECT_EQ(h.data_start, 8 + header.size());
  ASSERT_EQ(h.tensors.size(), 4u);
  EXPECT_EQ(h.tensors[0].name, "a");
  EXPECT_EQ(h.tensors[0].dtype, SafetensorsDtype::kF16);
  EXPECT_EQ(h.tensors[0].shape, (std::vector<uint64_t>{1, 3}));
  EXPECT_EQ(h.tensors[0].offset, h.data_start);
  EXPECT_EQ(h.tensors[0].bytes, 6u);
  EXPECT_EQ(h.tensors[1].name, "b");
  EXPECT_EQ(bytes[h.tensors[1].offset], 106);
  // A zero-element tensor and a scalar sit at the same offset.
  EXPECT_EQ(h.tensors[2].name, "empty");
  EXPECT_EQ(h.tensors[2].bytes, 0u);
  EXPECT_EQ(h.tensors[3].name, "s");
  EXPECT_EQ(h.tensors[3].elements, 1u);
  EXPECT_EQ(h.tensors[3].bytes, 4u);
  ASSERT_EQ(h.metadata.size(), 2u);
  EXPECT_EQ(h.metadata[0], (std::pair<std::string, std::string>{"format", "pt"}));
}

TEST(SafetensorsReader, NullMetadataAndEmptyFile) {
  EXPECT_TRUE(parse_safetensors_header(safetensors_bytes(R"({"__metadata__":null})"), "t").metadata.empty());
  auto h = parse_safetensors_header(safetensors_bytes("{}  "), "t");
  EXPECT_TRUE(h.tensors.empty());
  EXPECT_EQ(h.data_start, 12u);
}

TEST(SafetensorsReader, OpensAFile) {
  TempDir dir;
  const std::string path = dir.file("x.safetensors");
  test::write_file(
      path, safetensors_bytes(R"({"__metadata__":{"k":"v"},"w":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}})",
                              {1, 2, 3}));
  auto file = SafetensorsFile::open(path);
  EXPECT_EQ(file->path(), path);
  const auto* w = file->find("w");
  ASSERT_NE(w, nullptr);
  auto data = file->data(*w);
  EXPECT_EQ(std::vector<uint8_t>(data.begin(), data.end()), (std::vector<uint8_t>{1, 2, 3}));
  EXPECT_EQ(file->find("nope"), nullptr);
  EXPECT_EQ(file->metadata("k"), "v");
  EXPECT_EQ(file->metadata("other"), std::nullopt);
  EXPECT_NE(error_of([&] { SafetensorsFile::open(dir.file("missing.safetensors")); }).find("cannot open"),
            std::string::npos);
}

TEST(SafetensorsWriter, RoundTrip) {
  TempDir dir;
  const std::string path = dir.file("out.safetensors");
  const auto a = iota_bytes(24), b = iota_bytes(3, 50), c = iota_bytes(1000, 7);
  {
    SafetensorsWriter w(path);
    w.set_metadata("format", "pt");
    w.add("a", SafetensorsDtype::kF32, {2, 3}, a);
    w.add("b", SafetensorsDtype::kU8, {3}, b);
    w.set_metadata("format", "np");  // replaces
    w.add("empty", SafetensorsDtype::kF16, {0}, {});
    w.begin("c", SafetensorsDtype::kI16, {10, 50});
    for (size_t at = 0; at < c.size(); at += 300)
      w.write(std::span(c).subspan(at, std::min<size_t>(300, c.size() - at)));
    w.end();
    EXPECT_EQ(w.data_bytes(), 24u + 3 + 1000);
    EXPECT_FALSE(std::filesystem::exists(path));
    w.finish();
  }
  EXPECT_FALSE(std::filesystem::exists(path + ".partial"));
  auto file = SafetensorsFile::open(path);
  EXPECT_EQ(file->data_start() % 8, 0u);
  ASSERT_EQ(file->tensors().size(), 4u);
  auto bytes_of = [&](const char* name) {
    auto d = file->data(*file->find(name));
    return std::vector<uint8_t>(d.begin(), d.end());
  };
  EXPECT_EQ(bytes_of("a"), a);
  EXPECT_EQ(bytes_of("b"), b);
  EXPECT_EQ(bytes_of("c"), c);
  EXPECT_EQ(file->find("c")->shape, (std::vector<uint64_t>{10, 50}));
  EXPECT_EQ(file->find("empty")->bytes, 0u);
  EXPECT_EQ(file->metadata("format"), "np");
}

TEST(SafetensorsWriter, HeaderLargerThanTheReservationMovesTheData) {
  TempDir dir;
  const std::string path = dir.file("moved.safetensors");
  std::vector<std::vector<uint8_t>> tensors;
  {
    SafetensorsWriter w(path, {.header_reserve = 16, .align_tensors = false});
    for (int i = 0; i < 50; ++i) {
      tensors.push_back(iota_bytes(size_t(1 + i * 3), uint8_t(i)));
      w.add("tensor_with_a_long_name_" + std::to_string(i), SafetensorsDtype::kU8, {tensors.back().size()},
            tensors.back());
    }
    w.finish();
  }
  auto file = SafetensorsFile::open(path);
  EXPECT_GT(file->data_start(), 16u);
  EXPECT_EQ(file->data_start() % 8, 0u);
  for (int i = 0; i < 50; ++i) {
    auto d = file->data(*file->find("tensor_with_a_long_name_" + std::to_string(i)));
    EXPECT_EQ(std::vector<uint8_t>(d.begin(), d.end()), tensors[size_t(i)]) << i;
  }
}

TEST(SafetensorsWriter, AlignedTensorsGetPadding) {
  TempDir dir;
  const std::string path = dir.file("aligned.safetensors");
  {
    SafetensorsWriter w(path, {.header_reserve = 4096, .align_tensors = true});
    w.add("odd", SafetensorsDtype::kU8, {3}, iota_bytes(3));
    w.add("f", SafetensorsDtype::kF32, {2}, iota_bytes(8));
    w.add("h", SafetensorsDtype::kF16, {1}, iota_bytes(2));
    w.add("g", SafetensorsDtype::kI32, {1}, iota_bytes(4));
    w.finish();
  }
  auto file = SafetensorsFile::open(path);
  for (const char* name : {"odd", "f", "h", "g"}) EXPECT_EQ(file->find(name)->offset % 8, 0u) << name;
  EXPECT_NE(file->find("__padding_0__"), nullptr);
  EXPECT_EQ(file->tensors().size(), 6u);
}

TEST(SafetensorsWriter, UnfinishedWriterLeavesNothing) {
  TempDir dir;
  const std::string path = dir.file("never.safetensors");
  {
    SafetensorsWriter w(path);
    w.add("a", SafetensorsDtype::kU8, {1}, iota_bytes(1));
    EXPECT_TRUE(std::filesystem::exists(path + ".partial"));
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".partial"));
}

TEST(SafetensorsWriter, MisuseIsAnError) {
  TempDir dir;
  SafetensorsWriter w(dir.file("bad.safetensors"));
  EXPECT_NE(error_of([&] {
              w.add("a", SafetensorsDtype::kF32, {2}, iota_bytes(7));
            }).find("7 bytes given, its shape needs 8"),
            std::string::npos);
  SafetensorsWriter w2(dir.file("bad2.safetensors"));
  w2.add("a", SafetensorsDtype::kU8, {1}, iota_bytes(1));
  EXPECT_NE(error_of([&] { w2.add("a", SafetensorsDtype::kU8, {1}, iota_bytes(1)); }).find("tensor 'a' is added twice"),
            std::string::npos);
  EXPECT_NE(error_of([&] { w2.add("__metadata__", SafetensorsDtype::kU8, {1}, iota_bytes(1)); }).find("not a usable"),
            std::string::npos);
  EXPECT_NE(error_of([&] { w2.add("bad\xff", SafetensorsDtype::kU8, {1}, iota_bytes(1)); }).find("not a usable"),
            std::string::npos);
  EXPECT_NE(
      error_of([&] { w2.add("f4", SafetensorsDtype::kF4, {3}, iota_bytes(2)); }).find("not a whole number of bytes"),
      std::string::npos);
  w2.begin("p", SafetensorsDtype::kU8, {4});
  w2.write(iota_bytes(2));
  EXPECT_NE(error_of([&] { w2.end(); }).find("2 bytes short"), std::string::npos);
  EXPECT_NE(error_of([&] { w2.write(iota_bytes(3)); }).find("more bytes written than its shape holds"),
            std::string::npos);
  EXPECT_NE(error_of([] { SafetensorsWriter bad("/nonexistent-dir/x.safetensors"); }).find("cannot create"),
            std::string::npos);
}

// --- sharded sets ---------------------------------------------------------------------------

void write_shard(const std::string& path, const std::vector<std::string>& names) {
  SafetensorsWriter w(path);
  for (size_t i = 0; i < names.size(); ++i) w.add(names[i], SafetensorsDtype::kU8, {2}, iota_bytes(2, uint8_t(i)));
  w.finish();
}

TEST(SafetensorsShards, OpensAnIndex) {
  TempDir dir;
  write_shard(dir.file("model-00001-of-00002.safetensors"), {"a", "b"});
  write_shard(dir.file("model-00002-of-00002.safetensors"), {"c"});
  test::write_file(dir.file("model.safetensors.index.json"),
                   std::string(R"({"metadata":{"total_size":6},"weight_map":{"c":"model-00002-of-00002.safetensors",)"
                               R"("a":"model-00001-of-00002.safetensors","b":"model-00001-of-00002.safetensors"}})"));
  auto set = SafetensorsShards::open(dir.file("model.safetensors.index.json"));
  EXPECT_EQ(set->files().size(), 2u);
  ASSERT_EQ(set->entries().size(), 3u);
  EXPECT_EQ(set->entries()[0].tensor->name, "a");
  EXPECT_EQ(set->entries()[2].tensor->name, "c");
  const auto* c = set->find("c");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(set->data(*c)[1], 1);
  EXPECT_EQ(set->find("d"), nullptr);

  auto single = SafetensorsShards::open(dir.file("model-00002-of-00002.safetensors"));
  EXPECT_EQ(single->entries().size(), 1u);
}

TEST(SafetensorsShards, BrokenIndexes) {
  TempDir dir;
  write_shard(dir.file("s1.safetensors"), {"a", "b"});
  write_shard(dir.file("s2.safetensors"), {"b"});
  const std::string index = dir.file("model.safetensors.index.json");
  auto rejected = [&](const std::string& json) {
    test::write_file(index, json);
    return error_of([&] { SafetensorsShards::open(index); });
  };
  EXPECT_NE(rejected(R"({"weight_map":{"a":"s1.safetensors","x":"gone.safetensors"}})")
                .find("shard 'gone.safetensors' (holding 'x') does not exist"),
            std::string::npos);
  EXPECT_NE(
      rejected(R"({"weight_map":{"q":"s1.safetensors"}})").find("tensor 'q' is not in its shard 's1.safetensors'"),
      std::string::npos);
  EXPECT_NE(rejected(R"({"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}})").find("tensor 'b' is in both"),
            std::string::npos);
  EXPECT_NE(rejected(R"({"weight_map":{"a":"../s1.safetensors"}})").find("is not a file name inside"),
            std::string::npos);
  EXPECT_NE(rejected(R"({"weight_map":{"a":"/etc/passwd"}})").find("is not a file name inside"), std::string::npos);
  EXPECT_NE(rejected(R"({"weight_map":{"a":3}})").find("weight_map entry 'a' is number, not a file name"),
            std::string::npos);
  EXPECT_NE(rejected(R"({"weight_map":[]})").find("'weight_map' is missing or not an object"), std::string::npos);
  EXPECT_NE(rejected(R"({"weight_map":{}})").find("names no tensors"), std::string::npos);
  EXPECT_NE(rejected("{oops").find("not valid JSON"), std::string::npos);
  EXPECT_NE(rejected("[1]").find("not an object"), std::string::npos);
}

}  // namespace
}  // namespace marlin
