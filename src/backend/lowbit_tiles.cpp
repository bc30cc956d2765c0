#include "backend/lowbit_tiles.h"

#include "core/error.h"

namespace marlin {

namespace {

constexpr uint32_t kLowTwoBits = 0x33333333;  // bits 0..1 of every nibble

void store_word(uint8_t* dst, uint32_t word) {
  for (int b = 0; b < 4; ++b) dst[b] = uint8_t(word >> (8 * b));
}

// The code block of the tile at (row0, col0), in the layout of lowbit_tiles.h.
void write_codes(const QuantTensor& w, bool int3, int code_bytes, int64_t row0, int64_t col0, uint8_t* codes) {
  for (int strip = 0; strip < kTileRows / 16; ++strip) {
    for (int half = 0; half < 2; ++half) {
      uint8_t* base = codes + tiles_detail::half_offset(code_bytes, strip, half);
      for (int lane = 0; lane < 32; ++lane) {
        uint32_t nibbles[4];
        for (int j = 0; j < 4; ++j) nibbles[j] = tiles_detail::nibble_word(w, row0 + 16 * strip, col0, 4 * half + j, lane);
        for (int pair = 0; pair < 2; ++pair)
          store_word(base + 8 * lane + 4 * pair,
                     (nibbles[2 * pair] & kLowTwoBits) | ((nibbles[2 * pair + 1] & kLowTwoBits) << 2));
        if (int3) {
          uint32_t third_bits = 0;
          for (int j = 0; j < 4; ++j) third_bits |= ((nibbles[j] >> 2) & 0x11111111u) << j;
          store_word(base + 256 + 4 * lane, third_bits);
        }
      }
    }
  }
}

}  // namespace

WeightTileShape lowbit_tile_shape(const TensorFormat& format, int64_t rows, int64_t cols) {
  MARLIN_CHECK(format.kind == FormatKind::kInt2 || format.kind == FormatKind::kInt3,
               "int2/int3 tiles: format {} is neither int2 nor int3", format.name());
  tiles_detail::check_tileable(format, rows, cols);
  return tiles_detail::base_shape(format, rows, cols,
                                  format.kind == FormatKind::kInt3 ? TileCodec::kInt3 : TileCodec::kInt2);
}

std::vector<uint8_t> pack_lowbit_tiles(const QuantTensor& w, ThreadPool* pool) {
  w.validate();
  const WeightTileShape shape = lowbit_tile_shape(w.format, w.rows, w.cols);
  std::vector<uint8_t> out(shape.total_bytes());
  tiles_detail::fill_tile_quant(w, shape, 1.0f, out);
  const bool int3 = shape.codec == TileCodec::kInt3;
  tiles_detail::fill_tile_codes(
      shape,
      [&](int64_t row0, int64_t col0, uint8_t* codes) { write_codes(w, int3, shape.code_bytes(), row0, col0, codes); },
      out, pool);
  return out;
}

}  // namespace marlin
