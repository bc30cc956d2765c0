// GGML tensor element types as stored in GGUF files: one row of one table per type.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace marlin {

// Values are the on-disk type ids of the GGUF format.
enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  BF16 = 30,
};

struct GgmlTypeInfo {
  GgmlType type;
  std::string_view name;
  uint32_t block_elements;  // weights per block (1 for plain floats)
  uint32_t block_bytes;     // bytes per block
  bool supported;           // has a dequantization reference and kernels in this build
};

// The table row for a type id read from a file; nullopt for ids this build does not know.
std::optional<GgmlTypeInfo> ggml_type_info(uint32_t type_id);
const GgmlTypeInfo& ggml_type_info(GgmlType type);
// Every row of the table, in id order.
std::span<const GgmlTypeInfo> ggml_type_table();

// Bytes taken by one row of `elements` weights; nullopt when `elements` is not a whole
// number of blocks or the size overflows.
std::optional<uint64_t> ggml_row_bytes(GgmlType type, uint64_t elements);

}  // namespace marlin
