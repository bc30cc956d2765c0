#include "quant/ggml_repack.h"

#include <cstring>
#include <vector>

#include "core/error.h"
#include "quant/pack.h"

namespace marlin {

std::optional<TensorFormat> lossless_planar_format(GgmlType type) {
  if (type == GgmlType::Q4_0) return TensorFormat::parse("int4-g32");
  if (type == GgmlType::Q8_0) return TensorFormat::parse("int8-g32");
  return std::nullopt;
}

QuantBuffers repack_ggml(const QuantTensor& t) {
  MARLIN_CHECK(t.format.kind == FormatKind::kGgml, "repack: tensor is not in a GGML block format");
  const auto target = lossless_planar_format(t.format.ggml);
  MARLIN_CHECK(target.has_value(), "repack: {} has no lossless planar form", ggml_type_info(t.format.ggml).name);
  const bool q4 = t.format.ggml == GgmlType::Q4_0;
  const int bits = q4 ? 4 : 8;
  const int64_t blocks = t.cols / 32;
  const uint64_t block_bytes = q4 ? 18 : 34;
  QuantBuffers out = QuantBuffers::allocate(*target, t.rows, t.cols);
  std::vector<uint8_t> codes(static_cast<size_t>(t.cols));
  for (int64_t r = 0; r < t.rows; ++r) {
    const uint8_t* row = t.codes + uint64_t(r) * t.code_row_bytes;
    for (int64_t b = 0; b < blocks; ++b) {
      const uint8_t* block = row + uint64_t(b) * block_bytes;
      // The block's fp16 d is the group scale, byte for byte.
      std::memcpy(&out.scales[size_t((r * blocks + b) * 2)], block, 2);
      uint8_t* c = &codes[size_t(b * 32)];
      if (q4) {
        // Low nibbles hold elements 0..15, high nibbles 16..31; codes are already unsigned (q − 8 = value).
        for (int j = 0; j < 16; ++j) {
          c[j] = block[2 + j] & 0x0f;
          c[j + 16] = block[2 + j] >> 4;
        }
      } else {
        // Signed q becomes the unsigned code q + 128 of the symmetric int8 grid.
        for (int j = 0; j < 32; ++j) c[j] = uint8_t(int(int8_t(block[2 + j])) + 128);
      }
    }
    pack_codes(codes.data(), t.cols, bits, &out.codes[size_t(uint64_t(r) * out.code_row_bytes)]);
  }
  return out;
}

}  // namespace marlin
