// safetensors reader: an 8-byte little-endian header length, a JSON header naming every tensor
// (dtype, shape, data_offsets into the data section) plus an optional "__metadata__" string map,
// then the data section, memory-mapped.
//
// Checked on open, each failure a one-line marlin::Error starting "safetensors: <file>: " and
// naming the tensor or field: the header length (at most 100 MB, inside the file), the header is
// one JSON object, every dtype is known, every shape dimension a non-negative integer, every
// tensor's byte span equals its element count times its dtype size (overflow checked, whole bytes
// for sub-byte dtypes), spans lie inside the data section, no two spans overlap, and the spans
// cover the data section without holes (as the reference implementation requires). Duplicate
// tensor names and duplicate fields are rejected (the reference keeps the last silently).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/mapped_file.h"

namespace marlin {

// Element types, as named in headers ("F32", "BF16", "F8_E4M3", "F4", ...).
enum class SafetensorsDtype : uint8_t {
  kBool,
  kU8,
  kI8,
  kF8E4M3,
  kF8E4M3Fnuz,
  kF8E5M2,
  kF8E5M2Fnuz,
  kF8E8M0,
  kF4,  // E2M1, two per byte
  kF6E2M3,
  kF6E3M2,
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kI64,
  kU64,
  kF64,
  kC64,
};

std::string_view safetensors_dtype_name(SafetensorsDtype dtype);
int safetensors_dtype_bits(SafetensorsDtype dtype);
std::optional<SafetensorsDtype> parse_safetensors_dtype(std::string_view name);

// The reference implementation's limit on the header length.
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

struct SafetensorsTensor {
  std::string name;
  SafetensorsDtype dtype;
  std::vector<uint64_t> shape;
  uint64_t elements = 0;
  uint64_t offset = 0;  // from the start of the file
  uint64_t bytes = 0;
};

// What a header says, checked against the size of the file it came from.
struct SafetensorsHeader {
  uint64_t data_start = 0;                                    // 8 + header length
  std::vector<SafetensorsTensor> tensors;                     // by offset: storage order
  std::vector<std::pair<std::string, std::string>> metadata;  // "__metadata__", in header order
};

// Parses and checks the header of `file` (the whole file's bytes); `source` names it in errors.
SafetensorsHeader parse_safetensors_header(std::span<const uint8_t> file, std::string_view source);

class SafetensorsFile {
 public:
  // Maps and checks PATH; marlin::Error naming the path and the problem.
  static std::unique_ptr<SafetensorsFile> open(const std::string& path);

  const std::string& path() const { return file_.path(); }
  uint64_t file_size() const { return file_.size(); }
  uint64_t data_start() const { return header_.data_start; }

  const std::vector<SafetensorsTensor>& tensors() const { return header_.tensors; }
  const SafetensorsTensor* find(std::string_view name) const;
  // The tensor's bytes inside the mapping (valid while this object lives).
  std::span<const uint8_t> data(const SafetensorsTensor& tensor) const {
    return {file_.data() + tensor.offset, size_t(tensor.bytes)};
  }

  const std::vector<std::pair<std::string, std::string>>& metadata() const { return header_.metadata; }
  std::optional<std::string_view> metadata(std::string_view key) const;

 private:
  explicit SafetensorsFile(const std::string& path);

  MappedFile file_;
  SafetensorsHeader header_;
  std::unordered_map<std::string_view, size_t> index_;  // name -> position in tensors()
};

// "[576, 49152]"
std::string safetensors_shape_text(std::span<const uint64_t> shape);

}  // namespace marlin
