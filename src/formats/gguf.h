// GGUF reader (versions 2 and 3): metadata, tensor infos and tensor data of a memory-mapped file.
//
// Every count, length, offset and size read from the file is checked, with overflow-safe
// arithmetic, against the bytes that remain before anything is allocated or read; a malformed
// file raises marlin::Error with one line naming the field ("gguf: tensor 'blk.0.attn_q.weight':
// data [offset 123, size 456] lies past the end of the file (789 bytes)").
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "core/mapped_file.h"
#include "quant/ggml_types.h"

namespace marlin {

// On-disk metadata value type ids.
enum class GgufType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
  BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
std::string_view gguf_type_name(GgufType type);

// Parser limits: arrays nest at most this deep (an array of arrays is depth 2) and a file holds
// at most this many metadata values in all, array items included (each costs ~48 bytes of
// memory, so a file of many 1-byte items cannot demand 48x its size).
inline constexpr int kGgufMaxArrayDepth = 8;
inline constexpr uint64_t kGgufMaxMetadataValues = uint64_t(1) << 24;

struct GgufValue;
struct GgufArray {
  GgufType element_type;
  std::vector<GgufValue> items;
};

// One metadata value. Integers keep their signedness; the stored GgufType says the exact width.
// UINT8..UINT64 hold uint64_t, INT8..INT64 int64_t, FLOAT32/FLOAT64 double, BOOL bool,
// STRING std::string (raw bytes, not validated as UTF-8), ARRAY GgufArray.
struct GgufValue {
  GgufType type;
  std::variant<uint64_t, int64_t, double, bool, std::string, GgufArray> value;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<uint64_t> shape;  // GGML order: shape[0] is the contiguous (row) dimension
  GgmlType type;
  uint64_t offset;   // from the start of the file (already includes the data section start)
  uint64_t bytes;    // size of the tensor data
  uint64_t elements;
};

class GgufFile {
 public:
  // Maps and parses the file; throws marlin::Error naming the malformed field.
  static std::unique_ptr<GgufFile> open(const std::string& path);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  // Start of the data section (the aligned end of the header); tensor offsets already include it.
  uint64_t data_offset() const { return data_offset_; }
  const std::string& path() const { return file_->path(); }
  uint64_t file_size() const { return file_->size(); }

  // Metadata in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const GgufValue* find(std::string_view key) const;

  // Typed lookups. nullopt when the key is absent; marlin::Error naming the key when present
  // with an incompatible type. Integer getters accept every integer type whose value fits.
  std::optional<std::string> get_string(std::string_view key) const;
  std::optional<uint64_t> get_uint(std::string_view key) const;
  std::optional<int64_t> get_int(std::string_view key) const;
  std::optional<double> get_float(std::string_view key) const;  // any float or integer type
  std::optional<bool> get_bool(std::string_view key) const;
  std::optional<std::vector<std::string>> get_string_array(std::string_view key) const;
  std::optional<std::vector<double>> get_float_array(std::string_view key) const;
  std::optional<std::vector<int64_t>> get_int_array(std::string_view key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;
  std::span<const uint8_t> tensor_data(const GgufTensorInfo& tensor) const;

 private:
  GgufFile() = default;
  std::unique_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::unordered_map<std::string, size_t> metadata_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
  friend class GgufParser;
};

}  // namespace marlin
