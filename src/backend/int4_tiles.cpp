#include "backend/int4_tiles.h"

#include "core/error.h"

namespace marlin {

WeightTileShape int4_tile_shape(const TensorFormat& format, int64_t rows, int64_t cols) {
  MARLIN_CHECK(format.kind == FormatKind::kInt4, "int4 tiles: format {} is not int4", format.name());
  tiles_detail::check_tileable(format, rows, cols);
  return tiles_detail::base_shape(format, rows, cols, TileCodec::kInt4);
}

namespace {

// The 32-bit word of lane `lane`, k-step `ks` of the strip whose first row is `row0`, in the tile
// whose first column is `col0` (nibble order: int4_tiles.h).
uint32_t fragment_word(const QuantTensor& w, int64_t row0, int64_t col0, int ks, int lane) {
  const int64_t g = row0 + lane / 4;
  const int64_t c = col0 + 16 * ks + 2 * (lane % 4);
  const int64_t rows[8] = {g, g + 8, g, g + 8, g, g + 8, g, g + 8};
  const int64_t cols[8] = {c, c, c + 8, c + 8, c + 1, c + 1, c + 9, c + 9};
  uint32_t word = 0;
  for (int i = 0; i < 8; ++i) word |= tiles_detail::code_or_neutral(w, rows[i], cols[i]) << (4 * i);
  return word;
}

}  // namespace

std::vector<uint8_t> pack_int4_tiles(const QuantTensor& w) {
  w.validate();
  const WeightTileShape shape = int4_tile_shape(w.format, w.rows, w.cols);
  std::vector<uint8_t> out(shape.total_bytes());
  tiles_detail::fill_tile_quant(w, shape, 1.0f, out);
  const int code_offset = shape.scale_bytes() + shape.zero_bytes();
  for (int64_t nb = 0; nb < shape.row_blocks(); ++nb) {
    for (int64_t kt = 0; kt < shape.col_blocks(); ++kt) {
      uint8_t* codes = out.data() + uint64_t(nb * shape.col_blocks() + kt) * uint64_t(shape.tile_bytes()) + code_offset;
      for (int strip = 0; strip < kTileRows / 16; ++strip) {
        for (int ks = 0; ks < kTileCols / 16; ++ks) {
          for (int lane = 0; lane < 32; ++lane) {
            const uint32_t word = fragment_word(w, nb * kTileRows + 16 * strip, kt * kTileCols, ks, lane);
            uint8_t* dst = codes + 1024 * strip + 512 * (ks / 4) + 16 * lane + 4 * (ks % 4);
            for (int b = 0; b < 4; ++b) dst[b] = uint8_t(word >> (8 * b));
          }
        }
      }
    }
  }
  return out;
}

}  // namespace marlin
