#include "quant/ggml_types.h"

#include <array>

#include "core/checked_math.h"
#include "core/error.h"

namespace marlin {
namespace {

// Block layouts (bytes): Q4_0 = f16 d + 16 B nibbles; Q4_1 = f16 d, f16 m + 16 B; Q5_0 = f16 d +
// 4 B high bits + 16 B; Q5_1 = d, m + 4 + 16; Q8_0 = f16 d + 32 int8. K-quants are 256-weight
// super-blocks: Q2_K 84, Q3_K 110, Q4_K 144, Q5_K 176, Q6_K 210.
constexpr std::array kTypes = {
    GgmlTypeInfo{GgmlType::F32, "F32", 1, 4, true},
    GgmlTypeInfo{GgmlType::F16, "F16", 1, 2, true},
    GgmlTypeInfo{GgmlType::BF16, "BF16", 1, 2, true},
    GgmlTypeInfo{GgmlType::Q4_0, "Q4_0", 32, 18, true},
    GgmlTypeInfo{GgmlType::Q4_1, "Q4_1", 32, 20, true},
    GgmlTypeInfo{GgmlType::Q5_0, "Q5_0", 32, 22, true},
    GgmlTypeInfo{GgmlType::Q5_1, "Q5_1", 32, 24, true},
    GgmlTypeInfo{GgmlType::Q8_0, "Q8_0", 32, 34, true},
    GgmlTypeInfo{GgmlType::Q2_K, "Q2_K", 256, 84, false},
    GgmlTypeInfo{GgmlType::Q3_K, "Q3_K", 256, 110, false},
    GgmlTypeInfo{GgmlType::Q4_K, "Q4_K", 256, 144, true},
    GgmlTypeInfo{GgmlType::Q5_K, "Q5_K", 256, 176, true},
    GgmlTypeInfo{GgmlType::Q6_K, "Q6_K", 256, 210, true},
};

}  // namespace

std::optional<GgmlTypeInfo> ggml_type_info(uint32_t type_id) {
  for (const auto& info : kTypes)
    if (uint32_t(info.type) == type_id) return info;
  return std::nullopt;
}

const GgmlTypeInfo& ggml_type_info(GgmlType type) {
  for (const auto& info : kTypes)
    if (info.type == type) return info;
  fail("unknown ggml type id {}", uint32_t(type));
}

std::span<const GgmlTypeInfo> ggml_type_table() { return kTypes; }

std::optional<uint64_t> ggml_row_bytes(GgmlType type, uint64_t elements) {
  const auto& info = ggml_type_info(type);
  if (elements % info.block_elements != 0) return std::nullopt;
  return checked_mul(elements / info.block_elements, info.block_bytes);
}

}  // namespace marlin
