#include "backend/int4_tiles.h"

#include <cstring>

#include "core/error.h"

namespace marlin {

Int4TileShape int4_tile_shape(const TensorFormat& format, int64_t rows, int64_t cols) {
  format.check_shape(rows, cols);
  MARLIN_CHECK(format.kind == FormatKind::kInt4, "int4 tiles: format {} is not int4", format.name());
  MARLIN_CHECK(!format.act_order && !format.sparse_24, "int4 tiles: format {} (act-order and 2:4 are not supported)",
               format.name());
  MARLIN_CHECK(rows % kInt4TileRows == 0, "int4 tiles: {} rows are not a multiple of {}", rows, kInt4TileRows);
  MARLIN_CHECK(cols % kInt4TileCols == 0, "int4 tiles: {} columns are not a multiple of {}", cols, kInt4TileCols);
  Int4TileShape shape;
  shape.rows = rows;
  shape.cols = cols;
  shape.groups_per_tile = format.group_size == 0 ? 1 : kInt4TileCols / format.group_size;
  shape.asymmetric = format.asymmetric;
  return shape;
}

namespace {

// Code of row r, column k of a planar int4 tensor.
inline uint32_t code_at(const QuantTensor& w, int64_t r, int64_t k) {
  const uint8_t byte = w.codes[uint64_t(r) * w.code_row_bytes + uint64_t(k / 2)];
  return (k % 2 == 0) ? (byte & 0xf) : (byte >> 4);
}

// The 32-bit word of lane `lane`, k-step `ks` of the strip whose first row is `row0`, in the tile
// whose first column is `col0` (nibble order: int4_tiles.h).
uint32_t fragment_word(const QuantTensor& w, int64_t row0, int64_t col0, int ks, int lane) {
  const int64_t g = row0 + lane / 4;
  const int64_t c = col0 + 16 * ks + 2 * (lane % 4);
  const int64_t rows[8] = {g, g + 8, g, g + 8, g, g + 8, g, g + 8};
  const int64_t cols[8] = {c, c, c + 8, c + 8, c + 1, c + 1, c + 9, c + 9};
  uint32_t word = 0;
  for (int i = 0; i < 8; ++i) word |= code_at(w, rows[i], cols[i]) << (4 * i);
  return word;
}

}  // namespace

std::vector<uint8_t> pack_int4_tiles(const QuantTensor& w) {
  w.validate();
  const Int4TileShape shape = int4_tile_shape(w.format, w.rows, w.cols);
  const int64_t groups = w.groups();
  const int gpt = shape.groups_per_tile;
  std::vector<uint8_t> out(shape.total_bytes());
  uint8_t* tile = out.data();
  for (int64_t nb = 0; nb < shape.row_blocks(); ++nb) {
    for (int64_t kt = 0; kt < shape.col_blocks(); ++kt, tile += shape.tile_bytes()) {
      const int64_t row0 = nb * kInt4TileRows, col0 = kt * kInt4TileCols;
      for (int j = 0; j < gpt; ++j) {
        const int64_t group = w.format.group_size == 0 ? 0 : kt * gpt + j;
        for (int r = 0; r < kInt4TileRows; ++r) {
          const uint64_t entry = uint64_t(row0 + r) * uint64_t(groups) + uint64_t(group);
          std::memcpy(tile + 2 * (j * kInt4TileRows + r), w.scales + 2 * entry, 2);
          if (shape.asymmetric) tile[shape.scale_bytes() + j * kInt4TileRows + r] = w.zeros[entry];
        }
      }
      uint8_t* codes = tile + shape.scale_bytes() + shape.zero_bytes();
      for (int strip = 0; strip < kInt4TileRows / 16; ++strip) {
        for (int ks = 0; ks < kInt4TileCols / 16; ++ks) {
          for (int lane = 0; lane < 32; ++lane) {
            const uint32_t word = fragment_word(w, row0 + 16 * strip, col0, ks, lane);
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
