#include "backend/int4_tiles.h"

#include "core/error.h"

namespace marlin {

WeightTileShape int4_tile_shape(const TensorFormat& format, int64_t rows, int64_t cols) {
  MARLIN_CHECK(format.kind == FormatKind::kInt4, "int4 tiles: format {} is not int4", format.name());
  tiles_detail::check_tileable(format, rows, cols);
  return tiles_detail::base_shape(format, rows, cols, TileCodec::kInt4);
}

namespace tiles_detail {

namespace {

// nibble_word for a tile whose columns are all stored, reading bytes rather than codes (packing
// is most of a 4-bit model's upload time): the columns c, c + 1 of a lane share a byte, c (even)
// in the low nibble, and so do c + 8, c + 9.
uint32_t inner_nibble_word(const QuantTensor& w, int64_t row0, int64_t col0, int ks, int lane) {
  const int64_t g = row0 + lane / 4, c = col0 + 16 * ks + 2 * (lane % 4);
  const uint8_t* top = w.codes + uint64_t(g) * w.code_row_bytes + uint64_t(c / 2);
  const uint8_t* bottom = top + 8 * w.code_row_bytes;
  const uint32_t t0 = top[0], t1 = top[4], b0 = bottom[0], b1 = bottom[4];
  return (t0 & 15u) | (b0 & 15u) << 4 | (t1 & 15u) << 8 | (b1 & 15u) << 12 | (t0 >> 4) << 16 | (b0 >> 4) << 20 |
         (t1 >> 4) << 24 | (b1 >> 4) << 28;
}

}  // namespace

void write_nibble_codes(const QuantTensor& w, int64_t row0, int64_t col0, uint8_t* codes) {
  const bool inside = col0 + kTileCols <= w.cols && format_info(w.format.kind).code_bits == 4;
  for (int strip = 0; strip < kTileRows / 16; ++strip) {
    for (int ks = 0; ks < kTileCols / 16; ++ks) {
      for (int lane = 0; lane < 32; ++lane) {
        const uint32_t word = inside ? inner_nibble_word(w, row0 + 16 * strip, col0, ks, lane)
                                     : nibble_word(w, row0 + 16 * strip, col0, ks, lane);
        uint8_t* dst = codes + half_offset(4096, strip, ks / 4) + 16 * lane + 4 * (ks % 4);
        for (int b = 0; b < 4; ++b) dst[b] = uint8_t(word >> (8 * b));
      }
    }
  }
}

}  // namespace tiles_detail

std::vector<uint8_t> pack_int4_tiles(const QuantTensor& w, ThreadPool* pool) {
  w.validate();
  const WeightTileShape shape = int4_tile_shape(w.format, w.rows, w.cols);
  std::vector<uint8_t> out(shape.total_bytes());
  tiles_detail::fill_tile_quant(w, shape, 1.0f, out);
  tiles_detail::fill_tile_codes(
      shape, [&](int64_t row0, int64_t col0, uint8_t* codes) { tiles_detail::write_nibble_codes(w, row0, col0, codes); },
      out, pool);
  return out;
}

}  // namespace marlin
