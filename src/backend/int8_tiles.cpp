#include "backend/int8_tiles.h"

#include "core/error.h"

namespace marlin {

WeightTileShape int8_tile_shape(const TensorFormat& format, int64_t rows, int64_t cols) {
  const bool fp8 = format.kind == FormatKind::kFp8E4M3;
  MARLIN_CHECK(format.kind == FormatKind::kInt8 || fp8, "8-bit tiles: format {} is neither int8 nor fp8",
               format.name());
  MARLIN_CHECK(!format.asymmetric, "8-bit tiles: format {} (asymmetric int8 is not supported)", format.name());
  MARLIN_CHECK(!fp8 || format.group_size == 0 || format.group_size == 128,
               "8-bit tiles: format {} (fp8 takes per-channel or g128 scales)", format.name());
  tiles_detail::check_tileable(format, rows, cols);
  return tiles_detail::base_shape(format, rows, cols, fp8 ? TileCodec::kFp8 : TileCodec::kInt8);
}

std::vector<uint8_t> pack_int8_tiles(const QuantTensor& w, ThreadPool* pool) {
  w.validate();
  const WeightTileShape shape = int8_tile_shape(w.format, w.rows, w.cols);
  std::vector<uint8_t> out(shape.total_bytes());
  tiles_detail::fill_tile_quant(w, shape, shape.codec == TileCodec::kFp8 ? kFp8TileScaleMultiplier : 1.0f, out);
  const int code_offset = shape.scale_bytes() + shape.zero_bytes();
  tiles_detail::for_row_blocks(shape, pool, [&](int64_t nb) {
    for (int64_t kt = 0; kt < shape.col_blocks(); ++kt) {
      uint8_t* codes = out.data() + uint64_t(nb * shape.col_blocks() + kt) * uint64_t(shape.tile_bytes()) + code_offset;
      // A tile whose columns are all stored reads its codes straight from the rows' bytes (one
      // byte a code); the last tile of a K that is not a multiple of 128 goes code by code.
      const bool inside = (kt + 1) * kTileCols <= w.cols;
      auto code = [&](int64_t row, int64_t col) {
        return inside ? w.codes[uint64_t(row) * w.code_row_bytes + uint64_t(col)]
                      : uint8_t(tiles_detail::code_or_neutral(w, row, col));
      };
      for (int strip = 0; strip < kTileRows / 16; ++strip) {
        for (int ks = 0; ks < kTileCols / 16; ++ks) {
          for (int lane = 0; lane < 32; ++lane) {
            const int64_t g = nb * kTileRows + 16 * strip + lane / 4;
            const int64_t c = kt * kTileCols + 16 * ks + 2 * (lane % 4);
            uint8_t* dst = codes + 2048 * strip + 512 * (ks / 2) + 16 * lane + 8 * (ks % 2);
            for (int word = 0; word < 2; ++word) {
              const int64_t col = c + 8 * word;
              dst[4 * word + 0] = code(g, col);
              dst[4 * word + 1] = code(g + 8, col);
              dst[4 * word + 2] = code(g, col + 1);
              dst[4 * word + 3] = code(g + 8, col + 1);
            }
          }
        }
      }
    }
  });
  return out;
}

}  // namespace marlin
