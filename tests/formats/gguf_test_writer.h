// A byte-level GGUF writer for tests: builds valid files and, by editing the spec or the bytes,
// malformed ones. It writes exactly what it is told (counts, lengths, offsets), never fixing them.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/checked_math.h"
#include "formats/gguf.h"
#include "quant/ggml_types.h"

namespace marlin::test {

class Bytes {
 public:
  template <typename T>
  Bytes& put(T value) {
    const auto* p = reinterpret_cast<const uint8_t*>(&value);
    data_.insert(data_.end(), p, p + sizeof(T));
    return *this;
  }
  Bytes& u8(uint8_t v) { return put(v); }
  Bytes& u32(uint32_t v) { return put(v); }
  Bytes& u64(uint64_t v) { return put(v); }
  Bytes& type(GgufType t) { return put(uint32_t(t)); }
  Bytes& raw(std::string_view s) {
    data_.insert(data_.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& str(std::string_view s) { return u64(s.size()).raw(s); }
  Bytes& append(const Bytes& other) {
    data_.insert(data_.end(), other.data_.begin(), other.data_.end());
    return *this;
  }
  Bytes& fill(size_t count, uint8_t value) {
    data_.insert(data_.end(), count, value);
    return *this;
  }
  const std::vector<uint8_t>& data() const { return data_; }
  std::vector<uint8_t>& data() { return data_; }
  size_t size() const { return data_.size(); }

 private:
  std::vector<uint8_t> data_;
};

// Encoded metadata values (type id + payload), as they follow a key.
template <typename T>
Bytes scalar(GgufType type, T value) {
  return Bytes().type(type).put(value);
}
inline Bytes string_value(std::string_view s) { return Bytes().type(GgufType::STRING).str(s); }
// An array value's header; the caller appends `count` item payloads.
inline Bytes array_value(GgufType element, uint64_t count) {
  return Bytes().type(GgufType::ARRAY).type(element).u64(count);
}

struct TensorSpec {
  std::string name;
  std::vector<uint64_t> shape;
  uint32_t type = uint32_t(GgmlType::F32);
  uint64_t offset = 0;  // relative to the data section
};

struct GgufSpec {
  uint32_t magic = 0x46554747;
  uint32_t version = 3;
  std::optional<uint64_t> tensor_count;    // written instead of the true count when set
  std::optional<uint64_t> metadata_count;  // likewise
  std::vector<std::pair<std::string, Bytes>> metadata;
  std::vector<TensorSpec> tensors;
  uint64_t alignment = 32;                 // padding before the data section
  std::optional<uint64_t> data_bytes;      // data section size; default: up to the last tensor's end

  GgufSpec& add(std::string key, Bytes value) {
    metadata.emplace_back(std::move(key), std::move(value));
    return *this;
  }

  // Data size of a tensor per the type table; 0 for ids the table does not know, partial
  // blocks or sizes that overflow (tests of such shapes set data_bytes themselves).
  static uint64_t tensor_bytes(const TensorSpec& t) {
    const auto info = ggml_type_info(t.type);
    if (!info || t.shape.empty()) return 0;
    std::optional<uint64_t> bytes = ggml_row_bytes(info->type, t.shape[0]);
    for (size_t d = 1; d < t.shape.size() && bytes; ++d) bytes = checked_mul(*bytes, t.shape[d]);
    return bytes.value_or(0);
  }

  // Places the tensors back to back, each at an aligned offset.
  GgufSpec& layout() {
    uint64_t offset = 0;
    for (auto& t : tensors) {
      t.offset = offset;
      offset = (offset + tensor_bytes(t) + alignment - 1) / alignment * alignment;
    }
    return *this;
  }

  std::vector<uint8_t> serialize() const {
    Bytes b;
    b.u32(magic).u32(version);
    b.u64(tensor_count.value_or(tensors.size())).u64(metadata_count.value_or(metadata.size()));
    for (const auto& [key, value] : metadata) b.str(key).append(value);
    for (const auto& t : tensors) {
      b.str(t.name).u32(uint32_t(t.shape.size()));
      for (uint64_t d : t.shape) b.u64(d);
      b.u32(t.type).u64(t.offset);
    }
    b.fill((alignment - b.size() % alignment) % alignment, 0);
    uint64_t data_end = 0;
    for (const auto& t : tensors) data_end = std::max(data_end, t.offset + tensor_bytes(t));
    const uint64_t data_size = data_bytes.value_or(data_end);
    for (uint64_t i = 0; i < data_size; ++i) b.u8(uint8_t(i * 131 + 7));
    return b.data();
  }
};

// A small valid file: every value type, nested arrays, four tensors of different types/ranks.
inline GgufSpec small_valid_spec() {
  GgufSpec spec;
  spec.add("general.architecture", string_value("testarch"));
  spec.add("general.alignment", scalar(GgufType::UINT32, uint32_t(32)));
  spec.add("test.u8", scalar(GgufType::UINT8, uint8_t(200)));
  spec.add("test.i8", scalar(GgufType::INT8, int8_t(-100)));
  spec.add("test.u16", scalar(GgufType::UINT16, uint16_t(60000)));
  spec.add("test.i16", scalar(GgufType::INT16, int16_t(-30000)));
  spec.add("test.u32", scalar(GgufType::UINT32, uint32_t(4000000000u)));
  spec.add("test.i32", scalar(GgufType::INT32, int32_t(-2000000000)));
  spec.add("test.u64", scalar(GgufType::UINT64, uint64_t(18000000000000000000u)));
  spec.add("test.i64", scalar(GgufType::INT64, int64_t(-9000000000000000000)));
  spec.add("test.f32", scalar(GgufType::FLOAT32, 0.25f));
  spec.add("test.f64", scalar(GgufType::FLOAT64, -1.5e300));
  spec.add("test.bool", scalar(GgufType::BOOL, uint8_t(1)));
  spec.add("test.string", string_value("line one\nline two"));
  spec.add("test.strings", array_value(GgufType::STRING, 3).str("a").str("").str("ccc"));
  spec.add("test.u16s", array_value(GgufType::UINT16, 2).put(uint16_t(7)).put(uint16_t(65535)));
  spec.add("test.f32s", array_value(GgufType::FLOAT32, 2).put(1.5f).put(-2.0f));
  // [[1, 2], ["x"]]: inner arrays carry their own element type and count.
  spec.add("test.nested", array_value(GgufType::ARRAY, 2)
                              .type(GgufType::INT32).u64(2).put(int32_t(1)).put(int32_t(2))
                              .type(GgufType::STRING).u64(1).str("x"));
  spec.tensors = {
      {"t.f32", {4, 2}, uint32_t(GgmlType::F32)},
      {"t.q8_0", {32, 2}, uint32_t(GgmlType::Q8_0)},
      {"t.q4_k", {256}, uint32_t(GgmlType::Q4_K)},
      {"t.f16", {8, 1, 1, 2}, uint32_t(GgmlType::F16)},
  };
  spec.layout();
  return spec;
}

// A file in a per-process temporary directory, removed when this object goes away.
class TempFile {
 public:
  explicit TempFile(const std::vector<uint8_t>& bytes) {
    static std::atomic<int> counter{0};
    const auto dir = std::filesystem::temp_directory_path() / ("marlin_gguf_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    path_ = (dir / ("f" + std::to_string(counter++) + ".gguf")).string();
    std::ofstream out(path_, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  }
  ~TempFile() { std::filesystem::remove(path_); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline std::unique_ptr<GgufFile> open_bytes(const std::vector<uint8_t>& bytes) {
  TempFile file(bytes);
  return GgufFile::open(file.path());  // the mapping stays valid after the name is removed
}

}  // namespace marlin::test
